-- hourly and daily rollups of the reactions held, for dashboard windows of any length.
--
-- a stats window counts the reactions currently held whose last change (updated_at) falls in it.
-- reading those rows costs in proportion to the window: a month of a busy site is millions of
-- rows. these tables hold, per article and utc hour (and per article and utc day), how many of
-- the reactions held now last changed in that hour (day), one column per reaction. a window is
-- read as whole days from reaction_counts_daily, whole hours at its ends from
-- reaction_counts_hourly, and only the partial hours at its two ends from reactions
-- (src/domain/window.rs, `WindowParts`), so a month costs about what a day did before.
--
-- invariant: for every article, bucket and reaction r, the r column equals the number of rows in
-- reactions of that article holding r whose updated_at falls in the bucket. statement-level
-- triggers on reactions keep it, in the transaction of the change, whoever writes: the service,
-- an older version of it during a rolling upgrade, or an operator by hand.
--
-- this migration locks reactions against writes while it fills the rollups from the existing
-- rows (about 20 s on ten million rows; writes wait, reads go on), so that no change slips between
-- the fill and the triggers. docs/stats-performance.md has the numbers.

create table reaction_counts_hourly (
    article_id text collate "C" not null,
    -- the start of a utc hour.
    bucket_start timestamptz not null,
    -- an article gathers far fewer than 2^31 reactions in an hour or a day: integer counts keep
    -- the rows, which dashboards read by the hundred thousand, small.
    like_count integer not null default 0,
    dislike_count integer not null default 0,
    love_count integer not null default 0,
    funny_count integer not null default 0,
    angry_count integer not null default 0,
    sad_count integer not null default 0,
    wow_count integer not null default 0,
    primary key (article_id, bucket_start),
    check (like_count >= 0 and dislike_count >= 0 and love_count >= 0 and funny_count >= 0
           and angry_count >= 0 and sad_count >= 0 and wow_count >= 0)
);

-- the same per utc day (a bucket starts at midnight utc).
create table reaction_counts_daily (like reaction_counts_hourly including all);

-- site-wide windows read a bucket range over all articles; one article's time series reads the
-- primary key. the counts are not in these indexes, so changing them is a heap-only update, and
-- the free space left in each page (fillfactor) keeps it on the page.
create index reaction_counts_hourly_bucket_idx on reaction_counts_hourly (bucket_start);
create index reaction_counts_daily_bucket_idx on reaction_counts_daily (bucket_start);
alter table reaction_counts_hourly set (fillfactor = 70);
alter table reaction_counts_daily set (fillfactor = 70);

-- adds the net change of a set of (article, time, reaction, ±1) moves to both rollups, in one
-- upsert per table in (article, bucket) order, so that concurrent writers lock rollup rows in the
-- same order (as they lock count rows in (article, reaction) order).
--
-- a check constraint is evaluated on the row an insert proposes before on conflict applies, so
-- the proposed row carries no negative count (a negative delta implies the row exists); the
-- update takes the real deltas from `deltas`.
create function reaction_rollups_add(
    move_articles text[], move_times timestamptz[], move_reactions reaction[], move_deltas integer[]
) returns void
language sql
as $$
    with moves as (
        select * from unnest(move_articles, move_times, move_reactions, move_deltas) as m(article_id, at, reaction, delta)
    ), deltas as (
        select article_id, bucket.width, bucket.start,
               coalesce(sum(delta) filter (where reaction = 'like'), 0) as like_delta,
               coalesce(sum(delta) filter (where reaction = 'dislike'), 0) as dislike_delta,
               coalesce(sum(delta) filter (where reaction = 'love'), 0) as love_delta,
               coalesce(sum(delta) filter (where reaction = 'funny'), 0) as funny_delta,
               coalesce(sum(delta) filter (where reaction = 'angry'), 0) as angry_delta,
               coalesce(sum(delta) filter (where reaction = 'sad'), 0) as sad_delta,
               coalesce(sum(delta) filter (where reaction = 'wow'), 0) as wow_delta
        from moves
        cross join lateral (
            values ('hour', date_bin('1 hour', at, timestamptz '1970-01-01 00:00:00+00')),
                   ('day', date_bin('1 day', at, timestamptz '1970-01-01 00:00:00+00'))
        ) as bucket(width, start)
        group by article_id, bucket.width, bucket.start
        -- an update that moved nothing (same reaction, same bucket) changes no rollup row
        having (coalesce(sum(delta) filter (where reaction = 'like'), 0),
                coalesce(sum(delta) filter (where reaction = 'dislike'), 0),
                coalesce(sum(delta) filter (where reaction = 'love'), 0),
                coalesce(sum(delta) filter (where reaction = 'funny'), 0),
                coalesce(sum(delta) filter (where reaction = 'angry'), 0),
                coalesce(sum(delta) filter (where reaction = 'sad'), 0),
                coalesce(sum(delta) filter (where reaction = 'wow'), 0)) <> (0, 0, 0, 0, 0, 0, 0)
    ), hourly as (
        insert into reaction_counts_hourly as h
        select article_id, start, greatest(like_delta, 0), greatest(dislike_delta, 0),
               greatest(love_delta, 0), greatest(funny_delta, 0), greatest(angry_delta, 0),
               greatest(sad_delta, 0), greatest(wow_delta, 0)
        from deltas
        where width = 'hour'
        order by article_id, start
        on conflict (article_id, bucket_start) do update
        set (like_count, dislike_count, love_count, funny_count, angry_count, sad_count, wow_count) = (
            select h.like_count + d.like_delta, h.dislike_count + d.dislike_delta,
                   h.love_count + d.love_delta, h.funny_count + d.funny_delta,
                   h.angry_count + d.angry_delta, h.sad_count + d.sad_delta, h.wow_count + d.wow_delta
            from deltas d
            where d.width = 'hour' and d.article_id = excluded.article_id and d.start = excluded.bucket_start
        )
    )
    insert into reaction_counts_daily as h
    select article_id, start, greatest(like_delta, 0), greatest(dislike_delta, 0),
           greatest(love_delta, 0), greatest(funny_delta, 0), greatest(angry_delta, 0),
           greatest(sad_delta, 0), greatest(wow_delta, 0)
    from deltas
    where width = 'day'
    order by article_id, start
    on conflict (article_id, bucket_start) do update
    set (like_count, dislike_count, love_count, funny_count, angry_count, sad_count, wow_count) = (
        select h.like_count + d.like_delta, h.dislike_count + d.dislike_delta,
               h.love_count + d.love_delta, h.funny_count + d.funny_delta,
               h.angry_count + d.angry_delta, h.sad_count + d.sad_delta, h.wow_count + d.wow_delta
        from deltas d
        where d.width = 'day' and d.article_id = excluded.article_id and d.start = excluded.bucket_start
    )
