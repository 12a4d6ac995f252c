//! The in-process read cache of per-article counts.
//!
//! A `DashMap` with a freshness check rather than a caching crate such as moka: we need only
//! get, insert-if-newer and bounded size, and DashMap is already built for the rate limiter.
//!
//! Entries are refreshed by the writer after every commit, so this instance's own writes show at
//! once; another instance's writes show within the TTL, when the entry is read again: in the
//! background once a reader finds it past half its TTL
//! ([`Hit::refresh_due`](crate::app::cache::Hit::refresh_due)), or by the next reader once it has
//! expired. Both reads go through the [`CacheFiller`](crate::app::fill::CacheFiller).
//!
//! Each entry also holds the anonymous answer for its article, rendered when the entry is
//! stored: an anonymous read (the same for every reader) then costs no serialisation, and a
//! batch read joins the rendered answers. The answer shows the article's settings too (kept in
//! the [`SettingsCache`](crate::app::settings::SettingsCache) beside the counts): an entry is
//! served only while the settings it was rendered with are the fresh ones, so a change of
//! settings changes the answer and its `ETag`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;

use super::settings::SettingsCache;
use crate::domain::{ArticleId, ArticleSettings, ReactionCounts, ReactionSummary};

/// An article's anonymous answer: its summary without a viewer, as JSON, and a hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub json: Bytes,
    /// A fixed-seed hash of `json`, so that every instance of one release tags the same answer
    /// alike.
    pub tag: u64,
    /// `tag` as an `ETag` field value.
    pub etag: Bytes,
}

/// The seed of [`Rendered::tag`].
const TAG_SEED: u64 = 0x7265_6163_7469_6f6e;

impl Rendered {
    pub fn new(article_id: &ArticleId, counts: ReactionCounts, settings: ArticleSettings) -> Self {
        let json = serde_json::to_vec(&ReactionSummary::new(article_id.clone(), counts, None, settings))
            .expect("a summary serialises");
        let tag = tag_of(&json);
        Self { json: Bytes::from(json), tag, etag: etag(tag) }
    }
}

/// The `ETag` field value of a tag: the tag in hex, quoted.
pub fn etag(tag: u64) -> Bytes {
    Bytes::from(format!("\"{tag:016x}\""))
}

/// The fixed-seed hash of an answer.
pub fn tag_of(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::quality::FixedState::with_seed(TAG_SEED).hash_one(bytes)
}

#[derive(Debug)]
struct Entry {
    counts: ReactionCounts,
    /// The settings `rendered` shows.
    settings: ArticleSettings,
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
    /// Whether a reader found the entry due for a refresh ([`Hit::refresh_due`]) and asked for
    /// it: one background read per entry, however many readers pass by meanwhile.
    refresh_claimed: AtomicBool,
}

impl Entry {
    fn new(
        counts: ReactionCounts,
        settings: ArticleSettings,
        rendered: Rendered,
        fresh_at: Instant,
        order: u64,
    ) -> Self {
        Self { counts, settings, rendered, fresh_at, order, refresh_claimed: AtomicBool::new(false) }
    }
}

