//! Many visitors setting, switching, deleting and erasing at once, through two service
//! instances on one database: counts must equal the rows and the visitors' final choices.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

use super::spawn_app;
use crate::helpers::{CACHE_TTL, TestApp, json_ok};

const REACTIONS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
const ARTICLES: [&str; 3] = ["hot/one", "hot/two", "warm"];
const VISITORS: usize = 48;
const OPS_PER_VISITOR: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_switches_and_deletes_from_two_instances_keep_counts_equal_to_rows() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    let instances = std::sync::Arc::new([first, second]);

    // Each visitor acts sequentially (so its own final state is known) while all visitors run
    // at once, spread over both instances.
    let mut tasks = Vec::new();
    for v in 0..VISITORS {
        let instances = instances.clone();
        tasks.push(tokio::spawn(async move {
            let visitor = format!("visitor-{v:04}");
            let mut rng = StdRng::seed_from_u64(v as u64);
            let mut held: HashMap<&str, Option<&str>> = HashMap::new();
            for _ in 0..OPS_PER_VISITOR {
                let app: &TestApp = &instances[rng.random_range(0..2)];
                let article = ARTICLES[rng.random_range(0..ARTICLES.len())];
                let roll = rng.random_range(0..100);
                let status = if roll < 65 {
                    let reaction = REACTIONS[rng.random_range(0..REACTIONS.len())];
                    held.insert(article, Some(reaction));
                    app.put_reaction(article, &visitor, reaction).await.status()
                } else if roll < 97 {
                    held.insert(article, None);
                    app.delete_reaction(article, &visitor).await.status()
                } else {
                    held.clear();
                    app.erase_me(&visitor).await.status()
                };
                assert_eq!(status, StatusCode::OK, "every write succeeds under contention");
            }
            (visitor, held)
        }));
    }
    let mut expected: HashMap<&str, HashMap<String, i64>> = HashMap::new();
    let mut expected_rows = 0;
    for task in tasks {
        let (_visitor, held) = task.await.unwrap();
        for (article, reaction) in held {
            if let Some(reaction) = reaction {
                *expected.entry(article).or_default().entry(reaction.to_owned()).or_default() += 1;
                expected_rows += 1;
            }
        }
    }

    let app = &instances[0];
    app.assert_counts_match_rows().await;
    // Each instance's cache is refreshed by its own writes; the other's show within the TTL.
    tokio::time::sleep(CACHE_TTL).await;
    assert_eq!(app.stored_reactions().await, expected_rows, "one row per visitor holding a reaction");
    let batch = json_ok(app.batch(&ARTICLES, None).await).await;
    for (i, article) in ARTICLES.iter().enumerate() {
        let summary = &batch["articles"][i];
        let mut total = 0;
        for reaction in REACTIONS {
            let want = expected.get(article).and_then(|m| m.get(reaction)).copied().unwrap_or(0);
            assert_eq!(summary["counts"][reaction], want, "{article} {reaction}");
            total += want;
        }
        assert_eq!(summary["total"], total, "{article} total");
        let other = json_ok(instances[1].get_reactions(article, None).await).await;
        assert_eq!(&other, summary, "both instances agree on {article}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_visitor_racing_itself_is_counted_once() {
    let app = spawn_app().await;

    // The same visitor sends many writes at once (double clicks, retries, two tabs).
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url("/v1/articles/race/reaction");
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("x-visitor-id", "same-visitor")
                .json(&serde_json::json!({ "reaction": REACTIONS[i % REACTIONS.len()] }))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }

    let summary = app.summary("race", Some("same-visitor")).await;
    assert_eq!(summary["total"], 1, "one visitor, one reaction: {summary}");
    let held = summary["viewer_reaction"].as_str().unwrap();
    assert_eq!(summary["counts"][held], 1);
    app.assert_counts_match_rows().await;
}
