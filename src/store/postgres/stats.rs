//! The dashboard reads: counts of the reactions currently held whose last change falls in a
//! time window.
//!
//! A window is read in pieces ([`WindowParts`]): whole UTC days from `reaction_counts_daily`,
//! whole hours at its ends from `reaction_counts_hourly`, and only its partial first and last
//! hour from `reactions` itself. The rollups are kept by triggers on `reactions` (migration
//! `20261127000001_stats_rollups.sql`), in the transaction of every change, so a window's counts
//! are exact and its cost grows with the articles active in it, not with its reactions: a month
//! is about 30 daily rows and up to 46 hourly rows per active article.
//!
//! The partial hours are read through the indexes of migration `20261126000003_stats_indexes.sql`
//! (`(reaction, updated_at)` site-wide, naming all seven reactions so that the first index column
//! is bounded, and `(article_id, updated_at)` for one article's time series; since migration
//! `20261201000001_reaction_networks.sql` the latter carries the network too, for trending's
//! count of each candidate's distinct networks). `docs/stats-performance.md` has the plans and
//! timings on ten million rows.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt as _};
use sqlx::{Postgres, Transaction};

use super::classify;
use crate::domain::{
    ArticleCount, ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow, TrendingArticle, WindowParts,
};
use crate::store::rows::{
    BucketCounts, EXPORT_BATCH_ROWS, ExportRow, ExportStream, article_counts, export_rows, nonempty_buckets,
};
use crate::store::sql::{
    RecentTail, count_column, count_columns, each_reaction, reaction_weights, window_union,
};
use crate::store::{StoreError, stored_article_id};

// FETCH takes its row count as a literal, not a parameter: keep the statement in step.
const FETCH_EXPORT_BATCH: &str = "fetch forward 1000 from stats_export";
const _: () = assert!(EXPORT_BATCH_ROWS == 1000);

/// A piece of a window read from `reactions`: its rows counted per reaction, grouped by article
/// and by `at`, an expression of `updated_at` (the bucket of a time series, or a constant where
/// the time does not matter), so that the queries around it handle one row per group rather
/// than one per reaction. Naming every reaction lets PostgreSQL bound the first column of
/// `(reaction, updated_at)` and scan one short range per reaction. Its counts are `int4`, as the
/// rollups' columns are, so that every column of the union is `int4`: a sum of `int4` is an
/// `int8` sum, where a sum of `int8` accumulates in `numeric`, twice as slow over a month's
/// rows (`scripts/stats-explain.sh`: 30-day totals 218 → 114 ms).
fn reactions_piece(filter: &str, at: &str, from: &str, to: &str) -> String {
    let counts = each_reaction(",\n                    ", |_, r| {
        format!("(count(*) filter (where reaction = '{}'))::int4 as {}", r.key(), count_column(r))
    });
    format!(
        "select article_id, {at} as at, {counts}
             from reactions
             where reaction = any(enum_range(null::reaction)) and {filter} and updated_at >= {from}
               and updated_at < {to}
             group by article_id, at"
    )
}

/// The rows a window is read from, one select per piece of [`WindowParts`], each giving
/// `(article_id, at, like_count, …)`. Summed, they are the window's counts. `filter` restricts
/// every piece (to one article, say); `at` groups the rows of `reactions` (see
/// [`reactions_piece`]); `first` is the first of the six parameters holding the instants.
fn window_rows(filter: &str, at: &str, first: usize) -> String {
    window_union(|from, to| reactions_piece(filter, at, from, to), filter, first, Some(RECENT_TAIL))
}

/// A window's last partial hour is read from its rollup row when the window ends less than five
/// minutes before the statement starts (see [`window_union`]): then the reactions of the hour
/// after its end are those of at most five minutes, where the hour so far can hold an hour's.
/// `statement_timestamp()`, not `now()`: a stats read may run in a transaction begun earlier.
const RECENT_TAIL: RecentTail = RecentTail {
    hour_end: |start| format!("({start} + interval '1 hour')"),
    is_recent: |until| format!("{until} >= statement_timestamp() - interval '5 minutes'"),
};

/// The sum of the counted reactions of window rows, `$1` holding one weight (1 counted, 0 not)
/// per reaction in display order (`int4`, as the counts: see [`reactions_piece`]).
fn weighted_sum() -> String {
    let terms = each_reaction(" + ", |i, r| format!("{} * ($1::int4[])[{}]", count_column(r), i + 1));
    format!("sum({terms})::int8")
}

/// The sum of each reaction's column of window rows, in display order, as `int8`.
fn column_sums() -> String {
    each_reaction(", ", |_, r| format!("sum({})::int8", count_column(r)))
}

