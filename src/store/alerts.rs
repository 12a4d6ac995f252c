//! The outbox of the newsroom alerts (migration `20261130000003_webhook_outbox.sql`): events
//! recorded once per alert and period, and their deliveries, claimed by one instance at a time.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

/// An alert to record: its event and the URLs it goes to.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// The `webhook-id`.
    pub id: String,
    /// Names the alert and its period; a second alert with the same key is not recorded.
    pub dedup_key: String,
    pub event_type: String,
    /// The exact body sent.
    pub body: String,
    pub urls: Vec<String>,
    pub at: DateTime<Utc>,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub url: String,
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

const PG_INSERT_EVENT: &str = "insert into webhook_events (id, dedup_key, event_type, body, created_at)
     values ($1, $2, $3, $4, $5) on conflict (dedup_key) do nothing";
const PG_INSERT_DELIVERIES: &str = "insert into webhook_deliveries (event_id, url, next_attempt_at)
     select $1, url, $3 from unnest($2::text[]) as u(url)";
/// `$1` now, `$2` the lease's end, `$3` most rows.
const PG_CLAIM: &str = "with due as (
         select event_id, url from webhook_deliveries
         where delivered_at is null and failed_at is null and next_attempt_at <= $1
         order by next_attempt_at
         limit $3
         for update skip locked)
     update webhook_deliveries d
     set next_attempt_at = $2, attempts = d.attempts + 1
     from due, webhook_events e
     where d.event_id = due.event_id and d.url = due.url and e.id = d.event_id
     returning d.event_id, d.url, e.body, d.attempts, e.created_at";
const PG_DELIVERED: &str =
    "update webhook_deliveries set delivered_at = $3, last_error = null where event_id = $1 and url = $2";
const PG_FAILED: &str = "update webhook_deliveries set next_attempt_at = $3, last_error = $4,
         failed_at = case when $5 then $3 end
     where event_id = $1 and url = $2";

const SQLITE_INSERT_EVENT: &str = "insert into webhook_events (id, dedup_key, event_type, body, created_at)
     values (?1, ?2, ?3, ?4, ?5) on conflict (dedup_key) do nothing";
const SQLITE_INSERT_DELIVERY: &str =
    "insert into webhook_deliveries (event_id, url, next_attempt_at) values (?1, ?2, ?3)";
const SQLITE_CLAIM: &str = "update webhook_deliveries
     set next_attempt_at = ?2, attempts = attempts + 1
     where rowid in (select rowid from webhook_deliveries
                     where delivered_at is null and failed_at is null and next_attempt_at <= ?1
                     order by next_attempt_at limit ?3)
     returning event_id, url, attempts,
               (select body from webhook_events where id = event_id),
               (select created_at from webhook_events where id = event_id)";
const SQLITE_DELIVERED: &str =
    "update webhook_deliveries set delivered_at = ?3, last_error = null where event_id = ?1 and url = ?2";
const SQLITE_FAILED: &str = "update webhook_deliveries set next_attempt_at = ?3, last_error = ?4,
         failed_at = case when ?5 then ?3 end
     where event_id = ?1 and url = ?2";

fn pg(error: sqlx::Error, context: &'static str) -> StoreError {
    super::postgres::classify(error, context)
}

fn lite(error: sqlx::Error, context: &'static str) -> StoreError {
    super::sqlite::classify(error, context)
}

fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

