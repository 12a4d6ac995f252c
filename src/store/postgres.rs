//! The PostgreSQL backend.
//!
//! Writes are set-based: a slice of changes becomes a handful of statements over `UNNEST`ed
//! arrays, whatever its length, so that a batching writer can hand over many changes at once.
//! Rows are locked in a fixed order (article, visitor key), then counts in (article, reaction)
//! order, then the stats rollups in (article, bucket) order, so concurrent writers, in this
//! process or another, do not deadlock; the rare deadlock or serialization failure that remains
//! is retried.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::{ReactionChange, StoreError, StoreOptions, counts_by_article, parse_reaction, stored_article_id};
use crate::domain::{ArticleId, Reaction, ReactionCounts};
use crate::identity::{VisitorKey, VisitorSecret};

/// The schema migrations in `migrations/`, embedded at compile time. `sqlx migrate run` applies
/// the same folder.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How often a statement that hit a deadlock or serialization failure is tried in all.
const MAX_ATTEMPTS: u32 = 6;

/// Counts of the touched articles, and the (article, visitor) keys whose insert lost a race.
type RoundOutcome = (HashMap<ArticleId, ReactionCounts>, Vec<(String, Vec<u8>)>);

/// A row of [`APPLY_SQL`]: `(true, article, reaction, count, _)` is a count (reaction and count
/// null for "this article was touched"); `(false, article, _, _, visitor)` a lost insert.
type ApplyRow = (bool, String, Option<String>, Option<i64>, Option<Vec<u8>>);

/// The whole write of a batch as one statement. Inputs: `$1` article ids, `$2` visitor keys,
/// `$3` target reactions (null removes), one entry per (article, visitor), sorted.
///
/// Data-modifying CTEs share one snapshot and each row is changed at most once: `inserted`
/// takes keys with no row, `switched` and `deleted` take disjoint sets of locked rows, and
/// `changed` applies one net delta per (article, reaction), and `rolled` every move to the stats
/// rollups in one call (see the migration `20261127000001_stats_rollups.sql`). Reaction rows are
/// locked in (article, visitor) order, count rows in (article, reaction) order, then rollup rows
/// in (article, bucket) order, so writers do not deadlock. Untouched count rows of the touched
/// articles are read from the same snapshot.
const APPLY_SQL: &str = r#"
with input as (
    select * from unnest($1::text[], $2::bytea[], $3::text[]) as i(article_id, visitor_key, target)
), locked as (
    select r.article_id, r.visitor_key, r.reaction::text as old, r.updated_at as old_at
    from reactions r
    join input i on r.article_id = i.article_id and r.visitor_key = i.visitor_key
    order by r.article_id, r.visitor_key
    for update of r
), inserted as (
    insert into reactions (article_id, visitor_key, reaction)
    select i.article_id, i.visitor_key, i.target::reaction
    from input i
    where i.target is not null
      and not exists (select 1 from locked l where l.article_id = i.article_id and l.visitor_key = i.visitor_key)
    order by i.article_id, i.visitor_key
    on conflict (article_id, visitor_key) do nothing
    returning article_id, visitor_key
), switched as (
    update reactions r set reaction = i.target::reaction, updated_at = now()
    from input i
    join locked l on l.article_id = i.article_id and l.visitor_key = i.visitor_key
    where r.article_id = i.article_id and r.visitor_key = i.visitor_key
      and i.target is not null and i.target <> l.old
    returning r.article_id, r.visitor_key
), deleted as (
    delete from reactions r
    using input i
    join locked l on l.article_id = i.article_id and l.visitor_key = i.visitor_key
    where r.article_id = i.article_id and r.visitor_key = i.visitor_key and i.target is null
    returning r.article_id, r.visitor_key
), moves as (
    -- a reaction set now counts +1 at now() (the updated_at it was given), a reaction switched
    -- or removed -1 where it was.
    select i.article_id, i.target as reaction, now() as at, 1 as delta
    from inserted n join input i using (article_id, visitor_key)
    union all
    select i.article_id, i.target, now(), 1
    from switched s join input i using (article_id, visitor_key)
    union all
    select l.article_id, l.old, l.old_at, -1
    from switched s join locked l using (article_id, visitor_key)
    union all
    select l.article_id, l.old, l.old_at, -1
    from deleted d join locked l using (article_id, visitor_key)
), rolled as (
    -- Every rollup change of the batch in one call, so that its rollup rows are locked in one
    -- (article, bucket) pass; the rollup triggers, which would take the inserts, switches and
    -- deletes in three passes (and so could deadlock with another batch), see the marker and
    -- leave this statement to it. Read by the last branch below, after the counts are changed:
    -- rollup rows are locked after count rows, as in every other writer.
    select set_config('reader_reactions.rollups_applied_by', statement_timestamp()::text, true),
           reaction_rollups_add(array_agg(article_id), array_agg(at), array_agg(reaction::reaction),
                                array_agg(delta))
    from moves
), deltas as (
    select article_id, reaction, sum(delta)::bigint as delta
    from moves group by article_id, reaction having sum(delta) <> 0
), changed as (
    -- Every delta in one upsert, in (article, reaction) order, so concurrent writers lock count
    -- rows in the same order. A CHECK is evaluated on the row an INSERT proposes before ON
    -- CONFLICT applies, so the proposed row never carries a negative count (a negative delta
    -- implies the row exists); the update takes the real delta from `deltas`.
    insert into article_reaction_counts as c (article_id, reaction, count)
    select article_id, reaction::reaction, greatest(delta, 0) from deltas
    order by article_id, reaction
    on conflict (article_id, reaction) do update
    set count = c.count + (
        select d.delta from deltas d
        where d.article_id = excluded.article_id and d.reaction::reaction = excluded.reaction
    )
    returning c.article_id, c.reaction, c.count
)
select true, article_id, reaction::text, count, null::bytea from changed
union all
select true, c.article_id, c.reaction::text, c.count, null
from article_reaction_counts c
where c.article_id in (select article_id from input)
  and not exists (select 1 from changed x where x.article_id = c.article_id and x.reaction = c.reaction)
