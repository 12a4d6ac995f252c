//! The in-process cache of per-article settings (editorial controls).
//!
//! Every write checks its article's settings before it is queued, and every answer shows them,
//! so they are kept here for the same TTL as the counts: an instance sees another's change
//! within `CACHE_TTL_MS`, and a write on an article whose settings are cached (configured or
//! not) costs no query. Misses are filled by the read that fills the counts cache (one query for
//! both), or by the write that needs them.
//!
//! A `DashMap` with a freshness check, as the counts cache and for the same reasons.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::{ArticleId, ArticleSettings};

#[derive(Debug, Clone, Copy)]
struct Entry {
    settings: ArticleSettings,
    /// When the read that produced them started, or when this instance stored them.
    fresh_at: Instant,
}

/// The settings of every configured article as read at an instant, or `None` when too many
/// articles are configured to keep them all (then each article is read on its own).
#[derive(Debug)]
struct Directory {
    read_at: Instant,
    settings: Option<HashMap<ArticleId, ArticleSettings>>,
}

/// What the directory says of one article.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// The directory is fresh: these are the article's settings (the defaults if unlisted).
    Settings(ArticleSettings),
    /// The directory is fresh but holds nothing: too many articles are configured.
    TooMany,
    /// No fresh directory: it needs a read.
    Stale,
}

/// Per-article settings, fresh for `ttl`.
#[derive(Debug, Clone)]
pub struct SettingsCache {
    entries: Arc<DashMap<ArticleId, Entry, foldhash::fast::RandomState>>,
    ttl: Duration,
    capacity: usize,
    /// Every configured article's settings, so that a write on an article whose own entry is
    /// missing or expired (most of them, when writes are spread over many articles) needs no
    /// query: one read per `ttl` serves them all.
    directory: Arc<RwLock<Option<Directory>>>,
    /// Lets one write refresh the directory while the others wait for it.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl SettingsCache {
    /// A cache holding at most about `capacity` articles, each fresh for `ttl`. A zero TTL turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Arc::new(DashMap::with_hasher(Default::default())),
            ttl,
            capacity,
            directory: Arc::new(RwLock::new(None)),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// What the directory, if fresh at `now`, says of `article_id`.
    pub fn listed(&self, article_id: &ArticleId, now: Instant) -> Listed {
        if self.ttl.is_zero() {
            // Caching is off: every article is read on its own, as it is then.
            return Listed::TooMany;
        }
        let directory = self.directory.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match directory.as_ref() {
            Some(d) if now.saturating_duration_since(d.read_at) < self.ttl => match &d.settings {
                Some(settings) => Listed::Settings(settings.get(article_id).copied().unwrap_or_default()),
                None => Listed::TooMany,
            },
            _ => Listed::Stale,
        }
    }

    /// Stores a directory read that started at `read_at` (`None`: too many to keep).
    pub fn set_directory(&self, settings: Option<HashMap<ArticleId, ArticleSettings>>, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut directory = self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if directory.as_ref().is_none_or(|d| d.read_at < read_at) {
            *directory = Some(Directory { read_at, settings });
        }
    }

    /// Held by the one write that refreshes a stale directory.
    pub async fn refreshing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refreshing.lock().await
    }

    /// The settings of `article_id` if cached and fresh at `now`.
    pub fn get(&self, article_id: &ArticleId, now: Instant) -> Option<ArticleSettings> {
        self.get_aged(article_id, now).map(|(settings, _)| settings)
    }

    /// [`Self::get`] with the settings' age at `now`.
    pub fn get_aged(&self, article_id: &ArticleId, now: Instant) -> Option<(ArticleSettings, Duration)> {
        let entry = self.entries.get(article_id)?;
        let age = now.saturating_duration_since(entry.fresh_at);
        (age < self.ttl).then_some((entry.settings, age))
    }

    /// The newest settings this instance knows of `article_id`, however old; an open article
    /// offering everything when it knows none. For rendering an answer whose freshness is
    /// checked against [`SettingsCache::get`] when it is served.
    pub fn latest(&self, article_id: &ArticleId) -> ArticleSettings {
        self.entries.get(article_id).map(|entry| entry.settings).unwrap_or_default()
    }

    /// Stores settings read by a read that started at `read_at` (or written by this instance
    /// and committed by then), unless the entry holds settings known current at a later instant.
    pub fn insert(&self, article_id: ArticleId, settings: ArticleSettings, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity {
            // Expired entries first; a cache full of fresh ones is cleared (as the counts cache).
            let ttl = self.ttl;
            self.entries.retain(|_, entry| entry.fresh_at.elapsed() < ttl);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        let entry = Entry { settings, fresh_at: read_at };
        self.entries
            .entry(article_id)
            .and_modify(|current| {
                if read_at > current.fresh_at {
                    *current = entry;
                }
            })
            .or_insert(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_read_wins_and_entries_expire() {
        let cache = SettingsCache::new(Duration::from_millis(50), 10);
        let article = ArticleId::parse("a").unwrap();
        let closed = ArticleSettings::new::<&str>(true, None).unwrap();
        let early = Instant::now();
        let late = early + Duration::from_millis(1);

        cache.insert(article.clone(), closed, late);
        cache.insert(article.clone(), ArticleSettings::default(), early);

        assert_eq!(cache.get(&article, late), Some(closed));
        assert_eq!(cache.get(&article, late + Duration::from_millis(50)), None, "expired");
        assert_eq!(cache.latest(&article), closed, "but still the latest known");
        assert_eq!(cache.latest(&ArticleId::parse("b").unwrap()), ArticleSettings::default());
    }
}
