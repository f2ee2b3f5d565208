-- The ledger's write path as functions (issue 9): one event applied in ONE statement, so a webhook
-- costs one round trip (a redelivery too) and runs in autocommit, without BEGIN/COMMIT round trips.
--
--   ledger_decide  the transition rules: service/transitions.py `decide`, line for line. Pure
--                  (immutable); tests/service/test_ledger_sql.py runs both on the same random facts
--                  and news and they must agree on every field. Change them together.
--   ledger_step    one stored event applied to one order: row lock, facts, rules, and every write
--                  (order, transition, outbox, payment, anomalies, event outcome). Also what
--                  registration's quarantine replay runs per released event.
--   ledger_apply   the whole apply of DESIGN.md §3: dedupe insert, owner lookup (locks only when the
--                  reference is not known yet), direct claim, then ledger_step. What it cannot do in
--                  one go (quarantined siblings to release) it refuses with SQLSTATE PR001 before
--                  anything commits; the caller then takes the general path (service/ledger).
-- Statement names, parameters and outputs: service/ledger/sql.py.

-- A status's layer (DESIGN.md §3); PaymentStatus.layer in Python, tested equal.
create function ledger_layer(status text) returns integer
language sql immutable strict parallel safe as $$
    select case status
        when 'pending' then 0
        when 'processing' then 1 when 'authorized' then 1 when 'failed' then 1
        when 'canceled' then 2
        when 'succeeded' then 3
        when 'partially_refunded' then 4 when 'refunded' then 4
    end
$$;

-- Inside layer 1, news of the same instant: the more final reading wins (transitions.TIE_RANK).
create function ledger_tie_rank(status text) returns integer
language sql immutable strict parallel safe as $$
    select case status when 'processing' then 0 when 'authorized' then 1 when 'failed' then 2 else 0 end
$$;

-- The two-int advisory lock key of a text (service/ledger/locks.py `_lock_key`: sha256's first 4
-- bytes, big-endian, signed), so Python and SQL lock the same keys.
create function ledger_lock_key(key text) returns integer
language sql immutable strict parallel safe as $$
    select ('x' || left(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 8))::bit(32)::integer
$$;

-- transitions.py `_order_rules`: the table of DESIGN.md §3 for news of the paying payment (or of
-- no payment in particular), over one order's (or one payment's) facts.
create function ledger_rules(
    amount bigint, currency text,
    o_status text, o_status_at timestamptz, o_refunded bigint, o_ppid text, o_paid_at timestamptz,
    n_status text, n_at timestamptz, n_refunded bigint, n_ppid text,
    out kind text, out status text, out status_at timestamptz, out refunded_amount bigint,
    out provider_payment_id text, out paid_at timestamptz, out anomalies jsonb)
language plpgsql immutable parallel safe as $$
declare
    layer integer := ledger_layer(n_status);
    cur integer := ledger_layer(o_status);
    target text;
    claimed bigint;
    refunded bigint := o_refunded;
    excess jsonb := '[]';
