//! Row types both backends answer in: the export's rows and batches, counts per reaction, and a
//! visitor's reactions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use super::{StoreError, stored_article_id, stored_reaction};
use crate::domain::{ArticleCount, ArticleId, Reaction, ReactionCounts};

/// Rows the CSV export reads from its cursor at a time: what one export holds in memory.
pub const EXPORT_BATCH_ROWS: usize = 1000;

/// How many reactions of one kind one article gathered in a window: a row of the CSV export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub article_id: ArticleId,
    pub reaction: Reaction,
    pub count: i64,
}

/// The export's rows in batches of at most [`EXPORT_BATCH_ROWS`], read from the database as the
/// stream is polled. Dropping the stream ends the export and frees its connection.
pub type ExportStream = BoxStream<'static, Result<Vec<ExportRow>, StoreError>>;

/// The counts of a row's columns `first..first + 7`, one per reaction in display order (a
/// missing sum, `NULL`, is zero). Both backends' stats rows hold their counts so.
pub(super) fn counts_at<'r, R>(row: &'r R, first: usize) -> Result<ReactionCounts, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut counts = ReactionCounts::default();
    for (i, reaction) in Reaction::ALL.into_iter().enumerate() {
        counts.add(reaction, row.try_get::<Option<i64>, _>(first + i)?.unwrap_or(0));
    }
    Ok(counts)
}

/// A row of counts per reaction only (columns `0..7`, see [`counts_at`]): both backends' totals.
pub(super) struct WindowCounts(pub(super) ReactionCounts);

impl<'r, R> sqlx::FromRow<'r, R> for WindowCounts
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        counts_at(row, 0).map(Self)
    }
}

/// A row of a time series: its bucket's start as the backend stores it (column 0), then counts
/// per reaction (columns `1..8`).
pub(super) struct BucketCounts<T> {
    start: T,
    counts: ReactionCounts,
}

impl<'r, R, T> sqlx::FromRow<'r, R> for BucketCounts<T>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self { start: row.try_get(0)?, counts: counts_at(row, 1)? })
    }
}

/// The buckets of a time series, in the order of its rows, with `start` turning each stored
/// start into an instant. Rows without reactions are left out: a rollup row whose reactions all
/// went elsewhere holds zeros, and a bucket without reactions is absent.
pub(super) fn nonempty_buckets<T>(
    rows: Vec<BucketCounts<T>>,
    start: impl Fn(T) -> Result<DateTime<Utc>, StoreError>,
) -> Result<Vec<(DateTime<Utc>, ReactionCounts)>, StoreError> {
    rows.into_iter()
        .filter(|row| row.counts.total() > 0)
        .map(|row| Ok((start(row.start)?, row.counts)))
        .collect()
}

/// `(article_id, count)` rows, most first, as both backends' top-articles statements answer them.
pub(super) fn article_counts(rows: Vec<(String, i64)>) -> Result<Vec<ArticleCount>, StoreError> {
    rows.into_iter()
        .map(|(article_id, count)| Ok(ArticleCount { article_id: stored_article_id(article_id)?, count }))
        .collect()
}

/// `(article_id, reaction, count)` rows of the export, as both backends read them.
pub(super) fn export_rows(rows: Vec<(String, String, i64)>) -> Result<Vec<ExportRow>, StoreError> {
    rows.into_iter()
        .map(|(article_id, reaction, count)| {
            Ok(ExportRow {
                article_id: stored_article_id(article_id)?,
                reaction: stored_reaction(&reaction)?,
                count,
            })
        })
        .collect()
}

/// `(article_id, reaction)` rows of the reactions one visitor holds, as both backends read them.
pub(super) fn viewer_reactions(
    rows: Vec<(String, String)>,
) -> Result<HashMap<ArticleId, Reaction>, StoreError> {
    rows.into_iter()
        .map(|(article_id, reaction)| Ok((stored_article_id(article_id)?, stored_reaction(&reaction)?)))
        .collect()
}