/// A fresh entry found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<T> {
    pub value: T,
    /// The entry is past half its TTL, and this reader is the first to find it so: it should
    /// have the article read again in the background ([`super::fill::CacheFiller::refresh`]),
    /// so that an article read often is replaced before it expires and its readers never wait
    /// for the database. The entry is served either way: it is still fresh.
    pub refresh_due: bool,
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
    /// The articles' settings, fresh for the same TTL.
    settings: SettingsCache,
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
            settings: SettingsCache::new(ttl, capacity),
        }
    }

    /// The counts and settings of `article_id` if cached and fresh at `now`.
    pub fn get(
        &self,
        article_id: &ArticleId,
        now: Instant,
    ) -> Option<Hit<(ReactionCounts, ArticleSettings)>> {
        let entry = self.entries.get(article_id)?;
        self.hit(article_id, &entry, now, |entry| (entry.counts, entry.settings))
    }

    /// The anonymous answer of `article_id` if cached and fresh at `now`.
    pub fn get_rendered(&self, article_id: &ArticleId, now: Instant) -> Option<Hit<Rendered>> {
        let entry = self.entries.get(article_id)?;
        self.hit(article_id, &entry, now, |entry| entry.rendered.clone())
    }

    /// `value` of an entry whose counts are fresh and which shows the article's fresh settings.
    fn hit<T>(
        &self,
        article_id: &ArticleId,
        entry: &Entry,
        now: Instant,
        value: impl FnOnce(&Entry) -> T,
    ) -> Option<Hit<T>> {
        let age = now.saturating_duration_since(entry.fresh_at);
        if age >= self.ttl {
            return None;
        }
        let (settings, settings_age) = self.settings.get_aged(article_id, now)?;
        if settings != entry.settings {
            return None;
        }
        // A write's commit renews the counts but not the settings, which expire on their own.
        let refresh_due = age.max(settings_age) >= self.ttl / 2
            && !entry.refresh_claimed.load(Ordering::Relaxed)
            && !entry.refresh_claimed.swap(true, Ordering::Relaxed);
        Some(Hit { value: value(entry), refresh_due })
    }

    /// The articles' settings, kept beside the counts.
    pub fn settings(&self) -> &SettingsCache {
        &self.settings
    }

    /// Stores counts read from the database by a read that started at `read_at`, unless the
    /// entry holds counts known current at a later instant, and answers the article's anonymous
    /// answer for the counts read.
    pub fn insert(&self, article_id: ArticleId, counts: ReactionCounts, read_at: Instant) -> Rendered {
        let settings = self.settings.latest(&article_id);
        let rendered = Rendered::new(&article_id, counts, settings);
        if self.ttl.is_zero() || read_at < self.cleared_at() {
            return rendered;
        }
        self.make_room();
        self.entries
            .entry(article_id)
            .and_modify(|current| {
                if read_at > current.fresh_at {
                    *current = Entry::new(counts, settings, rendered.clone(), read_at, current.order);
                }
            })
            .or_insert_with(|| Entry::new(counts, settings, rendered.clone(), read_at, 0));
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
        let settings = self.settings.latest(article_id);
        let fresh =
            || Entry::new(counts, settings, Rendered::new(article_id, counts, settings), committed_at, order);
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

        cache.settings().insert(article.clone(), ArticleSettings::default(), early);
        cache.insert(article.clone(), counts(2), late);
        cache.insert(article.clone(), counts(1), early); // a slow reader arriving after the writer

        assert_eq!(
            cache.get(&article, Instant::now()).map(|hit| hit.value),
            Some((counts(2), ArticleSettings::default()))
        );
    }

    #[test]
    fn an_answer_is_served_only_with_the_fresh_settings_and_they_change_its_tag() {
        let cache = CountsCache::new(Duration::from_secs(60), 100);
        let article = ArticleId::parse("a").unwrap();
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_millis(1), t0 + Duration::from_millis(2));
        cache.insert(article.clone(), counts(1), t0);
        assert_eq!(cache.get_rendered(&article, t0).map(|hit| hit.value), None, "settings unknown: a miss");

        cache.settings().insert(article.clone(), ArticleSettings::default(), t0);
        let open = cache.insert(article.clone(), counts(1), t1);
        assert_eq!(cache.get_rendered(&article, t1).map(|hit| hit.value), Some(open.clone()));

        let closed = ArticleSettings::new::<&str>(true, None).unwrap();
        cache.settings().insert(article.clone(), closed, t1);
        assert_eq!(
            cache.get_rendered(&article, t1).map(|hit| hit.value),
            None,
            "rendered with other settings"
        );
        let reread = cache.insert(article.clone(), counts(1), t2);
        assert_eq!(cache.get_rendered(&article, t2).map(|hit| hit.value), Some(reread.clone()));
        assert_ne!(reread.etag, open.etag, "the same counts, other settings, another ETag");
        assert!(std::str::from_utf8(&reread.json).unwrap().contains(r#""closed":true"#));
    }

    #[test]
    fn an_entry_past_half_its_ttl_is_due_for_a_refresh_once_until_it_is_replaced() {
        let cache = CountsCache::new(Duration::from_secs(10), 100);
        let article = ArticleId::parse("a").unwrap();
        let t0 = Instant::now();
        cache.settings().insert(article.clone(), ArticleSettings::default(), t0);
        cache.insert(article.clone(), counts(1), t0);
        let due = |at: Instant| cache.get_rendered(&article, at).map(|hit| hit.refresh_due);

        assert_eq!(due(t0 + Duration::from_secs(4)), Some(false), "young: not due");
        assert_eq!(due(t0 + Duration::from_secs(5)), Some(true), "half its TTL: due, to the first reader");
        assert_eq!(
            due(t0 + Duration::from_secs(6)),
            Some(false),
            "claimed: the next readers are served only"
        );
        assert_eq!(cache.get(&article, t0 + Duration::from_secs(7)).map(|hit| hit.refresh_due), Some(false));
        assert_eq!(due(t0 + Duration::from_secs(10)), None, "expired: a miss");

        // The refresh's read replaces the entry, which is young again and can be claimed again.
        let t1 = t0 + Duration::from_secs(6);
        cache.settings().insert(article.clone(), ArticleSettings::default(), t1);
        cache.insert(article.clone(), counts(2), t1);
        assert_eq!(due(t1 + Duration::from_secs(1)), Some(false));
        assert_eq!(due(t1 + Duration::from_secs(5)), Some(true));
    }

    #[test]
    fn of_two_batches_the_later_in_lock_order_wins_whichever_finishes_first() {
        let cache = CountsCache::new(Duration::from_secs(60), 100);
        let article = ArticleId::parse("a").unwrap();
        let now = Instant::now();
        cache.settings().insert(article.clone(), ArticleSettings::default(), now);

        // The later batch (order 8) is answered first, the earlier (order 7) after it.
        assert_eq!(cache.insert_committed(&article, counts(5), 8, now), counts(5));
        let answered = cache.insert_committed(&article, counts(4), 7, now + Duration::from_millis(1));

        assert_eq!(answered, counts(5), "the earlier batch is answered the newer counts");
        assert_eq!(
            cache.get(&article, now).map(|hit| hit.value),
            Some((counts(5), ArticleSettings::default()))
        );
    }

    #[test]
    fn a_read_replaces_a_commit_only_if_it_started_after_it() {
        let cache = CountsCache::new(Duration::from_secs(60), 100);
        let article = ArticleId::parse("a").unwrap();
        let t0 = Instant::now();
        let committed = t0 + Duration::from_millis(10);
        cache.settings().insert(article.clone(), ArticleSettings::default(), t0);

        cache.insert_committed(&article, counts(3), 1, committed);
        cache.insert(article.clone(), counts(2), t0); // started before the commit: may miss it
        assert_eq!(
            cache.get(&article, committed).map(|hit| hit.value),
            Some((counts(3), ArticleSettings::default()))
        );

        cache.insert(article.clone(), counts(4), committed + Duration::from_millis(1));
        assert_eq!(
            cache.get(&article, committed).map(|hit| hit.value),
            Some((counts(4), ArticleSettings::default())),
            "a read after the commit includes it"
        );

        // A batch whose commit that read already saw keeps the read's (newer) counts.
        let answered = cache.insert_committed(&article, counts(3), 2, committed);
        assert_eq!(answered, counts(4));
        // And a later batch replaces them.
        let later = committed + Duration::from_millis(5);
        assert_eq!(cache.insert_committed(&article, counts(6), 3, later), counts(6));
    }

    #[test]
    fn a_read_started_before_a_clear_is_not_stored() {
        let cache = CountsCache::new(Duration::from_secs(60), 2);
        let read_started = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        for i in 0..3 {
            let article = ArticleId::parse(format!("article-{i}")).unwrap();
            cache.insert_committed(&article, counts(i), i as u64 + 1, Instant::now());
        }
        // The third insert cleared the cache, maybe removing a commit this read did not see.
        let article = ArticleId::parse("article-0").unwrap();
        cache.insert(article.clone(), counts(0), read_started);
        assert_eq!(cache.get(&article, Instant::now()).map(|hit| hit.value), None);
    }

    #[test]
    fn entries_expire_after_the_ttl_and_size_stays_bounded() {
        let cache = CountsCache::new(Duration::from_millis(20), 10);
        let article = ArticleId::parse("a").unwrap();
        cache.settings().insert(article.clone(), ArticleSettings::default(), Instant::now());
        cache.insert(article.clone(), counts(1), Instant::now());
        assert!(cache.get(&article, Instant::now()).map(|hit| hit.value).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(&article, Instant::now()).map(|hit| hit.value), None, "expired");

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
        assert_eq!(cache.get(&article, Instant::now()).map(|hit| hit.value), None);
    }
}
