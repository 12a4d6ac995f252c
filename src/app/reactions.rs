//! The reactions use cases: what the HTTP handlers ask for, in domain terms.
//!
//! Handlers call [`Reactions`]. Writes go through the group-commit [`writer`]; counts are read
//! through the [`cache`], which the writer refreshes after every commit; both sit in front of the
//! [`Store`]. Every write is first checked against its article's [`settings`] (editorial
//! controls), before it is queued.
//!
//! [`writer`]: crate::app::writer
//! [`cache`]: crate::app::cache
//! [`Store`]: crate::store::Store
//! [`settings`]: crate::app::settings

/// Most configured articles kept in the settings directory; beyond, each article's settings are
/// read on their own.
const DIRECTORY_LIMIT: u32 = 10_000;

use std::collections::HashMap;
use std::time::Instant;

use super::cache::{CountsCache, Rendered};
use super::fill::CacheFiller;
use super::settings::Listed;
use super::writer::BatchWriter;
use crate::domain::{ArticleId, ArticleSettings, Reaction, ReactionCounts, ReactionSet, ReactionSummary};
use crate::domain::{NetworkKey, VisitorKey};
use crate::store::{ReactionChange, Store, StoreError};

/// Why a change was refused by its article's settings, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// An editor closed the article to new reactions.
    #[error("this article is closed to new reactions; its counts can still be read")]
    Closed,
    /// The reaction is not one the article offers.
    #[error("this article does not offer {reaction}; it offers {offered}")]
    NotOffered { reaction: Reaction, offered: ReactionSet },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change its article's settings allow, ready for [`Reactions::change`].
#[derive(Debug)]
pub struct AllowedChange {
    change: ReactionChange,
    settings: ArticleSettings,
}

/// Reads and changes reactions.
#[derive(Debug, Clone)]
pub struct Reactions {
    store: Store,
    cache: CountsCache,
    filler: CacheFiller,
    writer: BatchWriter,
}

impl Reactions {
    pub fn new(store: Store, cache: CountsCache, filler: CacheFiller, writer: BatchWriter) -> Self {
        Self { store, cache, filler, writer }
    }

    /// Summaries for the given articles, in the order asked (duplicates answered each time).
    /// Counts come from the cache; the misses are read together ([`CacheFiller`]).
    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn summaries(
        &self,
        articles: &[ArticleId],
        viewer: Option<&VisitorKey>,
    ) -> Result<Vec<ReactionSummary>, StoreError> {
        let mut counts: HashMap<&ArticleId, (ReactionCounts, ArticleSettings)> =
            HashMap::with_capacity(articles.len());
        let mut misses: Vec<&ArticleId> = Vec::new();
        let mut due: Vec<ArticleId> = Vec::new();
        let now = Instant::now();
        for article_id in articles {
            if counts.contains_key(article_id) || misses.contains(&article_id) {
                continue;
            }
            match self.cache.get(article_id, now) {
                Some(hit) => {
                    if hit.refresh_due {
                        due.push(article_id.clone());
                    }
                    counts.insert(article_id, hit.value);
                }
                None => misses.push(article_id),
            }
        }
        self.filler.refresh(due);
        if !misses.is_empty() {
            let filled = self.filler.fill(misses.iter().map(|a| (*a).clone()).collect()).await?;
            for article_id in misses {
                let read = &filled[article_id];
                counts.insert(article_id, (read.counts, read.settings));
            }
        }
        let viewer_reactions = match viewer {
            Some(visitor) => {
                let unique: Vec<&ArticleId> = counts.keys().copied().collect();
                self.store.viewer_reactions(visitor, &unique).await?
            }
            None => HashMap::new(),
        };
        Ok(articles
            .iter()
            .map(|article_id| {
                let (counts, settings) = counts.get(article_id).copied().unwrap_or_default();
                ReactionSummary::new(
                    article_id.clone(),
                    counts,
                    viewer_reactions.get(article_id).copied(),
                    settings,
                )
            })
            .collect())
    }

    /// The anonymous answers (summaries without a viewer, rendered as JSON) for the given
    /// articles, in the order asked. Cached ones are served as rendered; the misses are read
    /// together ([`CacheFiller`]), cached and rendered.
    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn anonymous(&self, articles: &[ArticleId]) -> Result<Vec<Rendered>, StoreError> {
        let now = Instant::now();
        let mut due: Vec<ArticleId> = Vec::new();
        let mut answers: Vec<Option<Rendered>> = (articles.iter())
            .map(|article_id| {
                let hit = self.cache.get_rendered(article_id, now)?;
                if hit.refresh_due {
                    due.push(article_id.clone());
                }
                Some(hit.value)
            })
            .collect();
        self.filler.refresh(due);
        let mut misses: Vec<ArticleId> = (articles.iter().zip(&answers))
            .filter(|(_, answer)| answer.is_none())
            .map(|(a, _)| a.clone())
            .collect();
        if !misses.is_empty() {
            misses.sort_unstable();
            misses.dedup();
            let filled = self.filler.fill(misses).await?;
            for (article_id, answer) in articles.iter().zip(&mut answers) {
                if answer.is_none() {
                    *answer = filled.get(article_id).map(|read| read.rendered.clone());
                }
            }
        }
        Ok(answers.into_iter().map(|answer| answer.expect("every article is answered")).collect())
    }