/// The statements, by name. `scripts/stats-explain.sh` reads them through
/// `examples/stats_sql.rs`, so that the plans it prints are those of exactly what the service
/// runs. Six consecutive parameters hold the instants of a [`WindowParts`] in order; counts per
/// reaction come in display order.
pub mod sql {
    use std::sync::LazyLock;

    use super::{column_sums, count_column, count_columns, each_reaction, weighted_sum, window_rows};

    /// `$1` reaction weights, `$2`–`$7` the window, `$8` limit.
    pub static TOP_ARTICLES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select article_id, held
             from (select article_id, {held} as held
                   from ({rows}) as w
                   group by article_id) as articles
             where held > 0
             order by held desc, article_id
             limit $8",
            held = weighted_sum(),
            rows = window_rows("true", "null::timestamptz", 2),
        )
    });

    /// [`TOP_ARTICLES`] among the articles of `$9` (`text[]`) only, each read on its own through
    /// the primary keys (a lateral subquery with a sum is not turned into a join): as a filter
    /// on the whole window, a plan may scan every rollup row of a day range and test each
    /// against every id (100 ms for 400 ids on a million reactions, where probing takes 10).
    pub static TOP_ARTICLES_AMONG: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select a.article_id, t.held
             from unnest($9::text[]) as a(article_id)
             cross join lateral (select {held} as held from ({rows}) as w) as t
             where t.held > 0
             order by t.held desc, a.article_id collate \"C\"
             limit $8",
            held = weighted_sum(),
            rows = window_rows("article_id = a.article_id", "null::timestamptz", 2),
        )
    });

    /// `$1` a bound and `$2` an article id, `$3` the least bound, `$4` how many. The articles
    /// after (`$1`, `$2`) in the order of their bound of all reactions together, largest first
    /// (ties by article id, last first), bounded by at least `$3`, with their bound: read
    /// backwards from the totals' `(bound, article_id)` index.
    pub static HELD_BOUNDS: LazyLock<String> = LazyLock::new(|| held_bounds("reaction is null"));

    /// [`HELD_BOUNDS`] by the bound of one reaction, `$5`, from the reactions'
    /// `(reaction, bound, article_id)` index.
    pub static HELD_BOUNDS_OF: LazyLock<String> = LazyLock::new(|| held_bounds("reaction = $5::reaction"));

    /// Sets the generic plan for the rest of the transaction (`top_by_bounds`), and answers the
    /// bounds' threshold: what an article without a row may hold.
    pub const TOP_BY_BOUNDS_SETTINGS: &str = "
        select article_held_bounds_threshold()
        from set_config('plan_cache_mode', 'force_generic_plan', true)";

    /// The articles in the order of the bound that `bounded` selects.
    fn held_bounds(bounded: &str) -> String {
        format!(
            "select article_id, bound from article_held_bounds
             where {bounded} and (bound, article_id) < ($1, $2) and bound >= $3
             order by bound desc, article_id desc
             limit $4"
        )
    }

    /// `$1`–`$6` the window. Counts per reaction.
    pub static WINDOW_TOTALS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select {sums} from ({rows}) as w",
            sums = column_sums(),
            rows = window_rows("true", "null::timestamptz", 1)
        )
    });

    /// `$1` article id, `$2`–`$7` the window (no daily pieces for hourly buckets), `$8` bucket
    /// width, `$9` bucket origin. The bucket's start, then counts per reaction.
    pub static ARTICLE_TIMESERIES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select date_bin($8, at, $9) as bucket, {sums}
             from ({rows}) as w
             group by 1
             order by 1",
            sums = column_sums(),
            rows = window_rows("article_id = $1", "date_bin($8, updated_at, $9)", 2),
        )
    });

    /// `$1` reaction weights, `$2`–`$7` the previous window, `$8`–`$13` the recent one, `$14`
    /// limit, `$15` the fewest distinct networks an article needs.
    ///
    /// The candidates (articles with more reactions in the recent window than before) are
    /// ranked first; then, best first, each one's distinct networks in the recent window
    /// `[$8, $13)` are counted from the `(article_id, updated_at) include (reaction, network)`
    /// index alone, until `limit` articles with enough of them are found. So the filter applies
    /// before the limit, and the count is paid for the articles looked at, not for every one.
    pub static TRENDING: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select article_id, recent, previous, score, networks
             from (select article_id, recent, previous,
                          (recent - previous)::float8 / sqrt(previous + 1.0::float8) as score
                   from (select article_id, sum(recent)::int8 as recent, sum(previous)::int8 as previous
                   from (select article_id, {held} as recent, 0 as previous
                         from ({recent_rows}) as w
                         group by article_id
                         union all
                         select article_id, 0, {held}
                         from ({previous_rows}) as w
                         group by article_id) as paces
                   group by article_id) as articles
                   where recent > previous
                   order by score desc, recent desc, article_id) as candidates
             cross join lateral (
                 select count(distinct network) as networks
                 from reactions r
                 where r.article_id = candidates.article_id and r.updated_at >= $8 and r.updated_at < $13
             ) as spread
             where networks >= $15
             order by score desc, recent desc, article_id
             limit $14",
            held = weighted_sum(),
            recent_rows = window_rows("true", "null::timestamptz", 8),
            previous_rows = window_rows("true", "null::timestamptz", 2),
        )
    });

    /// Settings of the export's transaction, for these reasons: the first fetch waits for the
    /// whole aggregation, which can outlast the service-wide statement timeout on a long window;
    /// more memory keeps that aggregation and its sort off the disk; a cursor is otherwise
    /// planned to return its first tenth fast, which can mean reading a whole index in order
    /// rather than the window; and a client that stops reading must not hold the transaction
    /// (and with it vacuum's horizon) for ever.
    pub const EXPORT_SETTINGS: &str = "
        set transaction read only;
        set local statement_timeout = '120s';
        set local idle_in_transaction_session_timeout = '60s';
        set local work_mem = '64MB';
        set local cursor_tuple_fraction = 1.0";

    /// `$1`–`$6` the window. Reactions in display order (the enum's), counts above zero only.
    pub static EXPORT_CURSOR: LazyLock<String> = LazyLock::new(|| {
        format!(
            "declare stats_export no scroll cursor for
             select article_id, reaction_key, count
             from (select article_id, {sums}
                   from ({rows}) as w
                   group by article_id) as articles(article_id, {columns})
             cross join lateral (values {values}) as counted(position, reaction_key, count)
             where count > 0
             order by article_id, position",
            sums = column_sums(),
            rows = window_rows("true", "null::timestamptz", 1),
            columns = count_columns(),
            values = each_reaction(", ", |i, r| format!("({}, '{}', {})", i + 1, r.key(), count_column(r))),
        )
    });
}

