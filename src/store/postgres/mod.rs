//! The PostgreSQL backend.
//!
//! Writes are set-based: a slice of changes becomes a handful of statements over `UNNEST`ed
//! arrays, whatever its length, so that a batching writer can hand over many changes at once.
//! Rows are locked in a fixed order (article, visitor key), then counts in (article, reaction)
//! order, then the stats rollups in (article, bucket) order, so concurrent writers, in this
//! process or another, do not deadlock; the rare deadlock or serialization failure that remains
//! is retried.

mod stats;

/// The PostgreSQL stats statements, for `scripts/stats-explain.sh` (through
/// `examples/stats_sql.rs`); not an interface.
#[doc(hidden)]
pub use stats::sql as stats_sql;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use chrono::{DateTime, Utc};

use super::{
    Applied, ReactionChange, StoreError, StoreOptions, counts_by_article, next_lock_order, parse_reaction,
    stored_article_id,
};
use crate::domain::{ArticleId, Bucket, Reaction, ReactionCounts};
use crate::domain::{VisitorKey, VisitorSecret};
use crate::store::sql::{REACTIONS, count_column, count_columns, each_reaction};

/// The schema migrations in `migrations/`, embedded at compile time. `sqlx migrate run` applies
/// the same folder.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How often a write transaction that hit a deadlock or serialization failure is tried in all,
/// and how many insert/lock rounds a batch may take before giving up (each round after the first
/// handles the rows that other transactions inserted or deleted while it ran).
const MAX_ATTEMPTS: u32 = 6;

// A batch is one transaction of four statements, whatever its size: the set-based work is done
// by PostgreSQL over `unnest`ed arrays, and the folding (which move lands in which count and
// rollup row) by the service, from the rows the statements return. Locks are taken in one order
// by every writer: reaction rows in (article, visitor) order, then the articles' locks (see
// `LOCK_ARTICLES_SQL`); the count and rollup rows are then changed by adding deltas, under the
// articles' locks.

/// Statement 1: inserts the reactions of visitors who hold none yet on the article. Inputs:
/// `$1`, `$2`, `$3`, `$4` article ids, visitor keys, reactions and network keys (null: none) of
/// the sets, sorted by (article, visitor), so that inserts take their index entries in one order.
///
/// Answers the inserted keys and, in one last row, the transaction's `now()` (the `updated_at`
/// of every row it writes). That row also marks the transaction for the rollup triggers, which
/// leave its reaction changes to the service (migration `20261130000001`).
const INSERT_SQL: &str = r#"
with inserted as (
    insert into reactions (article_id, visitor_key, reaction, network)
    select article_id, visitor_key, reaction::reaction, network
    from unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[])
      with ordinality as i(article_id, visitor_key, reaction, network, n)
    order by n
    on conflict (article_id, visitor_key) do nothing
    returning article_id, visitor_key
)
select article_id, visitor_key, now() from inserted
union all
select null, null, now()
from (select set_config('reader_reactions.rollups_applied_by', 'transaction', true)) as marked
"#;

/// Statement 2, for the keys whose row exists (a set whose insert found a row, or a removal):
/// locks those rows in (article, visitor) order, switches (`$3` a reaction, `$4` the network of
/// the switch) or deletes (`$3` null) them, and answers each locked row as it was, so that the
/// service knows which reaction and bucket each change leaves. A key with no row (removed
/// meanwhile by another transaction) is absent from the answer. A set of the reaction already
/// held changes nothing, its network included: a row's network is that of its `updated_at`.
const EXISTING_SQL: &str = r#"
with locked as (
    select r.article_id, r.visitor_key, r.reaction, r.updated_at, i.target, i.network
    from unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[]) as i(article_id, visitor_key, target, network)
    join reactions r on r.article_id = i.article_id and r.visitor_key = i.visitor_key
    order by r.article_id, r.visitor_key
    for update of r
), switched as (
    update reactions r set reaction = l.target::reaction, updated_at = now(), network = l.network
    from locked l
    where r.article_id = l.article_id and r.visitor_key = l.visitor_key
      and l.target is not null and l.target::reaction <> l.reaction
), deleted as (
    delete from reactions r
    using locked l
    where r.article_id = l.article_id and r.visitor_key = l.visitor_key and l.target is null
)
select article_id, visitor_key, reaction::text, updated_at from locked
"#;

