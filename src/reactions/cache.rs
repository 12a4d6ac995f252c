//! The in-process read cache of per-article counts.
//!
//! A `DashMap` with a freshness check rather than a caching crate such as moka: we need only
//! get, insert-if-newer and bounded size, and DashMap is already built for the rate limiter.
//!
//! Entries are refreshed by the writer after every commit, so this instance's own writes show at
//! once; another instance's writes show within the TTL, when the entry expires and is re-read.
//!
//! Each entry also holds the anonymous answer for its article, rendered when the entry is
//! stored: an anonymous read (the same for every reader) then costs no serialisation, and a
//! batch read joins the rendered answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use dashmap::DashMap;

use crate::domain::{ArticleId, ReactionCounts, ReactionSummary};

/// An article's anonymous answer: its summary without a viewer, as JSON, and a hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub json: Bytes,
    /// A fixed-seed hash of `json`, so that every instance of one release tags the same answer
    /// alike.
    pub tag: u64,
    /// `tag` as an `ETag` field value.
    pub etag: HeaderValue,
}

/// The seed of [`Rendered::tag`].
const TAG_SEED: u64 = 0x7265_6163_7469_6f6e;

impl Rendered {
    pub fn new(article_id: &ArticleId, counts: ReactionCounts) -> Self {
        let json = serde_json::to_vec(&ReactionSummary::new(article_id.clone(), counts, None))
            .expect("a summary serialises");
        let tag = tag_of(&json);
        Self { json: Bytes::from(json), tag, etag: etag(tag) }
    }
}

/// The `ETag` field value of a tag.
pub fn etag(tag: u64) -> HeaderValue {
    HeaderValue::try_from(format!("\"{tag:016x}\"")).expect("hex is ASCII")
}

/// The fixed-seed hash of an answer.
pub fn tag_of(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::quality::FixedState::with_seed(TAG_SEED).hash_one(bytes)
}

#[derive(Debug, Clone)]
struct Entry {
    counts: ReactionCounts,
    rendered: Rendered,
    /// An instant at which these counts were the database's: when the read that produced them
    /// started, or when the batch that produced them had committed. A read replaces an entry only
    /// if it started later than this, so a slow reader never puts back counts older than what a
    /// commit or a newer read left.
    fresh_at: Instant,
    /// The [`Applied::order`](crate::store::Applied) of the newest batch of this process these
    /// counts include (0 for none): of two batches' answers the later order wins, whichever
    /// finishes first.
    order: u64,
}

/// Per-article counts, fresh for `ttl`.
#[derive(Debug, Clone)]
pub struct CountsCache {
    entries: Arc<DashMap<ArticleId, Entry, foldhash::fast::RandomState>>,
    ttl: Duration,
    capacity: usize,
    /// When the cache was last cleared to make room, as nanoseconds after `epoch`: a read that
    /// started before it may miss a commit whose entry the clear removed, so it is not stored.
    cleared_at: Arc<AtomicU64>,
    epoch: Instant,
}

impl CountsCache {
    /// A cache holding at most about `capacity` articles, each fresh for `ttl`. A zero TTL turns
    /// caching off.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Arc::new(DashMap::with_hasher(foldhash::fast::RandomState::default())),
            ttl,
            capacity,
            cleared_at: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// The counts of `article_id` if cached and fresh at `now`.
    pub fn get(&self, article_id: &ArticleId, now: Instant) -> Option<ReactionCounts> {
        let entry = self.entries.get(article_id)?;
        (now.saturating_duration_since(entry.fresh_at) < self.ttl).then_some(entry.counts)
    }

    /// The anonymous answer of `article_id` if cached and fresh at `now`.
    pub fn get_rendered(&self, article_id: &ArticleId, now: Instant) -> Option<Rendered> {
        let entry = self.entries.get(article_id)?;
        (now.saturating_duration_since(entry.fresh_at) < self.ttl).then(|| entry.rendered.clone())
    }

    /// Stores counts read from the database by a read that started at `read_at`, unless the
    /// entry holds counts known current at a later instant, and answers the article's anonymous
    /// answer for the counts read.
    pub fn insert(&self, article_id: ArticleId, counts: ReactionCounts, read_at: Instant) -> Rendered {
        let rendered = Rendered::new(&article_id, counts);
        if self.ttl.is_zero() || read_at < self.cleared_at() {
            return rendered;
        }
        self.make_room();
        let entry = Entry { counts, rendered: rendered.clone(), fresh_at: read_at, order: 0 };
        self.entries
            .entry(article_id)
            .and_modify(|current| {
                if read_at > current.fresh_at {
                    *current = Entry { order: current.order, ..entry.clone() };
                }
            })
            .or_insert(entry);
        rendered
    }

    /// Stores the counts a write batch of this process left, committed by `committed_at`, with
    /// the batch's order, unless the entry already holds a later batch's counts or a read that
    /// started after this commit (and so includes it). Answers the counts the entry holds
    /// afterwards: the newest this process knows, never older than this batch's.
    pub fn insert_committed(
        &self,
        article_id: &ArticleId,
        counts: ReactionCounts,
        order: u64,
        committed_at: Instant,
    ) -> ReactionCounts {
        if self.ttl.is_zero() {
            return counts;
        }
        self.make_room();
        let fresh =
            || Entry { counts, rendered: Rendered::new(article_id, counts), fresh_at: committed_at, order };
        if let Some(mut current) = self.entries.get_mut(article_id) {
            if order > current.order {
                if current.fresh_at > committed_at {
                    // A read that started after this commit: its counts include this batch.
                    current.order = order;
                } else {
                    *current = fresh();
                }
            }
            return current.counts;
        }
        self.entries.entry(article_id.clone()).or_insert_with(fresh).counts
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

    /// Keeps the cache within its capacity before an insert.
    fn make_room(&self) {
        if self.entries.len() >= self.capacity {
            self.evict();
        }
    }

    /// Drops expired entries; if that is not enough, everything (a full cache of fresh entries
    /// means the working set is larger than the cache, where a clear costs one re-read each).
    fn evict(&self) {
        let ttl = self.ttl;
        self.entries.retain(|_, entry| entry.fresh_at.elapsed() < ttl);
        if self.entries.len() >= self.capacity {
            let now = Instant::now();
            self.entries.clear();
            let nanos = u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
            self.cleared_at.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// The instant of the last clear (the cache's creation if none).
    fn cleared_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.cleared_at.load(Ordering::Relaxed))
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
