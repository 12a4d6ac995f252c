-- the outbox of the newsroom alerts (webhooks), as in migrations/20261130000003_webhook_outbox.sql;
-- times are integer microseconds since the unix epoch, utc.

create table webhook_events (
    id text primary key,
    dedup_key text not null unique,
    event_type text not null,
    body text not null,
    created_at integer not null
) strict;

create table webhook_deliveries (
    event_id text not null references webhook_events (id) on delete cascade,
    url text not null,
    attempts integer not null default 0,
    next_attempt_at integer not null,
    delivered_at integer,
    failed_at integer,
    last_error text,
    primary key (event_id, url)
) strict;

create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at)
    where delivered_at is null and failed_at is null;
