//! The embedded SQLite backend: the default when `DATABASE_URL` is unset or `sqlite://…`.
//!
//! The same contract as PostgreSQL in one file beside the service, with no server to run. SQLite
//! lets one transaction write at a time, so every write transaction starts with `BEGIN
//! IMMEDIATE`: it takes the write lock up front, waiting up to the busy timeout, rather than
//! upgrading a read lock halfway through, which fails at once when another writer holds it. In
//! WAL mode readers never wait for the writer, and several service instances on one host can share
//! the file. A batch's changes are applied row by row (statements are cheap in-process) but in one
//! transaction, so the group-commit writer still commits, and syncs the file, once per batch.

mod stats;

use stats::sql as stats_sql;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::dialect::{Dialect, Statements};
use super::{
    Applied, ReactionChange, StoreError, StoreOptions, article_ids, counts_by_article, next_lock_order,
    parse_reaction, removal_deltas, removed_articles,
};
use crate::domain::{ArticleId, Reaction};
use crate::domain::{VisitorKey, VisitorSecret};

/// The schema migrations in `migrations/sqlite/`, embedded at compile time. `sqlx migrate run
/// --source migrations/sqlite` applies the same folder.
pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a fingerprint salt is kept after it was created.
const SALT_LIFETIME: TimeDelta = TimeDelta::hours(48);

/// SQLite through a sqlx connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The database file; `None` for an in-memory database.
    file: Option<std::path::PathBuf>,
}

