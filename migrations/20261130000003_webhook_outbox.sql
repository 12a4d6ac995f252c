-- the outbox of the newsroom alerts (webhooks): an event is recorded here, in the transaction
-- that decides it, before anything is sent, and stays until every url has taken it, so that
-- delivery is at least once and survives restarts. src/store/alerts.rs reads and writes it.

-- one row per event. `dedup_key` names the alert and its period (for example
-- `article.trending|<article>||2026-11-30T11:00:00Z`): every instance evaluates the rules, and the
-- unique key makes the first one to record an alert the only one.
create table webhook_events (
    -- the `webhook-id` header, the same on every attempt: `msg_` and a random uuid.
    id text primary key,
    dedup_key text not null unique,
    event_type text not null,
    -- the exact bytes that are signed and sent.
    body text not null,
    created_at timestamptz not null
);

-- one row per (event, url): its attempts. an instance claims due rows with
-- `for update skip locked` and pushes `next_attempt_at` past its request timeout (a lease), so
-- that two instances never send one row at once, and a row whose sender died is sent again once
-- the lease runs out.
create table webhook_deliveries (
    event_id text not null references webhook_events (id) on delete cascade,
    url text not null,
    attempts integer not null default 0,
    next_attempt_at timestamptz not null,
    delivered_at timestamptz,
    -- set when retries ran out (after at least 24 hours); the row is kept for the record.
    failed_at timestamptz,
    last_error text,
    primary key (event_id, url)
);

-- the deliverer's only read: due rows, oldest first.
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at)
    where delivered_at is null and failed_at is null;
