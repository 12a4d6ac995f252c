//! PostgreSQL only: what SQLite has no counterpart of.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestDatabase, json_ok, spawn_with, test_config};

/// The service applies the rollup migration at start-up on connections that carry its statement
/// timeout (SQLite has none: its busy timeout only bounds waits for the lock); the fill of a large table outlasts it, so the migration lifts the timeout for itself.
#[tokio::test]
async fn the_service_applies_the_rollup_migration_whatever_its_statement_timeout() {
    const BEFORE_ROLLUPS: i64 = 20261126000003;
    let db = TestDatabase::create(Backend::Postgres).await;
    db.migrate_to(Some(BEFORE_ROLLUPS)).await;
    // 200,000 reactions: their fill takes far longer than the 100 ms below.
    let at: DateTime<Utc> = "2025-11-20T00:00:00Z".parse().unwrap();
    let articles: Vec<String> = (0..2000).map(|i| format!("article-{i}")).collect();
    for chunk in 0..4 {
        let rows: Vec<(&str, &str, DateTime<Utc>)> = (0..50_000)
            .map(|i| {
                (articles[i % 2000].as_str(), "love", at + TimeDelta::seconds((chunk * 50_000 + i) as i64))
            })
            .collect();
        db.insert_reactions(&rows).await;
    }
    let mut config = test_config(&db.url);
    config.database_statement_timeout = std::time::Duration::from_millis(100);

    let app = spawn_with(db, config).await;

    let totals = json_ok(
        app.request(
            Method::GET,
            "/v1/stats/totals?since=2025-11-20T00:00:00Z&until=2025-11-23T00:00:00Z",
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(totals["total"], 200_000);

    // And the service's own statements do carry the 100 ms: a write that waits for a lock longer
    // is refused at once (it would wait the request timeout, 5 s, were the setting ignored).
    let lock = app.db.lock_writes().await;
    let started = std::time::Instant::now();
    let refused = app.put_reaction("article-1", "visitor-0001", "wow").await;
    let elapsed = started.elapsed();
    lock.release().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(elapsed < std::time::Duration::from_secs(2), "the statement timeout applies: {elapsed:?}");
}