impl SqliteStore {
    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect_options: SqliteConnectOptions =
            options.database_url.parse().context("while parsing DATABASE_URL").map_err(StoreError::Other)?;
        let in_memory =
            options.database_url.contains(":memory:") || options.database_url.contains("mode=memory");
        let file = (!in_memory).then(|| connect_options.get_filename().to_owned());
        let connect_options = connect_options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A commit is on disk before it is acknowledged, as with PostgreSQL's default.
            .synchronous(SqliteSynchronous::Full)
            // The longest a statement waits for another connection's write lock; SQLite has no
            // statement timeout, and this is where its statements wait.
            .busy_timeout(options.statement_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect_options);
        Ok(Self { pool, file })
    }

    /// The database file, unless the database is in memory.
    pub fn database_file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// The generated visitor secret an earlier version kept in the database, if any.
    pub async fn stored_visitor_secret(&self) -> Result<Option<VisitorSecret>, StoreError> {
        let secret: Option<Vec<u8>> =
            sqlx::query_scalar("select secret from service_secrets where name = 'visitor'")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| classify(e, "while looking for a visitor secret in the database"))?;
        Ok(secret.map(VisitorSecret::from_bytes))
    }

    /// Deletes the visitor secret from the database (once it is kept in the key file).
    pub async fn forget_visitor_secret(&self) -> Result<(), StoreError> {
        sqlx::query("delete from service_secrets where name = 'visitor'")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| classify(e, "while deleting the visitor secret from the database"))
    }

    /// Creates the file if it does not exist (on the first connection), then applies pending
    /// migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.context("while applying migrations").map_err(classify_anyhow)
    }

    /// A driver error of this backend, sorted into "try again later" or "bug".
    pub(super) fn error(&self, error: sqlx::Error, context: &'static str) -> StoreError {
        classify(error, context)
    }

    /// Today's fingerprint salt (UTC), created by whichever instance asks first. Deletes salts
    /// older than 48 hours on the way.
    pub async fn current_salt(&self) -> Result<(chrono::NaiveDate, Vec<u8>), StoreError> {
        self.current_salt_once().await.map_err(|e| classify(e, "while reading the fingerprint salt"))
    }

    async fn current_salt_once(&self) -> Result<(chrono::NaiveDate, Vec<u8>), sqlx::Error> {
        let now = Utc::now();
        let today = now.date_naive();
        let mut fresh = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut fresh);
        let mut tx = self.pool.begin_with("begin immediate").await?;
        sqlx::query("delete from visitor_salts where created_at < $1")
            .bind(micros(now - SALT_LIFETIME))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into visitor_salts (day, salt, created_at) values ($1, $2, $3)
             on conflict (day) do nothing",
        )
        .bind(today)
        .bind(fresh.as_slice())
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        let row: (chrono::NaiveDate, Vec<u8>) =
            sqlx::query_as("select day, salt from visitor_salts where day = $1")
                .bind(today)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(row)
    }

    #[tracing::instrument(skip_all, fields(changes = changes.len()))]
    pub async fn apply(&self, changes: &[ReactionChange]) -> Result<Applied, StoreError> {
        // The last change per (article, visitor) is the one that counts, with its network.
        let mut net: BTreeMap<(&str, &[u8]), &ReactionChange> = BTreeMap::new();
        for change in changes {
            net.insert((change.article_id.as_str(), change.visitor.as_bytes()), change);
        }
        self.apply_once(&net).await.map_err(|e| classify(e, "while applying reaction changes"))
    }

    async fn apply_once(
        &self,
        net: &BTreeMap<(&str, &[u8]), &ReactionChange>,
    ) -> Result<Applied, sqlx::Error> {
        let now = micros(Utc::now());
        let mut tx = self.pool.begin_with("begin immediate").await?;
        // This transaction holds the file's write lock from here to its commit.
        let order = next_lock_order();
        let mut deltas: BTreeMap<(&str, Reaction), i64> = BTreeMap::new();
        for (&(article_id, visitor), change) in net {
            let (target, network) =
                (change.reaction, change.network.as_ref().map(|n| n.as_bytes().as_slice()));
            let held: Option<String> = sqlx::query_scalar(
                "select reaction from reactions where article_id = $1 and visitor_key = $2",
            )
            .bind(article_id)
            .bind(visitor)
            .fetch_optional(&mut *tx)
            .await?;
            let held = held.as_deref().map(parse_reaction).transpose()?;
            if held == target {
                continue;
            }
            let write = match (held, target) {
                (None, Some(new)) => sqlx::query(
                    "insert into reactions (article_id, visitor_key, reaction, updated_at, network)
                     values ($1, $2, $3, $4, $5)",
                )
                .bind(article_id)
                .bind(visitor)
                .bind(new.key())
                .bind(now)
                .bind(network),
                (Some(_), Some(new)) => sqlx::query(
                    "update reactions set reaction = $3, updated_at = $4, network = $5
                     where article_id = $1 and visitor_key = $2",
                )
                .bind(article_id)
                .bind(visitor)
                .bind(new.key())
                .bind(now)
                .bind(network),
                (_, None) => sqlx::query("delete from reactions where article_id = $1 and visitor_key = $2")
                    .bind(article_id)
                    .bind(visitor),
            };
            write.execute(&mut *tx).await?;
            if let Some(old) = held {
                *deltas.entry((article_id, old)).or_default() -= 1;
            }
            if let Some(new) = target {
                *deltas.entry((article_id, new)).or_default() += 1;
            }
        }
        apply_count_deltas(&mut tx, &deltas).await?;
        // The counts as this transaction leaves them: what every request in it is answered.
        let articles: Vec<&str> = net.keys().map(|&(article_id, _)| article_id).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "select article_id, reaction, count from article_reaction_counts
             where article_id in (select value from json_each($1)) and count > 0",
        )
        .bind(json_array(&articles))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let counts = counts_by_article(rows).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Applied { counts, order })
    }

    #[tracing::instrument(skip_all)]
    pub async fn erase_visitor(&self, visitor: &VisitorKey) -> Result<Vec<ArticleId>, StoreError> {
        self.erase_visitor_once(visitor).await.map_err(|e| classify(e, "while erasing a visitor"))
    }

    async fn erase_visitor_once(&self, visitor: &VisitorKey) -> Result<Vec<ArticleId>, sqlx::Error> {
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let removed: Vec<(String, String)> =
            sqlx::query_as("delete from reactions where visitor_key = $1 returning article_id, reaction")
                .bind(visitor.as_bytes().as_slice())
                .fetch_all(&mut *tx)
                .await?;
        apply_count_deltas(&mut tx, &removal_deltas(&removed)?).await?;
        tx.commit().await?;
        removed_articles(removed)
    }
}

