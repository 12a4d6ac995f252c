-- The SQLite anchor's minimal schema: the two tables of the naive design with only their primary
-- keys, as the embedded store declares them; no triggers, no secondary indexes.
create table if not exists reactions (
    article_id text not null,
    visitor_key blob not null,
    reaction text not null,
    updated_at integer not null,
    primary key (article_id, visitor_key)
) strict, without rowid;

create table if not exists article_reaction_counts (
    article_id text not null,
    reaction text not null,
    count integer not null default 0,
    primary key (article_id, reaction)
) strict, without rowid;
