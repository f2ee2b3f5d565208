-- Run participants and their heartbeats (issue 14.5). Every process taking part in a run (its lead,
-- helpers) has a row here and refreshes `beat_at` every `beat_every` seconds. One that misses its
-- beat for 1.5 periods is gone: its order leases are released at once (not after the 10-minute
-- lease), and a run whose lead is gone is taken over by a live worker.
create table run_participants (
    run_id      bigint not null references reconcile_runs (id) on delete cascade,
    participant text not null,                 -- host/pid/token of one `execute` of the run
    beat_every  double precision not null check (beat_every > 0),
    joined_at   timestamptz not null default now(),
    beat_at     timestamptz not null default now(),
    left_at     timestamptz,                   -- it ended its part, or was declared gone
    primary key (run_id, participant)
);
create index run_participants_live_idx on run_participants (run_id) where left_at is null;

-- The participant leading the run (checks, then waits for helpers, catches up, ends the run);
-- null until a worker leads it (an API run waiting in the queue).
alter table reconcile_runs add column lead text;

-- Which participant holds an order's lease, so a gone participant's leases can be released.
alter table order_checks add column lease_holder text;

-- A candidate the run could not check (leased by another run, its participant gone, breaker
-- open): recorded as a `skipped` finding, so `completed` can mean every candidate was checked.
alter table reconcile_findings drop constraint reconcile_findings_kind_check;
alter table reconcile_findings add constraint reconcile_findings_kind_check
    check (kind in ('in_sync', 'repaired', 'mismatch', 'missing_at_gateway', 'error', 'skipped'));

-- The candidates a run set out to check, so its end can tell which were never checked.
create table run_candidates (
    run_id   bigint not null references reconcile_runs (id) on delete cascade,
    order_id text not null,
    primary key (run_id, order_id)
);
