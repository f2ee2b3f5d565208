-- Refused deliveries beyond the sampling budget (issue 15, service/refusals.py): not a row each, but one
-- row per (gateway, reason, source) per flush period, so a forged flood costs a bounded number of writes
-- and ops still see how many came, from where, when, and one body hash to recognise them by.
create table refusal_tallies (
    id                 bigserial primary key,
    provider           text not null,
    reason             text not null,
    source             text not null,          -- the client address (an IPv6 client by its /64); '*' for overflow
    count              bigint not null check (count >= 1),
    first_seen         timestamptz not null,
    last_seen          timestamptz not null check (last_seen >= first_seen),
    sample_body_sha256 text not null,
    recorded_at        timestamptz not null default now()
);
create index refusal_tallies_seen_idx on refusal_tallies (last_seen, id);
