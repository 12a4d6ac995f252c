//! The dashboard reads on SQLite: the same answers as [`super::super::postgres`] gives on PostgreSQL, read
//! the same way, from the pieces of a [`WindowParts`]: whole days from `reaction_counts_daily`,
//! whole hours from `reaction_counts_hourly` (migration
//! `migrations/sqlite/20261127000001_stats_rollups.sql`) and the partial hours at the window's
//! ends from `reactions`.
//!
//! Times are integer microseconds, so a piece is an integer range over an index and a bucket is
//! integer arithmetic. The partial hours of `reactions` are read through the indexes of migration
//! `migrations/sqlite/20261126000003_stats_indexes.sql`; the rollups through their primary key
//! (one article) or their `bucket_start` index (site-wide). SQLite is built here without its math
//! functions, so the trending score is computed in Rust, with the same floating-point operations
//! as the PostgreSQL query.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream;
use sqlx::Sqlite;
use sqlx::query::QueryAs;
use sqlx::sqlite::SqliteArguments;
use tokio::sync::mpsc;

use super::{SqliteStore, classify, micros};
use crate::domain::{
    ArticleCount, ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow, TrendingArticle, WindowParts,
};
use crate::store::rows::{
    BucketCounts, EXPORT_BATCH_ROWS, ExportRow, ExportStream, article_counts, export_rows, nonempty_buckets,
};
use crate::store::sql::{
    REACTIONS, count_column, each_reaction, reaction_keys, reaction_weights, window_union,
};
use crate::store::{StoreError, stored_article_id};

/// A piece of a window read from `reactions`: each row counts 1 in its reaction's column, at
/// its `updated_at`.
fn reactions_piece(filter: &str, from: &str, to: &str) -> String {
    let columns = each_reaction(", ", |_, r| format!("reaction = '{}' as {}", r.key(), count_column(r)));
    format!(
        "select article_id, updated_at as at, {columns}
         from reactions
         where {filter} and updated_at >= {from} and updated_at < {to}"
    )
}

/// The rows a window is read from, one select per piece of [`WindowParts`], each giving
/// `(article_id, at, like_count, …)`. Summed, they are the window's counts. `reactions`
/// restricts the two pieces of `reactions`, `rollups` the three of the rollups (to one article,
/// say); `first` is the first of the six parameters holding the instants.
fn window_rows(reactions: &str, rollups: &str, first: usize) -> String {
    window_union(|from, to| reactions_piece(reactions, from, to), rollups, first, None)
}

/// [`window_rows`] of every article. It names every reaction in the pieces of `reactions`, so
/// that SQLite bounds the first column of `(reaction, updated_at)` and reads one short range per
/// reaction. (One article's pieces leave the reaction free: they read
/// `(article_id, updated_at, reaction)`.)
fn every_article_rows(first: usize) -> String {
    window_rows(&format!("reaction in ({})", reaction_keys()), "true", first)
}

/// The sum of each reaction's column of window rows, in display order.
fn column_sums() -> String {
    each_reaction(", ", |_, r| format!("sum({column}) as {column}", column = count_column(r)))
}

/// The sum of every column of window rows: all their reactions.
fn total_sum() -> String {
    format!("sum({})", each_reaction(" + ", |_, r| count_column(r)))
}

/// The statements. Six consecutive parameters hold the instants of a [`WindowParts`] in order,
/// as microseconds; counts per reaction come in display order.
pub(in crate::store) mod sql {
    use std::sync::LazyLock;

    use super::{
        REACTIONS, column_sums, count_column, each_reaction, every_article_rows, total_sum, window_rows,
    };

