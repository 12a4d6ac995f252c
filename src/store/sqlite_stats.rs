//! The dashboard reads on SQLite: the same answers as [`super::stats`] gives on PostgreSQL.
//!
//! Times are integer microseconds, so a window is an integer range over the indexes of migration
//! `migrations/sqlite/20261126000003_stats_indexes.sql` and a bucket is integer arithmetic.
//! SQLite is built here without its math functions, so the trending score is computed in Rust,
//! with the same floating-point operations as the PostgreSQL query.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream;
use tokio::sync::mpsc;

use super::sqlite::{classify, json_array, micros, stored_article_id, stored_reaction};
use super::stats::{ArticleCount, EXPORT_BATCH_ROWS, ExportRow, ExportStream, TrendingArticle};
use super::{SqliteStore, StoreError};
use crate::domain::{ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow};

mod sql {
    /// `$1` reaction keys (a JSON array), `$2` since, `$3` until, `$4` limit.
    pub const TOP_ARTICLES: &str = "
        select article_id, count(*) as held
        from reactions
        where reaction in (select value from json_each($1)) and updated_at >= $2 and updated_at < $3
        group by article_id
        order by held desc, article_id
        limit $4";

    /// `$1` reaction keys, `$2` since, `$3` until.
    pub const WINDOW_TOTALS: &str = "
        select reaction, count(*)
        from reactions
        where reaction in (select value from json_each($1)) and updated_at >= $2 and updated_at < $3
        group by reaction";

    /// `$1` article id, `$2` bucket width, `$3` since, `$4` until (microseconds). A bucket starts
    /// at a multiple of its width from the epoch, rounded down for instants before it too.
    pub const ARTICLE_TIMESERIES: &str = "
        select updated_at - ((updated_at % $2) + $2) % $2 as bucket, reaction, count(*)
        from reactions
        where article_id = $1 and updated_at >= $3 and updated_at < $4
        group by 1, 2
        order by 1";

    /// `$1` reaction keys, `$2` start of the previous window, `$3` start of the recent one,
    /// `$4` until.
    pub const TRENDING_PACES: &str = "
        select article_id, recent, previous
        from (select article_id,
                     sum(updated_at >= $3) as recent,
                     sum(updated_at < $3) as previous
              from reactions
              where reaction in (select value from json_each($1)) and updated_at >= $2 and updated_at < $4
              group by article_id)
        where recent > previous";

    /// `$1` reaction keys, `$2` since, `$3` until. Reactions in display order, like the
    /// PostgreSQL enum.
    pub const EXPORT: &str = "
        select article_id, reaction, count(*)
        from reactions
        where reaction in (select value from json_each($1)) and updated_at >= $2 and updated_at < $3
        group by article_id, reaction
        order by article_id, case reaction
            when 'like' then 0 when 'dislike' then 1 when 'love' then 2 when 'funny' then 3
            when 'angry' then 4 when 'sad' then 5 when 'wow' then 6 end";
}

/// The reaction keys a query counts, as the JSON array `json_each` reads; all seven when empty.
fn reaction_keys(reactions: &[Reaction]) -> String {
    let reactions = if reactions.is_empty() { &Reaction::ALL[..] } else { reactions };
    json_array(&reactions.iter().map(|r| r.key()).collect::<Vec<_>>())
}

impl SqliteStore {
    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn top_articles(
        &self,
        window: &TimeWindow,
        reactions: &[Reaction],
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::TOP_ARTICLES)
            .bind(reaction_keys(reactions))
            .bind(micros(window.since()))
            .bind(micros(window.until()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the top articles"))?;
        rows.into_iter()
            .map(|(article_id, count)| Ok(ArticleCount { article_id: stored_article_id(article_id)?, count }))
            .collect()
    }

    #[tracing::instrument(skip_all)]
    pub async fn window_totals(&self, window: &TimeWindow) -> Result<ReactionCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::WINDOW_TOTALS)
            .bind(reaction_keys(&[]))
            .bind(micros(window.since()))
            .bind(micros(window.until()))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the totals"))?;
        let mut counts = ReactionCounts::default();
        for (reaction, count) in rows {
            counts.add(stored_reaction(&reaction)?, count);
        }
        Ok(counts)
    }

    #[tracing::instrument(skip_all, fields(%bucket))]
    pub async fn article_timeseries(
        &self,
        article_id: &ArticleId,
        window: &TimeWindow,
        bucket: Bucket,
    ) -> Result<Vec<(DateTime<Utc>, ReactionCounts)>, StoreError> {
        let width = bucket.width().num_microseconds().expect("a bucket is far shorter than 292,000 years");
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql::ARTICLE_TIMESERIES)
            .bind(article_id.as_str())
            .bind(width)
            .bind(micros(window.since()))
            .bind(micros(window.until()))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading a time series"))?;
        let mut series: Vec<(DateTime<Utc>, ReactionCounts)> = Vec::new();
        for (start, reaction, count) in rows {
            let start = DateTime::from_timestamp_micros(start)
                .ok_or_else(|| StoreError::Other(anyhow::anyhow!("a bucket start out of range: {start}")))?;
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

    #[tracing::instrument(skip_all, fields(limit = limit))]
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        let previous_since = recent.since() - (recent.until() - recent.since());
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(sql::TRENDING_PACES)
            .bind(reaction_keys(&[]))
            .bind(micros(previous_since))
            .bind(micros(recent.since()))
            .bind(micros(recent.until()))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading trending articles"))?;
        let mut articles = rows
            .into_iter()
            .map(|(article_id, recent, previous)| {
                // The same operations in the same order as the PostgreSQL query, so both backends
                // answer the same score to the last bit.
                let score = (recent - previous) as f64 / (previous as f64 + 1.0).sqrt();
                Ok(TrendingArticle { article_id: stored_article_id(article_id)?, recent, previous, score })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        articles.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(Ordering::Equal)
                .then(b.recent.cmp(&a.recent))
                .then_with(|| a.article_id.as_str().cmp(b.article_id.as_str()))
        });
        articles.truncate(limit as usize);
        Ok(articles)
    }

    /// Counts per (article, reaction) in `window`, ordered by article id then reaction, in
    /// batches of [`EXPORT_BATCH_ROWS`]. One query on one pooled connection, read by a task that
    /// hands the stream one batch at a time: the task stops, and gives the connection back, when
    /// the stream is dropped.
    #[tracing::instrument(skip_all)]
    pub async fn export_counts(&self, window: &TimeWindow) -> Result<ExportStream, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| classify(e, "while starting the export"))?;
        let (since, until) = (micros(window.since()), micros(window.until()));
        let (batches, receiver) = mpsc::channel::<Result<Vec<ExportRow>, StoreError>>(1);
        tokio::spawn(async move {
            let mut rows = sqlx::query_as::<_, (String, String, i64)>(sql::EXPORT)
                .bind(reaction_keys(&[]))
                .bind(since)
                .bind(until)
                .fetch(&mut *conn)
                .chunks(EXPORT_BATCH_ROWS);
            while let Some(chunk) = rows.next().await {
                let batch = chunk
                    .into_iter()
                    .map(|row| {
                        let (article_id, reaction, count) =
                            row.map_err(|e| classify(e, "while reading the export"))?;
                        Ok(ExportRow {
                            article_id: stored_article_id(article_id)?,
                            reaction: stored_reaction(&reaction)?,
                            count,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>();
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
