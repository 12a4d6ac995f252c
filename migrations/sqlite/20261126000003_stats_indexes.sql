-- indexes for the dashboard reads (/v1/stats/*, /v1/articles/{id}/timeseries).
--
-- every stats query counts the reactions whose updated_at falls in a window. both indexes put
-- updated_at right after a column the queries fix by equality, so sqlite reads only the entries
-- inside the window, and from the index alone: an index of a without-rowid table also holds the
-- table's primary key (article_id, visitor_key).

-- site-wide windows: top articles, totals, trending and the csv export, one updated_at range
-- per reaction counted.
create index reactions_reaction_updated_at_idx on reactions (reaction, updated_at);

-- one article's time series: the article's reactions in the window, with their kind.
create index reactions_article_updated_at_idx on reactions (article_id, updated_at, reaction);
