-- Anchor: the naive write on one hot article. One statement per reaction inserts the visitor's
-- row and bumps the article's count row: what a service without batching does per request.
\set v random(1, 9000000000000000000)
\set r random(1, 7)
with inserted as (
    insert into reactions (article_id, visitor_key, reaction)
    values ('hot', sha256(int8send(:v)), (enum_range(null::reaction))[:r])
    on conflict do nothing
    returning reaction
)
insert into article_reaction_counts as c (article_id, reaction, count)
select 'hot', reaction, 1 from inserted
on conflict (article_id, reaction) do update set count = c.count + 1;
