-- the core schema of the embedded sqlite store: who holds which reaction on which article, and
-- the per-article counts. the same tables, keys and invariants as the postgresql schema in
-- migrations/ (a migration there has its counterpart here, under the same version).
--
-- invariant: for every (article_id, reaction), article_reaction_counts.count equals the number of
-- rows in reactions holding that reaction. the service changes both in one transaction.
--
-- every table is strict, so a column holds only values of its declared type. times are integer
-- microseconds since the unix epoch, utc: they compare, and fall into hour and day buckets, as
-- plain integers. `datetime(updated_at / 1000000, 'unixepoch')` shows one.

-- one row per (article, visitor): the primary key makes double counting impossible, whatever the
-- application does. without rowid: the table is stored in primary key order, which is how it is
-- read and written.
create table reactions (
    -- the news site's opaque id, 1–256 bytes of utf-8 (validated by the service too). sqlite
    -- compares text byte by byte (the binary collation), like collate "c" in postgresql.
    article_id text not null check (length(cast(article_id as blob)) between 1 and 256),
    -- hmac-sha-256 of the visitor's identity under the service secret; never the raw id, cookie,
    -- ip or user-agent.
    visitor_key blob not null check (length(visitor_key) = 32),
    -- the seven stable reaction keys, stored by name, never by position. adding an eighth means
    -- rebuilding the two tables with a wider check (sqlite cannot alter one), moving no count.
    reaction text not null check (reaction in ('like', 'dislike', 'love', 'funny', 'angry', 'sad', 'wow')),
    -- when this visitor last set or switched the reaction; the stats windows read this.
    updated_at integer not null default (cast(unixepoch('subsec') * 1000000 as integer)),
    primary key (article_id, visitor_key)
) strict, without rowid;

-- `delete /v1/visitors/me` finds every reaction of one visitor.
create index reactions_visitor_key_idx on reactions (visitor_key);

-- one row per (article, reaction) that was ever used. a row per reaction (rather than seven
-- columns) keeps keys as data.
create table article_reaction_counts (
    article_id text not null,
    reaction text not null check (reaction in ('like', 'dislike', 'love', 'funny', 'angry', 'sad', 'wow')),
    count integer not null default 0 check (count >= 0),
    primary key (article_id, reaction)
) strict, without rowid;

-- service-wide secrets that every instance must agree on, generated once on first start.
-- 'visitor' keys the visitor hashes and signs cookies when visitor_secret is not configured.
create table service_secrets (
    name text primary key,
    secret blob not null check (length(secret) >= 32),
    created_at integer not null default (cast(unixepoch('subsec') * 1000000 as integer))
) strict;
