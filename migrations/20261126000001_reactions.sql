-- the core schema: who holds which reaction on which article, and the per-article counts.
--
-- invariant: for every (article_id, reaction), article_reaction_counts.count equals the number of
-- rows in reactions holding that reaction. the service changes both in one transaction.

-- the seven stable reaction keys. they are names, never positions: adding an eighth later is
-- `alter type reaction add value 'eighth'`, which moves no existing value.
create type reaction as enum ('like', 'dislike', 'love', 'funny', 'angry', 'sad', 'wow');

-- one row per (article, visitor): the primary key makes double counting impossible, whatever the
-- application does.
create table reactions (
    -- the news site's opaque id, 1–256 bytes of utf-8 (validated by the service too). collation
    -- "c" because ids are opaque: byte order is the only meaningful order, and the cheapest.
    article_id text collate "C" not null check (octet_length(article_id) between 1 and 256),
    -- hmac-sha-256 of the visitor's identity under the service secret; never the raw id, cookie,
    -- ip or user-agent.
    visitor_key bytea not null check (octet_length(visitor_key) = 32),
    reaction reaction not null,
    -- when this visitor last set or switched the reaction; the stats windows read this.
    updated_at timestamptz not null default now(),
    primary key (article_id, visitor_key)
);

-- `delete /v1/visitors/me` finds every reaction of one visitor.
create index reactions_visitor_key_idx on reactions (visitor_key);

-- one row per (article, reaction) that was ever used. a row per reaction (rather than seven
-- columns) keeps keys as data and spreads a hot article's updates over seven rows.
create table article_reaction_counts (
    article_id text collate "C" not null,
    reaction reaction not null,
    count bigint not null default 0 check (count >= 0),
    primary key (article_id, reaction)
);

-- service-wide secrets that every instance must agree on, generated once on first start.
-- 'visitor' keys the visitor hashes and signs cookies when visitor_secret is not configured.
create table service_secrets (
    name text primary key,
    secret bytea not null check (octet_length(secret) >= 32),
    created_at timestamptz not null default now()
);
