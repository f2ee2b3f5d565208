-- Refused and held webhook deliveries keep the request itself (issue 10 item 4), so ops can see what
-- the gateway sent and replay it once the adapter (or the configuration) is fixed.
--
-- `verified` rows are deliveries whose signature checked out but which could not be parsed or stored
-- (a "held" delivery): always kept in full, one row per distinct request (`held_key`), however often
-- the gateway redelivers it (`deliveries` counts them). Unverified refusals keep their raw request only
-- when the refusal sampler lets them through (service/refusals.py); the rest are counted.
alter table rejected_deliveries
    add column method           text,
    add column query_string     text,
    add column raw_headers      jsonb,
    add column raw_body         bytea,
    add column verified         boolean not null default false,
    add column held_key         text,
    add column deliveries       integer not null default 1 check (deliveries >= 1),
    add column last_received_at timestamptz,
    add column replayed_at      timestamptz,
    add column replay_outcome   text;

-- One row per held request: a gateway retrying the same bytes updates it instead of adding rows.
create unique index rejected_deliveries_held_idx on rejected_deliveries (provider, held_key) where held_key is not null;
-- The list API filters by gateway and pages by id.
create index rejected_deliveries_provider_idx on rejected_deliveries (provider, id);

-- Replaying a held delivery is a write through the ledger: its own scope.
alter table api_keys drop constraint api_keys_scopes_check;
alter table api_keys add constraint api_keys_scopes_check
    check (scopes <@ array['orders:read', 'orders:write', 'recon:read', 'recon:run', 'recon:write',
                          'webhooks:read', 'webhooks:write']);
