-- editorial controls: per-article settings an editor chooses through
-- `put /v1/admin/articles/{article_id}/settings`.
--
-- an article without a row is open and offers all seven reactions; most articles never get one.
-- the service keeps what it read of this table for cache_ttl_ms, so a change reaches every
-- instance within that time. the checks that a reaction is offered and the article open are the
-- service's (src/reactions/mod.rs), made before a write is queued; no write statement reads this
-- table.
create table article_settings (
    article_id text collate "C" primary key check (octet_length(article_id) between 1 and 256),
    -- closed to new reactions (and to removing them); reads and erasure go on.
    closed boolean not null default false,
    -- the reactions offered, in display order, without duplicates; null offers all of them (an
    -- eighth reaction added later included).
    reactions reaction[] check (reactions is null or cardinality(reactions) between 1 and 7),
    updated_at timestamptz not null default now()
);
