-- one index fewer on every write: the primary key of reactions becomes (visitor_key, article_id)
-- instead of (article_id, visitor_key), and the visitor index (visitor_key) goes, since the key
-- now begins with it.
--
-- what used each: a write finds a visitor's row on an article by both columns (either order
-- serves it, and `on conflict (article_id, visitor_key)` infers the unique index whatever its
-- column order); a visitor's reactions across articles (the batch read, `DELETE
-- /v1/visitors/me`) by visitor_key first, which the key now serves alone; an article's rows by
-- article_id first, which `reactions_article_updated_at_network_idx` serves (the time series,
-- trending). so no read loses its index, and a write inserts into three indexes instead of four.
--
-- the index dropped was a random insert into a large b-tree at every write (its keys are hashes):
-- on 0.7 m reactions a batch of 33 sets on one article took 1.37–1.42 ms in the database instead
-- of 1.71–1.78 ms (reactions_apply_batch, alternating runs), and on ten million reactions it was
-- 731 mb. the key keeps article_id, as citus requires of a distributed table's unique constraint
-- (README, "Scaling out").
--
-- building the new key locks reactions against writes (reads go on) for as long as it takes:
-- 6.6 s for 7.5 million rows on a two-core machine. on a large live table, build it by hand
-- first with `create unique index concurrently reactions_visitor_article_key on reactions
-- (visitor_key, article_id)`; this migration then finds it and only swaps the constraint over
-- to it (an instant change) and drops the old key and the visitor index.
set local statement_timeout = 0;
create unique index if not exists reactions_visitor_article_key on reactions (visitor_key, article_id);
alter table reactions drop constraint reactions_pkey;
-- renames reactions_visitor_article_key to reactions_pkey.
alter table reactions add constraint reactions_pkey primary key using index reactions_visitor_article_key;
drop index if exists reactions_visitor_key_idx;