/// The first key of the articles' advisory locks: the service's own, so that other users of the
/// database's advisory locks do not meet ours ("rr").
const ARTICLE_LOCK_CLASS: i32 = 0x7272;

/// Statement 3: takes the articles' locks (`$1`, the articles): transaction-scoped advisory locks,
/// one per article (two articles whose ids hash alike share one, which costs only some
/// concurrency), in the order of their keys. They live in memory: no row is written to take
/// them and nothing needs to exist first. Every writer of the service takes them before it
/// changes an article's counts, so the batches that change one article follow one another, and
/// the next statement, which starts once this one has them, sees every earlier batch committed
/// and no later one.
const LOCK_ARTICLES_SQL: &str = r#"
select pg_advisory_xact_lock($2, key)
from (select distinct hashtext(article_id) as key from unnest($1::text[]) as a(article_id) order by key) as keys
"#;

/// Two CTEs of [`WRITE_SQL`] for one rollup table: `<name>_added` upserts the rows whose deltas
/// are all positive, `<name>_changed` adds to the rows with a negative delta (which exist: a
/// reaction was counted in them). Their parameters are arrays from `$first`: article, bucket
/// start, then one delta per reaction in display order.
fn rollup_change(name: &str, table: &str, first: usize) -> String {
    let columns = count_columns();
    let deltas = each_reaction(", ", |i, _| format!("${}::int4[]", first + 2 + i));
    let added = each_reaction(", ", |_, r| format!("{c} = h.{c} + excluded.{c}", c = count_column(r)));
    let changed = each_reaction(", ", |_, r| format!("{c} = h.{c} + u.{c}", c = count_column(r)));
    format!(
        "{name}_deltas as (
    select * from unnest(${article}::text[], ${bucket}::timestamptz[], {deltas})
      as u(article_id, bucket_start, {columns})
), {name}_added as (
    insert into {table} as h
    select * from {name}_deltas where least({columns}) >= 0
    on conflict (article_id, bucket_start) do update set {added}
    returning 1
), {name}_changed as (
    update {table} h set {changed}
    from {name}_deltas u
    where least({u_columns}) < 0 and h.article_id = u.article_id and h.bucket_start = u.bucket_start
    returning 1
)",
        article = first,
        bucket = first + 1,
        u_columns = each_reaction(", ", |_, r| format!("u.{}", count_column(r))),
    )
}

/// The first parameters of [`WRITE_SQL`]'s hourly and daily rollup deltas (each an article, a
/// bucket start and one delta per reaction), and its parameter of the batch's articles.
const HOURLY_PARAMS: usize = 4;
const DAILY_PARAMS: usize = HOURLY_PARAMS + 2 + REACTIONS;
const ARTICLES_PARAM: usize = DAILY_PARAMS + 2 + REACTIONS;

/// Statement 4: adds the deltas to the count rows (`$1`–`$3`: articles, reactions, deltas) and
/// to the hourly and daily rollup rows (from [`HOURLY_PARAMS`] and [`DAILY_PARAMS`]), and answers
/// every count row of the batch's articles ([`ARTICLES_PARAM`]): the changed ones as changed
/// (kind 0), all of them as they were before (kind 1).
///
/// A CHECK is evaluated on the row an INSERT proposes before ON CONFLICT applies, so only rows
/// whose deltas are all positive are upserted; a row with a negative delta exists (a reaction was
/// counted in it) and is updated. The two sets are disjoint, so no row is changed twice. The
/// last row (kind 2) says how many rollup rows were changed, which must be all of them.
static WRITE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with count_deltas as (
    select * from unnest($1::text[], $2::text[], $3::int8[]) as u(article_id, reaction, delta)
), counts_added as (
    insert into article_reaction_counts as c (article_id, reaction, count)
    select article_id, reaction::reaction, delta from count_deltas where delta > 0
    on conflict (article_id, reaction) do update set count = c.count + excluded.count
    returning c.article_id, c.reaction, c.count
), counts_removed as (
    update article_reaction_counts c set count = c.count + d.delta
    from count_deltas d
    where d.delta < 0 and c.article_id = d.article_id and c.reaction = d.reaction::reaction
    returning c.article_id, c.reaction, c.count
), {hourly}, {daily}
select 0::int2, article_id, reaction::text, count from counts_added
union all
select 0::int2, article_id, reaction::text, count from counts_removed
union all
select 1::int2, article_id, reaction::text, count from article_reaction_counts where article_id = any(${ARTICLES_PARAM}::text[])
union all
select 2::int2, null, null,
       (select count(*) from hourly_added) + (select count(*) from hourly_changed)
       + (select count(*) from daily_added) + (select count(*) from daily_changed)
