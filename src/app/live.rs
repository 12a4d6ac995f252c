//! Live counts: each article's counts pushed to its subscribers when they change.
//!
//! One feed per watched article, shared by all its subscribers: a task that waits for the
//! article to be announced as changed ([`Store::subscribe_changes`], from any instance), reads
//! its counts once, sends them to every subscriber through a bounded broadcast channel, and then
//! waits [`LiveOptions::min_interval`] before it reads again, so that the changes of that time
//! are coalesced into the next read. The cost per change is one read per article and interval,
//! whatever the number of subscribers. A subscriber that falls behind the channel (a client that
//! stops reading) is dropped rather than buffered for.
//!
//! [`Store::subscribe_changes`]: crate::store::Store::subscribe_changes
//! [`LiveOptions::min_interval`]: crate::app::live::LiveOptions::min_interval

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast, watch};

use super::cache::{CountsCache, Rendered};
use crate::domain::ArticleId;
use crate::store::{Changed, Store, StoreError};

/// Events a subscriber may fall behind by before it is dropped. At one event per interval, a
/// client that has not read for this many intervals is gone or stuck.
const SUBSCRIBER_BACKLOG: usize = 8;

/// How often an idle feed checks whether anyone still watches it.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// How the live counts behave.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// The shortest time between two events of one article.
    pub min_interval: Duration,
    /// Most streams open at once on this instance.
    pub max_streams: usize,
}

/// An article's counts as one event: the anonymous answer and when it was read.
#[derive(Debug, Clone)]
pub struct CountsEvent {
    pub rendered: Rendered,
    /// When the read that produced it started, in milliseconds since the Unix epoch: the counts
    /// include every change committed before then. `None` for counts served from the read cache.
    pub read_at_ms: Option<u64>,
}

/// Why a stream is refused.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("this instance holds as many live streams as it may")]
    Full,
    #[error("the service is shutting down")]
    Closing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The live counts of this instance. Cheap to clone.
#[derive(Clone)]
pub struct LiveCounts(Arc<Hub>);

impl std::fmt::Debug for LiveCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCounts").field("open", &self.open_streams()).finish()
    }
}

struct Hub {
    store: Store,
    cache: CountsCache,
    options: LiveOptions,
    feeds: Mutex<HashMap<ArticleId, Arc<Feed>>>,
    open: Arc<AtomicUsize>,
    closing: watch::Sender<bool>,
}

struct Feed {
    events: broadcast::Sender<Arc<CountsEvent>>,
    /// Set when the article changed; holds one permit, so changes coalesce.
    dirty: Notify,
    /// The last event sent, the first event of a new subscriber.
    latest: Mutex<Option<Arc<CountsEvent>>>,
}

/// One open stream: its first event, then the article's events until the service shuts down.
pub struct Subscription {
    pub first: Arc<CountsEvent>,
    pub events: broadcast::Receiver<Arc<CountsEvent>>,
    /// Becomes `true` when the service shuts down.
    pub closing: watch::Receiver<bool>,
    _slot: Slot,
}

/// A stream's place under [`LiveOptions::max_streams`], given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        crate::telemetry::metrics::live_streams(self.0.fetch_sub(1, Ordering::Relaxed) - 1);
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl LiveCounts {
    /// Starts listening for changed articles. Must be called within the Tokio runtime.
    pub fn start(store: Store, cache: CountsCache, options: LiveOptions) -> Self {
        let changes = store.subscribe_changes();
        let hub = Arc::new(Hub {
            store,
            cache,
            options,
            feeds: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            closing: watch::channel(false).0,
        });
        tokio::spawn(dispatch(Arc::downgrade(&hub), changes));
        Self(hub)
    }

    /// Opens a stream on `article_id`: refused beyond the stream cap and once shutting down.
    pub async fn subscribe(&self, article_id: &ArticleId) -> Result<Subscription, LiveError> {
        let hub = &self.0;
        if *hub.closing.borrow() {
            return Err(LiveError::Closing);
        }
        if hub.open.fetch_add(1, Ordering::Relaxed) >= hub.options.max_streams {
            hub.open.fetch_sub(1, Ordering::Relaxed);
            return Err(LiveError::Full);
        }
        let slot = Slot(hub.open.clone());
        crate::telemetry::metrics::live_streams(hub.open.load(Ordering::Relaxed));
        let (events, latest) = {
            let mut feeds = hub.feeds.lock().expect("not poisoned");
            let feed = feeds.entry(article_id.clone()).or_insert_with(|| {
                let feed = Arc::new(Feed {
                    events: broadcast::channel(SUBSCRIBER_BACKLOG).0,
                    dirty: Notify::new(),
                    latest: Mutex::new(None),
                });
                // A fresh read at once: the cache the first event comes from may be up to its
                // TTL behind another instance's writes.
                feed.dirty.notify_one();
                tokio::spawn(pump(Arc::downgrade(hub), article_id.clone(), feed.clone()));
                feed
            });
            (feed.events.subscribe(), feed.latest.lock().expect("not poisoned").clone())
        };
        let first = match latest {
            Some(latest) => latest,
            None => Arc::new(match hub.cache.get_rendered(article_id, Instant::now()) {
                Some(hit) => CountsEvent { rendered: hit.value, read_at_ms: None },
                None => hub.read(article_id).await?,
            }),
        };
        Ok(Subscription { first, events, closing: hub.closing.subscribe(), _slot: slot })
    }

    /// Ends every stream and refuses new ones: the service is shutting down.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Streams open on this instance.
    pub fn open_streams(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }
}