begin
    kind := 'stale'; status := o_status; status_at := o_status_at; refunded_amount := o_refunded;
    provider_payment_id := o_ppid; paid_at := o_paid_at; anomalies := '[]';
    if layer = 0 then
        kind := 'ignored';
        return;
    elsif layer = 1 then
        if cur > 1 or (cur = 1 and o_status_at is not null
                       and (n_at, ledger_tie_rank(n_status)) <= (o_status_at, ledger_tie_rank(o_status))) then
            return;
        end if;
        target := n_status;
    elsif layer = 2 then
        if cur >= 2 then
            return;
        end if;
        target := 'canceled';
    elsif layer = 3 then
        if cur >= 3 then
            return;
        end if;
        target := 'succeeded';
        if o_status = 'canceled' then
            anomalies := jsonb_build_array(jsonb_build_object(
                'kind', 'late_success', 'detail', jsonb_build_object(
                    'canceled_at', to_jsonb(o_status_at), 'status', n_status, 'provider_payment_id', n_ppid)));
        end if;
    else
        -- no amount given: `refunded` means all of it; a partial one we cannot size
        claimed := coalesce(n_refunded, case when n_status = 'refunded' then amount else o_refunded end);
        refunded := least(claimed, amount);
        target := case when refunded >= amount then 'refunded' else 'partially_refunded' end;
        if claimed > amount then
            excess := jsonb_build_array(jsonb_build_object(
                'kind', 'refund_exceeds_payment', 'detail', jsonb_build_object(
                    'refunded_amount', claimed, 'amount', amount, 'currency', currency)));
        end if;
        if cur < 3 then
            -- a refund proves a payment we never heard of (or heard of after giving up)
            if o_status = 'canceled' then
                anomalies := jsonb_build_array(jsonb_build_object(
                    'kind', 'late_success', 'detail', jsonb_build_object(
                        'canceled_at', to_jsonb(o_status_at), 'status', n_status, 'provider_payment_id', n_ppid)));
            else
                anomalies := jsonb_build_array(jsonb_build_object(
                    'kind', 'missed_success', 'detail', jsonb_build_object(
                        'from_status', o_status, 'refund_status', n_status)));
            end if;
            anomalies := anomalies || excess;
        elsif cur < 4 or refunded > o_refunded then
            anomalies := excess;
        else
            anomalies := excess;
            kind := case when jsonb_array_length(excess) > 0 then 'anomaly' else 'stale' end;
            return;
        end if;
    end if;
    kind := 'applied';
    status := target;
    status_at := n_at;
    refunded_amount := refunded;
    if ledger_layer(target) >= 3 then
        provider_payment_id := coalesce(o_ppid, n_ppid);
        paid_at := least(o_paid_at, n_at);
    end if;
end
$$;

-- transitions.py `decide`: the verdict on one event for one order and for the payment it names.
-- p_*: the event's payment as recorded (p_status null: none); q_*: the paying payment's.
create function ledger_decide(
    o_amount bigint, o_currency text, o_status text, o_status_at timestamptz, o_refunded bigint, o_ppid text,
    o_paid_at timestamptz,
    p_status text, p_status_at timestamptz, p_refunded bigint, p_paid_at timestamptz,
    q_status text, q_refunded bigint, q_paid_at timestamptz,
    n_status text, n_at timestamptz, n_amount bigint, n_currency text, n_refunded bigint, n_ppid text,
    out kind text, out status text, out status_at timestamptz, out refunded_amount bigint,
    out provider_payment_id text, out paid_at timestamptz,
    out pay_status text, out pay_status_at timestamptz, out pay_refunded bigint, out pay_paid_at timestamptz,
    out anomalies jsonb, out resolves_double_payment boolean)
language plpgsql immutable parallel safe as $$
declare
    layer integer := ledger_layer(n_status);
    r record;
    paying_since timestamptz;
    paying_refunded bigint;
    excess jsonb := '[]';
