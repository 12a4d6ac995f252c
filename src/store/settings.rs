//! Per-article settings (editorial controls) on both backends: table `article_settings`
//! (migration `20261130000002_article_settings.sql`).
//!
//! The service reads them with the counts, in one query, when its caches miss
//! ([`Store::counts_and_settings`](super::Store::counts_and_settings)); no write statement reads
//! them.

use std::collections::HashMap;

use anyhow::Context as _;

use super::{PgStore, SqliteStore, StoreError, article_ids, counts_by_article, stored_article_id};
use crate::domain::{ArticleId, ArticleSettings, ReactionCounts};

/// Counts and settings of some articles: articles nobody reacted to, or never configured, are
/// absent from their map.
pub type CountsAndSettings = (HashMap<ArticleId, ReactionCounts>, HashMap<ArticleId, ArticleSettings>);

/// The offered reaction keys of a settings row as a backend stores them: an array on PostgreSQL
/// (read as `text[]`), a JSON array on SQLite.
trait StoredKeys {
    fn into_keys(self) -> Result<Vec<String>, StoreError>;
}

impl StoredKeys for Vec<String> {
    fn into_keys(self) -> Result<Vec<String>, StoreError> {
        Ok(self)
    }
}

impl StoredKeys for String {
    fn into_keys(self) -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&self).context("invalid offered reactions are stored").map_err(StoreError::Other)
    }
}

/// A settings row: the article, `closed` and the offered keys (`NULL`: every reaction).
type SettingsRow<K> = (String, bool, Option<K>);

/// A row of the combined read: a count row (reaction and count, no `closed`) or a settings row
/// (`closed` and the offered keys, no reaction).
type StateRow<K> = (String, Option<String>, i64, Option<bool>, Option<K>);

fn stored_settings(closed: bool, reactions: Option<impl StoredKeys>) -> Result<ArticleSettings, StoreError> {
    let reactions = reactions.map(StoredKeys::into_keys).transpose()?;
    ArticleSettings::new(closed, reactions.as_deref())
        .context("invalid article settings are stored")
        .map_err(StoreError::Other)
}

/// One article's settings from its row, if it has one (otherwise those of an open article
/// offering everything).
fn article_settings(row: Option<(bool, Option<impl StoredKeys>)>) -> Result<ArticleSettings, StoreError> {
    row.map_or(Ok(ArticleSettings::default()), |(closed, reactions)| stored_settings(closed, reactions))
}

/// The configured articles' settings from their rows, or `None` when there are more than `limit`.
fn directory(
    rows: Vec<SettingsRow<impl StoredKeys>>,
    limit: u32,
) -> Result<Option<HashMap<ArticleId, ArticleSettings>>, StoreError> {
    if rows.len() > limit as usize {
        return Ok(None);
    }
    let mut settings = HashMap::with_capacity(rows.len());
    for (article_id, closed, reactions) in rows {
        settings.insert(stored_article_id(article_id)?, stored_settings(closed, reactions)?);
    }
    Ok(Some(settings))
}

