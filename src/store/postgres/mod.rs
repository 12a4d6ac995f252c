//! The PostgreSQL backend.
//!
//! Writes are set-based: a slice of changes becomes one call of a database function whose
//! statements work over `UNNEST`ed arrays, whatever its length, so that a batching writer can
//! hand over many changes at once in one round trip.
//! Rows are locked in a fixed order (article, visitor key), then counts in (article, reaction)
//! order, then the stats rollups in (article, bucket) order, so concurrent writers, in this
//! process or another, do not deadlock; the rare deadlock or serialization failure that remains
//! is retried.

mod stats;

/// The PostgreSQL stats statements, for `scripts/stats-explain.sh` (through
/// `examples/stats_sql.rs`); not an interface.
#[doc(hidden)]
pub use stats::sql as stats_sql;

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool, Postgres, Transaction};

use super::dialect::{Dialect, Statements};
use super::{
    Applied, ReactionChange, StoreError, StoreOptions, article_ids, counts_by_article, removal_deltas,
    removed_articles,
};
use crate::domain::{ArticleId, Reaction};
use crate::domain::{VisitorKey, VisitorSecret};

/// The schema migrations in `migrations/`, embedded at compile time. `sqlx migrate run` applies
/// the same folder.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How often a write batch that hit a deadlock or serialization failure is tried in all.
const MAX_ATTEMPTS: u32 = 6;

// A batch is one call of the database function `reactions_apply_batch` (migration
// `20261201000002`), in a transaction of its own: one round trip, whatever its size. The function
// inserts, switches and deletes the reaction rows set-based, folds the moves into count and
// rollup deltas, and answers the batch's articles' counts. Locks are taken in one order by every
// writer: reaction rows in (article, visitor) order, then the articles' locks (see
// `LOCK_ARTICLES_SQL`); the count and rollup rows are then changed by adding deltas, under the
// articles' locks. Doing it in the database keeps the articles' locks, which serialise the
// batches of one hot article, held only while its counts change and the commit is written,
// instead of across the round trips of the statements after them and of the commit.

/// A batch: `$1`–`$4` the net changes' articles, visitor keys, target reactions (null: a removal)
/// and network keys (null: none), sorted by (article, visitor); `$5` the key class of the
/// articles' locks. Answers every count row of the batch's articles, read under their locks, with
/// the batch's place in the order of the articles' locks.
const APPLY_BATCH_SQL: &str =
    "select batch_order, article_id, reaction, count from reactions_apply_batch($1, $2, $3, $4, $5)";

/// The first key of the articles' advisory locks: the service's own, so that other users of the
/// database's advisory locks do not meet ours ("rr").
const ARTICLE_LOCK_CLASS: i32 = 0x7272;

/// Takes the articles' locks (`$1`, the articles) for [`PgStore::erase_visitor`], as
/// `reactions_apply_batch` takes them: transaction-scoped advisory locks, one per article (two
/// articles whose ids hash alike share one, which costs only some concurrency), in the order of
/// their keys. They live in memory: no row is written to take them and nothing needs to exist
/// first. Every writer of the service takes them before it changes an article's counts, so the
/// batches that change one article follow one another, and a statement that starts once they are
/// held sees every earlier batch committed and no later one.
const LOCK_ARTICLES_SQL: &str = r#"
select pg_advisory_xact_lock($2, key)
from (select distinct hashtext(article_id) as key from unnest($1::text[]) as a(article_id) order by key) as keys
"#;

/// A pooled connection idle for longer than this is checked (a round trip) before it is handed
/// out; one used more recently is handed out as it is.
///
/// sqlx checks every connection by default, which puts a second round trip in front of every
/// write batch and every read. With this, a session the server ended (a restart,
/// `idle_session_timeout`, `pg_terminate_backend`) while its connection sat idle is still found
/// and replaced before a request gets it; one that died within a second of its last use fails
/// its statement instead, which is answered 503 like any other failure of the database (nothing
/// acknowledged is lost), and the connection leaves the pool.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A row of [`APPLY_BATCH_SQL`]: the batch's order, article, reaction, count.
type BatchRow = (i64, String, String, i64);

