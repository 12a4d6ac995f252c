//! What PostgreSQL and SQLite differ in, for the reads written once for both
//! ([`super::reads`], [`super::settings`]): how a list of article ids, an instant and the offered
//! reactions are bound and stored, a few SQL spellings, and which errors mean "try again later".
//! A statement both backends run alike is built once from these pieces; a backend whose
//! statement is its own (the stats windows) gives it whole. Each backend implements [`Dialect`]
//! in its own module, beside the code it shares the spellings with.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use crate::domain::ArticleId;

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
    fn ids<'a>(articles: &[&'a ArticleId]) -> Self::Ids<'a>;
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
