-- Refunds per payment (issue 10, DESIGN.md §3): every payment (provider_payment_id) an order has
-- seen, with its own state under the same rules as the order's (service/transitions.py `Payment`).
-- The order's refunded_amount is its paying payment's; another payment's refunds live only here.
create table order_payments (
    order_id            text not null references orders (id),
    provider_payment_id text not null,
    provider            text not null,
    account             text not null,
    amount              bigint not null check (amount >= 0),
    currency            text not null check (currency ~ '^[A-Z]{3}$'),
    status              text not null check (status in
                            ('pending', 'processing', 'authorized', 'succeeded', 'failed',
                             'canceled', 'partially_refunded', 'refunded')),
    status_at           timestamptz,           -- gateway time of the news that set `status`
    refunded_amount     bigint not null default 0 check (refunded_amount >= 0),
    paid_at             timestamptz,           -- earliest gateway time proving it captured money
    first_seen_at       timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    primary key (order_id, provider_payment_id)
);

-- The audit trail names the payment whose news made each step (a refund: the payment refunded).
alter table transitions add column provider_payment_id text;

alter table anomalies drop constraint anomalies_kind_check;
alter table anomalies add constraint anomalies_kind_check check (kind in
    ('amount_mismatch', 'late_success', 'missed_success', 'refund_exceeds_payment', 'double_payment',
     'gateway_flag', 'ledger_gateway_mismatch', 'refund_of_unknown_payment'));

update transitions t set provider_payment_id = e.provider_payment_id
from payment_events e where e.id = t.event_id;

-- Existing payments: the paying one as its order records it; every other one from its events
-- (refunded by its largest refund, else succeeded once proven, else its latest status by gateway time).
insert into order_payments (order_id, provider_payment_id, provider, account, amount, currency, status,
                            status_at, refunded_amount, paid_at)
select o.id, o.provider_payment_id, o.provider, o.account, o.amount, o.currency, o.status, o.status_at,
       o.refunded_amount, o.paid_at
from orders o where o.provider_payment_id is not null;

insert into order_payments (order_id, provider_payment_id, provider, account, amount, currency, status,
                            status_at, refunded_amount, paid_at)
select distinct on (e.order_id, e.provider_payment_id)
       e.order_id, e.provider_payment_id, e.provider, e.account, o.amount, o.currency,
       case when r.refunded > 0 then (case when r.refunded >= o.amount then 'refunded' else 'partially_refunded' end)
            when r.paid_at is not null then 'succeeded' else e.status end,
       coalesce(e.occurred_at, e.received_at), r.refunded, r.paid_at
from payment_events e
join orders o on o.id = e.order_id
cross join lateral (
    select coalesce(max(least(x.refunded_amount, o.amount))
                        filter (where x.status in ('partially_refunded', 'refunded')), 0) as refunded,
           min(coalesce(x.occurred_at, x.received_at))
               filter (where x.status in ('succeeded', 'partially_refunded', 'refunded')) as paid_at
    from payment_events x
    where x.order_id = e.order_id and x.provider_payment_id = e.provider_payment_id
      and x.amount = o.amount and x.currency = o.currency
) r
where e.provider_payment_id is not null and e.amount = o.amount and e.currency = o.currency
  and e.status <> 'pending'
order by e.order_id, e.provider_payment_id, coalesce(e.occurred_at, e.received_at) desc, e.id desc
on conflict do nothing;
