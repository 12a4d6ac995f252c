//! What PostgreSQL and SQLite differ in, for the reads written once for both
//! ([`super::reads`], [`super::settings`]): how a list of article ids, an instant and the offered
//! reactions are bound and stored, a few SQL spellings, and which errors mean "try again later".
//! A statement both backends run alike is built once from these pieces; a backend whose
//! statement is its own (the stats windows) gives it whole.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::{PgStore, SqliteStore, StoreError, postgres, sqlite};

/// A backend as the shared reads see it.
pub(super) trait Dialect: Sync {
    /// The sqlx driver.
    type Db: Database<Arguments = Self::Arguments>;
    /// Its statements' parameters.
    type Arguments: IntoArguments<Self::Db>;
    /// What runs a statement: a reference to the pool.
    type Executor<'p>: Executor<'p, Database = Self::Db>
    where
        Self: 'p;
    /// A list of article ids as one parameter: `text[]` on PostgreSQL; a JSON array on SQLite,
    /// which has no array parameters (read back through `json_each`).
    type Ids<'a>: Encode<'a, Self::Db> + Type<Self::Db> + Send + 'a;
    /// An instant as a parameter: `timestamptz` on PostgreSQL, microseconds since the Unix epoch
    /// on SQLite (its columns' unit).
    type Instant: for<'a> Encode<'a, Self::Db> + Type<Self::Db> + Send + 'static;
    /// The offered reactions of an article's settings (`None`: all of them) as a parameter
    /// (see [`Self::offered_param`]): `text[]` on PostgreSQL, a JSON array on SQLite.
    type Offered: for<'a> Encode<'a, Self::Db> + Type<Self::Db> + Send + 'static;

    fn executor(&self) -> Self::Executor<'_>;
    fn ids<'a>(ids: &[&'a str]) -> Self::Ids<'a>;
    fn instant(at: DateTime<Utc>) -> Self::Instant;
    fn offered(keys: Option<Vec<&'static str>>) -> Self::Offered;
    /// `column is one of the ids of list parameter $param`.
    fn in_ids(column: &str, param: usize) -> String;
    /// A `reaction` column read as text (PostgreSQL's is an enum).
    fn reaction_text(column: &str) -> String;
    /// The offered reactions' column read as a JSON array of their keys.
    fn offered_column(column: &str) -> String;
    /// Parameter `$param`, bound with [`Self::offered`], as a value of the offered reactions'
    /// column.
    fn offered_param(param: usize) -> String;
    /// The present instant, as the database's clock gives it, in its column format.
    const NOW: &'static str;
    /// A driver error sorted into "try again later" (503) or "bug" (500).
    fn classify(error: sqlx::Error, context: &'static str) -> StoreError;
    /// The shared statements in this dialect, built on first use.
    fn statements() -> &'static Statements;
    /// The site-wide totals of a window: six parameters hold its instants
    /// (`WindowParts::instants`), and its one row the counts per reaction in display order.
    fn window_totals_statement() -> &'static str;
}

/// The statements the shared reads and writes run, in one dialect. Each is spelled once, in
/// [`Statements::new`]; a backend builds them once ([`Dialect::statements`]), so that they are
/// as static as literals to the driver's statement cache.
pub(super) struct Statements {
    /// `$1` the articles: `(article_id, reaction, count)` of their nonzero counts.
    pub counts: String,
    /// `$1` the visitor key, `$2` the articles: `(article_id, reaction)` of what it holds.
    pub viewer_reactions: String,
    /// `$1` the articles: their count rows `(article_id, reaction, count, null, null)` and
    /// settings rows `(article_id, null, 0, closed, offered)`.
    pub counts_and_settings: String,
    /// `$1` an article: `(closed, offered)`.
    pub settings: String,
    /// `$1` how many at most: `(article_id, closed, offered)` of the configured articles.
    pub configured_settings: String,
    /// `$1` an article, `$2` closed, `$3` the offered reactions ([`Dialect::offered`]).
    pub put_settings: String,
}

impl Statements {
    pub fn new<D: Dialect>() -> Self {
        let reaction = D::reaction_text("reaction");
        let offered = D::offered_column("reactions");
        Self {
            counts: format!(
                "select article_id, {reaction}, count from article_reaction_counts where {ids} and count > 0",
                ids = D::in_ids("article_id", 1),
            ),
            viewer_reactions: format!(
                "select article_id, {reaction} from reactions where visitor_key = $1 and {ids}",
                ids = D::in_ids("article_id", 2),
            ),
            counts_and_settings: format!(
                "select article_id, {reaction}, count, null, null
                 from article_reaction_counts where {ids} and count > 0
                 union all
                 select article_id, null, 0, closed, {offered}
                 from article_settings where {ids}",
                ids = D::in_ids("article_id", 1),
            ),
            settings: format!("select closed, {offered} from article_settings where article_id = $1"),
            configured_settings: format!(
                "select article_id, closed, {offered} from article_settings limit $1"
            ),
            put_settings: format!(
                "insert into article_settings (article_id, closed, reactions) values ($1, $2, {value})
                 on conflict (article_id) do update
                 set closed = excluded.closed, reactions = excluded.reactions, updated_at = {now}",
                value = D::offered_param(3),
                now = D::NOW,
            ),
        }
    }
}

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

    fn ids<'a>(ids: &[&'a str]) -> Self::Ids<'a> {
        ids.to_vec()
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
        postgres::classify(error, context)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::new::<PgStore>);
        &STATEMENTS
    }

    fn window_totals_statement() -> &'static str {
        postgres::stats_sql::WINDOW_TOTALS.as_str()
    }
}

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

    fn ids<'a>(ids: &[&'a str]) -> Self::Ids<'a> {
        sqlite::json_array(ids)
    }

    fn instant(at: DateTime<Utc>) -> Self::Instant {
        sqlite::micros(at)
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
        sqlite::classify(error, context)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::new::<SqliteStore>);
        &STATEMENTS
    }

    fn window_totals_statement() -> &'static str {
        sqlite::stats_sql::WINDOW_TOTALS.as_str()
    }
}
