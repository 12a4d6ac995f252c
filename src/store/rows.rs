//! Row types both backends answer in: the export's rows and batches, and counts per reaction.

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
