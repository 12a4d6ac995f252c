//! Which articles' counts changed, told to every instance that shares the database: the feed of
//! the live counts (`reactions::live`).
//!
//! On PostgreSQL a committed change is announced with `NOTIFY` on [`CHANNEL`], and every
//! instance (this one included) hears it on one listening connection of its own
//! (`sqlx::postgres::PgListener`). Announcements are gathered: one `NOTIFY` carries every article
//! of a write batch, and of any batches committed while the previous `NOTIFY` was being sent.
//! SQLite serves one machine from one process, so there the announcement goes straight to the
//! in-process subscribers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};

use crate::domain::ArticleId;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "reader_reactions_changed";

/// Longest payload sent in one `NOTIFY` (PostgreSQL refuses 8000 bytes and more).
const MAX_PAYLOAD_BYTES: usize = 7900;

/// More `NOTIFY`s than this for one announcement, and "everything changed" is sent instead.
const MAX_NOTIFIES: usize = 8;

/// Shortest time between two rounds of `NOTIFY`s of one instance. A `NOTIFY` is a transaction
/// of its own, with a commit PostgreSQL writes to disk: one per write batch cost the hot-article
/// write path about 15 % of its throughput (`loadtest/run.sh`, BENCHMARKS.md). Gathered over this
/// time, they cost at most 20 small transactions a second, and a live event at most this much
/// lag, against the one event per `LIVE_MIN_INTERVAL_MS` (default 1 s) a stream gets anyway.
const NOTIFY_GAP: Duration = Duration::from_millis(50);

/// Announcements queued for the `NOTIFY` sender before further ones are folded into "everything
/// changed".
const ANNOUNCE_QUEUE: usize = 1024;

/// Announcements buffered for the in-process subscribers; one that falls further behind is told
/// that everything changed.
const SUBSCRIBER_QUEUE: usize = 1024;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// The counts of these articles.
    Articles(Arc<[ArticleId]>),
    /// Anything may have changed: notifications may have been missed (a reconnection, a queue
    /// that overflowed, an announcement too large for one `NOTIFY`).
    All,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The announcements of one [`Store`](super::Store) and its clones.
#[derive(Debug)]
pub(super) struct ChangeBus {
    sender: broadcast::Sender<Changed>,
    /// PostgreSQL only: the queue of the task that sends the `NOTIFY`s, started on first use.
    announcer: OnceLock<mpsc::Sender<Vec<ArticleId>>>,
    /// Set when an announcement did not fit the queue: the next `NOTIFY` says "everything".
    overflowed: Arc<AtomicBool>,
    /// PostgreSQL only: the listening task, started by the first subscriber.
    listener: OnceLock<AbortOnDrop>,
}

impl ChangeBus {
    pub(super) fn new() -> Self {
        Self {
            sender: broadcast::channel(SUBSCRIBER_QUEUE).0,
            announcer: OnceLock::new(),
            overflowed: Arc::new(AtomicBool::new(false)),
            listener: OnceLock::new(),
        }
    }

    /// SQLite: tells this process's subscribers at once.
    pub(super) fn announce_locally(&self, articles: Vec<ArticleId>) {
        if !articles.is_empty() && self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Changed::Articles(articles.into()));
        }
    }

    /// PostgreSQL: queues the articles for the next `NOTIFY`, without waiting for it.
    pub(super) fn announce_to_all(&self, pool: &PgPool, articles: Vec<ArticleId>) {
        if articles.is_empty() {
            return;
        }
        let announcer = self.announcer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(ANNOUNCE_QUEUE);
            // Ends when the bus (and with it the queue's sender) is dropped.
            tokio::spawn(send_notifies(pool.clone(), rx, self.overflowed.clone()));
            tx
        });
        if announcer.try_send(articles).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }

    /// Every announcement from now on (of all instances, on PostgreSQL).
    pub(super) fn subscribe(&self, pool: Option<&PgPool>) -> broadcast::Receiver<Changed> {
        let receiver = self.sender.subscribe();
        if let Some(pool) = pool {
            self.listener
                .get_or_init(|| AbortOnDrop(tokio::spawn(listen(pool.clone(), self.sender.clone()))));
        }
        receiver
    }
}

