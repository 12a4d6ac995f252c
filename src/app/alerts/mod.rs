//! Newsroom alerts: webhooks that tell editors when a story takes off or readers' reactions
//! under it surge, signed as the Standard Webhooks specification says.
//!
//! Two tasks per instance. The evaluator reads the stats windows (the rollups, through the same
//! queries as the dashboard) every `ALERT_CHECK_INTERVAL_MS` and records each alert in the
//! outbox, once per alert and period whichever instance gets there first (a unique key in the
//! database). The deliverer claims due deliveries (one instance per delivery), POSTs them, and
//! records the outcome: a failure is retried with exponential backoff and jitter for at least
//! [`RETRY_FOR`], with the same `webhook-id` each time.
//!
//! [`RETRY_FOR`]: crate::app::alerts::RETRY_FOR

mod rules;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::rules::Rules;
pub use self::signature::WebhookSecret;
use crate::config::Config;
use crate::store::{Delivery, Store};

/// The longest one delivery may take, connection included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claimed delivery belongs to the instance that claimed it: well past
/// [`DELIVERY_TIMEOUT`], so that no other instance sends it meanwhile, and short enough that a
/// delivery whose instance died is sent again soon.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);

/// A failing delivery is retried for at least this long after its event.
pub const RETRY_FOR: TimeDelta = TimeDelta::hours(24);

/// The first retry's delay; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How often the deliverer looks for due deliveries when nothing wakes it.
const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// Deliveries claimed (and sent concurrently) at a time.
const CLAIM_BATCH: u32 = 16;

/// The settings of the alerts, as one line naming the first bad one.
pub fn check_settings(config: &Config) -> Result<(), String> {
    let urls = webhook_urls(config);
    for (n, url) in urls.iter().enumerate() {
        // The URL is not repeated: it may carry a token.
        let ok = reqwest::Url::parse(url)
            .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some());
        if !ok {
            return Err(format!(
                "--webhook-urls (WEBHOOK_URLS) entry {} is not an http:// or https:// URL",
                n + 1
            ));
        }
    }
    match config.webhook_secret.as_deref() {
        Some(secret) => {
            WebhookSecret::parse(secret).map_err(|why| format!("--webhook-secret (WEBHOOK_SECRET) {why}"))?;
        }
        None if !urls.is_empty() => {
            return Err("--webhook-secret (WEBHOOK_SECRET) must be set when WEBHOOK_URLS is: every alert \
                        is signed"
                .to_owned());
        }
        None => {}
    }
    if !(config.alert_surge_share > 0.0 && config.alert_surge_share <= 1.0) {
        return Err("--alert-surge-share (ALERT_SURGE_SHARE) must be above 0 and at most 1".to_owned());
    }
    if !(config.alert_trending_score.is_finite() && config.alert_trending_score > 0.0) {
        return Err("--alert-trending-score (ALERT_TRENDING_SCORE) must be a number above 0".to_owned());
    }
    Ok(())
}

/// The configured webhook URLs, empty entries left out.
fn webhook_urls(config: &Config) -> Vec<String> {
    config.webhook_urls.iter().map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect()
}

/// The running evaluator and deliverer.
pub struct AlertTasks {
    evaluator: JoinHandle<()>,
    deliverer: JoinHandle<()>,
}

impl AlertTasks {
    /// Starts the alerts if `WEBHOOK_URLS` is set.
    pub fn start(config: &Config, store: &Store) -> anyhow::Result<Option<Self>> {
        let urls = webhook_urls(config);
        if urls.is_empty() {
            return Ok(None);
        }
        check_settings(config).map_err(anyhow::Error::msg)?;
        let secret = WebhookSecret::parse(config.webhook_secret.as_deref().unwrap_or_default())
            .map_err(anyhow::Error::msg)?;
        let client = reqwest::Client::builder()
            // A redirect could point the signed event anywhere; the newsroom fixes its URL instead.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .build()?;
        let rules = Rules {
            trending_score: config.alert_trending_score,
            surge_min: i64::from(config.alert_surge_min.get()),
            surge_share: config.alert_surge_share,
            trending_min_networks: config.trending_min_networks,
        };
        let recorded = Arc::new(Notify::new());
        let evaluator =
            tokio::spawn(evaluate(store.clone(), rules, urls, config.alert_check_interval, recorded.clone()));
        let deliverer = tokio::spawn(deliver(store.clone(), client, Arc::new(secret), recorded));
        Ok(Some(Self { evaluator, deliverer }))
    }

