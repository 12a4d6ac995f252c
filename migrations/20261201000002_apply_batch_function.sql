-- the service's write batch in one call: reactions_apply_batch does, inside the database, what
-- the service did in a transaction of five round trips (begin, insert, lock the articles, change
-- the counts and rollups, commit). a batch is now one statement in its own transaction: one round
-- trip, and the articles' locks are held only while the counts change and the commit is
-- written, not across the network waits between statements.
--
-- the order of locks is the one every writer keeps (src/store/postgres/mod.rs): reaction rows in
-- (article, visitor) order, then the articles' advisory locks in key order, then count and
-- rollup rows. each statement of a pl/pgsql function takes a fresh snapshot (read committed), so
-- the statements after the articles' locks see every earlier batch of those articles committed.
--
-- inputs: the batch's net changes, one per (article, visitor), sorted by (article, visitor):
-- articles, visitor keys, target reactions (null: remove) and network keys, and the key class of
-- the articles' advisory locks. answers every count row of the batch's articles as the batch
-- leaves them (one state of each article, read under its lock), each with the batch's number in
-- the order in which batches took their articles' locks (batch_order).
--
-- a key whose insert found a row, but whose row is gone when it is locked (deleted meanwhile by
-- another transaction), makes the whole batch fail with a serialization failure (40001): it is
-- rolled back and the service runs it again. that needs a visitor's set and removal of one
-- article, from two instances, within the same milliseconds.

-- batch numbers, taken under the articles' locks: of two batches that changed one article, the
-- later has the larger number. no cache: the numbers must follow the order of nextval calls
-- across all connections.
create sequence if not exists reactions_batch_order_seq;

create or replace function reactions_apply_batch(
    batch_articles text[], batch_visitors bytea[], batch_targets text[], batch_networks bytea[],
    lock_class integer
) returns table (batch_order bigint, article_id text, reaction text, count bigint)
language plpgsql
as $$
#variable_conflict use_column
-- (the answer's column names, article_id, reaction and count, are also the tables': in the
-- statements below such a name means the column)
declare
    now_at timestamptz := now();
    -- the moves the batch makes, for the counts and rollups: a reaction counted (+1) or
    -- uncounted (-1) at an instant
    move_articles text[];
    move_reactions reaction[];
    move_times timestamptz[];
    move_deltas integer[];
    more_articles text[];
    more_reactions reaction[];
    more_times timestamptz[];
    more_deltas integer[];
    sets_expected bigint;
    sets_found bigint;
    order_taken bigint;
    counts_changed bigint;
    counts_expected bigint;
    rollups_changed bigint;
    rollups_expected bigint;