/// Splits the rows of the combined read into counts and settings.
fn split_rows(rows: Vec<StateRow<impl StoredKeys>>) -> Result<CountsAndSettings, StoreError> {
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

impl PgStore {
    #[tracing::instrument(skip_all)]
    pub async fn configured_settings(
        &self,
        limit: u32,
    ) -> Result<Option<HashMap<ArticleId, ArticleSettings>>, StoreError> {
        use super::postgres::classify;
        let rows: Vec<SettingsRow<Vec<String>>> =
            sqlx::query_as("select article_id, closed, reactions::text[] from article_settings limit $1")
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| classify(e, "while reading the configured articles"))?;
        directory(rows, limit)
    }

    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn counts_and_settings(
        &self,
        articles: &[&ArticleId],
    ) -> Result<CountsAndSettings, StoreError> {
        use super::postgres::classify;
        let rows: Vec<StateRow<Vec<String>>> = sqlx::query_as(
            "select article_id, reaction::text, count, null::boolean, null::text[]
             from article_reaction_counts where article_id = any($1) and count > 0
             union all
             select article_id, null, 0, closed, reactions::text[]
             from article_settings where article_id = any($1)",
        )
        .bind(article_ids(articles))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "while reading counts and settings"))?;
        split_rows(rows)
    }

    #[tracing::instrument(skip_all)]
    pub async fn settings(&self, article_id: &ArticleId) -> Result<ArticleSettings, StoreError> {
        use super::postgres::classify;
        let row: Option<(bool, Option<Vec<String>>)> =
            sqlx::query_as("select closed, reactions::text[] from article_settings where article_id = $1")
                .bind(article_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| classify(e, "while reading an article's settings"))?;
        article_settings(row)
    }

    #[tracing::instrument(skip_all)]
    pub async fn put_settings(
        &self,
        article_id: &ArticleId,
        settings: &ArticleSettings,
    ) -> Result<(), StoreError> {
        use super::postgres::classify;
        let reactions: Option<Vec<&str>> =
            settings.restriction().map(|set| set.iter().map(|r| r.key()).collect());
        sqlx::query(
            "insert into article_settings (article_id, closed, reactions) values ($1, $2, $3::text[]::reaction[])
             on conflict (article_id) do update
             set closed = excluded.closed, reactions = excluded.reactions, updated_at = now()",
        )
        .bind(article_id.as_str())
        .bind(settings.closed())
        .bind(reactions)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|e| classify(e, "while storing an article's settings"))
    }
}

impl SqliteStore {
    #[tracing::instrument(skip_all)]
    pub async fn configured_settings(
        &self,
        limit: u32,
    ) -> Result<Option<HashMap<ArticleId, ArticleSettings>>, StoreError> {
        use super::sqlite::classify;
        let rows: Vec<SettingsRow<String>> =
            sqlx::query_as("select article_id, closed, reactions from article_settings limit $1")
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| classify(e, "while reading the configured articles"))?;
        directory(rows, limit)
    }

    #[tracing::instrument(skip_all, fields(articles = articles.len()))]
    pub async fn counts_and_settings(
        &self,
        articles: &[&ArticleId],
    ) -> Result<CountsAndSettings, StoreError> {
        use super::sqlite::{classify, json_array};
        let rows: Vec<StateRow<String>> = sqlx::query_as(
            "select article_id, reaction, count, null, null
             from article_reaction_counts where article_id in (select value from json_each($1)) and count > 0
             union all
             select article_id, null, 0, closed, reactions
             from article_settings where article_id in (select value from json_each($1))",
        )
        .bind(json_array(&article_ids(articles)))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "while reading counts and settings"))?;
        split_rows(rows)
    }

    #[tracing::instrument(skip_all)]
    pub async fn settings(&self, article_id: &ArticleId) -> Result<ArticleSettings, StoreError> {
        use super::sqlite::classify;
        let row: Option<(bool, Option<String>)> =
            sqlx::query_as("select closed, reactions from article_settings where article_id = $1")
                .bind(article_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| classify(e, "while reading an article's settings"))?;
        article_settings(row)
    }

    #[tracing::instrument(skip_all)]
    pub async fn put_settings(
        &self,
        article_id: &ArticleId,
        settings: &ArticleSettings,
    ) -> Result<(), StoreError> {
        use super::sqlite::{classify, micros};
        let reactions: Option<String> = settings.restriction().map(|set| {
            serde_json::to_string(&set.iter().map(|r| r.key()).collect::<Vec<_>>()).expect("keys serialize")
        });
        sqlx::query(
            "insert into article_settings (article_id, closed, reactions, updated_at) values ($1, $2, $3, $4)
             on conflict (article_id) do update
             set closed = excluded.closed, reactions = excluded.reactions, updated_at = excluded.updated_at",
        )
        .bind(article_id.as_str())
        .bind(settings.closed())
        .bind(reactions)
        .bind(micros(chrono::Utc::now()))
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|e| classify(e, "while storing an article's settings"))
    }
}
