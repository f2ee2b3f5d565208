-- payrecon schema (DESIGN.md §3, §5, §6). Money is bigint minor units + a 3-letter currency, always together.

create table orders (
    id                  text primary key check (length(id) between 1 and 128),
    amount              bigint not null check (amount >= 0),
    currency            text not null check (currency ~ '^[A-Z]{3}$'),
    provider            text not null check (length(provider) between 1 and 64),
    account             text not null check (length(account) between 1 and 128),
    reference           text not null check (length(reference) between 1 and 255),
    provider_data       jsonb not null default '{}',
    metadata            jsonb not null default '{}',
    status              text not null default 'pending' check (status in
                            ('pending', 'processing', 'authorized', 'succeeded', 'failed',
                             'canceled', 'partially_refunded', 'refunded')),
    -- gateway time of the news that set `status`: within the retry cycle the newest news wins (§3)
    status_at           timestamptz,
    refunded_amount     bigint not null default 0 check (refunded_amount >= 0),
    provider_payment_id text,
    paid_at             timestamptz,
    version             integer not null default 1 check (version >= 1),
    -- fingerprint of the registration body: the same body again is idempotent, another is a conflict
    request_hash        text not null,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);
create index orders_updated_idx on orders (updated_at, id);
create index orders_status_updated_idx on orders (status, updated_at, id);
create index orders_open_idx on orders (created_at) where status in ('pending', 'processing', 'authorized');

-- Every gateway reference an order answers to: one per payment attempt (VNPay and MoMo refuse reuse).
create table order_references (
    provider      text not null,
    account       text not null,
    reference     text not null check (length(reference) between 1 and 255),
    order_id      text not null references orders (id),
    provider_data jsonb not null default '{}',
    added_at      timestamptz not null default now(),
    primary key (provider, account, reference)
);
create index order_references_order_idx on order_references (order_id);

-- Every event we accepted, applied or not. The unique key is the idempotency guarantee (§3 step 1).
create table payment_events (
    id                  bigserial primary key,
    provider            text not null,
    dedupe_key          text not null,
    account             text not null,
    reference           text not null,
    claimed_order_id    text,              -- the order id the gateway carried (Stripe metadata.order_id)
    order_id            text references orders (id),  -- null while quarantined (no matching order yet)
    status              text not null check (status in
                            ('pending', 'processing', 'authorized', 'succeeded', 'failed',
                             'canceled', 'partially_refunded', 'refunded')),
    amount              bigint not null check (amount >= 0),
    currency            text not null check (currency ~ '^[A-Z]{3}$'),
    provider_payment_id text,
    refunded_amount     bigint check (refunded_amount >= 0),
    occurred_at         timestamptz,
    reason              text,
    flag                text,
    source              text not null check (source in ('webhook', 'reconciler', 'catch_up', 'manual')),
    outcome             text not null check (outcome in
                            ('applied', 'stale', 'amount_mismatch', 'unknown_order', 'anomaly', 'ignored')),
    payload             jsonb not null default '{}',
    raw_body            bytea,             -- the bytes the signature was over, so fixed adapters can re-parse
    raw_headers         jsonb,
    received_at         timestamptz not null default now(),
    applied_at          timestamptz,
    unique (provider, dedupe_key)
);
create index payment_events_order_idx on payment_events (order_id, id);
create index payment_events_quarantine_idx on payment_events (provider, account, reference) where order_id is null;
create index payment_events_quarantine_claimed_idx on payment_events (claimed_order_id) where order_id is null;

-- The audit trail: one row per forward step of an order, and what caused it.
create table transitions (
    id              bigserial primary key,
    order_id        text not null references orders (id),
    event_id        bigint not null references payment_events (id),
    from_status     text not null,
    to_status       text not null,
    from_version    integer not null,
    to_version      integer not null check (to_version = from_version + 1),
    refunded_amount bigint not null check (refunded_amount >= 0),
    source          text not null,
    created_at      timestamptz not null default now(),
    unique (order_id, to_version)     -- two writers can never both step from the same version
);
create index transitions_event_idx on transitions (event_id);

create table anomalies (
    id          bigserial primary key,
    kind        text not null check (kind in
                    ('amount_mismatch', 'late_success', 'missed_success', 'refund_exceeds_payment',
                     'double_payment', 'gateway_flag', 'ledger_gateway_mismatch')),
    order_id    text references orders (id),
    event_id    bigint references payment_events (id),
    detail      jsonb not null default '{}',
    status      text not null default 'open' check (status in ('open', 'resolved')),
    created_at  timestamptz not null default now(),
    resolved_at timestamptz
);
create index anomalies_created_idx on anomalies (created_at, id);
create index anomalies_open_order_idx on anomalies (order_id) where status = 'open';
-- one open anomaly per (kind, order, event): a redelivered suspicious event does not pile up rows
create unique index anomalies_once_idx on anomalies (kind, coalesce(order_id, ''), coalesce(event_id, 0));

-- Deliveries we refused. The untrusted body itself is not kept, only its hash and size.
create table rejected_deliveries (
    id          bigserial primary key,
    provider    text not null,
    account     text,
    reason      text not null,
    detail      text,
    remote_addr text,
    body_sha256 text not null,
    body_size   integer not null,
    received_at timestamptz not null default now()
);
create index rejected_deliveries_received_idx on rejected_deliveries (received_at);

create table reconcile_runs (
    id          bigserial primary key,
    slot        timestamptz unique,        -- the cron slot: N workers still make one run per slot
    trigger     text not null check (trigger in ('cron', 'api', 'cli')),
    status      text not null default 'running' check (status in ('running', 'completed', 'partial', 'failed')),
    params      jsonb not null default '{}',
    dry_run     boolean not null default false,
    counts      jsonb not null default '{}',
    error       text,
    started_at  timestamptz not null default now(),
    finished_at timestamptz
);
create index reconcile_runs_started_idx on reconcile_runs (started_at desc, id desc);

create table reconcile_findings (
    id          bigserial primary key,
    run_id      bigint not null references reconcile_runs (id),
    order_id    text not null references orders (id),
    provider    text not null,
    account     text not null,
    kind        text not null check (kind in ('in_sync', 'repaired', 'mismatch', 'missing_at_gateway', 'error')),
    from_status text,
    to_status   text,
    gateway_status text,
    detail      text,
    created_at  timestamptz not null default now(),
    unique (run_id, order_id)            -- every candidate is checked once per run
);
create index reconcile_findings_run_kind_idx on reconcile_findings (run_id, kind, id);

-- Reconciler scheduling state, kept apart from `orders` so the ledger stays its only writer.
create table order_checks (
    order_id        text primary key references orders (id),
    next_check_at   timestamptz not null default now(),
    attempts        integer not null default 0,
    lease_run_id    bigint references reconcile_runs (id),
    lease_until     timestamptz,
    last_checked_at timestamptz
);
create index order_checks_due_idx on order_checks (next_check_at);

-- Stripe events-list catch-up position, per gateway account (§6 step 4).
create table catch_up_cursors (
    provider   text not null,
    account    text not null,
    cursor     bigint not null,
    updated_at timestamptz not null default now(),
    primary key (provider, account)
);

create table api_keys (
    id           bigserial primary key,
    name         text not null check (length(name) between 1 and 128),
    prefix       text not null unique,      -- shown in listings; the key itself is never stored
    key_hash     text not null,             -- sha256 hex of the whole key
    scopes       text[] not null check (scopes <@ array['orders:read', 'orders:write', 'recon:read', 'recon:run']),
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