begin
    -- the rollup triggers leave this transaction's row changes to the statements below
    perform set_config('reader_reactions.rollups_applied_by', 'transaction', true);

    -- 1. sets by visitors who hold no reaction on the article yet: inserted, in (article,
    -- visitor) order.
    with inserted as (
        insert into reactions as r (article_id, visitor_key, reaction, network)
        select i.article_id, i.visitor_key, i.target::reaction, i.network
        from unnest(batch_articles, batch_visitors, batch_targets, batch_networks)
          with ordinality as i(article_id, visitor_key, target, network, n)
        where i.target is not null
        order by i.n
        on conflict (article_id, visitor_key) do nothing
        returning r.article_id, r.visitor_key, r.reaction
    )
    select coalesce(array_agg(x.article_id), '{}'), coalesce(array_agg(x.reaction), '{}'),
           coalesce(array_agg(now_at), '{}'), coalesce(array_agg(1), '{}')
    into move_articles, move_reactions, move_times, move_deltas
    from inserted as x;

    -- 2. when some set found a row, or the batch removes: the rows of the batch's keys are
    -- locked, in (article, visitor) order, and switched or deleted, and the locked rows say which
    -- reaction, at which instant, each change takes away. the rows statement 1 inserted are
    -- among them, already holding their target: they change nothing more. a set of the reaction
    -- already held changes nothing, its network included: a row's network is that of its
    -- updated_at.
    sets_expected := cardinality(array_remove(batch_targets, null));
    if sets_expected > cardinality(move_articles) or sets_expected < cardinality(batch_targets) then
        with locked as (
            select r.article_id, r.visitor_key, r.reaction, r.updated_at, i.target::reaction as target, i.network
            from unnest(batch_articles, batch_visitors, batch_targets, batch_networks)
              as i(article_id, visitor_key, target, network)
            join reactions r on r.article_id = i.article_id and r.visitor_key = i.visitor_key
            order by r.article_id, r.visitor_key
            for update of r
        ), switched as (
            update reactions r set reaction = l.target, updated_at = now_at, network = l.network
            from locked l
            where r.article_id = l.article_id and r.visitor_key = l.visitor_key
              and l.target is not null and l.target <> l.reaction
        ), deleted as (
            delete from reactions r
            using locked l
            where r.article_id = l.article_id and r.visitor_key = l.visitor_key and l.target is null
        ), moved as (
            select m.article_id, m.reaction, m.at, m.delta
            from locked l
            cross join lateral (
                values (l.article_id, l.reaction, l.updated_at, -1), (l.article_id, l.target, now_at, 1)
            ) as m(article_id, reaction, at, delta)
            where l.target is distinct from l.reaction and m.reaction is not null
        )
        select (select count(l.target) from locked l),
               (select coalesce(array_agg(m.article_id), '{}') from moved m),
               (select coalesce(array_agg(m.reaction), '{}') from moved m),
               (select coalesce(array_agg(m.at), '{}') from moved m),
               (select coalesce(array_agg(m.delta), '{}') from moved m)
        into sets_found, more_articles, more_reactions, more_times, more_deltas;
        -- a set whose row was neither inserted nor found: deleted by another transaction
        -- between statements 1 and 2
        if sets_found < sets_expected then
            raise exception 'a reaction row was deleted under the batch; run it again'
                using errcode = 'serialization_failure';
        end if;
        move_articles := move_articles || more_articles;
        move_reactions := move_reactions || more_reactions;
        move_times := move_times || more_times;
        move_deltas := move_deltas || more_deltas;
    end if;

    -- 3. the articles' locks, in key order; the batch holds them until its commit.
    perform pg_advisory_xact_lock(lock_class, k.key)
    from (select distinct hashtext(a) as key from unnest(batch_articles) as a order by 1) as k;
    order_taken := nextval('reactions_batch_order_seq');

    -- 4. the count rows, by (article, reaction), and the hourly and daily rollup rows, by
    -- (article, bucket), each changed by the sum of the moves that fall in it. a row whose deltas
    -- are all positive may be new and is upserted; a row with a negative delta exists (a reaction
    -- was counted in it) and is updated: a check constraint is evaluated on the row an insert
    -- proposes, before on conflict applies, so a negative delta cannot go through an upsert. the
    -- two sets are disjoint, so no row is changed twice, and every row must be changed.
    with moves as (
        select * from unnest(move_articles, move_reactions, move_times, move_deltas)
          as m(article_id, reaction, at, delta)
    ), count_deltas as (
        select m.article_id, m.reaction, sum(m.delta)::bigint as delta
        from moves m
        group by m.article_id, m.reaction
        having sum(m.delta) <> 0
    ), counts_added as (
        insert into article_reaction_counts as c (article_id, reaction, count)
        select d.article_id, d.reaction, d.delta from count_deltas d where d.delta > 0
        order by d.article_id, d.reaction
        on conflict (article_id, reaction) do update set count = c.count + excluded.count
        returning 1
    ), counts_removed as (
        update article_reaction_counts c set count = c.count + d.delta
        from count_deltas d
        where d.delta < 0 and c.article_id = d.article_id and c.reaction = d.reaction
        returning 1
    ), rollup_sums as (
        select m.article_id, b.width, b.bucket_start,
               coalesce(sum(m.delta) filter (where m.reaction = 'like'), 0)::integer as like_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'dislike'), 0)::integer as dislike_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'love'), 0)::integer as love_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'funny'), 0)::integer as funny_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'angry'), 0)::integer as angry_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'sad'), 0)::integer as sad_count,
               coalesce(sum(m.delta) filter (where m.reaction = 'wow'), 0)::integer as wow_count
        from moves m
        cross join lateral (
            values ('hour', date_bin('1 hour', m.at, timestamptz '1970-01-01 00:00:00+00')),
                   ('day', date_bin('1 day', m.at, timestamptz '1970-01-01 00:00:00+00'))
        ) as b(width, bucket_start)
        group by m.article_id, b.width, b.bucket_start
    ), rollup_deltas as (
        -- moves that cancel out (a reaction taken back in the hour it was given) change nothing
        select * from rollup_sums d
        where (d.like_count, d.dislike_count, d.love_count, d.funny_count, d.angry_count, d.sad_count,
               d.wow_count) <> (0, 0, 0, 0, 0, 0, 0)
    ), hourly_added as (
        insert into reaction_counts_hourly as h
        select d.article_id, d.bucket_start, d.like_count, d.dislike_count, d.love_count, d.funny_count,
               d.angry_count, d.sad_count, d.wow_count
        from rollup_deltas d
        where d.width = 'hour' and least(d.like_count, d.dislike_count, d.love_count, d.funny_count,
                                         d.angry_count, d.sad_count, d.wow_count) >= 0
        order by d.article_id, d.bucket_start
        on conflict (article_id, bucket_start) do update
        set like_count = h.like_count + excluded.like_count,
            dislike_count = h.dislike_count + excluded.dislike_count,
            love_count = h.love_count + excluded.love_count,
            funny_count = h.funny_count + excluded.funny_count,
            angry_count = h.angry_count + excluded.angry_count,
            sad_count = h.sad_count + excluded.sad_count,
            wow_count = h.wow_count + excluded.wow_count
        returning 1
    ), hourly_changed as (
        update reaction_counts_hourly h
        set like_count = h.like_count + d.like_count,
            dislike_count = h.dislike_count + d.dislike_count,
            love_count = h.love_count + d.love_count,
            funny_count = h.funny_count + d.funny_count,
            angry_count = h.angry_count + d.angry_count,
            sad_count = h.sad_count + d.sad_count,
            wow_count = h.wow_count + d.wow_count
        from rollup_deltas d
        where d.width = 'hour' and least(d.like_count, d.dislike_count, d.love_count, d.funny_count,
                                         d.angry_count, d.sad_count, d.wow_count) < 0
          and h.article_id = d.article_id and h.bucket_start = d.bucket_start
        returning 1
    ), daily_added as (
        insert into reaction_counts_daily as h
        select d.article_id, d.bucket_start, d.like_count, d.dislike_count, d.love_count, d.funny_count,
               d.angry_count, d.sad_count, d.wow_count
        from rollup_deltas d
        where d.width = 'day' and least(d.like_count, d.dislike_count, d.love_count, d.funny_count,
                                         d.angry_count, d.sad_count, d.wow_count) >= 0
        order by d.article_id, d.bucket_start
        on conflict (article_id, bucket_start) do update
        set like_count = h.like_count + excluded.like_count,
            dislike_count = h.dislike_count + excluded.dislike_count,
            love_count = h.love_count + excluded.love_count,
            funny_count = h.funny_count + excluded.funny_count,
            angry_count = h.angry_count + excluded.angry_count,
            sad_count = h.sad_count + excluded.sad_count,
            wow_count = h.wow_count + excluded.wow_count
        returning 1
    ), daily_changed as (
        update reaction_counts_daily h
        set like_count = h.like_count + d.like_count,
            dislike_count = h.dislike_count + d.dislike_count,
            love_count = h.love_count + d.love_count,
            funny_count = h.funny_count + d.funny_count,
            angry_count = h.angry_count + d.angry_count,
            sad_count = h.sad_count + d.sad_count,
            wow_count = h.wow_count + d.wow_count
        from rollup_deltas d
        where d.width = 'day' and least(d.like_count, d.dislike_count, d.love_count, d.funny_count,
                                         d.angry_count, d.sad_count, d.wow_count) < 0
          and h.article_id = d.article_id and h.bucket_start = d.bucket_start
        returning 1
    )
    select (select count(*) from counts_added) + (select count(*) from counts_removed),
           (select count(*) from count_deltas),
           (select count(*) from hourly_added) + (select count(*) from hourly_changed)
             + (select count(*) from daily_added) + (select count(*) from daily_changed),
           (select count(*) from rollup_deltas)
    into counts_changed, counts_expected, rollups_changed, rollups_expected;
    if counts_changed <> counts_expected or rollups_changed <> rollups_expected then
        raise exception 'a write batch changed % count and % rollup rows, expected % and %',
            counts_changed, rollups_changed, counts_expected, rollups_expected;
    end if;

    -- the answer: every count row of the batch's articles, read under their locks.
    -- (one probe of the primary key per article, whatever the table's size and statistics: the
    -- `offset 0` keeps the planner from turning the lateral subquery into a join, which it plans
    -- as a scan of the whole table while statistics say the table is small)
    return query
    select order_taken, b.article_id, c.reaction::text, c.count
    from (select distinct a.article_id from unnest(batch_articles) as a(article_id)) as b
    cross join lateral (
        select r.reaction, r.count from article_reaction_counts r where r.article_id = b.article_id offset 0
    ) as c;
end
$$;
