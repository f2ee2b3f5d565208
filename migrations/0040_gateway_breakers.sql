-- Each gateway account's circuit breaker as the reconciler last published it (service/breakers.py),
-- so the ops console and /metrics, which run in `serve`, see the state held inside worker processes.
create table gateway_breakers (
    provider   text not null,
    account    text not null,
    open       boolean not null,
    failures   integer not null default 0 check (failures >= 0),
    last_error text,
    run_id     bigint references reconcile_runs (id),
    changed_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (provider, account)
);