begin
    status := o_status; status_at := o_status_at; refunded_amount := o_refunded; provider_payment_id := o_ppid;
    paid_at := o_paid_at; resolves_double_payment := false;
    if (n_amount, n_currency) is distinct from (o_amount, o_currency) then
        -- never mark an order paid for the wrong amount
        kind := 'amount_mismatch';
        anomalies := jsonb_build_array(jsonb_build_object('kind', 'amount_mismatch', 'detail', jsonb_build_object(
            'expected', jsonb_build_object('amount', o_amount, 'currency', o_currency),
            'got', jsonb_build_object('amount', n_amount, 'currency', n_currency),
            'status', n_status, 'money_moved', layer >= 3)));
        return;
    end if;
    if n_ppid is not null then
        -- the event's payment: the same rules over that payment's events alone
        r := ledger_rules(o_amount, o_currency, coalesce(p_status, 'pending'), p_status_at, coalesce(p_refunded, 0),
                          n_ppid, p_paid_at, n_status, n_at, n_refunded, n_ppid);
        pay_status := r.status; pay_status_at := r.status_at; pay_refunded := r.refunded_amount;
        pay_paid_at := least(p_paid_at, case when layer >= 3 then n_at end);
    end if;
    if layer < 3 or o_ppid is null or n_ppid is null or n_ppid = o_ppid then
        r := ledger_rules(o_amount, o_currency, o_status, o_status_at, o_refunded, o_ppid, o_paid_at,
                          n_status, n_at, n_refunded, n_ppid);
        kind := r.kind; status := r.status; status_at := r.status_at; refunded_amount := r.refunded_amount;
        provider_payment_id := r.provider_payment_id; paid_at := r.paid_at; anomalies := r.anomalies;
        return;
    end if;
    -- news proving a payment other than the one that pays the order (transitions.py `_another_payment`)
    paying_since := coalesce(q_paid_at, o_paid_at);
    paying_refunded := case when q_status is null then o_refunded else q_refunded end;
    if n_refunded is not null and layer = 4 and n_refunded > o_amount then
        excess := jsonb_build_array(jsonb_build_object('kind', 'refund_exceeds_payment', 'detail', jsonb_build_object(
            'refunded_amount', n_refunded, 'amount', o_amount, 'currency', o_currency)));
    end if;
    if paying_since is null
       or (pay_paid_at, n_ppid collate "C") < (paying_since, o_ppid collate "C") then
        -- it captured before the payment we took as paying: by gateway time it pays the order
        kind := 'applied'; status := pay_status; status_at := n_at; refunded_amount := pay_refunded;
        provider_payment_id := n_ppid; paid_at := pay_paid_at; anomalies := excess;
        if paying_refunded < o_amount then
            anomalies := anomalies || jsonb_build_array(jsonb_build_object('kind', 'double_payment',
                'detail', jsonb_build_object('paid_by', n_ppid, 'provider_payment_id', o_ppid, 'amount', o_amount)));
        end if;
        resolves_double_payment := true;
        return;
    end if;
    resolves_double_payment := pay_refunded >= o_amount;  -- a fully refunded duplicate holds no money
    anomalies := excess;
    if layer = 3 then
        if not resolves_double_payment then
            anomalies := anomalies || jsonb_build_array(jsonb_build_object('kind', 'double_payment',
                'detail', jsonb_build_object('paid_by', o_ppid, 'provider_payment_id', n_ppid, 'amount', n_amount)));
        end if;
    elsif p_status is null or ledger_layer(p_status) < 3 then
        anomalies := jsonb_build_array(jsonb_build_object('kind', 'refund_of_unknown_payment',
            'detail', jsonb_build_object('paid_by', o_ppid, 'provider_payment_id', n_ppid,
                                         'refunded_amount', pay_refunded))) || anomalies;
    end if;
    kind := case when jsonb_array_length(anomalies) > 0 then 'anomaly' else 'stale' end;
end
$$;

-- One stored event applied to one order (apply_event.py): the caller found the order under the
-- locks of service/ledger/locks.py; the row lock here serializes the events of one order.
create function ledger_step(p_order_id text, p_event_id bigint,
    out kind text, out order_id text, out event_id bigint,
    out before_status text, out before_refunded bigint, out before_ppid text, out before_version integer,
    out after_status text, out after_refunded bigint, out after_ppid text, out after_version integer,
    out anomalies text[], out new_anomalies text[])
language plpgsql as $$
declare
    o orders;
    e payment_events;
    p order_payments;
    q order_payments;
    d record;
    found_anomalies jsonb;
    a jsonb;
    opened bigint;
