-- The anchors' own minimal schema: the two tables of the naive design (who holds which reaction,
-- and a count row per article and reaction), each with only its primary key, plus the hourly and
-- daily rollup tables the set-based ceiling also fills. No triggers, no secondary indexes, no
-- functions: a fixed workload, independent of the service's schema as it evolves.
create type reaction as enum ('like', 'dislike', 'love', 'funny', 'angry', 'sad', 'wow');

create table reactions (
    article_id text collate "C" not null,
    visitor_key bytea not null,
    reaction reaction not null,
    updated_at timestamptz not null default now(),
    primary key (article_id, visitor_key)
);

create table article_reaction_counts (
    article_id text collate "C" not null,
    reaction reaction not null,
    count bigint not null default 0,
    primary key (article_id, reaction)
);

create table reaction_counts_hourly (
    article_id text collate "C" not null,
    bucket_start timestamptz not null,
    like_count integer not null default 0,
    dislike_count integer not null default 0,
    love_count integer not null default 0,
    funny_count integer not null default 0,
    angry_count integer not null default 0,
    sad_count integer not null default 0,
    wow_count integer not null default 0,
    primary key (article_id, bucket_start)
);

create table reaction_counts_daily (like reaction_counts_hourly including all);
