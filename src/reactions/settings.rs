//! The in-process cache of per-article settings (editorial controls).
//!
//! Every write checks its article's settings before it is queued, and every answer shows them,
//! so they are kept here for the same TTL as the counts: an instance sees another's change
//! within `CACHE_TTL_MS`, and a write on an article whose settings are cached (configured or
//! not) costs no query. Misses are filled by the read that fills the counts cache (one query for
//! both), or by the write that needs them.
//!
//! A `DashMap` with a freshness check, as the counts cache and for the same reasons.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::{ArticleId, ArticleSettings};

#[derive(Debug, Clone, Copy)]
struct Entry {
    settings: ArticleSettings,
    /// When the read that produced them started, or when this instance stored them.
    fresh_at: Instant,
}

/// Per-article settings, fresh for `ttl`.
#[derive(Debug, Clone)]
pub struct SettingsCache {
    entries: Arc<DashMap<ArticleId, Entry, foldhash::fast::RandomState>>,
    ttl: Duration,
    capacity: usize,
}

impl SettingsCache {
    /// A cache holding at most about `capacity` articles, each fresh for `ttl`. A zero TTL turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Arc::new(DashMap::with_hasher(Default::default())), ttl, capacity }
    }

    /// The settings of `article_id` if cached and fresh at `now`.
    pub fn get(&self, article_id: &ArticleId, now: Instant) -> Option<ArticleSettings> {
        let entry = self.entries.get(article_id)?;
        (now.saturating_duration_since(entry.fresh_at) < self.ttl).then_some(entry.settings)
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