begin
    select * into strict o from orders where id = p_order_id for update;
    select * into strict e from payment_events where id = p_event_id;
    if e.provider_payment_id is not null then
        select * into p from order_payments x where x.order_id = p_order_id
                                               and x.provider_payment_id = e.provider_payment_id;
    end if;
    if o.provider_payment_id is not null then
        select * into q from order_payments x where x.order_id = p_order_id
                                               and x.provider_payment_id = o.provider_payment_id;
    end if;
    d := ledger_decide(o.amount, o.currency, o.status, o.status_at, o.refunded_amount, o.provider_payment_id,
                       o.paid_at, p.status, p.status_at, p.refunded_amount, p.paid_at,
                       q.status, q.refunded_amount, q.paid_at,
                       e.status, coalesce(e.occurred_at, e.received_at), e.amount, e.currency, e.refunded_amount,
                       e.provider_payment_id);
    kind := d.kind; order_id := p_order_id; event_id := p_event_id;
    before_status := o.status; before_refunded := o.refunded_amount; before_ppid := o.provider_payment_id;
    before_version := o.version;
    if d.kind = 'applied' then
        update orders x set status = d.status, status_at = d.status_at, refunded_amount = d.refunded_amount,
                            provider_payment_id = d.provider_payment_id, paid_at = d.paid_at,
                            version = x.version + 1, updated_at = now()
        where x.id = p_order_id returning * into o;
        -- unique (order_id, to_version): two writers can never both step from one version
        insert into transitions (order_id, event_id, from_status, to_status, from_version, to_version,
                                 refunded_amount, source, provider_payment_id)
        values (p_order_id, p_event_id, before_status, o.status, before_version, o.version, o.refunded_amount,
                e.source, e.provider_payment_id);
        -- the outbox row of the transition, with the order as it now is (apply_event.py `announce`)
        insert into notifications (type, order_id, order_version, data)
        values ('order.' || o.status, o.id, o.version, to_jsonb(o));
    end if;
    after_status := o.status; after_refunded := o.refunded_amount; after_ppid := o.provider_payment_id;
    after_version := o.version;
    if d.pay_status is not null then
        insert into order_payments as x (order_id, provider_payment_id, provider, account, amount, currency, status,
                                         status_at, refunded_amount, paid_at)
        values (p_order_id, e.provider_payment_id, e.provider, e.account, e.amount, e.currency, d.pay_status,
                d.pay_status_at, d.pay_refunded, d.pay_paid_at)
        on conflict on constraint order_payments_pkey do update
        set status = excluded.status, status_at = excluded.status_at, refunded_amount = excluded.refunded_amount,
            paid_at = excluded.paid_at, updated_at = now();
    end if;
    if d.resolves_double_payment then
        update anomalies x set status = 'resolved', resolved_at = now()
        where x.order_id = p_order_id and x.kind = 'double_payment' and x.status = 'open'
          and x.detail ->> 'provider_payment_id' = e.provider_payment_id;
    end if;
    update payment_events x set order_id = p_order_id, outcome = d.kind,
                                applied_at = case when d.kind = 'applied' then now() end
    where x.id = p_event_id;
    found_anomalies := d.anomalies;
    if e.flag is not null then  -- a gateway-side condition ops must see; the event is otherwise applied
        found_anomalies := found_anomalies || jsonb_build_array(jsonb_build_object('kind', 'gateway_flag',
            'detail', jsonb_build_object('flag', e.flag, 'status', e.status)));
    end if;
    anomalies := '{}'; new_anomalies := '{}';
    for a in select * from jsonb_array_elements(found_anomalies) loop
        anomalies := anomalies || (a ->> 'kind');
        opened := null;
        -- once per (kind, order, event): a redelivered suspicious event does not pile up rows
        insert into anomalies (kind, order_id, event_id, detail)
        values (a ->> 'kind', p_order_id, p_event_id, a -> 'detail')
        on conflict do nothing returning id into opened;
        if opened is not null then
            new_anomalies := new_anomalies || (a ->> 'kind');
            insert into notifications (type, order_id, order_version, anomaly_id, data)
            values ('anomaly.opened', o.id, o.version, opened, to_jsonb(o));
        end if;
    end loop;
end
$$;

-- The whole apply of one event (DESIGN.md §3), for the paths that need no quarantine replay.
create function ledger_apply(
    e_provider text, e_dedupe_key text, e_account text, e_reference text, e_claimed_order_id text,
    e_status text, e_amount bigint, e_currency text, e_ppid text, e_refunded bigint, e_occurred_at timestamptz,
    e_reason text, e_flag text, e_source text, e_payload jsonb, e_raw_body bytea, e_raw_headers jsonb,
    out kind text, out order_id text, out event_id bigint,
    out before_status text, out before_refunded bigint, out before_ppid text, out before_version integer,
    out after_status text, out after_refunded bigint, out after_ppid text, out after_version integer,
    out anomalies text[], out new_anomalies text[], out stored text)