",
        hourly = rollup_change("hourly", "reaction_counts_hourly", HOURLY_PARAMS),
        daily = rollup_change("daily", "reaction_counts_daily", DAILY_PARAMS),
    )
});

/// A row of [`INSERT_SQL`]: an inserted (article, visitor), or (null, null) and the
/// transaction's `now()` in the last row.
type InsertedRow = (Option<String>, Option<Vec<u8>>, DateTime<Utc>);

/// A reaction row's key: (article, visitor key).
type RowKey<'a> = (&'a str, &'a [u8]);

/// A row of [`WRITE_SQL`]: kind, article, reaction, count.
type WrittenRow = (i16, Option<String>, Option<String>, i64);

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

/// Binds `changes` as the four arrays [`INSERT_SQL`] and [`EXISTING_SQL`] take: articles,
/// visitor keys, target reactions (null: a removal) and network keys.
fn bind_changes<'q, O>(
    query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    changes: &[NetChange<'q>],
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(changes.iter().map(|c| c.article_id).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.visitor).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.target.map(Reaction::key)).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.network).collect::<Vec<_>>())
}

/// The counts of one rollup row, one per reaction, in [`Reaction::ALL`] order.
type RollupCounts = [i64; REACTIONS];

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

    /// One attempt at the batch: one transaction (see [`INSERT_SQL`] to [`WRITE_SQL`]).
    async fn apply_once(&self, net: &[NetChange<'_>]) -> Result<Applied, sqlx::Error> {
        let mut articles: Vec<&str> = net.iter().map(|c| c.article_id).collect();
        articles.dedup(); // `net` is sorted by article
        let mut tx = self.pool.begin().await?;
        let moves = change_rows(&mut tx, net).await?;

        // Fold the moves into count deltas per (article, reaction) and rollup deltas per
        // (article, bucket), each map in lock order.
        let mut count_deltas: BTreeMap<(&str, Reaction), i64> = BTreeMap::new();
        let mut hourly: BTreeMap<(&str, DateTime<Utc>), RollupCounts> = BTreeMap::new();
        let mut daily: BTreeMap<(&str, DateTime<Utc>), RollupCounts> = BTreeMap::new();
        for Move { article_id, reaction, at, delta } in &moves {
            *count_deltas.entry((article_id, *reaction)).or_default() += delta;
            let slot = reaction.index();
            hourly.entry((article_id, Bucket::Hour.floor(*at))).or_default()[slot] += delta;
            daily.entry((article_id, Bucket::Day.floor(*at))).or_default()[slot] += delta;
        }
        hourly.retain(|_, deltas| deltas.iter().any(|d| *d != 0));
        daily.retain(|_, deltas| deltas.iter().any(|d| *d != 0));

        sqlx::query(LOCK_ARTICLES_SQL).bind(&articles).bind(ARTICLE_LOCK_CLASS).execute(&mut *tx).await?;
        // The batch holds its articles from here to the commit: see `Applied::order`.
        let order = next_lock_order();

        let count_deltas: Vec<(&str, Reaction, i64)> =
            count_deltas.into_iter().filter(|(_, d)| *d != 0).map(|((a, r), d)| (a, r, d)).collect();
        let mut query = sqlx::query_as::<_, WrittenRow>(WRITE_SQL.as_str())
            .bind(count_deltas.iter().map(|c| c.0).collect::<Vec<_>>())
            .bind(count_deltas.iter().map(|c| c.1.key()).collect::<Vec<_>>())
            .bind(count_deltas.iter().map(|c| c.2).collect::<Vec<_>>());
        for rows in [&hourly, &daily] {
            query = query
                .bind(rows.keys().map(|k| k.0).collect::<Vec<_>>())
                .bind(rows.keys().map(|k| k.1).collect::<Vec<_>>());
            for slot in 0..REACTIONS {
                let column: Vec<i32> =
                    rows.values().map(|d| i32::try_from(d[slot]).unwrap_or(i32::MAX)).collect();
                query = query.bind(column);
            }
        }
        let rows = query.bind(&articles).fetch_all(&mut *tx).await?;

        // Every count row of the batch's articles as it was, then the changed ones as they are.
        let mut before: Vec<(&str, Reaction, i64)> = Vec::with_capacity(rows.len());
        let mut changed: Vec<(&str, Reaction, i64)> = Vec::with_capacity(count_deltas.len());
        let mut rollup_rows = -1;
        for (kind, article_id, reaction, count) in &rows {
            match (kind, article_id, reaction) {
                (0 | 1, Some(article_id), Some(reaction)) => {
                    let side = if *kind == 0 { &mut changed } else { &mut before };
                    side.push((article_id.as_str(), parse_reaction(reaction)?, *count));
                }
                (2, None, None) => rollup_rows = *count,
                _ => return Err(sqlx::Error::Protocol("an unexpected row from the write statement".into())),
            }
        }
        if changed.len() != count_deltas.len() {
            return Err(invariant(format!(
                "changed {} count rows, expected {}",
                changed.len(),
                count_deltas.len()
            )));
        }
        if rollup_rows != (hourly.len() + daily.len()) as i64 {
            return Err(invariant(format!(
                "changed {rollup_rows} rollup rows, expected {}",
                hourly.len() + daily.len()
            )));
        }
        let mut counts: HashMap<ArticleId, ReactionCounts> = HashMap::with_capacity(articles.len());
        let changed_keys: HashSet<(&str, Reaction)> = changed.iter().map(|(a, r, _)| (*a, *r)).collect();
        let unchanged = before.into_iter().filter(|(a, r, _)| !changed_keys.contains(&(*a, *r)));
        for (article_id, reaction, count) in unchanged.chain(changed) {
            let article_id = ArticleId::parse(article_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
            counts.entry(article_id).or_default().add(reaction, count);
        }
        tx.commit().await?;
        Ok(Applied { counts, order })
    }

    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn counts(
        &self,
        articles: &[&ArticleId],
    ) -> Result<HashMap<ArticleId, ReactionCounts>, StoreError> {
        let ids: Vec<&str> = articles.iter().map(|a| a.as_str()).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "select article_id, reaction::text, count from article_reaction_counts
             where article_id = any($1) and count > 0",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "while reading counts"))?;
        counts_by_article(rows).map_err(StoreError::Other)
    }

    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn viewer_reactions(
        &self,
        visitor: &VisitorKey,
        articles: &[&ArticleId],
    ) -> Result<HashMap<ArticleId, Reaction>, StoreError> {
        let ids: Vec<&str> = articles.iter().map(|a| a.as_str()).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select article_id, reaction::text from reactions
             where visitor_key = $1 and article_id = any($2)",
        )
        .bind(visitor.as_bytes().as_slice())
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "while reading the viewer's reactions"))?;
        rows.into_iter()
            .map(|(article_id, reaction)| {
                let reaction = parse_reaction(&reaction)
                    .map_err(|e| classify(e, "while reading the viewer's reactions"))?;
                Ok((stored_article_id(article_id)?, reaction))
            })
            .collect()
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
        let mut deltas: HashMap<(&str, Reaction), i64> = HashMap::new();
        for (article_id, reaction) in &removed {
            *deltas.entry((article_id.as_str(), parse_reaction(reaction)?)).or_default() -= 1;
        }
        apply_count_deltas(&mut tx, deltas).await?;
        sqlx::query("delete from reactions where visitor_key = $1")
            .bind(visitor.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        removed
            .into_iter()
            .map(|(article_id, _)| ArticleId::parse(article_id).map_err(|e| sqlx::Error::Decode(e.into())))
            .collect()
    }
}

