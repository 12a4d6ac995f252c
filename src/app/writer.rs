//! The write path: group commit.
//!
//! Requests hand their change to a writer task and wait. The writer takes every change already
//! queued (up to a batch limit), waits at most a short deadline for more, applies the batch in
//! one transaction with set-based SQL, and only then answers every request in it. Nothing is
//! acknowledged before it is committed.
//!
//! Changes are sharded over writers by article, so one article's changes are applied in arrival
//! order (a visitor's two quick clicks keep their order) and writers never contend for the same
//! counts rows. The queues are bounded: when a shard's queue is full the request is refused at
//! once with a 503 rather than piling up memory and latency.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::cache::CountsCache;
use crate::domain::{ArticleId, ReactionCounts};
use crate::store::{ReactionChange, Store, StoreError};
use crate::telemetry::metrics;

/// How the write path batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Writer tasks (and so at most this many concurrent write transactions per instance).
    pub workers: usize,
    /// Changes each writer queues before new ones are refused with 503.
    pub queue_capacity: usize,
    /// Most changes in one transaction.
    pub max_batch: usize,
    /// Longest a change waits for company before its batch is committed anyway.
    pub max_delay: Duration,
}

struct Pending {
    change: ReactionChange,
    reply: oneshot::Sender<Result<ReactionCounts, StoreError>>,
}

/// Hands changes to the writers. Cheap to clone; when every clone is gone the writers drain
/// their queues and stop.
#[derive(Clone)]
pub struct BatchWriter {
    shards: Arc<[mpsc::Sender<Pending>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").field("shards", &self.shards.len()).finish()
    }
}

/// The running writer tasks; [`WriterTasks::drain`] waits until everything queued is committed
/// and answered.
pub struct WriterTasks(Vec<JoinHandle<()>>);

impl WriterTasks {
    /// Waits for the writers to finish, once every [`BatchWriter`] clone has been dropped.
    pub async fn drain(self, limit: Duration) {
        let all = futures_join_all(self.0);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::error!(?limit, "the write queue did not drain in time");
        }
    }
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        if let Err(error) = handle.await {
            tracing::error!(%error, "a writer task failed");
        }
    }
}

impl BatchWriter {
    /// Starts the writer tasks.
    pub fn start(store: Store, cache: CountsCache, options: WriterOptions) -> (Self, WriterTasks) {
        let workers = options.workers.max(1);
        let mut senders = Vec::with_capacity(workers);
        let mut tasks = Vec::with_capacity(workers);
        for shard in 0..workers {
            let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
            senders.push(tx);
            let writer = Writer {
                shard,
                key_hasher: foldhash::fast::RandomState::default(),
                store: store.clone(),
                cache: cache.clone(),
                options,
            };
            tasks.push(tokio::spawn(writer.run(rx)));
        }
        (Self { shards: senders.into(), hasher: RandomState::new() }, WriterTasks(tasks))
    }

    /// Applies one change through the write path; answers the article's counts after the commit.
    pub async fn submit(&self, change: ReactionChange) -> Result<ReactionCounts, StoreError> {
        let shard = (self.hasher.hash_one(&change.article_id) % self.shards.len() as u64) as usize;
        let (reply, answer) = oneshot::channel();
        self.shards[shard].try_send(Pending { change, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable(anyhow::anyhow!("the write queue is full"))
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable(anyhow::anyhow!("the writer has stopped"))
            }
        })?;
        answer.await.map_err(|_| StoreError::Unavailable(anyhow::anyhow!("the writer dropped the change")))?
    }

    /// Changes waiting in the queues right now.
    pub fn queued(&self) -> usize {
        self.shards.iter().map(|s| s.max_capacity() - s.capacity()).sum()
    }
}

/// Batches of one writer committing at once. Two let a batch lock its rows and insert while the
/// previous one holds its articles and commits.
const PIPELINE_DEPTH: usize = 2;

struct Writer {
    shard: usize,
    key_hasher: foldhash::fast::RandomState,
    store: Store,
    cache: CountsCache,
    options: WriterOptions,
}