    /// Stops both tasks. A delivery cut short is sent again once its lease runs out.
    pub async fn stop(self) {
        self.evaluator.abort();
        self.deliverer.abort();
        let _ = self.evaluator.await;
        let _ = self.deliverer.await;
    }
}

async fn evaluate(store: Store, rules: Rules, urls: Vec<String>, every: Duration, recorded: Arc<Notify>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match rules.evaluate(&store, &urls, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(alerts = n, "newsroom alerts recorded");
                recorded.notify_one();
            }
            Err(error) => tracing::warn!(%error, "cannot evaluate the newsroom alerts"),
        }
    }
}

async fn deliver(store: Store, client: reqwest::Client, secret: Arc<WebhookSecret>, recorded: Arc<Notify>) {
    loop {
        let now = Utc::now();
        let claimed = match store.claim_deliveries(now, now + LEASE, CLAIM_BATCH).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim webhook deliveries");
                Vec::new()
            }
        };
        let full = claimed.len() == CLAIM_BATCH as usize;
        let sends = claimed.into_iter().map(|delivery| send(&store, &client, &secret, delivery));
        futures_util::future::join_all(sends).await;
        if !full {
            let _ = tokio::time::timeout(DELIVERY_POLL, recorded.notified()).await;
        }
    }
}

/// One attempt of one delivery, and its outcome recorded.
async fn send(store: &Store, client: &reqwest::Client, secret: &WebhookSecret, delivery: Delivery) {
    let timestamp = Utc::now().timestamp();
    let signature = secret.sign(&delivery.event_id, timestamp, delivery.body.as_bytes());
    let outcome = client
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await;
    let error = match outcome {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("answered {}", response.status())),
        Err(error) if error.is_timeout() => Some(format!("no answer within {DELIVERY_TIMEOUT:?}")),
        Err(error) => Some(format!("{error}")),
    };
    let now = Utc::now();
    let recorded = match &error {
        None => store.delivery_succeeded(&delivery, now).await,
        Some(why) => {
            let give_up = now - delivery.created_at >= RETRY_FOR;
            let retry_at = now + backoff(delivery.attempts);
            if give_up {
                tracing::error!(event = %delivery.event_id, attempts = delivery.attempts, error = %why,
                    "a newsroom alert could not be delivered for 24 hours; giving up");
            } else {
                tracing::warn!(event = %delivery.event_id, attempts = delivery.attempts, error = %why,
                    "a newsroom alert delivery failed; retrying");
            }
            store.delivery_failed(&delivery, retry_at, why, give_up).await
        }
    };
    if let Err(error) = recorded {
        // The lease runs out and the delivery is tried again: at least once.
        tracing::warn!(%error, event = %delivery.event_id, "cannot record a webhook delivery's outcome");
    }
}

/// The delay before the attempt after `attempts` failed ones: doubling from [`FIRST_BACKOFF`]
/// up to [`MAX_BACKOFF`], of which a random half ("equal jitter"), so that the retries of many
/// events, or of many instances, spread out.
fn backoff(attempts: i32) -> TimeDelta {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
    let full = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let jittered = full.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    TimeDelta::from_std(jittered).unwrap_or(TimeDelta::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1).num_milliseconds();
            assert!((1000..=2000).contains(&first), "{first}");
            let third = backoff(3).num_milliseconds();
            assert!((4000..=8000).contains(&third), "{third}");
            let late = backoff(40).num_milliseconds();
            assert!((1_800_000..=3_600_000).contains(&late), "{late}");
        }
        // Doubling to the cap, then an hour at most: 24 hours hold about 35 attempts.
    }

    #[test]
    fn bad_settings_are_refused_with_one_line_naming_them() {
        let mut config = Config::for_database("sqlite://unused.db");
        assert_eq!(check_settings(&config), Ok(()), "alerts off");
        config.webhook_urls = vec!["https://news.example/hook".into()];
        assert!(check_settings(&config).unwrap_err().contains("WEBHOOK_SECRET"), "a secret is needed");
        config.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        assert_eq!(check_settings(&config), Ok(()));
        config.webhook_urls.push("ftp://news.example/hook".into());
        let line = check_settings(&config).unwrap_err();
        assert!(line.contains("WEBHOOK_URLS") && line.contains("entry 2"), "{line}");
        config.webhook_urls.pop();
        config.webhook_secret = Some("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        assert!(check_settings(&config).unwrap_err().contains("whsec_"));
        config.webhook_secret = Some("whsec_c2hvcnQ=".into());
        assert!(check_settings(&config).unwrap_err().contains("24 bytes"));
        config.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        config.alert_surge_share = 1.5;
        assert!(check_settings(&config).unwrap_err().contains("ALERT_SURGE_SHARE"));
    }
}
