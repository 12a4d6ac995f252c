//! Timeouts: a request that outlasts `REQUEST_TIMEOUT_MS`, a statement that outlasts
//! `DATABASE_STATEMENT_TIMEOUT_MS` (SQLite's busy timeout), both a quick 503; and the database's
//! own guard that no count goes negative.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::TestDatabase;
use crate::helpers::{TestApp, WriteLock, assert_problem, spawn_with, test_config};

/// A service with these timeouts and one reaction stored, the database's write lock taken behind
/// its back, and a second write sent into it: the service, the lock, that write's answer and how
/// long it took.
async fn write_into_a_lock(
    request_timeout: Duration,
    statement_timeout: Duration,
) -> (TestApp, WriteLock, reqwest::Response, Duration) {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.request_timeout = request_timeout;
    config.database_statement_timeout = statement_timeout;
    let app = spawn_with(db, config).await;
    app.put_reaction("a", "visitor-0001", "love").await;
    let lock = app.db.lock_writes().await;
    let started = Instant::now();
    let response = app.put_reaction("a", "visitor-0002", "wow").await;
    let elapsed = started.elapsed();
    (app, lock, response, elapsed)
}

#[tokio::test]
async fn a_request_that_outlasts_the_request_timeout_gets_a_503_at_the_timeout() {
    // The database would make the write wait far longer than the request may take.
    let (app, lock, response, elapsed) =
        write_into_a_lock(Duration::from_millis(600), Duration::from_secs(20)).await;

    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "a request past its timeout").await;
    assert!(elapsed >= Duration::from_millis(600), "not before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "at the timeout, not the database's: {elapsed:?}");
    lock.release().await;
    // Its write may still commit (its client was told to retry: the outcome was unknown), but
    // counts and rows never disagree.
    let after = app.put_reaction("a", "visitor-0003", "sad").await;
    assert_eq!(after.status(), StatusCode::OK, "the service goes on");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn a_write_that_waits_past_the_statement_timeout_gets_a_quick_503_and_changes_nothing() {
    let (app, lock, response, elapsed) =
        write_into_a_lock(Duration::from_secs(20), Duration::from_millis(300)).await;

    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "a locked database").await;
    assert!(elapsed < Duration::from_secs(5), "the statement timeout, not the request's: {elapsed:?}");
    eprintln!("503 after {elapsed:?}: {problem}");
    lock.release().await;
    assert_eq!(app.stored_reactions().await, 1, "the refused write changed nothing");
    assert_eq!(app.summary("a", None).await["total"], 1);
    let after = app.put_reaction("a", "visitor-0003", "sad").await;
    assert_eq!(after.status(), StatusCode::OK, "the service recovers by itself");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn the_database_refuses_a_negative_count() {
    let app = super::spawn_app().await;
    app.put_reaction("a", "visitor-0001", "love").await;

    for (sql, table) in [
        ("update article_reaction_counts set count = count - 2", "article_reaction_counts"),
        ("update reaction_counts_hourly set love_count = love_count - 2", "reaction_counts_hourly"),
        ("update reaction_counts_daily set like_count = -1", "reaction_counts_daily"),
    ] {
        let error = app.db.execute(sql).await.expect_err(table);
        let constraint = error.as_database_error().map(|e| e.is_check_violation());
        assert_eq!(constraint, Some(true), "{table}: a check violation, got {error}");
    }
    app.assert_counts_match_rows().await;
}