impl Hub {
    /// The article's counts read from the database now (and stored in the read cache).
    async fn read(&self, article_id: &ArticleId) -> Result<CountsEvent, StoreError> {
        let read_at = Instant::now();
        let read_at_ms = unix_millis(SystemTime::now());
        let counts = self.store.counts(&[article_id]).await?.remove(article_id).unwrap_or_default();
        let rendered = self.cache.insert(article_id.clone(), counts, read_at);
        Ok(CountsEvent { rendered, read_at_ms: Some(read_at_ms) })
    }

    /// Marks the feeds of the changed articles.
    fn changed(&self, changed: &Changed) {
        let feeds = self.feeds.lock().expect("not poisoned");
        match changed {
            Changed::Articles(articles) => {
                for article in articles.iter() {
                    if let Some(feed) = feeds.get(article) {
                        feed.dirty.notify_one();
                    }
                }
            }
            Changed::All => feeds.values().for_each(|feed| feed.dirty.notify_one()),
        }
    }
}

/// Passes the announcements of changed articles to their feeds, until the hub is gone.
async fn dispatch(hub: Weak<Hub>, mut changes: broadcast::Receiver<Changed>) {
    loop {
        let changed = match changes.recv().await {
            Ok(changed) => changed,
            // Announcements were missed: any article may have changed.
            Err(broadcast::error::RecvError::Lagged(_)) => Changed::All,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        hub.changed(&changed);
    }
}

/// One article's feed: a read per change, at most one per interval, while anyone watches.
async fn pump(hub: Weak<Hub>, article_id: ArticleId, feed: Arc<Feed>) {
    let mut last_tag = None;
    loop {
        let changed = tokio::time::timeout(IDLE_CHECK, feed.dirty.notified()).await.is_ok();
        let Some(hub) = hub.upgrade() else { return };
        {
            let mut feeds = hub.feeds.lock().expect("not poisoned");
            // New subscribers join under this lock, so none can join a feed being removed.
            if feed.events.receiver_count() == 0 {
                if feeds.get(&article_id).is_some_and(|f| Arc::ptr_eq(f, &feed)) {
                    feeds.remove(&article_id);
                }
                return;
            }
        }
        if !changed {
            continue;
        }
        match hub.read(&article_id).await {
            Ok(event) => {
                if last_tag != Some(event.rendered.tag) {
                    last_tag = Some(event.rendered.tag);
                    let event = Arc::new(event);
                    *feed.latest.lock().expect("not poisoned") = Some(event.clone());
                    let _ = feed.events.send(event);
                }
            }
            Err(error) => {
                tracing::warn!(%error, article_id = %article_id, "cannot read live counts; retrying");
                feed.dirty.notify_one();
            }
        }
        let interval = hub.options.min_interval;
        drop(hub);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::identity::{VisitorId, VisitorKey, VisitorSecret};
    use crate::domain::Reaction;
    use crate::store::{ReactionChange, StoreOptions};

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_falls_behind_and_is_dropped_while_others_keep_up() {
        let file = std::env::temp_dir().join(format!("rr-live-{}.db", uuid::Uuid::new_v4().simple()));
        let store = Store::connect(&StoreOptions {
            database_url: format!("sqlite://{}", file.display()),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
        })
        .unwrap();
        store.migrate().await.unwrap();
        let options = LiveOptions { min_interval: Duration::from_millis(1), max_streams: 10 };
        let live = LiveCounts::start(store.clone(), CountsCache::new(Duration::ZERO, 10), options);
        let article = ArticleId::parse("slow").unwrap();
        let mut slow = live.subscribe(&article).await.unwrap();
        let mut keeping_up = live.subscribe(&article).await.unwrap();
        let secret: VisitorSecret = "test-secret-test-secret-test-secret-0123".parse().unwrap();

        let writes = SUBSCRIBER_BACKLOG as i64 + 4;
        for n in 1..=writes {
            let id = VisitorId::parse(format!("visitor-{n:04}").as_bytes()).unwrap();
            let visitor = VisitorKey::from_header_id(&secret, &id);
            let change = ReactionChange {
                article_id: article.clone(),
                visitor,
                network: None,
                reaction: Some(Reaction::Love),
            };
            store.apply(&[change]).await.unwrap();
            store.notify_changed([&article]);
            // The feed's first read (made when it was created) may still arrive before this
            // write's event, showing fewer loves: counts only ever grow here, never skip a write.
            loop {
                let event = tokio::time::timeout(Duration::from_secs(2), keeping_up.events.recv()).await;
                let event = event.expect("an event per write").expect("a reader that keeps up is kept");
                let summary: serde_json::Value = serde_json::from_slice(&event.rendered.json).unwrap();
                let loves = summary["counts"]["love"].as_i64().unwrap();
                assert!(
                    loves <= n && loves >= n - 1,
                    "every change, in order: {loves} loves after write {n}"
                );
                if loves == n {
                    break;
                }
            }
        }
        assert!(
            matches!(slow.events.recv().await, Err(broadcast::error::RecvError::Lagged(_))),
            "the reader that did not read fell behind the bounded queue"
        );
        drop((slow, keeping_up, live, store));
        let _ = std::fs::remove_file(&file);
    }
}
