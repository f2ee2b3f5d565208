-- Outbound webhooks to the shop (issue 11), Standard Webhooks style, built on the `notifications` outbox.
--
-- An endpoint receives the notifications written after it was created, of the types it asked for
-- (none listed: all). Fan-out turns each notification into one `webhook_deliveries` row per
-- matching endpoint and stamps the notification, so a notification committed late (a lower id
-- after a higher one) is never skipped, as a cursor on the id would.

create table webhook_endpoints (
    id                   bigserial primary key,
    url                  text not null check (url ~ '^https?://' and length(url) <= 2048),
    description          text not null default '' check (length(description) <= 500),
    event_types          text[] not null default '{}',   -- empty: every type
    enabled              boolean not null default true,
    -- the circuit: after too many failures in a row, nothing is sent until `circuit_open_until`
    consecutive_failures integer not null default 0,
    circuit_open_until   timestamptz,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);

-- Signing secrets (`whsec_…`): kept in clear because we sign with them; shown once at creation.
-- During a rotation's overlap the old secret stays live until `expires_at`, and every delivery
-- carries one signature per live secret (the spec allows several).
create table webhook_secrets (
    id          bigserial primary key,
    endpoint_id bigint not null references webhook_endpoints (id),
    secret      text not null check (secret like 'whsec_%'),
    created_at  timestamptz not null default now(),
    expires_at  timestamptz              -- null: current
);
create index webhook_secrets_endpoint_idx on webhook_secrets (endpoint_id);

alter table notifications add column fanned_out_at timestamptz;
create index notifications_fan_out_idx on notifications (id) where fanned_out_at is null;

create table webhook_deliveries (
    id              bigserial primary key,
    notification_id bigint not null references notifications (id),
    endpoint_id     bigint not null references webhook_endpoints (id),
    payload         bytea not null,          -- the exact body, so every attempt signs the same bytes
    status          text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    tries           integer not null default 0,   -- attempts in the current round (a redelivery starts one)
    next_attempt_at timestamptz not null default now(),  -- also the lease of a claimed delivery
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz not null default now(),
    unique (notification_id, endpoint_id)    -- fan-out twice makes one delivery
);
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where status = 'pending';
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, id desc);

-- The delivery log: one row per HTTP attempt.
create table webhook_attempts (
    id            bigserial primary key,
    delivery_id   bigint not null references webhook_deliveries (id),
    attempted_at  timestamptz not null default now(),
    status_code   integer,                 -- null: no HTTP answer (connection refused, timeout…)
    error         text,
    latency_ms    integer not null,
    response_body text                     -- the first bytes of the answer, for debugging the shop's side
);
create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, id);

-- Scopes of the webhook-endpoints API. Any later migration redefining this check must keep these.
alter table api_keys drop constraint api_keys_scopes_check;
alter table api_keys add constraint api_keys_scopes_check check (scopes <@ array[
    'orders:read', 'orders:write', 'recon:read', 'recon:run', 'webhooks:read', 'webhooks:write']);
