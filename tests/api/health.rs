//! Probes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{TestDatabase, spawn_app};
use crate::helpers::{assert_problem, json_ok, spawn_with, test_config};

#[tokio::test]
async fn healthz_and_readyz_answer_when_the_database_is_up() {
    let app = spawn_app().await;

    let health = json_ok(app.request(reqwest::Method::GET, "/healthz", None, None).await).await;
    let ready = json_ok(app.request(reqwest::Method::GET, "/readyz", None, None).await).await;

    assert_eq!(health["status"], "ok");
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn readyz_and_reads_answer_503_quickly_when_the_database_is_unreachable() {
    // Nothing answers there; the pool connects lazily, so the service starts.
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.backend.unreachable_url());
    config.migrate_on_start = false;
    config.database_acquire_timeout = Duration::from_millis(500);
    let app = spawn_with(db, config).await;

    let health = app.request(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status(), StatusCode::OK, "liveness does not depend on the database");

    let started = Instant::now();
    let ready = app.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert!(ready.headers().contains_key("retry-after"), "503 carries Retry-After");
    assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "readyz").await;

    let read = app.get_reactions("a", Some("visitor-0001")).await;
    assert_problem(read, StatusCode::SERVICE_UNAVAILABLE, "read").await;
    let write = app.put_reaction("a", "visitor-0001", "love").await;
    assert_problem(write, StatusCode::SERVICE_UNAVAILABLE, "write").await;
    assert!(started.elapsed() < Duration::from_secs(5), "503s come quickly: {:?}", started.elapsed());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = spawn_app().await;

    let generated = app.request(reqwest::Method::GET, "/healthz", None, None).await;
    let echoed =
        app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();

    assert!(!generated.headers()["x-request-id"].is_empty());
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
}
