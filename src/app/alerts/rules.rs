//! The alert rules, over the last hour's stats window.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::domain::{ArticleId, Bucket, Reaction, TimeWindow, rfc3339};
use crate::store::{NewAlert, Store, StoreError};

/// `article.trending`.
pub const TRENDING: &str = "article.trending";
/// `article.reaction_surge`.
pub const SURGE: &str = "article.reaction_surge";

/// Articles each rule looks at per evaluation, most active first.
const CANDIDATES: u32 = 100;

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `ALERT_TRENDING_SCORE`.
    pub trending_score: f64,
    /// `ALERT_SURGE_MIN`.
    pub surge_min: i64,
    /// `ALERT_SURGE_SHARE`.
    pub surge_share: f64,
    /// `TRENDING_MIN_NETWORKS`: an article alerted on as trending is one the trending list shows.
    pub trending_min_networks: u32,
}

impl Rules {
    /// Evaluates both rules over the hour before `now` and records the alerts that fire and were
    /// not recorded yet in their period (the UTC hour of `now`); answers how many were recorded.
    pub async fn evaluate(
        &self,
        store: &Store,
        urls: &[String],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let window = TimeWindow::new(now - TimeDelta::hours(1), now).expect("an hour is not empty");
        let period = Bucket::Hour.floor(now);
        let mut recorded = 0;

        // The trending list of `/v1/stats/trending?window=1h`.
        for article in store.trending(&window, CANDIDATES, self.trending_min_networks).await? {
            if article.score < self.trending_score {
                break; // best first
            }
            let counts =
                store.counts(&[&article.article_id]).await?.remove(&article.article_id).unwrap_or_default();
            let data = json!({
                "article_id": article.article_id,
                "score": article.score,
                "recent": article.recent,
                "previous": article.previous,
                "networks": article.networks,
                "counts": counts,
            });
            recorded += record(store, urls, now, TRENDING, &article.article_id, None, period, data).await?;
        }

        // For each reaction, the articles with at least `surge_min` of it in the hour, then
        // their totals in the same hour for the share.
        let mut candidates: BTreeMap<ArticleId, Vec<(Reaction, i64)>> = BTreeMap::new();
        for reaction in Reaction::ALL {
            for top in store.top_articles(&window, &[reaction], CANDIDATES).await? {
                if top.count < self.surge_min {
                    break; // most first
                }
                candidates.entry(top.article_id).or_default().push((reaction, top.count));
            }
        }
        for (article_id, surges) in candidates {
            let total: i64 = store
                .article_timeseries(&article_id, &window, Bucket::Hour)
                .await?
                .iter()
                .map(|(_, counts)| counts.total())
                .sum();
            for (reaction, count) in surges {
                let share = count as f64 / total.max(count) as f64;
                if share < self.surge_share {
                    continue;
                }
                let data = json!({
                    "article_id": article_id,
                    "reaction": reaction,
                    "count": count,
                    "share": share,
                    "since": rfc3339(window.since()),
                    "until": rfc3339(window.until()),
                });
                recorded +=
                    record(store, urls, now, SURGE, &article_id, Some(reaction), period, data).await?;
            }
        }
        Ok(recorded)
    }
}

/// Records one alert, once per (type, article, reaction, period); answers 1 if recorded now.
#[allow(clippy::too_many_arguments)]
async fn record(
    store: &Store,
    urls: &[String],
    now: DateTime<Utc>,
    event_type: &str,
    article_id: &ArticleId,
    reaction: Option<Reaction>,
    period: DateTime<Utc>,
    data: Value,
) -> Result<usize, StoreError> {
    let body = json!({ "type": event_type, "timestamp": rfc3339(now), "data": data });
    let alert = NewAlert {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        // The article id holds no control character, so the separator cannot be forged.
        dedup_key: format!(
            "{event_type}\u{1f}{article_id}\u{1f}{}\u{1f}{}",
            reaction.map(Reaction::key).unwrap_or_default(),
            rfc3339(period)
        ),
        event_type: event_type.to_owned(),
        body: body.to_string(),
        urls: urls.to_vec(),
        at: now,
    };
    Ok(usize::from(store.record_alert(&alert).await?))
}
