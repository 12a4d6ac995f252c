-- the top list of a long window without grouping every article of it: upper bounds of the
-- reactions each article holds, of each kind and of all kinds together, in the order of the
-- bound, so that a top list can read articles from the largest bound down and stop once no
-- article left can enter it. a window counts only reactions an article holds now, so an
-- article's count in any window is at most what it holds, and so at most its bound
-- (src/store/postgres/stats.rs, `top_by_bounds`).
--
-- invariant: for every article and reaction whose count is above 64 there is a row whose bound
-- is at least that count, and for every article holding more than 64 reactions a row (reaction
-- null) whose bound is at least the sum of its counts; what has no row holds at most 64. so the
-- rows are few (most articles never get one: a write spread over many articles costs a read of
-- the article's counts and no row), and a list whose last count is above 64 can be settled from
-- them. a bound only rises: once what it bounds exceeds it, it becomes that plus a quarter plus
-- 16, so a row changes about log1.25 of its count times (about 30 times for a count of 200,000),
-- not at every write, and the index on the bound costs writes little. removals leave it as it
-- is: still a bound, a looser one.

create table article_held_bounds (
    article_id text collate "C" not null,
    -- the kind of reaction bounded; null: all of them together.
    reaction reaction,
    bound bigint not null check (bound >= 0),
    unique nulls not distinct (article_id, reaction)
);
-- in the order of the bound: the totals' rows on their own (a scan on `reaction is null` does not
-- come out in the order of the columns after it), and one reaction's rows.
create index article_held_bounds_total_idx on article_held_bounds (bound, article_id) where reaction is null;
create index article_held_bounds_reaction_idx on article_held_bounds (reaction, bound, article_id)
    where reaction is not null;

-- the 64 above: what an article holds, of a kind or in all, when it has no row. the triggers and
-- the fill below keep rows only above it, and the service reads it from here
-- (src/store/postgres/stats.rs), so that it has one definition.
create function article_held_bounds_threshold() returns bigint
language sql immutable parallel safe
as 'select 64::bigint';

-- kept by statement-level triggers on the count rows, in the transaction of the change, whoever
-- changes them: the changed rows' new counts bound their own rows, and their articles' totals,
-- read after the statement, the totals' rows, once above the threshold. the service's batch
-- function holds the articles' locks while its statement runs, so a total read is the article's. other writers only lower
-- counts (the visitor erasure): they find every bound high enough and change no row.
create function article_held_bounds_follow() returns trigger
language plpgsql
as $$
begin
    -- a statement-level trigger fires for statements that changed no row, too: the batch's
    -- count statement inserts a new count row only now and then.
    if not exists (select from changed_counts) then
        return null;
    end if;
    -- each article's total and bounds are read through the keys, one probe each: the planner
    -- knows nothing of the transition table, and as a join it may scan the whole tables.
    insert into article_held_bounds as b (article_id, reaction, bound)
    select h.article_id, h.reaction, h.held + h.held / 4 + 16
    from (select n.article_id, n.reaction, n.count as held
          from changed_counts n
          union all
          select a.article_id, null, t.total
          from (select distinct n.article_id from changed_counts n) as a
          cross join lateral (
              select sum(c.count)::int8 as total from article_reaction_counts c where c.article_id = a.article_id
          ) as t) as h
    where h.held > article_held_bounds_threshold()
      and h.held > coalesce(case when h.reaction is null
                                 then (select e.bound from article_held_bounds e
                                       where e.article_id = h.article_id and e.reaction is null)
                                 else (select e.bound from article_held_bounds e
                                       where e.article_id = h.article_id and e.reaction = h.reaction)
                            end, 0)
    order by h.article_id, h.reaction
    on conflict (article_id, reaction) do update set bound = excluded.bound where b.bound < excluded.bound;
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

-- the articles already counted above the threshold, with their exact counts and totals.
-- creating the triggers above locked the count rows against writes until this migration
-- commits, so no change slips between the two.
insert into article_held_bounds (article_id, reaction, bound)
select article_id, reaction, sum(count)
from article_reaction_counts
group by grouping sets ((article_id, reaction), (article_id))
having sum(count) > article_held_bounds_threshold();