$$;

-- one trigger function for the three statement-level triggers below: the rows a statement
-- inserted count +1 where they are now, the rows it deleted -1 where they were, and the rows it
-- updated both. a statement that changed no row costs one empty check.
--
-- a statement that inserts, updates and deletes at once fires three triggers, which lock rollup
-- rows in three passes: two such statements can then deadlock (postgresql detects it after
-- deadlock_timeout and the service retries). the service's batched write statement therefore
-- applies all its moves itself, in one call, and marks the statement by setting
-- reader_reactions.rollups_applied_by to its statement_timestamp(); the triggers leave a marked
-- statement alone. every other writer (the visitor erasure, which only deletes, an older release,
-- an operator) goes through the triggers.
create function reactions_maintain_rollups() returns trigger
language plpgsql
as $$
begin
    if current_setting('reader_reactions.rollups_applied_by', true) = statement_timestamp()::text then
        return null;
    end if;
    if tg_op = 'INSERT' then
        perform reaction_rollups_add(array_agg(article_id), array_agg(updated_at), array_agg(reaction),
                                     array_agg(1))
        from new_rows having count(*) > 0;
    elsif tg_op = 'DELETE' then
        perform reaction_rollups_add(array_agg(article_id), array_agg(updated_at), array_agg(reaction),
                                     array_agg(-1))
        from old_rows having count(*) > 0;
    else
        perform reaction_rollups_add(array_agg(article_id), array_agg(at), array_agg(reaction),
                                     array_agg(delta))
        from (select article_id, updated_at as at, reaction, 1 as delta from new_rows
              union all
              select article_id, updated_at, reaction, -1 from old_rows) as moves
        having count(*) > 0;
    end if;
    return null;
end
$$;

-- transition tables cannot serve a trigger on several events, hence three triggers.
create trigger reactions_rollups_insert after insert on reactions
    referencing new table as new_rows
    for each statement execute function reactions_maintain_rollups();
create trigger reactions_rollups_update after update on reactions
    referencing old table as old_rows new table as new_rows
    for each statement execute function reactions_maintain_rollups();
create trigger reactions_rollups_delete after delete on reactions
    referencing old table as old_rows
    for each statement execute function reactions_maintain_rollups();

-- truncate fires no delete trigger: empty the rollups with the reactions.
create function reactions_truncate_rollups() returns trigger
language plpgsql
as $$
begin
    truncate reaction_counts_hourly, reaction_counts_daily;
    return null;
end
$$;

create trigger reactions_rollups_truncate after truncate on reactions
    for each statement execute function reactions_truncate_rollups();

-- the fill below runs longer than the service's statement timeout on a large table (22 s on ten
-- million rows), and the service applies migrations on connections that carry it.
set local statement_timeout = 0;

-- fill the rollups from the reactions held now. share row exclusive lets reads go on and makes
-- every writer wait for this transaction, whose triggers it then runs. rows are stored in bucket
-- order, as live writes store them, so that a window's rows share pages.
lock table reactions in share row exclusive mode;

insert into reaction_counts_hourly
select article_id, date_bin('1 hour', updated_at, timestamptz '1970-01-01 00:00:00+00'),
       count(*) filter (where reaction = 'like'), count(*) filter (where reaction = 'dislike'),
       count(*) filter (where reaction = 'love'), count(*) filter (where reaction = 'funny'),
       count(*) filter (where reaction = 'angry'), count(*) filter (where reaction = 'sad'),
       count(*) filter (where reaction = 'wow')
from reactions
group by 1, 2
order by 2, 1;

insert into reaction_counts_daily
select article_id, date_trunc('day', bucket_start, 'UTC'),
       sum(like_count), sum(dislike_count), sum(love_count), sum(funny_count),
       sum(angry_count), sum(sad_count), sum(wow_count)
from reaction_counts_hourly
group by 1, 2
order by 2, 1;