    /// `$1`… one reaction weight per reaction in display order (1 counted, 0 not), then the
    /// window's six parameters, then the limit.
    pub static TOP_ARTICLES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select article_id, held
             from (select article_id, sum({weighted}) as held
                   from ({rows})
                   group by article_id)
             where held > 0
             order by held desc, article_id
             limit ${limit}",
            weighted = each_reaction(" + ", |i, r| format!("{} * ${}", count_column(r), i + 1)),
            rows = every_article_rows(REACTIONS + 1),
            limit = REACTIONS + 7,
        )
    });

    /// `$1`–`$6` the window. Counts per reaction.
    pub static WINDOW_TOTALS: LazyLock<String> =
        LazyLock::new(|| format!("select {} from ({})", column_sums(), every_article_rows(1)));

    /// `$1` article id, `$2`–`$7` the window (no daily pieces for hourly buckets), `$8` bucket
    /// width (microseconds). A bucket starts at a multiple of its width from the epoch, rounded
    /// down for instants before it too. The bucket's start, then counts per reaction.
    pub static ARTICLE_TIMESERIES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select at - ((at % $8) + $8) % $8 as bucket, {sums}
             from ({rows})
             group by 1
             order by 1",
            sums = column_sums(),
            rows = window_rows("article_id = $1", "article_id = $1", 2),
        )
    });

    /// `$1`–`$6` the previous window, `$7`–`$12` the recent one. The articles with more
    /// reactions in the recent window than in the previous one.
    pub static TRENDING_PACES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select article_id, recent, previous
             from (select article_id, sum(recent) as recent, sum(previous) as previous
                   from (select article_id, {total} as recent, 0 as previous
                         from ({recent_rows})
                         group by article_id
                         union all
                         select article_id, 0, {total}
                         from ({previous_rows})
                         group by article_id)
                   group by article_id)
             where recent > previous",
            total = total_sum(),
            recent_rows = every_article_rows(7),
            previous_rows = every_article_rows(1),
        )
    });

    /// `$1` article id, `$2`–`$3` the recent window. The distinct networks of the article's
    /// reactions in it, read from the `(article_id, updated_at, reaction, network)` index alone.
    pub const ARTICLE_NETWORKS: &str = "select count(distinct network) from reactions
         where article_id = $1 and updated_at >= $2 and updated_at < $3";

    /// `$1`–`$6` the window. Reactions in display order, like the PostgreSQL enum, counts above
    /// zero only.
    pub static EXPORT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "with reaction_order(position, reaction_key) as (values {order})
             select article_id, reaction_key, count
             from (select articles.article_id, reaction_order.position, reaction_order.reaction_key,
                          case reaction_order.position {cases} end as count
                   from (select article_id, {sums}
                         from ({rows})
                         group by article_id) as articles
                   cross join reaction_order)
             where count > 0
             order by article_id, position",
            order = each_reaction(", ", |i, r| format!("({}, '{}')", i + 1, r.key())),
            cases = each_reaction(" ", |i, r| format!("when {} then {}", i + 1, count_column(r))),
            sums = column_sums(),
            rows = every_article_rows(1),
        )
    });
}

/// Binds the six instants of `parts`, in order and as microseconds, as the query's next
/// parameters.
fn bind_window<'q, O>(
    query: QueryAs<'q, Sqlite, O, SqliteArguments>,
    parts: &WindowParts,
) -> QueryAs<'q, Sqlite, O, SqliteArguments> {
    parts.instants().into_iter().fold(query, |query, instant| query.bind(micros(instant)))
}

impl SqliteStore {
    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn top_articles(
        &self,
        window: &TimeWindow,
        reactions: &[Reaction],
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        let query = reaction_weights(reactions)
            .into_iter()
            .fold(sqlx::query_as(sql::TOP_ARTICLES.as_str()), |query, weight| query.bind(weight));
        let rows: Vec<(String, i64)> = bind_window(query, &WindowParts::new(window, Bucket::Day))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the top articles"))?;
        article_counts(rows)
    }

    #[tracing::instrument(skip_all, fields(%bucket))]
    pub async fn article_timeseries(
        &self,
        article_id: &ArticleId,
        window: &TimeWindow,
        bucket: Bucket,
    ) -> Result<Vec<(DateTime<Utc>, ReactionCounts)>, StoreError> {
        let width = bucket.width().num_microseconds().expect("a bucket is far shorter than 292,000 years");
        let query = sqlx::query_as(sql::ARTICLE_TIMESERIES.as_str()).bind(article_id.as_str());
        let rows: Vec<BucketCounts<i64>> = bind_window(query, &WindowParts::new(window, bucket))
            .bind(width)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading a time series"))?;
        nonempty_buckets(rows, |start| {
            DateTime::from_timestamp_micros(start)
                .ok_or_else(|| StoreError::Other(anyhow::anyhow!("a bucket start out of range: {start}")))
        })
    }

