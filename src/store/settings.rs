//! Per-article settings (editorial controls) on both backends: table `article_settings`
//! (migration `20261130000002_article_settings.sql`).
//!
//! The service reads them with the counts, in one query, when its caches miss
//! ([`Store::counts_and_settings`](super::Store::counts_and_settings)); no write statement reads
//! them.

use std::collections::HashMap;

use anyhow::Context as _;

use sqlx::{Database, FromRow};

use super::dialect::Dialect;
use super::{StoreError, counts_by_article, stored_article_id};
use crate::domain::{ArticleId, ArticleSettings, ReactionCounts};

/// Counts and settings of some articles: articles nobody reacted to, or never configured, are
/// absent from their map.
pub type CountsAndSettings = (HashMap<ArticleId, ReactionCounts>, HashMap<ArticleId, ArticleSettings>);

/// A settings row: the article, `closed` and the offered keys as a JSON array (`NULL`: every
/// reaction).
type SettingsRow = (String, bool, Option<String>);

/// A row of the combined read: a count row (reaction and count, no `closed`) or a settings row
/// (`closed` and the offered keys, no reaction).
type StateRow = (String, Option<String>, i64, Option<bool>, Option<String>);

fn stored_settings(closed: bool, reactions: Option<String>) -> Result<ArticleSettings, StoreError> {
    let reactions: Option<Vec<String>> = reactions
        .map(|keys| serde_json::from_str(&keys))
        .transpose()
        .context("invalid offered reactions are stored")
        .map_err(StoreError::Other)?;
    ArticleSettings::new(closed, reactions.as_deref())
        .context("invalid article settings are stored")
        .map_err(StoreError::Other)
}

/// Splits the rows of the combined read into counts and settings.
fn split_rows(rows: Vec<StateRow>) -> Result<CountsAndSettings, StoreError> {
    let mut count_rows = Vec::with_capacity(rows.len());
    let mut settings = HashMap::new();
    for (article_id, reaction, count, closed, reactions) in rows {
        match (reaction, closed) {
            (Some(reaction), None) => count_rows.push((article_id, reaction, count)),
            (None, Some(closed)) => {
                settings.insert(stored_article_id(article_id)?, stored_settings(closed, reactions)?);
            }
            _ => return Err(StoreError::Other(anyhow::anyhow!("an unexpected row from the counts read"))),
        }
    }
    Ok((counts_by_article(count_rows).map_err(StoreError::Other)?, settings))
}

/// The settings of every configured article, unless more than `limit` are configured (`None`).
#[tracing::instrument(skip_all)]
pub(super) async fn configured_settings<D: Dialect>(
    store: &D,
    limit: u32,
) -> Result<Option<HashMap<ArticleId, ArticleSettings>>, StoreError>
where
    for<'r> SettingsRow: FromRow<'r, <D::Db as Database>::Row>,
    i64: for<'q> sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
{
    let rows: Vec<SettingsRow> = sqlx::query_as(D::statements().configured_settings.as_str())
        .bind(i64::from(limit) + 1)
        .fetch_all(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading the configured articles"))?;
    if rows.len() > limit as usize {
        return Ok(None);
    }
    let mut settings = HashMap::with_capacity(rows.len());
    for (article_id, closed, reactions) in rows {
        settings.insert(stored_article_id(article_id)?, stored_settings(closed, reactions)?);
    }
    Ok(Some(settings))
}

/// The counts and settings of `articles`, in one read.
#[tracing::instrument(skip_all, fields(articles = articles.len()))]
pub(super) async fn counts_and_settings<D: Dialect>(
    store: &D,
    articles: &[&ArticleId],
) -> Result<CountsAndSettings, StoreError>
where
    for<'r> StateRow: FromRow<'r, <D::Db as Database>::Row>,
{
    let rows: Vec<StateRow> = sqlx::query_as(D::statements().counts_and_settings.as_str())
        .bind(D::ids(articles))
        .fetch_all(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading counts and settings"))?;
    split_rows(rows)
}

/// One article's settings: those of an open article offering everything when it has no row.
#[tracing::instrument(skip_all)]
pub(super) async fn settings<D: Dialect>(
    store: &D,
    article_id: &ArticleId,
) -> Result<ArticleSettings, StoreError>
where
    for<'r> (bool, Option<String>): FromRow<'r, <D::Db as Database>::Row>,
    for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
{
    let row: Option<(bool, Option<String>)> = sqlx::query_as(D::statements().settings.as_str())
        .bind(article_id.as_str())
        .fetch_optional(store.executor())
        .await
        .map_err(|e| D::classify(e, "while reading an article's settings"))?;
    row.map_or(Ok(ArticleSettings::default()), |(closed, reactions)| stored_settings(closed, reactions))
}

/// Replaces one article's settings.
#[tracing::instrument(skip_all)]
pub(super) async fn put_settings<D: Dialect>(
    store: &D,
    article_id: &ArticleId,
    settings: &ArticleSettings,
) -> Result<(), StoreError>
where
    for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    bool: for<'q> sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
{
    let offered = D::offered(settings.restriction().map(|set| set.iter().map(|r| r.key()).collect()));
    sqlx::query(D::statements().put_settings.as_str())
        .bind(article_id.as_str())
        .bind(settings.closed())
        .bind(offered)
        .execute(store.executor())
        .await
        .map(drop)
        .map_err(|e| D::classify(e, "while storing an article's settings"))
}