/// The shortest window whose top list is first read from the articles' held bounds
/// (`PgStore::top_by_bounds`). In shorter ones the most popular articles hold most of their
/// reactions outside the window, so the bounds say little; grouping such a window is cheap
/// anyway (about 30 ms for a day of ten million reactions, `docs/stats-performance.md`).
const BOUNDED_TOP_MIN_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Articles read at once by the walk, at the least (four times the limit when that is more).
const BOUNDED_TOP_CHUNK: usize = 64;

/// Most articles the walk reads per day of the window before it leaves the list to the full
/// grouping. On ten million reactions (`docs/stats-performance.md`) reading an article's window
/// costs about 30 µs and grouping a window 6–8 ms per day of it, so a list the bounds cannot
/// settle costs at most about a third more than the grouping alone, where a settled one takes
/// a few milliseconds (a month's top 10: 167 → 3 ms).
const BOUNDED_TOP_ARTICLES_PER_DAY: usize = 100;

/// Binds the six instants of `parts`, in order, as the query's next parameters.
fn bind_window<'q, O>(
    query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    parts: &WindowParts,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    parts.instants().into_iter().fold(query, |query, instant| query.bind(instant))
}

impl super::PgStore {
    /// The articles with the most reactions of the given kinds (all when empty) in `window`,
    /// most first, ties by article id.
    ///
    /// A window of at least `BOUNDED_TOP_MIN_WINDOW` is first read from the articles of largest
    /// held bound down (`Self::top_by_bounds`); a shorter one, or one whose list the bounds do
    /// not settle cheaply, groups every article of the window.
    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn top_articles(
        &self,
        window: &TimeWindow,
        reactions: &[Reaction],
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        let parts = WindowParts::new(window, Bucket::Day);
        let weights = reaction_weights(reactions);
        let length = window.until() - window.since();
        if length >= BOUNDED_TOP_MIN_WINDOW {
            let most = BOUNDED_TOP_ARTICLES_PER_DAY * length.num_days() as usize;
            // One reaction's list by that reaction's bounds; any other by the totals' (which
            // bound every kind, if loosely).
            let bounded = match reactions {
                [reaction] => Some(*reaction),
                _ => None,
            };
            if let Some(rows) = self.top_by_bounds(&parts, weights, bounded, limit, most).await? {
                return article_counts(rows);
            }
        }
        let query = sqlx::query_as(sql::TOP_ARTICLES.as_str()).bind(weights);
        let rows: Vec<(String, i64)> = bind_window(query, &parts)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the top articles"))?;
        article_counts(rows)
    }

