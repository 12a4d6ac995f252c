//! The dashboards' reads: articles ranked in a window, site totals, one article's time series,
//! trending articles and the CSV export, and the instance's own health. What the HTTP stats
//! and operations routes ask for, in domain terms.

use chrono::{DateTime, Utc};

use crate::domain::{ArticleCount, ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow, TrendingArticle};
use crate::store::{ExportStream, PoolStatus, Store, StoreError};

/// The stats use cases over the store.
#[derive(Debug, Clone)]
pub struct Stats {
    store: Store,
    /// `TRENDING_MIN_NETWORKS`: the distinct client networks an article needs to trend.
    trending_min_networks: u32,
}

impl Stats {
    pub fn new(store: Store, trending_min_networks: u32) -> Self {
        Self { store, trending_min_networks }
    }

    /// The articles with the most reactions (of `reaction`, or of all kinds) whose last change
    /// falls in `window`, most first, ties by article id.
    pub async fn top(
        &self,
        window: &TimeWindow,
        reaction: Option<Reaction>,
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        self.store.top_articles(window, reaction.as_slice(), limit).await
    }

    /// Site-wide counts per reaction in `window`.
    pub async fn totals(&self, window: &TimeWindow) -> Result<ReactionCounts, StoreError> {
        self.store.window_totals(window).await
    }

    /// One article's counts in every `bucket` of `window`, oldest first, empty buckets
    /// included (all zeros).
    pub async fn timeseries(
        &self,
        article_id: &ArticleId,
        window: &TimeWindow,
        bucket: Bucket,
    ) -> Result<Vec<(DateTime<Utc>, ReactionCounts)>, StoreError> {
        let mut found =
            self.store.article_timeseries(article_id, window, bucket).await?.into_iter().peekable();
        Ok(bucket
            .starts(window)
            .map(|start| {
                let counts =
                    found.next_if(|(at, _)| *at == start).map(|(_, counts)| counts).unwrap_or_default();
                (start, counts)
            })
            .collect())
    }

    /// The articles gathering reactions faster in `recent` than in the window of the same
    /// length before it, from at least `TRENDING_MIN_NETWORKS` client networks, best first.
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        self.store.trending(recent, limit, self.trending_min_networks).await
    }

    /// Counts per article and reaction in `window`, streamed in batches.
    pub async fn export(&self, window: &TimeWindow) -> Result<ExportStream, StoreError> {
        self.store.export_counts(window).await
    }

    /// Answers when the database can run a query (readiness).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// The connection pool's use, for the metrics.
    pub fn pool_status(&self) -> PoolStatus {
        self.store.pool_status()
    }
}