impl Store {
    /// Records an alert and one delivery per URL, unless an alert with its key exists; answers
    /// whether it was recorded.
    pub async fn record_alert(&self, alert: &NewAlert) -> Result<bool, StoreError> {
        const CONTEXT: &str = "while recording an alert";
        match &self.backend {
            Backend::Postgres(s) => {
                let mut tx = s.pool.begin().await.map_err(|e| pg(e, CONTEXT))?;
                let inserted = sqlx::query(PG_INSERT_EVENT)
                    .bind(&alert.id)
                    .bind(&alert.dedup_key)
                    .bind(&alert.event_type)
                    .bind(&alert.body)
                    .bind(alert.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| pg(e, CONTEXT))?
                    .rows_affected()
                    == 1;
                if inserted {
                    sqlx::query(PG_INSERT_DELIVERIES)
                        .bind(&alert.id)
                        .bind(&alert.urls)
                        .bind(alert.at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| pg(e, CONTEXT))?;
                }
                tx.commit().await.map_err(|e| pg(e, CONTEXT))?;
                Ok(inserted)
            }
            Backend::Sqlite(s) => {
                let at = alert.at.timestamp_micros();
                let mut tx = s.pool.begin().await.map_err(|e| lite(e, CONTEXT))?;
                let inserted = sqlx::query(SQLITE_INSERT_EVENT)
                    .bind(&alert.id)
                    .bind(&alert.dedup_key)
                    .bind(&alert.event_type)
                    .bind(&alert.body)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| lite(e, CONTEXT))?
                    .rows_affected()
                    == 1;
                if inserted {
                    for url in &alert.urls {
                        sqlx::query(SQLITE_INSERT_DELIVERY)
                            .bind(&alert.id)
                            .bind(url)
                            .bind(at)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| lite(e, CONTEXT))?;
                    }
                }
                tx.commit().await.map_err(|e| lite(e, CONTEXT))?;
                Ok(inserted)
            }
        }
    }

    /// Claims up to `limit` deliveries due at `now` for this instance until `lease_until`: no
    /// other instance takes them before then.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        const CONTEXT: &str = "while claiming webhook deliveries";
        match &self.backend {
            Backend::Postgres(s) => {
                let rows: Vec<(String, String, String, i32, DateTime<Utc>)> = sqlx::query_as(PG_CLAIM)
                    .bind(now)
                    .bind(lease_until)
                    .bind(i64::from(limit))
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| pg(e, CONTEXT))?;
                Ok(rows
                    .into_iter()
                    .map(|(event_id, url, body, attempts, created_at)| Delivery {
                        event_id,
                        url,
                        body,
                        attempts,
                        created_at,
                    })
                    .collect())
            }
            Backend::Sqlite(s) => {
                let rows: Vec<(String, String, i64, String, i64)> = sqlx::query_as(SQLITE_CLAIM)
                    .bind(now.timestamp_micros())
                    .bind(lease_until.timestamp_micros())
                    .bind(i64::from(limit))
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| lite(e, CONTEXT))?;
                Ok(rows
                    .into_iter()
                    .map(|(event_id, url, attempts, body, created_at)| Delivery {
                        event_id,
                        url,
                        body,
                        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                        created_at: from_micros(created_at),
                    })
                    .collect())
            }
        }
    }

    /// Marks a delivery as taken by its URL.
    pub async fn delivery_succeeded(&self, delivery: &Delivery, at: DateTime<Utc>) -> Result<(), StoreError> {
        const CONTEXT: &str = "while recording a webhook delivery";
        match &self.backend {
            Backend::Postgres(s) => sqlx::query(PG_DELIVERED)
                .bind(&delivery.event_id)
                .bind(&delivery.url)
                .bind(at)
                .execute(&s.pool)
                .await
                .map(drop)
                .map_err(|e| pg(e, CONTEXT)),
            Backend::Sqlite(s) => sqlx::query(SQLITE_DELIVERED)
                .bind(&delivery.event_id)
                .bind(&delivery.url)
                .bind(at.timestamp_micros())
                .execute(&s.pool)
                .await
                .map(drop)
                .map_err(|e| lite(e, CONTEXT)),
        }
    }

    /// Records a failed attempt: tried again at `retry_at`, or (`give_up`) never again.
    pub async fn delivery_failed(
        &self,
        delivery: &Delivery,
        retry_at: DateTime<Utc>,
        error: &str,
        give_up: bool,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "while recording a failed webhook delivery";
        match &self.backend {
            Backend::Postgres(s) => sqlx::query(PG_FAILED)
                .bind(&delivery.event_id)
                .bind(&delivery.url)
                .bind(retry_at)
                .bind(error)
                .bind(give_up)
                .execute(&s.pool)
                .await
                .map(drop)
                .map_err(|e| pg(e, CONTEXT)),
            Backend::Sqlite(s) => sqlx::query(SQLITE_FAILED)
                .bind(&delivery.event_id)
                .bind(&delivery.url)
                .bind(retry_at.timestamp_micros())
                .bind(error)
                .bind(give_up)
                .execute(&s.pool)
                .await
                .map(drop)
                .map_err(|e| lite(e, CONTEXT)),
        }
    }
}
