-- The ops console (service/ops/): its sign-in sessions, the audit of every operator action, and the
-- values those actions write.

-- A signed-in browser: the cookie holds a random token, only its SHA-256 is stored. The key it was
-- opened with is checked on every request (a revoked key ends its sessions at once).
create table ops_sessions (
    token_hash   text primary key,
    api_key_id   bigint not null references api_keys (id),
    csrf_token   text not null,            -- echoed by every form of this session
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at   timestamptz not null
);
create index ops_sessions_expires_idx on ops_sessions (expires_at);

-- Who did what, when and why: one row per console action, written in the transaction of the change
-- it records (a job's result, e.g. "check this order now", is filled in when the job ends).
create table operator_actions (
    id                   bigserial primary key,
    action               text not null check (action in
                             ('anomaly.acknowledge', 'anomaly.resolve', 'order.check', 'run.start',
                              'delivery.replay', 'delivery.replay_dry_run')),
    key_id               bigint references api_keys (id),
    key_name             text not null,
    note                 text not null check (length(btrim(note)) between 1 and 2000),
    order_id             text references orders (id),
    anomaly_id           bigint references anomalies (id),
    run_id               bigint references reconcile_runs (id),
    rejected_delivery_id bigint references rejected_deliveries (id),
    result               jsonb,
    created_at           timestamptz not null default now(),
    finished_at          timestamptz
);
create index operator_actions_created_idx on operator_actions (created_at desc, id desc);
create index operator_actions_order_idx on operator_actions (order_id, id) where order_id is not null;
create index operator_actions_anomaly_idx on operator_actions (anomaly_id, id) where anomaly_id is not null;

-- An acknowledged anomaly is still open (the reconciler keeps checking its order) but someone owns it.
alter table anomalies add column acknowledged_at timestamptz;

-- "Check this order now" applies the gateway's answer through the ledger with its own source.
alter table payment_events drop constraint payment_events_source_check;
alter table payment_events add constraint payment_events_source_check
    check (source in ('webhook', 'reconciler', 'catch_up', 'manual', 'operator'));

-- Runs started from the console.
alter table reconcile_runs drop constraint reconcile_runs_trigger_check;
alter table reconcile_runs add constraint reconcile_runs_trigger_check
    check (trigger in ('cron', 'audit', 'api', 'cli', 'console'));