    /// The top list of a window read from the articles of largest held bound down
    /// (`article_held_bounds`, migration `20261201000003_article_held_bounds.sql`): an article's
    /// count in any window is at most the reactions it holds, and so at most its bound.
    ///
    /// `bounded`: the kind of reaction whose bounds order the articles, or all together. Read in
    /// chunks of a few times the limit. Once the list is full, only an article bounded by at
    /// least its last count can still enter it (a tie can, by its id), so later chunks read only
    /// those, and the list is settled once the next such article is bounded below that count, or
    /// none is left, provided that count is above the bounds' threshold (what an article without
    /// a row may hold: `article_held_bounds_threshold()`). `None`, for the full grouping, when it
    /// cannot be settled so, or not within `most` articles: a window whose top articles hold few
    /// of their reactions in it.
    ///
    /// The reads share one repeatable-read transaction, so the bounds and every count are of one
    /// state, as the single statement of the full grouping is. Their statements take the generic
    /// plan at once: a plan made for each chunk's ids costs milliseconds to make.
    async fn top_by_bounds(
        &self,
        parts: &WindowParts,
        weights: [i32; crate::store::sql::REACTIONS],
        bounded: Option<Reaction>,
        limit: u32,
        most: usize,
    ) -> Result<Option<Vec<(String, i64)>>, StoreError> {
        let failed = |e| classify(e, "while reading the top articles");
        let full = limit as usize;
        let chunk = (4 * full).max(BOUNDED_TOP_CHUNK);
        let mut tx =
            self.pool.begin_with("begin isolation level repeatable read, read only").await.map_err(failed)?;
        let threshold: i64 =
            sqlx::query_scalar(sql::TOP_BY_BOUNDS_SETTINGS).fetch_one(&mut *tx).await.map_err(failed)?;
        let mut best: Vec<(String, i64)> = Vec::with_capacity(2 * full);
        let mut after = (i64::MAX, String::new());
        // The least bound of an article that could still enter the list.
        let mut floor = 0;
        let mut read = 0;
        let settled = loop {
            let candidates =
                Candidates::read(&mut tx, bounded, (after.0, &after.1), floor, chunk.min(most - read))
                    .await
                    .map_err(failed)?;
            best.extend(candidates.top(&mut tx, parts, weights, limit).await.map_err(failed)?);
            best.sort_unstable_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
            best.truncate(full);
            read += candidates.ids.len();
            floor = if best.len() == full { best.last().map_or(1, |(_, held)| *held) } else { 1 };
            if candidates.next_bound.is_none_or(|next| next < floor) {
                // No article with a row left can enter the list; one without a row holds at
                // most the implicit bound.
                break floor > threshold;
            }
            if read >= most {
                break false;
            }
            after = candidates.last.expect("a chunk before the next article");
        };
        tx.commit().await.map_err(failed)?;
        Ok(settled.then_some(best))
    }

    /// One article's counts per bucket in `window`, oldest first. Only buckets with reactions
    /// are returned; a bucket's counts are those inside the window.
    #[tracing::instrument(skip_all, fields(%bucket))]
    pub async fn article_timeseries(
        &self,
        article_id: &ArticleId,
        window: &TimeWindow,
        bucket: Bucket,
    ) -> Result<Vec<(DateTime<Utc>, ReactionCounts)>, StoreError> {
        // date_bin from the epoch: the same UTC-aligned starts as `Bucket::floor`, whatever the
        // session's time zone.
        let query = sqlx::query_as(sql::ARTICLE_TIMESERIES.as_str()).bind(article_id.as_str());
        let rows: Vec<BucketCounts<DateTime<Utc>>> = bind_window(query, &WindowParts::new(window, bucket))
            .bind(bucket.width())
            .bind(DateTime::UNIX_EPOCH)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading a time series"))?;
        nonempty_buckets(rows, Ok)
    }

