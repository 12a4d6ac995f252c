//! The dashboard reads: counts of the reactions currently held whose last change falls in a
//! time window.
//!
//! Every query reads `reactions.updated_at` through one of the indexes of migration
//! `20261126000003_stats_indexes.sql`: `(reaction, updated_at) include (article_id)` for the
//! site-wide windows and `(article_id, updated_at) include (reaction)` for one article's time
//! series, both answered by index-only scans. Site-wide queries always constrain `reaction` (to
//! all seven when the caller asked for no particular one) so that the first column of the index
//! is bounded and PostgreSQL does one range scan per reaction instead of reading the whole index.
//! `docs/stats-performance.md` has the plans and timings on ten million rows.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt as _};
use sqlx::{Postgres, Transaction};

use super::StoreError;
use super::postgres::classify;
use crate::domain::{ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow};

/// Rows the CSV export reads from its cursor at a time: what one export holds in memory.
pub const EXPORT_BATCH_ROWS: usize = 1000;
// FETCH takes its row count as a literal, not a parameter: keep the statement in step.
const FETCH_EXPORT_BATCH: &str = "fetch forward 1000 from stats_export";
const _: () = assert!(EXPORT_BATCH_ROWS == 1000);

/// One article and how many reactions it gathered in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleCount {
    pub article_id: ArticleId,
    pub count: i64,
}

/// An article's reactions in the recent window and in the one before, with its trending score
/// `(recent - previous) / sqrt(previous + 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendingArticle {
    pub article_id: ArticleId,
    pub recent: i64,
    pub previous: i64,
    pub score: f64,
}

/// How many reactions of one kind one article gathered in a window: a row of the CSV export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub article_id: ArticleId,
    pub reaction: Reaction,
    pub count: i64,
}

/// The export's rows in batches of at most [`EXPORT_BATCH_ROWS`], read from the database as the
/// stream is polled. Dropping the stream ends the export and frees its connection.
pub type ExportStream = BoxStream<'static, Result<Vec<ExportRow>, StoreError>>;

/// The statements, by name. `scripts/stats-explain.sh` reads them from this file, so that the
/// plans it prints are those of exactly what the service runs.
mod sql {
    /// `$1` reaction keys, `$2` since, `$3` until, `$4` limit.
    pub const TOP_ARTICLES: &str = "
        select article_id, count(*) as held
        from reactions
        where reaction = any($1::text[]::reaction[]) and updated_at >= $2 and updated_at < $3
        group by article_id
        order by held desc, article_id
        limit $4";

    /// `$1` reaction keys, `$2` since, `$3` until.
    pub const WINDOW_TOTALS: &str = "
        select reaction::text, count(*)
        from reactions
        where reaction = any($1::text[]::reaction[]) and updated_at >= $2 and updated_at < $3
        group by reaction";

    /// `$1` article id, `$2` bucket width, `$3` bucket origin, `$4` since, `$5` until.
    pub const ARTICLE_TIMESERIES: &str = "
        select date_bin($2, updated_at, $3) as bucket, reaction::text as reaction_key, count(*)
        from reactions
        where article_id = $1 and updated_at >= $4 and updated_at < $5
        -- the enum, not its text: comparing text under the database's collation is far slower
        group by 1, reaction
        order by 1";

    /// `$1` reaction keys, `$2` start of the previous window, `$3` start of the recent one,
    /// `$4` until, `$5` limit.
    pub const TRENDING: &str = "
        select article_id, recent, previous,
               (recent - previous)::float8 / sqrt(previous + 1.0::float8) as score
        from (select article_id,
                     count(*) filter (where updated_at >= $3) as recent,
                     count(*) filter (where updated_at < $3) as previous
              from reactions
              where reaction = any($1::text[]::reaction[]) and updated_at >= $2 and updated_at < $4
              group by article_id) as paces
        where recent > previous
        order by score desc, recent desc, article_id
        limit $5";

    /// Settings of the export's transaction, for these reasons: the first fetch waits for the
    /// whole aggregation, which can outlast the service-wide statement timeout on a long window;
    /// more memory keeps that aggregation and its sort off the disk; a cursor is otherwise
    /// planned to return its first tenth fast, which here means reading the whole
    /// `(article_id, updated_at)` index rather than the window; and a client that stops reading
    /// must not hold the transaction (and with it vacuum's horizon) for ever.
    pub const EXPORT_SETTINGS: &str = "
        set transaction read only;
        set local statement_timeout = '120s';
        set local idle_in_transaction_session_timeout = '60s';
        set local work_mem = '64MB';
        set local cursor_tuple_fraction = 1.0";