language plpgsql as $$
declare
    owner text;
    s record;
begin
    -- Stored as quarantined (order_id null, outcome unknown_order) and resolved in this same statement.
    insert into payment_events (provider, dedupe_key, account, reference, claimed_order_id, status, amount, currency,
                                provider_payment_id, refunded_amount, occurred_at, reason, flag, source, outcome,
                                payload, raw_body, raw_headers)
    values (e_provider, e_dedupe_key, e_account, e_reference, e_claimed_order_id, e_status, e_amount, e_currency,
            e_ppid, e_refunded, e_occurred_at, e_reason, e_flag, e_source, 'unknown_order',
            coalesce(e_payload, '{}'), e_raw_body, e_raw_headers)
    on conflict (provider, dedupe_key) do nothing
    returning id into event_id;
    if event_id is null then
        -- A redelivery: nothing changes; its answer comes from the stored event's outcome as it now
        -- stands. (The conflicting row is committed — ON CONFLICT waited for it — so we see it.)
        kind := 'duplicate';
        select x.id, x.order_id, x.outcome into event_id, order_id, stored
        from payment_events x where x.provider = e_provider and x.dedupe_key = e_dedupe_key;
        return;
    end if;
    -- A reference already registered cannot move or vanish: no lock is needed to trust it.
    select r.order_id into owner from order_references r
    where r.provider = e_provider and r.account = e_account and r.reference = e_reference;
    if owner is null then
        -- The quarantine race (service/ledger/locks.py): serialize with a registration that may be
        -- adding this reference, then look again. Quarantined siblings under this reference may claim
        -- orders whose registration adds it: that, and releasing them, is the general path's work.
        perform pg_advisory_xact_lock(1347569152, ledger_lock_key(e_provider || chr(31) || e_account || chr(31)
                                                                  || e_reference));
        if exists (select 1 from payment_events x
                   where x.provider = e_provider and x.account = e_account and x.reference = e_reference
                     and x.order_id is null and x.claimed_order_id is not null and x.id <> event_id) then
            raise exception 'ledger_apply: quarantined events under this reference claim orders' using errcode = 'PR001';
        end if;
        if e_claimed_order_id is not null then
            perform pg_advisory_xact_lock(1347571456, ledger_lock_key(e_claimed_order_id));
        end if;
        select r.order_id into owner from order_references r
        where r.provider = e_provider and r.account = e_account and r.reference = e_reference;
        if owner is null and e_claimed_order_id is not null
           and exists (select 1 from order_references r
                       where r.order_id = e_claimed_order_id and r.provider = e_provider) then
            -- The claim matches (DESIGN.md §5): the reference joins the order. Other events waiting
            -- for this order would be released with it: the general path does that.
            if exists (select 1 from payment_events x
                       where x.order_id is null and x.id <> event_id
                         and (x.claimed_order_id = e_claimed_order_id
                              or (x.provider = e_provider and x.account = e_account and x.reference = e_reference))) then
                raise exception 'ledger_apply: quarantined events wait for this order' using errcode = 'PR001';
            end if;
            insert into order_references (provider, account, reference, order_id, provider_data)
            values (e_provider, e_account, e_reference, e_claimed_order_id, '{}');
            owner := e_claimed_order_id;
        end if;
    end if;
    if owner is null then
        kind := 'unknown_order';  -- stays in quarantine until an order or reference matching it is registered
        return;
    end if;
    s := ledger_step(owner, event_id);
    kind := s.kind; order_id := s.order_id;
    before_status := s.before_status; before_refunded := s.before_refunded; before_ppid := s.before_ppid;
    before_version := s.before_version;
    after_status := s.after_status; after_refunded := s.after_refunded; after_ppid := s.after_ppid;
    after_version := s.after_version;
    anomalies := s.anomalies; new_anomalies := s.new_anomalies;
end
$$;
