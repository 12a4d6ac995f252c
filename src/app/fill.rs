//! Cache misses, read together.
//!
//! A request that misses articles in the [`CountsCache`](crate::app::cache::CountsCache) hands
//! them to the filler task and waits. The filler reads every article missed since its last read
//! in one query (counts and settings), caches them, and answers every request that asked. While
//! reads are in flight the misses gather in the queue, so under load one query serves many
//! requests and many articles: when a thousand articles expire each second, or a viral article
//! expires under hundreds of open connections at once, the database sees a few reads, not one
//! per request.
//!
//! A miss joins only a read that starts after it was queued, never one already running, so its
//! answer is as new as a read of its own would be: at least as new as every write this instance
//! acknowledged before the request.
//!
//! The filler also reads again, in the background, the entries readers found past half their
//! TTL ([`CacheFiller::refresh`](crate::app::fill::CacheFiller::refresh)): an article read often
//! is replaced before it expires, so its readers are answered from the cache without a pause
//! every TTL. The entries served meanwhile are still within their TTL: how fresh an answer is
//! does not change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::cache::{CountsCache, Rendered};
use crate::domain::{ArticleId, ArticleSettings, ReactionCounts};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// Reads in flight at once. Two let the next read gather its misses while one runs, and keep a
/// slow read from holding up every miss behind it.
const READS_IN_FLIGHT: usize = 2;

/// Most articles in one read; more misses wait for the next.
const MAX_READ_ARTICLES: usize = 1_000;

/// Longest a refresh waits for others before it is read: short beside any TTL's second half,
/// long enough that a busy instance reads its refreshes in a few reads a second.
const REFRESH_GATHER: std::time::Duration = std::time::Duration::from_millis(25);

/// Requests' misses waiting for a read slot; beyond, requests wait to queue theirs.
const QUEUE_CAPACITY: usize = 4_096;

/// An article as read by a fill: its counts, the newest settings this instance knows, and its
/// anonymous answer.
#[derive(Debug, Clone)]
pub struct Filled {
    pub counts: ReactionCounts,
    pub settings: ArticleSettings,
    pub rendered: Rendered,
}

/// The articles of one read, shared by every request in it: each looks up its own.
pub type FilledArticles = Arc<HashMap<ArticleId, Filled>>;

type Answer = Result<FilledArticles, StoreError>;

struct Miss {
    articles: Vec<ArticleId>,
    /// `None` for a refresh, which nobody waits for.
    reply: Option<oneshot::Sender<Answer>>,
}

/// Hands cache misses to the filler task. Cheap to clone; the task stops once every clone is
/// gone.
#[derive(Debug, Clone)]
pub struct CacheFiller {
    queue: mpsc::Sender<Miss>,
}

impl CacheFiller {
    /// Starts the filler task.
    pub fn start(store: Store, cache: CountsCache) -> Self {
        let (queue, misses) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(store, cache, misses));
        Self { queue }
    }

    /// Reads `articles` (distinct, none of them fresh in the cache) and caches them; the answer
    /// holds each of them, and possibly other requests' articles of the same read.
    pub async fn fill(&self, articles: Vec<ArticleId>) -> Answer {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable(anyhow::anyhow!("the cache filler has stopped"));
        self.queue.send(Miss { articles, reply: Some(reply) }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Has `articles` (distinct, cached and still fresh) read again in the background, with the
    /// misses of the next read, without waiting: their entries are replaced before they expire
    /// ([`Hit::refresh_due`](super::cache::Hit::refresh_due)). Dropped when the queue is full:
    /// an entry not refreshed expires, and its next reader reads it.
    pub fn refresh(&self, articles: Vec<ArticleId>) {
        if articles.is_empty() {
            return;
        }
        let _ = self.queue.try_send(Miss { articles, reply: None });
    }
}

/// A read starts once a slot is free, with every miss queued by then (up to
/// [`MAX_READ_ARTICLES`]): while both slots are busy, misses gather in the queue. Refreshes,
/// which nobody waits for, ride along with the next read for misses, or are read on their own
/// once the oldest has waited [`REFRESH_GATHER`]: a few reads of many articles rather than one
/// read per request that found an entry due.
async fn run(store: Store, cache: CountsCache, mut queue: mpsc::Receiver<Miss>) {
    let mut reads = JoinSet::new();
    let mut refreshes: Vec<ArticleId> = Vec::new();
    let mut gathered_until: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message {
                None => break,
                Some(miss) if miss.reply.is_none() => {
                    refreshes.extend(miss.articles);
                    gathered_until.get_or_insert_with(|| tokio::time::Instant::now() + REFRESH_GATHER);
                    continue;
                }
                Some(miss) => Some(miss),
            },
            () = tokio::time::sleep_until(gathered_until.unwrap_or_else(tokio::time::Instant::now)),
                if gathered_until.is_some() => None,
        };
        while reads.len() >= READS_IN_FLIGHT {
            reads.join_next().await;
        }
        let mut batch: Vec<Miss> = first.into_iter().collect();
        let mut articles: usize = batch.iter().map(|miss| miss.articles.len()).sum();
        while articles < MAX_READ_ARTICLES {
            let Ok(miss) = queue.try_recv() else { break };
            if miss.reply.is_none() {
                refreshes.extend(miss.articles);
                continue;
            }
            articles += miss.articles.len();
            batch.push(miss);
        }
        let room = MAX_READ_ARTICLES.saturating_sub(articles).min(refreshes.len());
        if room > 0 {
            batch.push(Miss { articles: refreshes.drain(..room).collect(), reply: None });
        }
        gathered_until = (!refreshes.is_empty()).then(tokio::time::Instant::now);
        if !batch.is_empty() {
            reads.spawn(read(store.clone(), cache.clone(), batch));
        }
    }
    while reads.join_next().await.is_some() {}
}

/// One read for the misses of `batch`, cached, and every request in it answered.
async fn read(store: Store, cache: CountsCache, batch: Vec<Miss>) {
    let waited: HashSet<&ArticleId> =
        batch.iter().filter(|miss| miss.reply.is_some()).flat_map(|miss| &miss.articles).collect();
    let mut articles: Vec<&ArticleId> = batch.iter().flat_map(|miss| &miss.articles).collect();
    articles.sort_unstable();
    articles.dedup();
    metrics::read_cache_fill(waited.len(), articles.len() - waited.len());
    let read_at = Instant::now();
    let answer = store.counts_and_settings(&articles).await.map(|(mut counts, mut settings)| {
        let filled: HashMap<ArticleId, Filled> = (articles.into_iter())
            .map(|article_id| {
                let article_counts = counts.remove(article_id).unwrap_or_default();
                let article_settings = settings.remove(article_id).unwrap_or_default();
                cache.settings().insert(article_id.clone(), article_settings, read_at);
                let rendered = cache.insert(article_id.clone(), article_counts, read_at);
                // The newest settings this instance knows: those read, or a later change's.
                let settings = cache.settings().latest(article_id);
                (article_id.clone(), Filled { counts: article_counts, settings, rendered })
            })
            .collect();
        Arc::new(filled)
    });
    for reply in batch.into_iter().filter_map(|miss| miss.reply) {
        let answer = match &answer {
            Ok(filled) => Ok(Arc::clone(filled)),
            Err(error) => Err(error.for_each_waiter()),
        };
        // A request that went away does not need its answer.
        let _ = reply.send(answer);
    }
}
