-- the service's write batch now runs as a few statements in one transaction (insert, then lock
-- and change existing rows, then counts and rollups), with the rollup moves folded by the
-- service and written in (article, bucket) order after the count rows, in one pass.
--
-- the rollup triggers must therefore skip every statement of such a transaction, not only one
-- statement: the batch marks its transaction by setting reader_reactions.rollups_applied_by to
-- 'transaction' with set_config(..., is_local => true), which ends with the transaction. the
-- per-statement marker of the previous release (statement_timestamp()) is still honoured, so
-- that instances of both releases can write during a rolling upgrade without counting a move
-- twice.
create or replace function reactions_maintain_rollups() returns trigger
language plpgsql
as $$
declare
    marker text := current_setting('reader_reactions.rollups_applied_by', true);
begin
    if marker = 'transaction' or marker = statement_timestamp()::text then
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
