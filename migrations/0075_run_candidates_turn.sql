-- A run's participants claim its candidates by walking its plan (`run_candidates`) with a keyset
-- cursor, a batch per claim, instead of recomputing every candidate per claim (which made a claim
-- cost the whole candidate set: seconds per batch of 50 at a million candidates).
--
-- `turn` is the walking order: hashtext(order_id), so a batch mixes gateways instead of holding one
-- gateway's consecutive ids. As it is a function of order_id, the primary key (run_id, turn,
-- order_id) is unique exactly when (run_id, order_id) is: one index serves both the plan's
-- ON CONFLICT and the walk. Rows of a plan written before this migration keep turn 0 and are
-- walked in order_id order.
alter table run_candidates add column turn integer not null default 0;
alter table run_candidates drop constraint run_candidates_pkey;
alter table run_candidates add primary key (run_id, turn, order_id);

-- No foreign key to reconcile_runs: its check is a query per row (a million per plan of a million
-- candidates, a third of the plan's time, all of them locking the same run row), for rows that
-- reference a run by construction (a participant plans the run it is taking part in) and live only
-- as long as it runs (finish_run drops them; runs are never deleted).
alter table run_candidates drop constraint run_candidates_run_id_fkey;
