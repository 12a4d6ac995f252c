//! Row types both backends answer in: the export's rows and batches, and counts per reaction.

use futures_util::stream::BoxStream;

use super::StoreError;
use crate::domain::{ArticleId, Reaction, ReactionCounts};

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

/// A row of counts per reaction in display order; `None` when no row was summed.
pub(super) type CountsRow =
    (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// The counts of a [`CountsRow`] (a missing sum is zero).
pub(super) fn counts_of(row: CountsRow) -> ReactionCounts {
    let (like, dislike, love, funny, angry, sad, wow) = row;
    let mut counts = ReactionCounts::default();
    for (reaction, count) in Reaction::ALL.into_iter().zip([like, dislike, love, funny, angry, sad, wow]) {
        counts.add(reaction, count.unwrap_or(0));
    }
    counts
}
