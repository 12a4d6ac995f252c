//! Storage: the only place that speaks SQL.
//!
//! [`Store`] is an enum over backends so that callers are written once and another backend slots
//! in as a new variant without touching the HTTP code: PostgreSQL for production, SQLite as the
//! embedded default that needs no server.
//!
//! What a backend does its own way lives in its module (`postgres`, `sqlite`): the write path,
//! the stats windows, migrations and salts. What both do alike is written once, generic over
//! their `Dialect` (`dialect.rs`: how each binds a list of ids, an instant, the offered reactions,
//! and spells a few expressions): the reads in `reads` and the settings in `settings`.
//!
//! [`Store`]: crate::store::Store

mod alerts;
mod breaker;
mod changes;
mod dialect;
mod postgres;
mod reads;
mod rows;
mod settings;
mod sql;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub use alerts::{Delivery, NewAlert};
pub use breaker::DOWN_GAUGE as DB_KNOWN_DOWN_GAUGE;
pub use changes::Changed;
/// The PostgreSQL stats statements, for `scripts/stats-explain.sh` (through
/// `examples/stats_sql.rs`); not an interface.
#[doc(hidden)]
pub use postgres::stats_sql;
pub use postgres::{MIGRATOR, PgStore};
pub use rows::{EXPORT_BATCH_ROWS, ExportRow, ExportStream};
pub use settings::CountsAndSettings;
pub use sqlite::{MIGRATOR as SQLITE_MIGRATOR, SqliteStore};

use crate::domain::{ArticleCount, ArticleId, ArticleSettings, Reaction, ReactionCounts, TrendingArticle};
use crate::domain::{Bucket, TimeWindow};
use crate::domain::{NetworkKey, VisitorKey, VisitorSecret};

/// One visitor's intended state for one article: `Some` sets or switches, `None` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionChange {
    pub article_id: ArticleId,
    pub visitor: VisitorKey,
    /// The keyed hash of the network the change came from, stored with the reaction it sets or
    /// switches to (the network of its last change); `None` stores none.
    pub network: Option<NetworkKey>,
    pub reaction: Option<Reaction>,
}

/// What a committed batch of changes left: the counts of its articles, and the batch's place in
/// the order in which batches held their articles' rows.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The counts of every article of the batch as the batch's commit left them: one state of
    /// each article (read while the batch held its count rows), never a mix of two.
    pub counts: HashMap<ArticleId, ReactionCounts>,
    /// Increases in the order in which batches took the rows of their articles: of two batches
    /// that touched one article, the later holds the newer counts. The read cache orders this
    /// process's answers by it. PostgreSQL draws it from a database sequence under the
    /// articles' locks (so it orders the batches of every instance); SQLite, which one process
    /// writes, from `next_lock_order`.
    pub order: u64,
}

/// The next [`Applied::order`], taken once a batch holds the rows it changes and before it
/// commits. Two batches that change one article hold its rows one after the other, and the
/// second can only take them once the first has committed, after the first took its number, so
/// the numbers follow the order of their commits.
fn next_lock_order() -> u64 {
    static ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    ORDER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// A storage failure, split by what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, overloaded or shutting down: retry later (503).
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else is a bug or a broken invariant (500).
    #[error("database error")]
    Other(#[source] anyhow::Error),
}

impl StoreError {
    /// The same failure for another waiter of a shared operation (a write batch answers every
    /// request in it with the batch's error).
    pub fn for_each_waiter(&self) -> Self {
        match self {
            Self::Unavailable(e) => Self::Unavailable(anyhow::anyhow!("{e:#}")),
            Self::Other(e) => Self::Other(anyhow::anyhow!("{e:#}")),
        }
    }
}

/// The connection pool's use, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

impl PoolStatus {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        Self { size: pool.size(), idle: pool.num_idle(), max: pool.options().get_max_connections() }
    }
}

/// How the service connects to its database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub database_url: String,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// Server-side limit on any one statement.
    pub statement_timeout: Duration,
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The storage backend, chosen by the scheme of `DATABASE_URL`.
#[derive(Debug, Clone)]
enum Backend {
    /// `postgres://…`: production, any number of instances.
    Postgres(PgStore),
    /// `sqlite://…`: one file, no server; the default.
    Sqlite(SqliteStore),
}

/// The database, through its backend and the circuit breaker that answers at once while it is
/// known to be down (see `breaker.rs`). Cheap to clone: clones share the pool and the breaker.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    breaker: Arc<breaker::Breaker>,
    /// Which articles' counts changed, for the live counts.
    changes: Arc<changes::ChangeBus>,
}