/// The `NOTIFY` payloads for a set of articles: ids separated by newlines (an id holds no control
/// character), each payload under PostgreSQL's limit. An empty payload means "everything" (an id
/// is never empty); so does `None` here, when the set needs too many.
fn payloads(articles: &BTreeSet<ArticleId>) -> Vec<String> {
    let mut payloads = vec![String::new()];
    for article in articles {
        let last = payloads.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + 1 + article.as_str().len() > MAX_PAYLOAD_BYTES {
            payloads.push(String::new());
        }
        let last = payloads.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push('\n');
        }
        last.push_str(article.as_str());
    }
    if payloads.len() > MAX_NOTIFIES || articles.is_empty() {
        return vec![String::new()];
    }
    payloads
}

/// Parses a payload of [`payloads`].
fn parse_payload(payload: &str) -> Changed {
    if payload.is_empty() {
        return Changed::All;
    }
    let articles: Vec<ArticleId> = payload.split('\n').filter_map(|id| ArticleId::parse(id).ok()).collect();
    Changed::Articles(articles.into())
}

/// Sends the queued announcements, gathering whatever queued while the previous `NOTIFY` ran
/// and during the [`NOTIFY_GAP`] after it. The first change after a quiet spell is sent at once.
async fn send_notifies(pool: PgPool, mut queue: mpsc::Receiver<Vec<ArticleId>>, overflowed: Arc<AtomicBool>) {
    let mut next_round = tokio::time::Instant::now();
    while let Some(first) = queue.recv().await {
        tokio::time::sleep_until(next_round).await;
        next_round = tokio::time::Instant::now() + NOTIFY_GAP;
        let mut articles: BTreeSet<ArticleId> = first.into_iter().collect();
        while let Ok(more) = queue.try_recv() {
            articles.extend(more);
        }
        if overflowed.swap(false, Ordering::Relaxed) {
            articles.clear(); // "everything"
        }
        for payload in payloads(&articles) {
            if let Err(error) =
                sqlx::query("select pg_notify($1, $2)").bind(CHANNEL).bind(&payload).execute(&pool).await
            {
                // The change is committed; subscribers elsewhere see it at their next change.
                tracing::warn!(%error, "cannot announce changed counts (NOTIFY)");
            }
        }
    }
}

/// Listens on [`CHANNEL`] and passes what it hears to this process's subscribers; reconnects
/// when the connection is lost, and then says that everything changed (notifications sent while
/// it was away are lost).
async fn listen(pool: PgPool, sender: broadcast::Sender<Changed>) {
    // Doubles while the database stays away, so that an outage is not a log line a second.
    let mut pause = Duration::from_secs(1);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?pause, "cannot LISTEN for changed counts");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        pause = Duration::from_secs(1);
        let _ = sender.send(Changed::All);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let _ = sender.send(parse_payload(notification.payload()));
                }
                // The connection was lost; the next call reconnects and listens again.
                Ok(None) => {
                    let _ = sender.send(Changed::All);
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for changed counts failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> BTreeSet<ArticleId> {
        ids.iter().map(|id| ArticleId::parse(*id).unwrap()).collect()
    }

    #[test]
    fn payloads_carry_every_article_under_the_limit_or_say_everything() {
        let few = ids(&["a", "b/c", "*"]);
        let sent = payloads(&few);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            parse_payload(&sent[0]),
            Changed::Articles(few.iter().cloned().collect::<Vec<_>>().into())
        );

        let long: Vec<String> = (0..100).map(|i| format!("{i:0>200}")).collect();
        let many = ids(&long.iter().map(String::as_str).collect::<Vec<_>>());
        let sent = payloads(&many);
        assert!(sent.len() > 1 && sent.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES), "split");
        let heard: BTreeSet<ArticleId> = sent
            .iter()
            .flat_map(|p| match parse_payload(p) {
                Changed::Articles(a) => a.to_vec(),
                Changed::All => panic!("not everything"),
            })
            .collect();
        assert_eq!(heard, many);

        let huge: Vec<String> = (0..1000).map(|i| format!("{i:0>200}")).collect();
        let sent = payloads(&ids(&huge.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(sent, vec![String::new()]);
        assert_eq!(parse_payload(""), Changed::All);
    }
}
