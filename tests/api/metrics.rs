//! `/metrics`: Prometheus text that moves when requests arrive.
//!
//! The recorder is process-wide and tests run in parallel, so every assertion compares a value
//! before and after this test's own requests (and only ever expects it to grow by at least them).

use reqwest::{Method, StatusCode};

use super::{TestDatabase, spawn_app};
use crate::helpers::{TestApp, spawn_with, test_config};

async fn scrape(app: &TestApp) -> String {
    let response = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The value of the first sample of `name` whose labels include every pair in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn requests_writes_and_batches_move_the_metrics() {
    let app = spawn_app().await;
    let route = [("method", "PUT"), ("route", "/v1/articles/{article_id}/reaction"), ("status", "200")];
    let before = scrape(&app).await;

    for i in 0..3 {
        app.put_reaction("metrics-article", &format!("metrics-visitor-{i}"), "funny").await;
    }
    app.delete_reaction("metrics-article", "metrics-visitor-0").await;

    let after = scrape(&app).await;
    let grew =
        |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    assert!(grew("http_requests_total", &route) >= 3.0, "request counter");
    assert!(grew("http_request_duration_seconds_count", &route) >= 3.0, "latency histogram");
    assert!(grew("reactions_written_total", &[("reaction", "funny")]) >= 3.0, "reactions by kind");
    assert!(grew("reactions_written_total", &[("reaction", "none")]) >= 1.0, "removals");
    assert!(grew("write_batch_size_count", &[]) >= 1.0, "batch sizes");
    assert!(grew("write_commit_seconds_count", &[]) >= 1.0, "commit latency");
    assert!(after.contains("http_request_duration_seconds_bucket{"), "a real histogram, not a summary");
    for gauge in
        ["write_queue_depth", "db_pool_connections", "db_pool_max_connections", "read_cache_articles"]
    {
        assert!(after.lines().any(|l| l.starts_with(gauge)), "{gauge} is exported");
    }
    assert!(!after.contains("metrics-article"), "article ids never become label values");
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_class() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_write_burst = 1.try_into().unwrap();
    config.rate_limit_writes_per_minute = 1.try_into().unwrap();
    let app = spawn_with(db, config).await;
    let before = sample(&scrape(&app).await, "rate_limited_total", &[("class", "writes")]);

    app.put_reaction("a", "visitor-0001", "love").await;
    let refused = app.put_reaction("a", "visitor-0001", "love").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);

    let after = sample(&scrape(&app).await, "rate_limited_total", &[("class", "writes")]);
    assert!(after - before >= 1.0, "{before} -> {after}");
}