/// A reaction counted (+1) or uncounted (-1) at an instant, for the counts and the rollups.
struct Move<'a> {
    article_id: &'a str,
    reaction: Reaction,
    at: DateTime<Utc>,
    delta: i64,
}

/// Statements 1 and 2 of a batch ([`INSERT_SQL`], [`EXISTING_SQL`]): inserts, switches and
/// deletes the reaction rows, and answers the moves they make. A key whose insert found a row
/// goes to statement 2; a key statement 2 did not find (deleted meanwhile) goes back to
/// statement 1, in a later round of the same transaction, whose statements see what other
/// transactions committed meanwhile.
async fn change_rows<'a>(
    tx: &mut Transaction<'_, Postgres>,
    net: &[NetChange<'a>],
) -> Result<Vec<Move<'a>>, sqlx::Error> {
    let mut moves = Vec::with_capacity(net.len() + net.len() / 8);
    let mut to_insert: Vec<NetChange<'a>> = net.iter().filter(|c| c.target.is_some()).copied().collect();
    let mut to_lock: Vec<NetChange<'a>> = net.iter().filter(|c| c.target.is_none()).copied().collect();
    let mut now: Option<DateTime<Utc>> = None;
    for round in 0..MAX_ATTEMPTS {
        if round == 0 || !to_insert.is_empty() {
            let rows: Vec<InsertedRow> =
                bind_changes(sqlx::query_as(INSERT_SQL), &to_insert).fetch_all(&mut **tx).await?;
            let mut inserted: HashSet<RowKey<'_>> = HashSet::with_capacity(rows.len());
            for (article_id, visitor, at) in &rows {
                now = Some(*at);
                if let (Some(article_id), Some(visitor)) = (article_id, visitor) {
                    inserted.insert((article_id.as_str(), visitor.as_slice()));
                }
            }
            let now =
                now.ok_or_else(|| sqlx::Error::Protocol("the insert statement answered no row".into()))?;
            for change in to_insert.drain(..) {
                match inserted.get(&(change.article_id, change.visitor)) {
                    Some(_) => moves.push(Move {
                        article_id: change.article_id,
                        reaction: change.target.expect("only sets are inserted"),
                        at: now,
                        delta: 1,
                    }),
                    None => to_lock.push(change),
                }
            }
        }
        if to_lock.is_empty() {
            return Ok(moves);
        }
        to_lock.sort_unstable_by(|a, b| (a.article_id, a.visitor).cmp(&(b.article_id, b.visitor)));
        let rows: Vec<(String, Vec<u8>, String, DateTime<Utc>)> =
            bind_changes(sqlx::query_as(EXISTING_SQL), &to_lock).fetch_all(&mut **tx).await?;
        let mut held: HashMap<RowKey<'_>, (Reaction, DateTime<Utc>)> = HashMap::with_capacity(rows.len());
        for (article_id, visitor, reaction, at) in &rows {
            held.insert((article_id.as_str(), visitor.as_slice()), (parse_reaction(reaction)?, *at));
        }
        let now = now.expect("round 0 ran the insert statement");
        for change in to_lock.drain(..) {
            match (held.get(&(change.article_id, change.visitor)), change.target) {
                (Some(&(old, at)), target) if target != Some(old) => {
                    moves.push(Move { article_id: change.article_id, reaction: old, at, delta: -1 });
                    if let Some(new) = target {
                        moves.push(Move { article_id: change.article_id, reaction: new, at: now, delta: 1 });
                    }
                }
                (Some(_), _) | (None, None) => {}
                // Deleted by another transaction since statement 1: insert it after all.
                (None, Some(_)) => to_insert.push(change),
            }
        }
        if to_insert.is_empty() {
            return Ok(moves);
        }
    }
    Err(sqlx::Error::Protocol("concurrent inserts and deletes of the same reactions did not settle".into()))
}

/// A broken invariant found while applying a batch: the transaction is rolled back.
fn invariant(message: String) -> sqlx::Error {
    sqlx::Error::Protocol(format!("a write batch would break an invariant: {message}"))
}

/// Adds the deltas to the counts rows, in (article, reaction) order.
async fn apply_count_deltas(
    tx: &mut Transaction<'_, Postgres>,
    deltas: HashMap<(&str, Reaction), i64>,
) -> Result<(), sqlx::Error> {
    let mut deltas: Vec<_> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    deltas.sort_unstable_by_key(|((article_id, reaction), _)| (*article_id, *reaction));
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