union all
select true, i.article_id, null, null, null from input i cross join rolled
union all
select false, i.article_id, null, null, i.visitor_key
from input i
where i.target is not null
  and not exists (select 1 from locked l where l.article_id = i.article_id and l.visitor_key = i.visitor_key)
  and not exists (select 1 from inserted n where n.article_id = i.article_id and n.visitor_key = i.visitor_key)
"#;

/// PostgreSQL through a sqlx connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    database_url: std::sync::Arc<str>,
}

/// A change after collapsing a batch to the last intent per (article, visitor).
struct NetChange<'a> {
    article_id: &'a str,
    visitor: &'a [u8],
    target: Option<Reaction>,
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

    #[tracing::instrument(skip_all)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| classify(e, "while pinging the database"))
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
    pub async fn apply(
        &self,
        changes: &[ReactionChange],
    ) -> Result<HashMap<ArticleId, ReactionCounts>, StoreError> {
        // The last change per (article, visitor) is the one that counts; order is kept.
        let mut last: HashMap<(&str, &[u8]), Option<Reaction>> = HashMap::with_capacity(changes.len());
        for change in changes {
            last.insert((change.article_id.as_str(), change.visitor.as_bytes()), change.reaction);
        }
        let mut net: Vec<NetChange<'_>> = last
            .into_iter()
            .map(|((article_id, visitor), target)| NetChange { article_id, visitor, target })
            .collect();
        net.sort_unstable_by(|a, b| (a.article_id, a.visitor).cmp(&(b.article_id, b.visitor)));

        // One statement per round. A round leaves out only changes whose insert lost a race with
        // another transaction inserting the same (article, visitor); the next round applies them
        // over the row that transaction committed.
        let mut counts = HashMap::new();
        let mut pending: Vec<&NetChange<'_>> = net.iter().collect();
        for _round in 0..MAX_ATTEMPTS {
            let (round_counts, lost) = self.apply_round_retrying(&pending).await?;
            counts.extend(round_counts);
            if lost.is_empty() {
                return Ok(counts);
            }
            pending.retain(|c| lost.iter().any(|(a, v)| a == c.article_id && v.as_slice() == c.visitor));
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "concurrent inserts of the same reaction did not settle"
        )))
    }

    /// One round, retried on deadlocks and serialization failures (the round did nothing then).
    async fn apply_round_retrying(&self, pending: &[&NetChange<'_>]) -> Result<RoundOutcome, StoreError> {
        let mut attempt = 1;
        loop {
            match self.apply_round(pending).await {
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying a write statement");
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
                    attempt += 1;
                }
                result => return result.map_err(|e| classify(e, "while applying reaction changes")),
            }
        }
    }

    /// Applies the changes in one statement (atomic by itself, one round trip): locks the rows
    /// that exist in (article, visitor) order, inserts, switches and deletes, turns the moves
    /// into per-(article, reaction) deltas and applies them to the counts, and answers the
    /// touched articles' counts plus the changes whose insert lost a race.
    async fn apply_round(&self, pending: &[&NetChange<'_>]) -> Result<RoundOutcome, sqlx::Error> {
        let articles: Vec<&str> = pending.iter().map(|c| c.article_id).collect();
        let visitors: Vec<&[u8]> = pending.iter().map(|c| c.visitor).collect();
        let targets: Vec<Option<&str>> = pending.iter().map(|c| c.target.map(Reaction::key)).collect();
        let rows: Vec<ApplyRow> = sqlx::query_as(APPLY_SQL)
            .bind(&articles)
            .bind(&visitors)
            .bind(&targets)
            .fetch_all(&self.pool)
            .await?;
        let mut counts: HashMap<ArticleId, ReactionCounts> = HashMap::new();
        let mut lost = Vec::new();
        for (is_count, article_id, reaction, count, visitor) in rows {
            if is_count {
                let article_id = ArticleId::parse(article_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
                let entry = counts.entry(article_id).or_default();
                if let (Some(reaction), Some(count)) = (reaction, count) {
                    entry.add(parse_reaction(&reaction)?, count);
                }
            } else if let Some(visitor) = visitor {
                lost.push((article_id, visitor));
            }
        }
        Ok((counts, lost))
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