/// Adds the deltas to the counts rows. A positive delta may create its row; a negative one
/// finds it (the CHECK refuses a count below zero).
async fn apply_count_deltas(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &BTreeMap<(&str, Reaction), i64>,
) -> Result<(), sqlx::Error> {
    for (&(article_id, reaction), &delta) in deltas {
        let statement = match delta {
            0 => continue,
            1.. => {
                "insert into article_reaction_counts (article_id, reaction, count) values ($1, $2, $3)
                 on conflict (article_id, reaction) do update set count = count + excluded.count"
            }
            _ => {
                "update article_reaction_counts set count = count + $3 where article_id = $1 and reaction = $2"
            }
        };
        sqlx::query(statement).bind(article_id).bind(reaction.key()).bind(delta).execute(&mut **tx).await?;
    }
    Ok(())
}

/// How SQLite binds and spells what the reads both backends make alike differ in
/// ([`super::dialect`]).
impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;
    type Arguments = sqlx::sqlite::SqliteArguments;
    type Executor<'p> = &'p sqlx::SqlitePool;
    type Ids<'a> = String;
    type Instant = i64;
    type Offered = Option<String>;

    fn executor(&self) -> Self::Executor<'_> {
        &self.pool
    }

    fn ids<'a>(articles: &[&'a ArticleId]) -> Self::Ids<'a> {
        json_array(&article_ids(articles))
    }

    fn instant(at: DateTime<Utc>) -> Self::Instant {
        micros(at)
    }

    fn offered(keys: Option<Vec<&'static str>>) -> Self::Offered {
        keys.map(|keys| serde_json::to_string(&keys).expect("keys serialize"))
    }

    fn in_ids(column: &str, param: usize) -> String {
        format!("{column} in (select value from json_each(${param}))")
    }

    fn reaction_text(column: &str) -> String {
        column.to_owned()
    }

    fn offered_column(column: &str) -> String {
        column.to_owned()
    }

    fn offered_param(param: usize) -> String {
        format!("${param}")
    }

    // The default of the columns that hold an instant (microseconds).
    const NOW: &'static str = "cast(unixepoch('subsec') * 1000000 as integer)";

    fn classify(error: sqlx::Error, context: &'static str) -> StoreError {
        classify(error, context)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::new::<SqliteStore>);
        &STATEMENTS
    }

    fn window_totals_statement() -> &'static str {
        stats_sql::WINDOW_TOTALS.as_str()
    }
}

/// An instant as stored: microseconds since the Unix epoch.
pub(super) fn micros(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_micros()
}

/// A list of strings as a JSON array, which `json_each` turns into rows: SQLite has no array
/// parameters.
pub(super) fn json_array(values: &[&str]) -> String {
    serde_json::to_string(values).expect("strings serialize")
}

/// SQLite's primary result codes that mean "try again later": the file is locked by another
/// writer for longer than the busy timeout (BUSY, LOCKED), cannot be read or written (IOERR,
/// CANTOPEN, READONLY), or the disk is full (FULL).
const UNAVAILABLE_CODES: [i64; 6] = [5, 6, 8, 10, 13, 14];

/// Sorts a database error into "try again later" (503) or "bug" (500).
pub(super) fn classify(error: sqlx::Error, context: &'static str) -> StoreError {
    let error = anyhow::Error::new(error).context(context);
    if is_unavailable(&error) { StoreError::Unavailable(error) } else { StoreError::Other(error) }
}

fn classify_anyhow(error: anyhow::Error) -> StoreError {
    if is_unavailable(&error) { StoreError::Unavailable(error) } else { StoreError::Other(error) }
}

fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable_sqlx))
}

fn is_unavailable_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            // Extended result codes carry the primary code in their low byte.
            .is_some_and(|code| UNAVAILABLE_CODES.contains(&(code & 0xff))),
        _ => false,
    }
}
