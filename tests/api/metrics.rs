//! `/metrics`: Prometheus text that moves when requests arrive.
//!
//! The recorder is process-wide and tests run in parallel, so this file checks the exposition
//! only; `tests/metrics.rs` measures exact deltas in a process of its own.

use reqwest::{Method, StatusCode};

use super::spawn_app;
use crate::helpers::TestApp;

async fn scrape(app: &TestApp) -> String {
    let response = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_histograms_gauges_and_no_article_ids() {
    let app = spawn_app().await;
    app.put_reaction("metrics-article", "metrics-visitor-0", "funny").await;

    let text = scrape(&app).await;
    // Exact deltas are checked in tests/metrics.rs, a process of its own.
    assert!(text.contains("http_request_duration_seconds_bucket{"), "a real histogram, not a summary");
    assert!(text.contains("write_batch_size_bucket{"), "batch sizes");
    for gauge in
        ["write_queue_depth", "db_pool_connections", "db_pool_max_connections", "read_cache_articles"]
    {
        assert!(text.lines().any(|l| l.starts_with(gauge)), "{gauge} is exported");
    }
    assert!(!text.contains("metrics-article"), "article ids never become label values");
}
