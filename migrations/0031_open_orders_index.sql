-- orders_open_idx covers the statuses PaymentStatus.is_open names (providers/base.py), the set the
-- reconciler's candidate query filters on (reconciler/candidates.py OPEN_STATUSES). 0001 left out
-- `failed`, which the reconciler treats as open (a failed attempt may be followed by a paying one),
-- so that part of the candidate scan read the whole table. tests/test_schema_enums.py keeps them equal.
drop index orders_open_idx;
create index orders_open_idx on orders (created_at) where status in ('pending', 'processing', 'authorized', 'failed');
