//! `/metrics` moves by exactly what a test's own requests did.
//!
//! The recorder is process-wide, so these tests are a test binary of their own, and one test
//! function: nothing else in the process records while it measures. (In the API suite ~140 tests
//! write in parallel, and "grew by at least N" would be satisfied by their requests.)

#[path = "api/helpers.rs"]
#[allow(dead_code)] // This binary uses a few of the helpers.
mod helpers;

use reqwest::{Method, StatusCode};

use helpers::{Backend, TestApp, TestDatabase, spawn_with, test_config};

async fn scrape(app: &TestApp) -> String {
    let response = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The value of the sample of `name` whose labels include every pair in `labels` (0 if none).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} names one sample: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

#[tokio::test]
async fn requests_writes_batches_and_refusals_move_the_metrics_by_exactly_their_number() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDatabase::create(backend).await;
        let mut config = test_config(&db.url);
        config.rate_limit_write_burst = 4.try_into().unwrap();
        config.rate_limit_writes_per_minute = 1.try_into().unwrap();
        // No entry gets old enough for a refresh while the test runs.
        config.cache_ttl = std::time::Duration::from_secs(60);
        let app = spawn_with(db, config).await;
        let put = [("method", "PUT"), ("route", "/v1/articles/{article_id}/reaction"), ("status", "200")];
        let delete = [("method", "DELETE"), ("route", "/v1/articles/{article_id}/reaction")];
        let before = scrape(&app).await;

        // One at a time, so every change is a batch of its own.
        for i in 0..3 {
            let response =
                app.put_reaction("metrics-article", &format!("metrics-visitor-{i}"), "funny").await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let removed = app.delete_reaction("metrics-article", "metrics-visitor-0").await;
        assert!(removed.status().is_success(), "{}", removed.status());
        let refused = app.put_reaction("metrics-article", "metrics-visitor-9", "love").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "the fifth write is over the burst");
        // Four articles no request has read (the writes cached the counts of one, but not the
        // article's own settings, which a read needs): one read for the four.
        let read = app
            .request(
                Method::GET,
                "/v1/reactions?article_id=metrics-a&article_id=metrics-b&article_id=metrics-article&article_id=metrics-c",
                None,
                None,
            )
            .await;
        assert_eq!(read.status(), StatusCode::OK);

        let after = scrape(&app).await;
        let grew = |name: &str, labels: &[(&str, &str)]| {
            sample(&after, name, labels) - sample(&before, name, labels)
        };
        let on = format!("on {backend:?}");
        assert_eq!(grew("http_requests_total", &put), 3.0, "request counter {on}");
        assert_eq!(grew("http_requests_total", &delete), 1.0, "request counter {on}");
        assert_eq!(grew("http_request_duration_seconds_count", &put), 3.0, "latency histogram {on}");
        assert_eq!(grew("reactions_written_total", &[("reaction", "funny")]), 3.0, "reactions by kind {on}");
        assert_eq!(grew("reactions_written_total", &[("reaction", "none")]), 1.0, "removals {on}");
        assert_eq!(grew("reactions_written_total", &[("reaction", "love")]), 0.0, "refused: none {on}");
        assert_eq!(grew("write_batch_size_count", &[]), 4.0, "one batch per change {on}");
        assert_eq!(grew("write_batch_size_sum", &[]), 4.0, "changes committed {on}");
        assert_eq!(grew("write_commit_seconds_count", &[]), 4.0, "commit latency {on}");
        assert_eq!(grew("write_batches_failed_total", &[]), 0.0, "no failed batch {on}");
        assert_eq!(grew("rate_limited_total", &[("class", "writes")]), 1.0, "refusals {on}");
        assert_eq!(grew("rate_limited_total", &[("class", "reads")]), 0.0, "by class {on}");
        assert_eq!(grew("read_cache_fills_total", &[]), 1.0, "one read for the batch's misses {on}");
        assert_eq!(grew("read_cache_filled_articles_total", &[("cause", "miss")]), 4.0, "its misses {on}");
        assert_eq!(grew("read_cache_filled_articles_total", &[("cause", "refresh")]), 0.0, "no refresh {on}");
    }
}