impl Writer {
    /// Group commit: a batch is formed once a commit slot is free, from everything queued by then
    /// plus what arrives within `max_delay`. While both slots are busy, changes gather in the
    /// queue without waking the writer, so batches grow with the load by themselves.
    async fn run(self, mut queue: mpsc::Receiver<Pending>) {
        let this = Arc::new(self);
        // Batches being committed, each answering the key hashes it holds.
        let mut commits: JoinSet<Vec<u64>> = JoinSet::new();
        let mut busy: HashMap<u64, usize> = HashMap::new();
        let release = |busy: &mut HashMap<u64, usize>, keys: Vec<u64>| {
            for key in keys {
                if let Some(n) = busy.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        busy.remove(&key);
                    }
                }
            }
        };
        loop {
            while commits.len() >= PIPELINE_DEPTH {
                if let Some(done) = commits.join_next().await {
                    release(&mut busy, done.unwrap_or_default());
                }
            }
            let Some(first) = queue.recv().await else { break };
            let mut batch = Vec::with_capacity(this.options.max_batch.min(64));
            batch.push(first);
            this.take_queued(&mut queue, &mut batch);
            let deadline = tokio::time::Instant::now() + this.options.max_delay;
            while batch.len() < this.options.max_batch {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(pending)) => {
                        batch.push(pending);
                        this.take_queued(&mut queue, &mut batch);
                    }
                    // Deadline reached, or the queue closed (shutdown): commit what we have.
                    _ => break,
                }
            }
            while let Some(done) = commits.try_join_next() {
                release(&mut busy, done.unwrap_or_default());
            }
            // A batch may start while earlier ones commit, unless it changes a key one of them
            // holds; then it waits for them, so a visitor's changes to an article apply in
            // arrival order.
            let keys: Vec<u64> = batch.iter().map(|p| this.key_hash(&p.change)).collect();
            while !commits.is_empty() && keys.iter().any(|k| busy.contains_key(k)) {
                if let Some(done) = commits.join_next().await {
                    release(&mut busy, done.unwrap_or_default());
                }
            }
            for key in &keys {
                *busy.entry(*key).or_default() += 1;
            }
            let writer = this.clone();
            commits.spawn(async move {
                writer.commit(batch).await;
                keys
            });
        }
        while commits.join_next().await.is_some() {}
        tracing::debug!(shard = this.shard, "writer drained and stopped");
    }

    fn key_hash(&self, change: &ReactionChange) -> u64 {
        self.key_hasher.hash_one((change.article_id.as_str(), change.visitor.as_bytes()))
    }

    fn take_queued(&self, queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
        while batch.len() < self.options.max_batch {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(shard = self.shard, size))]
    async fn commit(&self, mut batch: Vec<Pending>) {
        // A request that gave up (client gone, request timeout) is not applied behind its back.
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        tracing::Span::current().record("size", batch.len());
        let changes: Vec<ReactionChange> = batch.iter().map(|p| p.change.clone()).collect();
        let started = Instant::now();
        let result = self.store.apply(&changes).await;
        let committed_at = Instant::now();
        let seconds = (committed_at - started).as_secs_f64();
        match result {
            Ok(applied) => {
                metrics::write_batch_committed(changes.len(), seconds, changes.iter().map(|c| c.reaction));
                self.store.notify_changed(changes.iter().map(|c| &c.article_id)); // live counts
                // Each article's answer is the newest counts this process knows after this
                // commit: the batch's own, or a later batch's or read's that include them.
                let mut answered: HashMap<&ArticleId, ReactionCounts> = HashMap::new();
                for change in &changes {
                    answered.entry(&change.article_id).or_insert_with(|| {
                        let after = applied.counts.get(&change.article_id).copied().unwrap_or_default();
                        self.cache.insert_committed(&change.article_id, after, applied.order, committed_at)
                    });
                }
                for pending in batch.drain(..) {
                    let after = answered.get(&pending.change.article_id).copied().unwrap_or_default();
                    let _ = pending.reply.send(Ok(after));
                }
            }
            Err(error) => {
                metrics::write_batch_failed(seconds);
                tracing::warn!(error = format!("{error:#}"), size = batch.len(), "a write batch failed");
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(error.for_each_waiter()));
                }
            }
        }
    }
}
