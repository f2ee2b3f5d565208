-- Group commit (issue 9): the webhook events a process receives at once, applied by ONE statement in
-- ONE transaction, so a batch pays one round trip and one commit (WAL flush) instead of one each.
--
-- Each event runs `ledger_apply` in a subtransaction of its own (the EXCEPTION block): what one event
-- hits (SLOW_PATH's PR001, a value PostgreSQL refuses, a deadlock with another process's batch) rolls
-- back that event alone, and comes back as its `refused` SQLSTATE; the caller then applies that event
-- by itself (service/ledger/group_commit.py), where the error, if any, is its own. The others commit.
-- Batches stay small (service/ledger/group_commit.py BATCH) so each one's subtransactions fit
-- PostgreSQL's cache of them (64 per backend); beyond it every snapshot in the server gets slower.
create function ledger_apply_batch(
    e_provider text[], e_dedupe_key text[], e_account text[], e_reference text[], e_claimed_order_id text[],
    e_status text[], e_amount bigint[], e_currency text[], e_ppid text[], e_refunded bigint[],
    e_occurred_at timestamptz[], e_reason text[], e_flag text[], e_source text[], e_payload jsonb[],
    e_raw_body bytea[], e_raw_headers jsonb[])
returns table (
    ordinal bigint, kind text, order_id text, event_id bigint,
    before_status text, before_refunded bigint, before_ppid text, before_version integer,
    after_status text, after_refunded bigint, after_ppid text, after_version integer,
    anomalies text[], new_anomalies text[], stored text, refused text)
language plpgsql as $$
declare
    e record;
    r record;
begin
    for e in select * from unnest(e_provider, e_dedupe_key, e_account, e_reference, e_claimed_order_id, e_status,
                                  e_amount, e_currency, e_ppid, e_refunded, e_occurred_at, e_reason, e_flag,
                                  e_source, e_payload, e_raw_body, e_raw_headers) with ordinality
             as u(u_provider, u_dedupe_key, u_account, u_reference, u_claimed_order_id, u_status, u_amount,
                  u_currency, u_ppid, u_refunded, u_occurred_at, u_reason, u_flag, u_source, u_payload,
                  u_raw_body, u_raw_headers, u_ordinal)
    loop
        ordinal := e.u_ordinal;
        begin
            select * into r from ledger_apply(e.u_provider, e.u_dedupe_key, e.u_account, e.u_reference,
                e.u_claimed_order_id, e.u_status, e.u_amount, e.u_currency, e.u_ppid, e.u_refunded,
                e.u_occurred_at, e.u_reason, e.u_flag, e.u_source, e.u_payload, e.u_raw_body, e.u_raw_headers);
            kind := r.kind; order_id := r.order_id; event_id := r.event_id;
            before_status := r.before_status; before_refunded := r.before_refunded; before_ppid := r.before_ppid;
            before_version := r.before_version;
            after_status := r.after_status; after_refunded := r.after_refunded; after_ppid := r.after_ppid;
            after_version := r.after_version;
            anomalies := r.anomalies; new_anomalies := r.new_anomalies; stored := r.stored;
            refused := null;
        exception when others then  -- not query_canceled: a cancelled statement ends the whole batch
            get stacked diagnostics refused = returned_sqlstate;
            kind := null; order_id := null; event_id := null;
            before_status := null; before_refunded := null; before_ppid := null; before_version := null;
            after_status := null; after_refunded := null; after_ppid := null; after_version := null;
            anomalies := null; new_anomalies := null; stored := null;
        end;
        return next;
    end loop;
end
$$;
