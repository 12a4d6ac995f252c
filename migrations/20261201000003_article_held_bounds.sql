-- the top list of a long window without grouping every article of it: an upper bound of the
-- reactions each article holds, in the order of the bound, so that a top list can read articles
-- from the largest bound down and stop once no article left can enter it. a window counts only
-- reactions an article holds now, so an article's count in any window is at most its held total,
-- and so at most its bound (src/store/postgres/stats.rs, `top_articles`).
--
-- invariant: every article holding a reaction has a row, and its bound is at least the sum of its
-- count rows. the bound only rises: once the held total exceeds it, it becomes the total plus a
-- quarter plus 16, so an article's row changes about log1.25 of its total times (once for most
-- articles; about 45 times for one of 200,000 reactions), not at every write, and the index on
-- the bound costs writes little. removals leave it as it is: still a bound, a looser one.

create table article_held_bounds (
    article_id text collate "C" primary key,
    bound bigint not null check (bound >= 0)
);
create index article_held_bounds_order_idx on article_held_bounds (bound, article_id);

-- kept by statement-level triggers on the count rows, in the transaction of the change, whoever
-- changes them. the totals are read after the statement, and the service's batch function holds
-- the articles' locks while its statement runs, so the total read is the article's. other
-- writers only lower counts (the visitor erasure): they find every bound high enough and change
-- no row.
create function article_held_bounds_follow() returns trigger
language plpgsql
as $$
begin
    -- a statement-level trigger fires for statements that changed no row, too: the batch's
    -- count statement inserts a new count row only now and then.
    if not exists (select from changed_counts) then
        return null;
    end if;
    -- each article's totals and bound are read through the primary keys, one probe each: the
    -- planner knows nothing of the transition table, and as a join it may scan the whole tables.
    insert into article_held_bounds as b (article_id, bound)
    select a.article_id, t.total + t.total / 4 + 16
    from (select distinct n.article_id from changed_counts n) as a
    cross join lateral (
        select sum(c.count) as total from article_reaction_counts c where c.article_id = a.article_id
    ) as t
    where t.total > coalesce((select e.bound from article_held_bounds e where e.article_id = a.article_id), 0)
    order by a.article_id
    on conflict (article_id) do update set bound = excluded.bound where b.bound < excluded.bound;
    return null;
end
$$;

-- a trigger with transition tables names one event.
create trigger article_held_bounds_after_insert
    after insert on article_reaction_counts
    referencing new table as changed_counts
    for each statement execute function article_held_bounds_follow();
create trigger article_held_bounds_after_update
    after update on article_reaction_counts
    referencing new table as changed_counts
    for each statement execute function article_held_bounds_follow();

-- the articles already counted, with their exact totals. creating the triggers above locked the
-- count rows against writes until this migration commits, so no change slips between the two.
insert into article_held_bounds (article_id, bound)
select article_id, sum(count)
from article_reaction_counts
group by article_id
having sum(count) > 0;