/// The same call on whichever backend `$store` has: `on_backend!(self, s => s.ping().await)`.
macro_rules! on_backend {
    ($store:expr, $s:ident => $call:expr) => {
        match &$store.backend {
            Backend::Postgres($s) => $call,
            Backend::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Whether there is a backend for `url`: `sqlite:…` or `postgres://…` (`postgresql://…`).
    pub fn supports(url: &str) -> bool {
        is_sqlite(url) || is_postgres(url)
    }

    /// Connects lazily: the service starts (and answers `/healthz`) even while the database is down.
    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let url = options.database_url.as_str();
        let backend = if is_sqlite(url) {
            Backend::Sqlite(SqliteStore::connect(options)?)
        } else if is_postgres(url) {
            Backend::Postgres(PgStore::connect(options)?)
        } else {
            return Err(StoreError::Other(anyhow::anyhow!(
                "DATABASE_URL must start with sqlite:// (the embedded store) or postgres:// (PostgreSQL)"
            )));
        };
        Ok(Self {
            breaker: breaker::Breaker::new(backend.clone()),
            backend,
            changes: Arc::new(changes::ChangeBus::new()),
        })
    }

    /// Creates the database if it does not exist, then applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.breaker.guard(async { on_backend!(self, s => s.migrate().await) }).await
    }

    /// Connections open, idle and allowed.
    pub fn pool_status(&self) -> PoolStatus {
        on_backend!(self, s => PoolStatus::of(&s.pool))
    }

    /// Answers when the database can run a query.
    #[tracing::instrument(skip_all)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.breaker
            .guard(async {
                on_backend!(self, s => sqlx::query("select 1")
                    .execute(&s.pool)
                    .await
                    .map(drop)
                    .map_err(|e| s.error(e, "while pinging the database")))
            })
            .await
    }

    /// The visitor secret kept in the database, generated by whichever instance asks first. On
    /// the embedded store, a fresh one: a database file keeps its secret in a key file beside it
    /// (see `identity::resolve_secret`), and an in-memory database ends with the process, so a
    /// secret stored in it would be no better than a fresh one.
    pub async fn visitor_secret(&self) -> Result<VisitorSecret, StoreError> {
        match &self.backend {
            Backend::Postgres(s) => self.breaker.guard(s.visitor_secret()).await,
            Backend::Sqlite(_) => Ok(VisitorSecret::generate()),
        }
    }

    /// The embedded store's database file; `None` on PostgreSQL and for an in-memory database.
    pub fn database_file(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Sqlite(s) => s.database_file(),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The generated visitor secret kept in the embedded store's database (where earlier versions
    /// kept it), if any; always `None` on PostgreSQL.
    pub async fn stored_visitor_secret(&self) -> Result<Option<VisitorSecret>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => self.breaker.guard(s.stored_visitor_secret()).await,
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Deletes the generated visitor secret from the embedded store's database.
    pub async fn forget_visitor_secret(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => self.breaker.guard(s.forget_visitor_secret()).await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Today's fingerprint salt, shared by all instances; expired salts are deleted on the way.
    pub async fn current_salt(&self) -> Result<(chrono::NaiveDate, Vec<u8>), StoreError> {
        self.breaker.guard(async { on_backend!(self, s => s.current_salt().await) }).await
    }

    /// Applies changes atomically: after it returns `Ok`, every change is committed and counts
    /// equal rows. Changes to the same (article, visitor) apply in slice order (the last wins).
    /// Answers the counts of the touched articles as of the commit, and the batch's order.
    pub async fn apply(&self, changes: &[ReactionChange]) -> Result<Applied, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => s.apply(changes).await) }).await
    }

    /// Tells every instance sharing the database that these articles' counts changed (a
    /// committed write batch, an erasure), for their live-count subscribers. Returns at once: on
    /// PostgreSQL one `NOTIFY` is sent soon after for all the articles, by a task of its own.
    pub fn notify_changed<'a>(&self, articles: impl IntoIterator<Item = &'a ArticleId>) {
        let mut articles: Vec<ArticleId> = articles.into_iter().cloned().collect();
        articles.sort_unstable();
        articles.dedup();
        match &self.backend {
            Backend::Postgres(s) => self.changes.announce_to_all(&s.pool, articles),
            Backend::Sqlite(_) => self.changes.announce_locally(articles),
        }
    }

    /// The announcements of [`Store::notify_changed`] from now on, this instance's and (on
    /// PostgreSQL) every other's.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<Changed> {
        match &self.backend {
            Backend::Postgres(s) => self.changes.subscribe(Some(&s.pool)),
            Backend::Sqlite(_) => self.changes.subscribe(None),
        }
    }

    /// Current counts of the given articles; articles nobody reacted to are absent.
    pub async fn counts(
        &self,
        articles: &[&ArticleId],
    ) -> Result<HashMap<ArticleId, ReactionCounts>, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => reads::counts(s, articles).await) }).await
    }

    /// Current counts and settings of the given articles, in one query: articles nobody
    /// reacted to, or never configured, are absent from their map.
    pub async fn counts_and_settings(
        &self,
        articles: &[&ArticleId],
    ) -> Result<CountsAndSettings, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => settings::counts_and_settings(s, articles).await) })
            .await
    }

    /// One article's settings (those of an open article offering everything when it has none).
    pub async fn settings(&self, article_id: &ArticleId) -> Result<ArticleSettings, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => settings::settings(s, article_id).await) }).await
    }

    /// The settings of every configured article, unless more than `limit` are configured
    /// (`None`): editors configure few articles, so one read can tell every write which articles
    /// are closed or restricted.
    pub async fn configured_settings(
        &self,
        limit: u32,
    ) -> Result<Option<HashMap<ArticleId, ArticleSettings>>, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => settings::configured_settings(s, limit).await) })
            .await
    }

    /// Replaces one article's settings.
    pub async fn put_settings(
        &self,
        article_id: &ArticleId,
        settings: &ArticleSettings,
    ) -> Result<(), StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => settings::put_settings(s, article_id, settings).await) })
            .await
    }

    /// The reactions one visitor holds on the given articles.
    pub async fn viewer_reactions(
        &self,
        visitor: &VisitorKey,
        articles: &[&ArticleId],
    ) -> Result<HashMap<ArticleId, Reaction>, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => reads::viewer_reactions(s, visitor, articles).await) })
            .await
    }

    /// Removes every reaction of a visitor, adjusting counts; returns the articles it was
    /// removed from (one reaction each).
    pub async fn erase_visitor(&self, visitor: &VisitorKey) -> Result<Vec<ArticleId>, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => s.erase_visitor(visitor).await) }).await
    }

    /// The articles with the most reactions of the given kinds (all kinds when empty) whose last
    /// change falls in `window`, most first, ties by article id.
    pub async fn top_articles(
        &self,
        window: &TimeWindow,
        reactions: &[Reaction],
        limit: u32,
    ) -> Result<Vec<ArticleCount>, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => s.top_articles(window, reactions, limit).await) })
            .await
    }

    /// Site-wide counts per reaction of the reactions whose last change falls in `window`.
    pub async fn window_totals(&self, window: &TimeWindow) -> Result<ReactionCounts, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => reads::window_totals(s, window).await) }).await
    }

    /// One article's counts per bucket in `window`, oldest first; buckets without reactions are
    /// absent.
    pub async fn article_timeseries(
        &self,
        article_id: &ArticleId,
        window: &TimeWindow,
        bucket: Bucket,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, ReactionCounts)>, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => s.article_timeseries(article_id, window, bucket).await) })
            .await
    }

    /// Articles gathering reactions faster in `recent` than in the window of the same length
    /// before it, by trending score, whose reactions in `recent` come from at least
    /// `min_networks` distinct client networks. The filter applies before the limit: articles
    /// from too few networks leave no gap in the list.
    pub async fn trending(
        &self,
        recent: &TimeWindow,
        limit: u32,
        min_networks: u32,
    ) -> Result<Vec<TrendingArticle>, StoreError> {
        self.breaker
            .guard(async { on_backend!(self, s => s.trending(recent, limit, min_networks).await) })
            .await
    }

    /// Counts per (article, reaction) in `window`, streamed in batches from the database.
    pub async fn export_counts(&self, window: &TimeWindow) -> Result<ExportStream, StoreError> {
        self.breaker.guard(async { on_backend!(self, s => s.export_counts(window).await) }).await
    }
}

