-- Scheduled audit runs (DESIGN.md §6): a second cron job checks every order inside the horizon,
-- paid ones too, because MoMo and VNPay announce refunds by no webhook (only their status APIs
-- show them) and "ledger paid, gateway not" is only found by asking about paid orders.
--
-- An audit slot and the 5-minute slot fall on the same instant (00:00 is both), so a slot is now
-- unique per trigger: N workers still make one run per (trigger, slot). Runs without a slot
-- (api, cli) stay unconstrained: NULL slots are distinct.

alter table reconcile_runs drop constraint reconcile_runs_trigger_check;
alter table reconcile_runs add constraint reconcile_runs_trigger_check
    check (trigger in ('cron', 'audit', 'api', 'cli'));

alter table reconcile_runs drop constraint reconcile_runs_slot_key;
alter table reconcile_runs add constraint reconcile_runs_trigger_slot_key unique (trigger, slot);

-- Ops list one trigger's runs (the latest audit among hundreds of 5-minute runs), newest first.
create index reconcile_runs_trigger_idx on reconcile_runs (trigger, id desc);

-- An audit walks the orders created inside its window in (created_at, id) order, a batch per claim
-- (reconciler/candidates.py _SWEEP_CLAIM), instead of recomputing the whole window for each batch.
create index orders_created_idx on orders (created_at, id);
