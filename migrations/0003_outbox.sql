-- The notification outbox (issue 11): one row per order transition and per anomaly opened, written
-- by the ledger in the same transaction as the change it announces, so a committed transition is
-- never left unannounced and a rolled-back one is never announced. Delivery to the shop's webhook
-- endpoints (their own tables) reads from here; rows are never updated by the ledger.
create table notifications (
    id            bigserial primary key,
    type          text not null check (type in
                      ('order.processing', 'order.authorized', 'order.succeeded', 'order.failed',
                       'order.canceled', 'order.partially_refunded', 'order.refunded', 'anomaly.opened')),
    order_id      text not null references orders (id),
    order_version integer not null,          -- shops discard news older than the version they hold
    anomaly_id    bigint references anomalies (id),
    -- the order row as it is right after the transition (to_jsonb of `orders`), rendered at delivery
    data          jsonb not null,
    created_at    timestamptz not null default now()
);
create index notifications_order_idx on notifications (order_id, id);
