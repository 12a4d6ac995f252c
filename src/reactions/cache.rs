//! The in-process read cache of per-article counts.
//!
//! A `DashMap` with a freshness check rather than a caching crate such as moka: we need only
//! get, insert-if-newer and bounded size, and DashMap is already built for the rate limiter.
//!
//! Entries are refreshed by the writer after every commit, so this instance's own writes show at
//! once; another instance's writes show within the TTL, when the entry expires and is re-read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::{ArticleId, ReactionCounts};

#[derive(Debug, Clone, Copy)]
struct Entry {
    counts: ReactionCounts,
    /// When the database read that produced these counts started. A read that started earlier
    /// never overwrites one that started later, so a slow reader cannot put back stale counts
    /// after the writer refreshed them.
    read_at: Instant,
}

/// Per-article counts, fresh for `ttl`.
#[derive(Debug, Clone)]
pub struct CountsCache {
    entries: Arc<DashMap<ArticleId, Entry, foldhash::fast::RandomState>>,
    ttl: Duration,
    capacity: usize,
}

impl CountsCache {
    /// A cache holding at most about `capacity` articles, each fresh for `ttl`. A zero TTL turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Arc::new(DashMap::with_hasher(foldhash::fast::RandomState::default())),
            ttl,
            capacity,
        }
    }

    /// The counts of `article_id` if cached and fresh at `now`.
    pub fn get(&self, article_id: &ArticleId, now: Instant) -> Option<ReactionCounts> {
        let entry = *self.entries.get(article_id)?;
        (now.saturating_duration_since(entry.read_at) < self.ttl).then_some(entry.counts)
    }

    /// Stores counts read from the database by a read that started at `read_at`.
    pub fn insert(&self, article_id: ArticleId, counts: ReactionCounts, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict();
        }
        self.entries
            .entry(article_id)
            .and_modify(|entry| {
                if read_at >= entry.read_at {
                    *entry = Entry { counts, read_at };
                }
            })
            .or_insert(Entry { counts, read_at });
    }

    /// The cache's freshness bound.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Number of cached articles.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops expired entries; if that is not enough, everything (a full cache of fresh entries
    /// means the working set is larger than the cache, where a clear costs one re-read each).
    fn evict(&self) {
        let ttl = self.ttl;
        self.entries.retain(|_, entry| entry.read_at.elapsed() < ttl);
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Reaction;

    fn counts(love: i64) -> ReactionCounts {
        let mut counts = ReactionCounts::default();
        counts.add(Reaction::Love, love);
        counts
    }

    #[test]
    fn a_later_read_wins_over_an_earlier_one_whatever_the_insert_order() {
        let cache = CountsCache::new(Duration::from_secs(60), 100);
        let article = ArticleId::parse("a").unwrap();
        let early = Instant::now();
        let late = early + Duration::from_millis(1);

        cache.insert(article.clone(), counts(2), late);
        cache.insert(article.clone(), counts(1), early); // a slow reader arriving after the writer

        assert_eq!(cache.get(&article, Instant::now()), Some(counts(2)));
    }

    #[test]
    fn entries_expire_after_the_ttl_and_size_stays_bounded() {
        let cache = CountsCache::new(Duration::from_millis(20), 10);
        let article = ArticleId::parse("a").unwrap();
        cache.insert(article.clone(), counts(1), Instant::now());
        assert!(cache.get(&article, Instant::now()).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(&article, Instant::now()), None, "expired");

        for i in 0..1000 {
            cache.insert(ArticleId::parse(format!("article-{i}")).unwrap(), counts(i), Instant::now());
        }
        assert!(cache.len() <= 10, "bounded: {}", cache.len());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = CountsCache::new(Duration::ZERO, 10);
        let article = ArticleId::parse("a").unwrap();
        cache.insert(article.clone(), counts(1), Instant::now());
        assert_eq!(cache.get(&article, Instant::now()), None);
    }
}
