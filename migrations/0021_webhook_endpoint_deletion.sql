-- A deleted webhook endpoint stays as a row (its deliveries and attempts keep their history), is
-- disabled, and is invisible to the API and the CLI.
alter table webhook_endpoints add column deleted_at timestamptz;
