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

/// An article read often is read again in the background once its entry is past half its TTL,
/// so a change another instance made shows before the entry it replaces could have expired.
/// (Without the refresh the instance would serve the old counts until the TTL ends.) The
/// anonymous single read, the batch read and an identified read each trigger it.
#[tokio::test]
async fn an_article_read_often_is_refreshed_before_its_entry_expires() {
    const TTL: Duration = Duration::from_secs(2);
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.cache_ttl = TTL;
    let app = spawn_with(db, config.clone()).await;
    let other = app.another_instance_with(config).await;

    type CountsOf = fn(&Value) -> &Value;
    let reads: [(&str, CountsOf); 3] = [
        ("/v1/articles/refresh-one/reactions", |v| &v["counts"]),
        ("/v1/reactions?article_id=refresh-batch&article_id=refresh-batch-other", |v| &v["articles"][0]["counts"]),
        ("/v1/articles/refresh-viewer/reactions", |v| &v["counts"]),
    ];
    for (path, counts_of) in reads {
        let article = path.split(['/', '=', '&']).find(|s| s.starts_with("refresh-")).unwrap();
        let identified = article == "refresh-viewer";
        let read = || async {
            let mut request = app.client.get(format!("{}{path}", app.address));
            if identified {
                request = request.header("x-visitor-id", "refresh-reader");
            }
            let body: Value = json_ok(request.send().await.unwrap()).await;
            counts_of(&body)["love"].as_i64().unwrap()
        };
        let cached_at = std::time::Instant::now();
        assert_eq!(read().await, 0, "{path}: read and cached");
        json_ok(other.put_reaction(article, "refresh-writer", "love").await).await;
        assert_eq!(read().await, 0, "{path}: the entry is served while young");

        // Past half the TTL the next read is served the entry and has it read again.
        tokio::time::sleep((TTL / 2 + Duration::from_millis(100)).saturating_sub(cached_at.elapsed())).await;
        let mut seen = read().await;
        while seen == 0 {
            assert!(cached_at.elapsed() < TTL - Duration::from_millis(200), "{path}: not refreshed before it expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen = read().await;
        }
        assert_eq!(seen, 1, "{path}: the other instance's write, read before the first entry expired");
    }
}

/// Many requests missing the cache at once are read together: each is answered its own
/// articles, in its own order, with the database's counts, whatever the others asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misses_read_together_answer_each_request_its_own_articles() {
    let db = TestDatabase::create().await;
    let config = test_config(&db.url);
    let app = spawn_with(db, config.clone()).await;
    // Article i holds i loves.
    for i in 1..=12 {
        for visitor in 0..i {
            json_ok(app.put_reaction(&format!("together-{i}"), &format!("together-{i}-{visitor}"), "love").await).await;
        }
    }
    // A fresh instance: every first read misses.
    let reader = app.another_instance_with(config).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, base) = (reader.client.clone(), reader.address.clone());
        tasks.push(tokio::spawn(async move {
            let asked: Vec<u32> = {
                let mut rng = rand::rng();
                (0..rng.random_range(1..8)).map(|_| rng.random_range(0..=12)).collect()
            };
            let query: Vec<String> = asked.iter().map(|i| format!("article_id=together-{i}")).collect();
            let body: Value =
                json_ok(client.get(format!("{base}/v1/reactions?{}", query.join("&"))).send().await.unwrap()).await;
            let answered: Vec<(String, i64)> = (body["articles"].as_array().unwrap().iter())
                .map(|a| (a["article_id"].as_str().unwrap().to_owned(), a["counts"]["love"].as_i64().unwrap()))
                .collect();
            let expected: Vec<(String, i64)> = asked.iter().map(|i| (format!("together-{i}"), i64::from(*i))).collect();
            assert_eq!(answered, expected);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
