-- Anchor: the set-based ceiling spread over 10,000 articles. As ceiling.sql, one statement inserts
-- 100 new reactions and adds them to the count rows and to the hourly and daily rollups, but each
-- reaction is on one of 10,000 articles: most of a statement's count and rollup rows are an
-- article's own, as in the service's spread writes. The rows are taken in key order, so that
-- concurrent statements do not deadlock. The least work the database can do per reaction spread
-- over many articles with this data model: the spread writes' figure to hold against.
\set v random(1, 9000000000000000000)
with input as (
    select 'spread-' || (1 + ((:v::bigint + g * 104729) % 10000)) as article_id, sha256(int8send(:v::bigint + g)) as visitor_key,
           (enum_range(null::reaction))[1 + ((g * 7919 + :v::bigint) % 7)::int] as reaction
    from generate_series(1, 100) as g order by 1
), inserted as (
    insert into reactions (article_id, visitor_key, reaction)
    select article_id, visitor_key, reaction from input
    on conflict do nothing
    returning article_id, reaction, updated_at
), counted as (
    insert into article_reaction_counts as c (article_id, reaction, count)
    select article_id, reaction, count(*) from inserted group by 1, 2 order by 1, 2
    on conflict (article_id, reaction) do update set count = c.count + excluded.count
), hourly as (
    insert into reaction_counts_hourly as h
    select article_id, date_trunc('hour', updated_at),
           count(*) filter (where reaction = 'like'), count(*) filter (where reaction = 'dislike'),
           count(*) filter (where reaction = 'love'), count(*) filter (where reaction = 'funny'),
           count(*) filter (where reaction = 'angry'), count(*) filter (where reaction = 'sad'),
           count(*) filter (where reaction = 'wow')
    from inserted group by 1, 2 order by 1, 2
    on conflict (article_id, bucket_start) do update set
        like_count = h.like_count + excluded.like_count, dislike_count = h.dislike_count + excluded.dislike_count,
        love_count = h.love_count + excluded.love_count, funny_count = h.funny_count + excluded.funny_count,
        angry_count = h.angry_count + excluded.angry_count, sad_count = h.sad_count + excluded.sad_count,
        wow_count = h.wow_count + excluded.wow_count
)
insert into reaction_counts_daily as d
select article_id, date_trunc('day', updated_at),
       count(*) filter (where reaction = 'like'), count(*) filter (where reaction = 'dislike'),
       count(*) filter (where reaction = 'love'), count(*) filter (where reaction = 'funny'),
       count(*) filter (where reaction = 'angry'), count(*) filter (where reaction = 'sad'),
       count(*) filter (where reaction = 'wow')
from inserted group by 1, 2 order by 1, 2
on conflict (article_id, bucket_start) do update set
    like_count = d.like_count + excluded.like_count, dislike_count = d.dislike_count + excluded.dislike_count,
    love_count = d.love_count + excluded.love_count, funny_count = d.funny_count + excluded.funny_count,
    angry_count = d.angry_count + excluded.angry_count, sad_count = d.sad_count + excluded.sad_count,
    wow_count = d.wow_count + excluded.wow_count;
