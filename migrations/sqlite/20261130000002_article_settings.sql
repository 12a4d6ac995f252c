-- editorial controls: per-article settings an editor chooses through
-- `put /v1/admin/articles/{article_id}/settings`. the counterpart of
-- migrations/20261130000002_article_settings.sql.
--
-- an article without a row is open and offers all seven reactions; most articles never get one.
-- the service keeps what it read of this table for cache_ttl_ms, so a change reaches every
-- instance within that time. the checks that a reaction is offered and the article open are the
-- service's (src/reactions/mod.rs), made before a write is queued; no write statement reads this
-- table.
create table article_settings (
    article_id text primary key not null check (length(cast(article_id as blob)) between 1 and 256),
    -- closed to new reactions (and to removing them): 1; reads and erasure go on.
    closed integer not null default 0 check (closed in (0, 1)),
    -- the reactions offered, as a json array of keys in display order without duplicates; null
    -- offers all of them (an eighth reaction added later included).
    reactions text check (reactions is null or (json_valid(reactions) and json_array_length(reactions) between 1 and 7)),
    -- microseconds since the unix epoch, utc, as in the other tables.
    updated_at integer not null default (cast(unixepoch('subsec') * 1000000 as integer))
) strict, without rowid;
