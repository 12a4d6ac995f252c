//! The read cache after a burst of writes: every count it serves equals the database's, on one
//! instance whose own writes are the only ones (so nothing may lag), with batches committing
//! concurrently and reads racing them.

use std::time::Duration;

use rand::Rng as _;
use serde_json::Value;

use super::TestDatabase;
use crate::helpers::{json_ok, spawn_with, test_config};

const ARTICLES: [&str; 3] = ["burst-a", "burst-b", "burst-c"];
const REACTIONS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_burst_of_writes_every_cached_count_equals_the_database() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    // Nothing expires during the test: what a read serves is what the writes and reads left in
    // the cache, never a fresh read that would hide a stale entry.
    config.cache_ttl = Duration::from_secs(600);
    // Small batches, committing as soon as a slot is free: the most batches in flight at once.
    config.write_batch_delay = Duration::ZERO;
    let app = spawn_with(db, config.clone()).await;

    // 96 clients, each with visitors of its own, set, switch and remove reactions on three
    // articles and read them, all at once.
    let mut tasks = Vec::new();
    for client in 0..96 {
        let app_client = app.client.clone();
        let base = app.address.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..50 {
                let (article, visitor, op, reaction) = {
                    let mut rng = rand::rng();
                    (
                        // Mostly the first article: batches of it overlap.
                        ARTICLES[rng.random_range(0..ARTICLES.len() + 3).saturating_sub(3)],
                        format!("burst-{client:02}-{:02}", rng.random_range(0..6)),
                        rng.random_range(0..10),
                        // Each client uses two reactions, so that batches differ in which count
                        // rows they change.
                        REACTIONS[(client + rng.random_range(0..2)) % REACTIONS.len()],
                    )
                };
                let url = format!("{base}/v1/articles/{article}/reaction");
                let response = match op {
                    0..=5 => app_client
                        .put(&url)
                        .header("x-visitor-id", &visitor)
                        .json(&serde_json::json!({ "reaction": reaction }))
                        .send()
                        .await
                        .unwrap(),
                    6..=7 => app_client.delete(&url).header("x-visitor-id", &visitor).send().await.unwrap(),
                    _ => app_client.get(format!("{base}/v1/articles/{article}/reactions")).send().await.unwrap(),
                };
                assert!(response.status().is_success(), "step {step}: {}", response.status());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    app.assert_counts_match_rows().await;

    // The first instance answers from its cache; a second one, without a cache, from the
    // database's count rows, which equal the rows (checked above).
    let mut uncached = config;
    uncached.cache_ttl = Duration::ZERO;
    let database = app.another_instance_with(uncached).await;
    let mut total = 0;
    for article in ARTICLES {
        let cached: Value = app.summary(article, None).await;
        let stored: Value = json_ok(database.get_reactions(article, None).await).await;
        assert_eq!(cached["counts"], stored["counts"], "{article}: the cache serves the database's counts");
        total += stored["total"].as_i64().unwrap();
    }
    assert!(total > 0, "the burst left reactions to compare");
}