/// A reaction row's key: (article, visitor key).
type RowKey<'a> = (&'a str, &'a [u8]);

/// PostgreSQL through a sqlx connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    database_url: std::sync::Arc<str>,
}

/// A change after collapsing a batch to the last intent per (article, visitor).
#[derive(Debug, Clone, Copy)]
struct NetChange<'a> {
    article_id: &'a str,
    visitor: &'a [u8],
    target: Option<Reaction>,
    /// The network key the row gets if the change inserts or switches it.
    network: Option<&'a [u8]>,
}

impl PgStore {
    pub fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect_options: PgConnectOptions =
            options.database_url.parse().context("while parsing DATABASE_URL").map_err(StoreError::Other)?;
        let connect_options = connect_options
            .application_name("reader-reactions")
            .options([("statement_timeout", format!("{}ms", options.statement_timeout.as_millis()))]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > CHECK_AFTER_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect_options);
        Ok(Self { pool, database_url: options.database_url.as_str().into() })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let exists = Postgres::database_exists(&self.database_url)
            .await
            .context("while checking that the database exists")
            .map_err(classify_anyhow)?;
        if !exists {
            match Postgres::create_database(&self.database_url).await {
                Ok(()) => tracing::info!("created the database"),
                // Another instance created it first.
                Err(e) if sql_state(&e).as_deref() == Some("42P04") => {}
                Err(e) => return Err(classify(e, "while creating the database")),
            }
        }
        MIGRATOR.run(&self.pool).await.context("while applying migrations").map_err(classify_anyhow)
    }

    /// A driver error of this backend, sorted into "try again later" or "bug".
    pub(super) fn error(&self, error: sqlx::Error, context: &'static str) -> StoreError {
        classify(error, context)
    }

    pub async fn visitor_secret(&self) -> Result<VisitorSecret, StoreError> {
        // Insert-if-absent then read: every instance ends up with the first one's secret.
        sqlx::query(
            "insert into service_secrets (name, secret) values ('visitor', $1) on conflict (name) do nothing",
        )
        .bind(VisitorSecret::generate().expose())
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e, "while storing a generated visitor secret"))?;
        let (secret,): (Vec<u8>,) =
            sqlx::query_as("select secret from service_secrets where name = 'visitor'")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| classify(e, "while loading the visitor secret"))?;
        Ok(VisitorSecret::from_bytes(secret))
    }

    /// Today's fingerprint salt (UTC, by the database's clock so that instances agree), created
    /// by whichever instance asks first. Deletes salts older than 48 hours on the way.
    pub async fn current_salt(&self) -> Result<(chrono::NaiveDate, Vec<u8>), StoreError> {
        for _ in 0..3 {
            let mut fresh = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut fresh);
            let row: Option<(chrono::NaiveDate, Vec<u8>)> = sqlx::query_as(
                "with expired as (
                     delete from visitor_salts where created_at < now() - interval '48 hours'
                 ), created as (
                     insert into visitor_salts (day, salt) values ((now() at time zone 'utc')::date, $1)
                     on conflict (day) do nothing
                     returning day, salt
                 )
                 select day, salt from created
                 union all
                 select day, salt from visitor_salts
                 where day = (now() at time zone 'utc')::date and not exists (select 1 from created)",
            )
            .bind(fresh.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(e, "while reading the fingerprint salt"))?;
            // None: another instance created today's salt after this statement's snapshot.
            if let Some(row) = row {
                return Ok(row);
            }
        }
        Err(StoreError::Other(anyhow::anyhow!("today's fingerprint salt could not be read")))
    }

    #[tracing::instrument(skip_all, fields(changes = changes.len()))]
    pub async fn apply(&self, changes: &[ReactionChange]) -> Result<Applied, StoreError> {
        // The last change per (article, visitor) is the one that counts, with its network.
        let mut last: HashMap<RowKey<'_>, &ReactionChange> = HashMap::with_capacity(changes.len());
        for change in changes {
            last.insert((change.article_id.as_str(), change.visitor.as_bytes()), change);
        }
        let mut net: Vec<NetChange<'_>> = last
            .into_values()
            .map(|change| NetChange {
                article_id: change.article_id.as_str(),
                visitor: change.visitor.as_bytes(),
                target: change.reaction,
                network: change.network.as_ref().map(|n| n.as_bytes().as_slice()),
            })
            .collect();
        net.sort_unstable_by(|a, b| (a.article_id, a.visitor).cmp(&(b.article_id, b.visitor)));

        let mut attempt = 1;
        loop {
            match self.apply_once(&net).await {
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying a write transaction");
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
                    attempt += 1;
                }
                result => return result.map_err(|e| classify(e, "while applying reaction changes")),
            }
        }
    }

    /// One attempt at the batch: one statement, in a transaction of its own.
    async fn apply_once(&self, net: &[NetChange<'_>]) -> Result<Applied, sqlx::Error> {
        let rows: Vec<BatchRow> = sqlx::query_as(APPLY_BATCH_SQL)
            .bind(net.iter().map(|c| c.article_id).collect::<Vec<_>>())
            .bind(net.iter().map(|c| c.visitor).collect::<Vec<_>>())
            .bind(net.iter().map(|c| c.target.map(Reaction::key)).collect::<Vec<_>>())
            .bind(net.iter().map(|c| c.network).collect::<Vec<_>>())
            .bind(ARTICLE_LOCK_CLASS)
            .fetch_all(&self.pool)
            .await?;
        // Every row carries the batch's order. A batch whose articles hold no count row yet (it
        // only removed, and nothing was there) answers none: its order is then of no use, as it
        // changed nothing.
        let order = rows
            .first()
            .map_or(Ok(0), |row| u64::try_from(row.0))
            .map_err(|e| sqlx::Error::Decode(e.into()))?;
        let counts = counts_by_article(
            rows.into_iter().map(|(_, article_id, reaction, count)| (article_id, reaction, count)).collect(),
        )
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Applied { counts, order })
    }

    #[tracing::instrument(skip_all)]
    pub async fn erase_visitor(&self, visitor: &VisitorKey) -> Result<Vec<ArticleId>, StoreError> {
        let mut attempt = 1;
        loop {
            match self.erase_visitor_once(visitor).await {
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
                    attempt += 1;
                }
                result => return result.map_err(|e| classify(e, "while erasing a visitor")),
            }
        }
    }

    async fn erase_visitor_once(&self, visitor: &VisitorKey) -> Result<Vec<ArticleId>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Lock in the same (article, visitor) order as `apply`, then change the counts, then
        // delete: the delete's triggers lock rollup rows, which every writer locks after counts.
        let removed: Vec<(String, String)> = sqlx::query_as(
            "select article_id, reaction::text from reactions where visitor_key = $1
             order by article_id for update",
        )
        .bind(visitor.as_bytes().as_slice())
        .fetch_all(&mut *tx)
        .await?;
        // Then the articles' locks, as a write batch takes them, so that a batch's answer never
        // mixes counts from before and after an erasure.
        let mut articles: Vec<&str> = removed.iter().map(|(article_id, _)| article_id.as_str()).collect();
        articles.dedup(); // sorted by article
        sqlx::query(LOCK_ARTICLES_SQL).bind(&articles).bind(ARTICLE_LOCK_CLASS).execute(&mut *tx).await?;
        apply_count_deltas(&mut tx, &removal_deltas(&removed)?).await?;
        sqlx::query("delete from reactions where visitor_key = $1")
            .bind(visitor.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        removed_articles(removed)
    }
}