    /// Articles gathering reactions faster in `recent` than in the window of the same length
    /// just before it, best score first (ties: more recent reactions, then article id). Only
    /// articles with more reactions in `recent` than before, from at least `min_networks`
    /// distinct networks in `recent`, are listed.
    #[tracing::instrument(skip_all, fields(limit = limit, min_networks = min_networks))]
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
        min_networks: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        let previous = recent.preceding();
        // The score is a Poisson z-score: how many standard deviations the recent count lies
        // above what the previous pace predicts. +1 keeps it finite for new articles and damps
        // tiny counts; the square root lets a small article that triples rank beside a big one
        // that grows by a few percent.
        let query = sqlx::query_as(sql::TRENDING.as_str()).bind(reaction_weights(&[]));
        let query = bind_window(query, &WindowParts::new(&previous, Bucket::Day));
        let rows: Vec<(String, i64, i64, f64, i64)> =
            bind_window(query, &WindowParts::new(recent, Bucket::Day))
                .bind(i64::from(limit))
                .bind(i64::from(min_networks))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| classify(e, "while reading trending articles"))?;
        rows.into_iter()
            .map(|(article_id, recent, previous, score, networks)| {
                Ok(TrendingArticle {
                    article_id: stored_article_id(article_id)?,
                    recent,
                    previous,
                    score,
                    networks,
                })
            })
            .collect()
    }

    /// Counts per (article, reaction) in `window`, ordered by article id then reaction, read
    /// through a cursor [`EXPORT_BATCH_ROWS`] at a time as the stream is polled, so an export
    /// of any size holds one batch in memory.
    ///
    /// Returns once the cursor is open, so an unavailable database is an error here rather than
    /// a broken stream. The export's transaction holds one pooled connection until the stream
    /// ends or is dropped.
    #[tracing::instrument(skip_all)]
    pub async fn export_counts(&self, window: &TimeWindow) -> Result<ExportStream, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| classify(e, "while starting the export"))?;
        sqlx::raw_sql(sql::EXPORT_SETTINGS)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "while starting the export"))?;
        let instants = WindowParts::new(window, Bucket::Day).instants();
        instants
            .into_iter()
            .fold(sqlx::query(sql::EXPORT_CURSOR.as_str()), |query, instant| query.bind(instant))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "while opening the export cursor"))?;
        Ok(stream::try_unfold(Some(tx), next_export_batch).boxed())
    }
}

/// Articles read in the order of their held bound ([`sql::HELD_BOUNDS`]).
struct Candidates {
    ids: Vec<String>,
    /// The last one's bound and id, where a next read starts.
    last: Option<(i64, String)>,
    /// The bound of the first article after them that the read's condition admits, if any.
    next_bound: Option<i64>,
}

impl Candidates {
    /// At most `count` articles after `after` (bound, id) whose bound of `bounded` (all
    /// reactions together when `None`) is at least `floor`.
    async fn read(
        tx: &mut Transaction<'static, Postgres>,
        bounded: Option<Reaction>,
        after: (i64, &str),
        floor: i64,
        count: usize,
    ) -> Result<Self, sqlx::Error> {
        let statement = if bounded.is_some() { &sql::HELD_BOUNDS_OF } else { &sql::HELD_BOUNDS };
        let mut query =
            sqlx::query_as(statement.as_str()).bind(after.0).bind(after.1).bind(floor).bind(count as i64 + 1);
        if let Some(reaction) = bounded {
            query = query.bind(reaction.key());
        }
        let mut rows: Vec<(String, i64)> = query.fetch_all(&mut **tx).await?;
        let next_bound = (rows.len() > count).then(|| rows.pop()).flatten().map(|(_, bound)| bound);
        let last = rows.last().map(|(id, bound)| (*bound, id.clone()));
        Ok(Self { ids: rows.into_iter().map(|(id, _)| id).collect(), last, next_bound })
    }

    /// The window's top list among these articles only.
    async fn top(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        parts: &WindowParts,
        weights: [i32; crate::store::sql::REACTIONS],
        limit: u32,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let query = sqlx::query_as(sql::TOP_ARTICLES_AMONG.as_str()).bind(weights);
        bind_window(query, parts).bind(i64::from(limit)).bind(&self.ids).fetch_all(&mut **tx).await
    }
}

/// Reads the next batch from the export cursor; the transaction ends after the last one.
async fn next_export_batch(
    tx: Option<Transaction<'static, Postgres>>,
) -> Result<Option<(Vec<ExportRow>, Option<Transaction<'static, Postgres>>)>, StoreError> {
    let Some(mut tx) = tx else { return Ok(None) };
    let rows: Vec<(String, String, i64)> = sqlx::query_as(FETCH_EXPORT_BATCH)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| classify(e, "while reading the export cursor"))?;
    let batch = export_rows(rows)?;
    if batch.len() < EXPORT_BATCH_ROWS {
        tx.commit().await.map_err(|e| classify(e, "while closing the export cursor"))?;
        return Ok(if batch.is_empty() { None } else { Some((batch, None)) });
    }
    Ok(Some((batch, Some(tx))))
}
