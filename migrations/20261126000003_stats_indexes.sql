-- indexes for the dashboard reads (/v1/stats/*, /v1/articles/{id}/timeseries).
--
-- every stats query counts the reactions whose updated_at falls in a window. both indexes put
-- updated_at right after a column the queries fix by equality, and carry the one remaining
-- column the queries need, so postgresql answers from the index alone (an index-only scan) and
-- reads only the entries inside the window: the cost of a query grows with the reactions in its
-- window, not with the size of the table.
-- docs/stats-performance.md has plans and timings on ten million rows.
--
-- on a large live table, build these by hand first with `create index concurrently` (same
-- names and definitions) so that writes are not blocked while they build; this migration then
-- finds them and does nothing.

-- site-wide windows: top articles, totals, trending and the csv export. the queries name the
-- reactions they count (all seven when the caller asked for none in particular), so postgresql
-- scans one updated_at range per reaction; top?reaction=angry reads only the angry ones.
create index if not exists reactions_reaction_updated_at_idx
    on reactions (reaction, updated_at) include (article_id);

-- one article's time series: the article's reactions in the window, with their kind.
create index if not exists reactions_article_updated_at_idx
    on reactions (article_id, updated_at) include (reaction);

-- an index-only scan skips the table only for pages the visibility map marks all-visible. the
-- rows dashboards read most, those changed in the last hours, sit on the pages changed since
-- the last vacuum, which are not all-visible yet. vacuum after 1% of the rows changed (the
-- default waits for 20%: two million rows on a table of ten million), so that few of them are.
alter table reactions set (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01
);
