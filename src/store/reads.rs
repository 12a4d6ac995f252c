//! The reads both backends make alike, written once over their [`Dialect`]: the statement, its
//! parameters and the decoding of its rows.

use std::collections::HashMap;

use sqlx::{Database, FromRow};

use super::dialect::Dialect;
use super::rows::{WindowCounts, viewer_reactions as viewer_reaction_rows};
use super::{StoreError, counts_by_article};
use crate::domain::{ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow, VisitorKey, WindowParts};

/// The current counts of `articles`; articles nobody reacted to are absent.
pub(super) async fn counts<D: Dialect>(
    store: &D,
    articles: &[&ArticleId],
) -> Result<HashMap<ArticleId, ReactionCounts>, StoreError>
where
    for<'r> (String, String, i64): FromRow<'r, <D::Db as Database>::Row>,
{
    let rows: Vec<(String, String, i64)> = sqlx::query_as(D::statements().counts.as_str())
        .bind(D::ids(articles))
        .fetch_all(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading counts"))?;
    counts_by_article(rows).map_err(StoreError::Other)
}

/// The reactions `visitor` holds on `articles`.
pub(super) async fn viewer_reactions<D: Dialect>(
    store: &D,
    visitor: &VisitorKey,
    articles: &[&ArticleId],
) -> Result<HashMap<ArticleId, Reaction>, StoreError>
where
    for<'r> (String, String): FromRow<'r, <D::Db as Database>::Row>,
    for<'q> &'q [u8]: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
{
    let rows: Vec<(String, String)> = sqlx::query_as(D::statements().viewer_reactions.as_str())
        .bind(visitor.as_bytes().as_slice())
        .bind(D::ids(articles))
        .fetch_all(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading the viewer's reactions"))?;
    viewer_reaction_rows(rows)
}

/// Site-wide counts per reaction in `window`, by the backend's own statement
/// ([`Dialect::window_totals_statement`]).
pub(super) async fn window_totals<D: Dialect>(
    store: &D,
    window: &TimeWindow,
) -> Result<ReactionCounts, StoreError>
where
    for<'r> WindowCounts: FromRow<'r, <D::Db as Database>::Row>,
{
    let query = sqlx::query_as(D::window_totals_statement());
    let WindowCounts(counts) = (WindowParts::new(window, Bucket::Day).instants().into_iter())
        .fold(query, |query, instant| query.bind(D::instant(instant)))
        .fetch_one(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading the totals"))?;
    Ok(counts)
}