    /// As on PostgreSQL: the candidates ranked by score, then each one's distinct networks in
    /// `recent` counted, best first, until `limit` articles with at least `min_networks` are found.
    /// One read transaction, so that the paces and the networks are of one state.
    #[tracing::instrument(skip_all, fields(limit = limit, min_networks = min_networks))]
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
        min_networks: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        self.trending_once(recent, limit, min_networks)
            .await
            .map_err(|e| classify(e, "while reading trending articles"))
    }

    async fn trending_once(
        &self,
        recent: &TimeWindow,
        limit: u32,
        min_networks: u32,
    ) -> Result<Vec<TrendingArticle>, sqlx::Error> {
        let previous = recent.preceding();
        let mut tx = self.pool.begin().await?;
        let query = bind_window(
            sqlx::query_as(sql::TRENDING_PACES.as_str()),
            &WindowParts::new(&previous, Bucket::Day),
        );
        let rows: Vec<(String, i64, i64)> =
            bind_window(query, &WindowParts::new(recent, Bucket::Day)).fetch_all(&mut *tx).await?;
        let mut candidates: Vec<(String, i64, i64, f64)> = rows
            .into_iter()
            .map(|(article_id, recent, previous)| {
                // The same operations in the same order as the PostgreSQL query, so both backends
                // answer the same score to the last bit.
                let score = (recent - previous) as f64 / (previous as f64 + 1.0).sqrt();
                (article_id, recent, previous, score)
            })
            .collect();
        candidates.sort_by(|a, b| {
            b.3.partial_cmp(&a.3).unwrap_or(Ordering::Equal).then(b.1.cmp(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        let mut articles = Vec::with_capacity((limit as usize).min(candidates.len()));
        for (article_id, recent_count, previous, score) in candidates {
            if articles.len() >= limit as usize {
                break;
            }
            let networks: i64 = sqlx::query_scalar(sql::ARTICLE_NETWORKS)
                .bind(&article_id)
                .bind(micros(recent.since()))
                .bind(micros(recent.until()))
                .fetch_one(&mut *tx)
                .await?;
            if networks < i64::from(min_networks) {
                continue;
            }
            let article_id = stored_article_id(article_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
            articles.push(TrendingArticle { article_id, recent: recent_count, previous, score, networks });
        }
        tx.commit().await?;
        Ok(articles)
    }

    /// Counts per (article, reaction) in `window`, ordered by article id then reaction, in
    /// batches of [`EXPORT_BATCH_ROWS`]. One query on one pooled connection, read by a task that
    /// hands the stream one batch at a time: the task stops, and gives the connection back, when
    /// the stream is dropped.
    #[tracing::instrument(skip_all)]
    pub async fn export_counts(&self, window: &TimeWindow) -> Result<ExportStream, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| classify(e, "while starting the export"))?;
        let parts = WindowParts::new(window, Bucket::Day);
        let (batches, receiver) = mpsc::channel::<Result<Vec<ExportRow>, StoreError>>(1);
        tokio::spawn(async move {
            let mut rows =
                bind_window(sqlx::query_as::<_, (String, String, i64)>(sql::EXPORT.as_str()), &parts)
                    .fetch(&mut *conn)
                    .chunks(EXPORT_BATCH_ROWS);
            while let Some(chunk) = rows.next().await {
                let batch = chunk
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| classify(e, "while reading the export"))
                    .and_then(export_rows);
                let failed = batch.is_err();
                if batches.send(batch).await.is_err() || failed {
                    break; // the client went away, or the export broke
                }
            }
        });
        Ok(stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        })
        .boxed())
    }
}