/// Adds the deltas to the counts rows, in (article, reaction) order.
async fn apply_count_deltas(
    tx: &mut Transaction<'_, Postgres>,
    deltas: &BTreeMap<(&str, Reaction), i64>,
) -> Result<(), sqlx::Error> {
    let deltas: Vec<((&str, Reaction), i64)> =
        deltas.iter().map(|(&key, &d)| (key, d)).filter(|(_, d)| *d != 0).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    let articles: Vec<&str> = deltas.iter().map(|((a, _), _)| *a).collect();
    let reactions: Vec<&str> = deltas.iter().map(|((_, r), _)| r.key()).collect();
    let amounts: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
    // Two statements because a CHECK constraint is evaluated on the row INSERT proposes, before
    // ON CONFLICT is considered: an upsert cannot carry a negative delta. Create missing rows at
    // zero, then add the deltas, both in (article, reaction) order.
    sqlx::query(
        "insert into article_reaction_counts (article_id, reaction, count)
         select article_id, reaction::reaction, 0
         from unnest($1::text[], $2::text[], $3::bigint[]) with ordinality as d(article_id, reaction, delta, n)
         where delta > 0
         order by n
         on conflict (article_id, reaction) do nothing",
    )
    .bind(&articles)
    .bind(&reactions)
    .bind(&amounts)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "update article_reaction_counts c set count = c.count + d.delta
         from (select article_id, reaction::reaction as reaction, delta, n
               from unnest($1::text[], $2::text[], $3::bigint[]) with ordinality as u(article_id, reaction, delta, n)
               order by n) as d
         where c.article_id = d.article_id and c.reaction = d.reaction",
    )
    .bind(&articles)
    .bind(&reactions)
    .bind(&amounts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How PostgreSQL binds and spells what the reads both backends make alike differ in
/// ([`super::dialect`]).
impl Dialect for PgStore {
    type Db = sqlx::Postgres;
    type Arguments = sqlx::postgres::PgArguments;
    type Executor<'p> = &'p sqlx::PgPool;
    type Ids<'a> = Vec<&'a str>;
    type Instant = DateTime<Utc>;
    type Offered = Option<Vec<&'static str>>;

    fn executor(&self) -> Self::Executor<'_> {
        &self.pool
    }

    fn ids<'a>(articles: &[&'a ArticleId]) -> Self::Ids<'a> {
        article_ids(articles)
    }

    fn instant(at: DateTime<Utc>) -> Self::Instant {
        at
    }

    fn offered(keys: Option<Vec<&'static str>>) -> Self::Offered {
        keys
    }

    fn in_ids(column: &str, param: usize) -> String {
        format!("{column} = any(${param})")
    }

    fn reaction_text(column: &str) -> String {
        format!("{column}::text")
    }

    fn offered_column(column: &str) -> String {
        format!("array_to_json({column})::text")
    }

    fn offered_param(param: usize) -> String {
        format!("${param}::text[]::reaction[]")
    }

    const NOW: &'static str = "now()";

    fn classify(error: sqlx::Error, context: &'static str) -> StoreError {
        classify(error, context)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::new::<PgStore>);
        &STATEMENTS
    }

    fn window_totals_statement() -> &'static str {
        stats_sql::WINDOW_TOTALS.as_str()
    }
}

fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Deadlocks and serialization failures: the transaction did nothing and may simply run again.
fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(sql_state(error).as_deref(), Some("40001" | "40P01"))
}

/// Sorts a database error into "try again later" (503) or "bug" (500).
pub(super) fn classify(error: sqlx::Error, context: &'static str) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(_) => sql_state(&error).is_some_and(|code| {
            // 08: connection exception, 53: insufficient resources, 57: operator intervention
            // (shutdown, statement timeout), 40: retries exhausted under contention.
            ["08", "53", "57", "40"].iter().any(|class| code.starts_with(class))
        }),
        _ => false,
    };
    let error = anyhow::Error::new(error).context(context);
    if unavailable { StoreError::Unavailable(error) } else { StoreError::Other(error) }
}

fn classify_anyhow(error: anyhow::Error) -> StoreError {
    let unreachable = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    });
    if unreachable { StoreError::Unavailable(error) } else { StoreError::Other(error) }
}