/// Folds `(article, reaction, count)` rows into counts per article.
fn counts_by_article(rows: Vec<(String, String, i64)>) -> anyhow::Result<HashMap<ArticleId, ReactionCounts>> {
    let mut counts: HashMap<ArticleId, ReactionCounts> = HashMap::new();
    for (article_id, reaction, count) in rows {
        let article_id = ArticleId::parse(article_id).context("an invalid article id is stored")?;
        let reaction: Reaction = reaction.parse().context("an unknown reaction is stored")?;
        counts.entry(article_id).or_default().add(reaction, count);
    }
    Ok(counts)
}

/// The ids of `articles` as the statements bind them.
fn article_ids<'a>(articles: &[&'a ArticleId]) -> Vec<&'a str> {
    articles.iter().map(|a| a.as_str()).collect()
}

/// A reaction key read inside a transaction, as the driver error that aborts it.
fn parse_reaction(key: &str) -> Result<Reaction, sqlx::Error> {
    key.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// What removing a visitor's `(article_id, reaction)` rows takes from the counts: -1 per row,
/// by (article, reaction), in that order.
fn removal_deltas(removed: &[(String, String)]) -> Result<BTreeMap<(&str, Reaction), i64>, sqlx::Error> {
    let mut deltas = BTreeMap::new();
    for (article_id, reaction) in removed {
        *deltas.entry((article_id.as_str(), parse_reaction(reaction)?)).or_default() -= 1;
    }
    Ok(deltas)
}

/// The articles of a visitor's removed `(article_id, reaction)` rows, one per row.
fn removed_articles(removed: Vec<(String, String)>) -> Result<Vec<ArticleId>, sqlx::Error> {
    removed
        .into_iter()
        .map(|(article_id, _)| ArticleId::parse(article_id).map_err(|e| sqlx::Error::Decode(e.into())))
        .collect()
}

fn stored_article_id(raw: String) -> Result<ArticleId, StoreError> {
    ArticleId::parse(raw).context("an invalid article id is stored").map_err(StoreError::Other)
}

fn stored_reaction(key: &str) -> Result<Reaction, StoreError> {
    key.parse().context("an unknown reaction is stored").map_err(StoreError::Other)
}