    /// `$1` reaction keys, `$2` since, `$3` until.
    pub const EXPORT_CURSOR: &str = "
        declare stats_export no scroll cursor for
        select article_id, reaction::text as reaction_key, count(*)
        from reactions
        where reaction = any($1::text[]::reaction[]) and updated_at >= $2 and updated_at < $3
        group by article_id, reaction
        -- the enum, in display order (an output column named reaction would sort as text)
        order by article_id, reaction";
}

/// `reaction = any(...)` takes the keys as text; an empty filter means all seven.
fn reaction_keys(reactions: &[Reaction]) -> Vec<&'static str> {
    let reactions = if reactions.is_empty() { &Reaction::ALL[..] } else { reactions };
    reactions.iter().map(|r| r.key()).collect()
}

impl super::PgStore {
    /// The articles with the most reactions of the given kinds (all when empty) in `window`,
    /// most first, ties by article id.
    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn top_articles(
        &self,
        window: &TimeWindow,
        reactions: &[Reaction],
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::TOP_ARTICLES)
            .bind(reaction_keys(reactions))
            .bind(window.since())
            .bind(window.until())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the top articles"))?;
        rows.into_iter()
            .map(|(article_id, count)| Ok(ArticleCount { article_id: stored_article_id(article_id)?, count }))
            .collect()
    }

    /// Site-wide counts per reaction in `window`.
    #[tracing::instrument(skip_all)]
    pub async fn window_totals(&self, window: &TimeWindow) -> Result<ReactionCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::WINDOW_TOTALS)
            .bind(reaction_keys(&[]))
            .bind(window.since())
            .bind(window.until())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the totals"))?;
        let mut counts = ReactionCounts::default();
        for (reaction, count) in rows {
            counts.add(stored_reaction(&reaction)?, count);
        }
        Ok(counts)
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
        let rows: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(sql::ARTICLE_TIMESERIES)
            .bind(article_id.as_str())
            .bind(bucket.width())
            .bind(DateTime::UNIX_EPOCH)
            .bind(window.since())
            .bind(window.until())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading a time series"))?;
        let mut series: Vec<(DateTime<Utc>, ReactionCounts)> = Vec::new();
        for (start, reaction, count) in rows {
            let reaction = stored_reaction(&reaction)?;
            match series.last_mut() {
                Some((last, counts)) if *last == start => counts.add(reaction, count),
                _ => {
                    let mut counts = ReactionCounts::default();
                    counts.add(reaction, count);
                    series.push((start, counts));
                }
            }
        }
        Ok(series)
    }

    /// Articles gathering reactions faster in `recent` than in the window of the same length
    /// just before it, best score first (ties: more recent reactions, then article id). Only
    /// articles with more reactions in `recent` than before are listed.
    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        let previous_since = recent.since() - (recent.until() - recent.since());
        // The score is a Poisson z-score: how many standard deviations the recent count lies
        // above what the previous pace predicts. +1 keeps it finite for new articles and damps
        // tiny counts; the square root lets a small article that triples rank beside a big one
        // that grows by a few percent.
        let rows: Vec<(String, i64, i64, f64)> = sqlx::query_as(sql::TRENDING)
            .bind(reaction_keys(&[]))
            .bind(previous_since)
            .bind(recent.since())
            .bind(recent.until())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading trending articles"))?;
        rows.into_iter()
            .map(|(article_id, recent, previous, score)| {
                Ok(TrendingArticle { article_id: stored_article_id(article_id)?, recent, previous, score })
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
        sqlx::query(sql::EXPORT_CURSOR)
            .bind(reaction_keys(&[]))
            .bind(window.since())
            .bind(window.until())
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "while opening the export cursor"))?;
        Ok(stream::try_unfold(Some(tx), next_export_batch).boxed())
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
    let batch = rows
        .into_iter()
        .map(|(article_id, reaction, count)| {
            Ok(ExportRow {
                article_id: stored_article_id(article_id)?,
                reaction: stored_reaction(&reaction)?,
                count,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    if batch.len() < EXPORT_BATCH_ROWS {
        tx.commit().await.map_err(|e| classify(e, "while closing the export cursor"))?;
        return Ok(if batch.is_empty() { None } else { Some((batch, None)) });
    }
    Ok(Some((batch, Some(tx))))
}

fn stored_article_id(raw: String) -> Result<ArticleId, StoreError> {
    ArticleId::parse(raw).context("an invalid article id is stored").map_err(StoreError::Other)
}

fn stored_reaction(key: &str) -> Result<Reaction, StoreError> {
    key.parse().context("an unknown reaction is stored").map_err(StoreError::Other)
}
