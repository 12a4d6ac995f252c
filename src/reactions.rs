//! The reactions use cases: what the HTTP handlers ask for, in domain terms.
//!
//! Handlers call [`Reactions`]; it calls the [`Store`]. This is the seam where a batching writer
//! and a read cache go, without touching the HTTP code.

use std::collections::HashMap;

use crate::domain::{ArticleId, Reaction, ReactionSummary};
use crate::identity::VisitorKey;
use crate::store::{ReactionChange, Store, StoreError};

/// Reads and changes reactions.
#[derive(Debug, Clone)]
pub struct Reactions {
    store: Store,
}

impl Reactions {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Summaries for the given articles, in the order asked (duplicates answered each time).
    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn summaries(
        &self,
        articles: &[ArticleId],
        viewer: Option<&VisitorKey>,
    ) -> Result<Vec<ReactionSummary>, StoreError> {
        let mut unique: Vec<&ArticleId> = articles.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        let counts = self.store.counts(&unique).await?;
        let viewer_reactions = match viewer {
            Some(visitor) => self.store.viewer_reactions(visitor, &unique).await?,
            None => HashMap::new(),
        };
        Ok(articles
            .iter()
            .map(|article_id| {
                ReactionSummary::new(
                    article_id.clone(),
                    counts.get(article_id).copied().unwrap_or_default(),
                    viewer_reactions.get(article_id).copied(),
                )
            })
            .collect())
    }

    /// One article's summary.
    pub async fn summary(
        &self,
        article_id: &ArticleId,
        viewer: Option<&VisitorKey>,
    ) -> Result<ReactionSummary, StoreError> {
        let mut summaries = self.summaries(std::slice::from_ref(article_id), viewer).await?;
        Ok(summaries.pop().expect("one summary per article asked"))
    }

    /// Sets, switches (`Some`) or removes (`None`) a visitor's reaction and answers the summary
    /// after the change. Idempotent.
    #[tracing::instrument(skip_all, fields(article_id = %article_id, reaction = ?reaction))]
    pub async fn change(
        &self,
        article_id: ArticleId,
        visitor: VisitorKey,
        reaction: Option<Reaction>,
    ) -> Result<ReactionSummary, StoreError> {
        let change = ReactionChange { article_id, visitor, reaction };
        self.store.apply(std::slice::from_ref(&change)).await?;
        let counts = self.store.counts(&[&change.article_id]).await?;
        let counts = counts.get(&change.article_id).copied().unwrap_or_default();
        // The visitor's reaction after the change is the one they just asked for.
        Ok(ReactionSummary::new(change.article_id, counts, reaction))
    }

    /// Erases every reaction of a visitor; answers how many were removed.
    pub async fn erase_visitor(&self, visitor: &VisitorKey) -> Result<u64, StoreError> {
        self.store.erase_visitor(visitor).await
    }
}
