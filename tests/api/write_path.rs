//! The group-commit write path: backpressure and draining on shutdown.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::TestDatabase;
use crate::helpers::{final_status, segment, spawn_with, test_config, write_in_flight};

async fn put(client: &reqwest::Client, base: &str, article: &str, visitor: &str) -> reqwest::Response {
    client
        .put(format!("{base}/v1/articles/{}/reaction", segment(article)))
        .header("x-visitor-id", visitor)
        .json(&serde_json::json!({"reaction": "love"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_503_at_once_and_refused_writes_change_nothing() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.write_workers = Some(1.try_into().unwrap());
    config.write_queue_capacity = 2.try_into().unwrap();
    config.write_batch_max = 2.try_into().unwrap();
    const SLOW_WRITER: Duration = Duration::from_secs(2);
    config.write_batch_delay = SLOW_WRITER;
    let app = spawn_with(db, config).await;

    let mut tasks = Vec::new();
    for i in 0..30 {
        let (client, base) = (app.client.clone(), app.address.clone());
        tasks.push(tokio::spawn(async move {
            // Each request's own time, from its own start: not its wait for a task or a socket.
            let started = Instant::now();
            let response = put(&client, &base, "hot", &format!("visitor-{i:04}")).await;
            (response.status(), response.headers().contains_key("retry-after"), started.elapsed())
        }));
    }
    let mut accepted = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, retry_after, elapsed) = task.await.unwrap();
        match status {
            StatusCode::OK => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert!(retry_after, "a 503 says when to retry");
                assert!(elapsed < SLOW_WRITER / 2, "refused at once, not after waiting: {elapsed:?}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    assert!(refused > 0, "a queue of 2 cannot take 30 writes at once");
    assert!(accepted > 0, "but it takes some");
    assert_eq!(app.stored_reactions().await, accepted, "exactly the acknowledged writes are stored");
    app.assert_counts_match_rows().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_commits_and_answers_every_queued_write() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    // Writes wait in the queue for company far longer than they take to arrive.
    config.write_batch_delay = Duration::from_secs(3);
    let mut app = spawn_with(db, config).await;

    let mut writes = Vec::new();
    for i in 0..20 {
        writes.push(write_in_flight(&app.address, "hot", &format!("visitor-{i:04}")).await);
    }
    assert_eq!(app.stored_reactions().await, 0, "all 20 in the service, none committed yet");

    app.stop().await;

    for write in writes {
        assert_eq!(final_status(write).await, 200, "every queued write is answered");
    }
    assert_eq!(app.stored_reactions().await, 20, "and committed");
    app.assert_counts_match_rows().await;
}
