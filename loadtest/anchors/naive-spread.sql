-- Anchor: the naive write spread over 10,000 articles (as naive-hot.sql, a random article each).
\set v random(1, 9000000000000000000)
\set r random(1, 7)
\set a random(1, 10000)
with inserted as (
    insert into reactions (article_id, visitor_key, reaction)
    values ('spread-' || :a, sha256(int8send(:v)), (enum_range(null::reaction))[:r])
    on conflict do nothing
    returning article_id, reaction
)
insert into article_reaction_counts as c (article_id, reaction, count)
select article_id, reaction, 1 from inserted
on conflict (article_id, reaction) do update set count = c.count + 1;