    /// One article's anonymous answer: [`Reactions::anonymous`] for a single article, without
    /// its lists (the most frequent read of all).
    pub async fn anonymous_one(&self, article_id: &ArticleId) -> Result<Rendered, StoreError> {
        if let Some(hit) = self.cache.get_rendered(article_id, Instant::now()) {
            if hit.refresh_due {
                self.filler.refresh(vec![article_id.clone()]);
            }
            return Ok(hit.value);
        }
        let mut answers = self.anonymous(std::slice::from_ref(article_id)).await?;
        Ok(answers.pop().expect("one answer per article asked"))
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

    /// Checks a change to set or switch (`Some`) or remove (`None`) a visitor's reaction, made
    /// from `network`, against its article's settings: refused when the article is closed, or when the reaction
    /// is not one it offers (removing one is always allowed on an open article, so that a
    /// reaction held from before a restriction can be taken back).
    ///
    /// The settings come from the cache: a write on an article whose settings are cached costs
    /// no query here; otherwise one, whose answer is cached for the counts' TTL.
    #[tracing::instrument(skip_all, fields(article_id = %article_id, reaction = ?reaction))]
    pub async fn allow(
        &self,
        article_id: ArticleId,
        visitor: VisitorKey,
        network: Option<NetworkKey>,
        reaction: Option<Reaction>,
    ) -> Result<AllowedChange, ChangeError> {
        let settings = self.settings_of(&article_id).await?;
        if settings.closed() {
            return Err(ChangeError::Closed);
        }
        if let Some(reaction) = reaction.filter(|r| !settings.offers(*r)) {
            return Err(ChangeError::NotOffered { reaction, offered: settings.offered() });
        }
        Ok(AllowedChange { change: ReactionChange { article_id, visitor, network, reaction }, settings })
    }

    /// Makes an allowed change and answers the summary after it, once it is committed.
    /// Idempotent.
    #[tracing::instrument(skip_all, fields(article_id = %allowed.change.article_id, reaction = ?allowed.change.reaction))]
    pub async fn change(&self, allowed: AllowedChange) -> Result<ReactionSummary, StoreError> {
        let AllowedChange { change, settings } = allowed;
        let (article_id, reaction) = (change.article_id.clone(), change.reaction);
        let counts = self.writer.submit(change).await?;
        // The visitor's reaction after the change is the one they just asked for.
        Ok(ReactionSummary::new(article_id, counts, reaction, settings))
    }

    /// An article's settings as this instance knows them: its own cache entry, else the
    /// directory of configured articles (read at most once per `CACHE_TTL_MS`), else read on
    /// their own (and cached) when too many articles are configured for a directory.
    async fn settings_of(&self, article_id: &ArticleId) -> Result<ArticleSettings, StoreError> {
        let cache = self.cache.settings();
        if let Some(settings) = cache.get(article_id, Instant::now()) {
            return Ok(settings);
        }
        match cache.listed(article_id, Instant::now()) {
            Listed::Settings(settings) => return Ok(settings),
            Listed::TooMany => {}
            Listed::Stale => {
                let _refreshing = cache.refreshing().await;
                // Another write may have refreshed it while this one waited.
                match cache.listed(article_id, Instant::now()) {
                    Listed::Settings(settings) => return Ok(settings),
                    Listed::TooMany => {}
                    Listed::Stale => {
                        let read_at = Instant::now();
                        let directory = self.store.configured_settings(DIRECTORY_LIMIT).await?;
                        let settings =
                            directory.as_ref().map(|d| d.get(article_id).copied().unwrap_or_default());
                        cache.set_directory(directory, read_at);
                        if let Some(settings) = settings {
                            return Ok(settings);
                        }
                    }
                }
            }
        }
        let read_at = Instant::now();
        let settings = self.store.settings(article_id).await?;
        cache.insert(article_id.clone(), settings, read_at);
        Ok(settings)
    }

    /// An article's settings as stored (not cached: what an editor set is what they read back).
    pub async fn article_settings(&self, article_id: &ArticleId) -> Result<ArticleSettings, StoreError> {
        self.store.settings(article_id).await
    }

    /// Replaces an article's settings. This instance's answers show them at once; other
    /// instances' within the cache TTL.
    #[tracing::instrument(skip_all, fields(article_id = %article_id))]
    pub async fn replace_settings(
        &self,
        article_id: ArticleId,
        settings: ArticleSettings,
    ) -> Result<ArticleSettings, StoreError> {
        self.store.put_settings(&article_id, &settings).await?;
        // Committed by now: a read that started earlier cannot put back the old settings.
        self.cache.settings().insert(article_id, settings, Instant::now());
        Ok(settings)
    }

    /// Erases every reaction of a visitor; answers how many were removed.
    pub async fn erase_visitor(&self, visitor: &VisitorKey) -> Result<u64, StoreError> {
        let articles = self.store.erase_visitor(visitor).await?;
        self.store.notify_changed(&articles);
        // Refresh what this instance caches of the touched articles.
        let read_at = Instant::now();
        let touched: Vec<&ArticleId> = articles.iter().collect();
        if let Ok(mut fresh) = self.store.counts(&touched).await {
            for article_id in &articles {
                self.cache.insert(article_id.clone(), fresh.remove(article_id).unwrap_or_default(), read_at);
            }
        }
        Ok(articles.len() as u64)
    }

    /// Changes waiting for the writers.
    pub fn queued_writes(&self) -> usize {
        self.writer.queued()
    }

    /// Articles whose counts are cached.
    pub fn cached_articles(&self) -> usize {
        self.cache.len()
    }
}
