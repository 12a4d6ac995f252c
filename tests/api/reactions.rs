//! The per-article, batch and erase-me endpoints: every line of the contract.

use reqwest::StatusCode;
use serde_json::json;

use super::spawn_app;
use crate::helpers::{assert_problem, counts, json_ok};

const ARTICLE: &str = "2025/11/27/leaked-witkoff-call";
const ALICE: &str = "alice-0001";
const BOB: &str = "bob-000001";

#[tokio::test]
async fn an_article_nobody_reacted_to_answers_all_zeros() {
    let app = spawn_app().await;

    let response = app.get_reactions("never-seen", Some(ALICE)).await;

    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8",
        "JSON bodies declare their charset"
    );
    let summary = json_ok(response).await;
    assert_eq!(
        summary,
        json!({"article_id": "never-seen", "counts": counts(&[]), "total": 0, "viewer_reaction": null,
               "closed": false, "reactions": ["like", "dislike", "love", "funny", "angry", "sad", "wow"]})
    );
}

#[tokio::test]
async fn set_is_idempotent_switch_moves_the_count_and_delete_undoes() {
    let app = spawn_app().await;

    let set = json_ok(app.put_reaction(ARTICLE, ALICE, "love").await).await;
    assert_eq!(set["counts"], counts(&[("love", 1)]));
    assert_eq!(set["total"], 1);
    assert_eq!(set["viewer_reaction"], "love");
    assert_eq!(set["article_id"], ARTICLE, "slashes survive as one percent-encoded segment");

    let again = json_ok(app.put_reaction(ARTICLE, ALICE, "love").await).await;
    assert_eq!(again, set, "setting the same reaction again changes nothing");

    let switched = json_ok(app.put_reaction(ARTICLE, ALICE, "wow").await).await;
    assert_eq!(switched["counts"], counts(&[("wow", 1)]), "a switch moves the one count");
    assert_eq!(switched["viewer_reaction"], "wow");

    let deleted = json_ok(app.delete_reaction(ARTICLE, ALICE).await).await;
    assert_eq!(deleted["counts"], counts(&[]));
    assert_eq!(deleted["total"], 0);
    assert_eq!(deleted["viewer_reaction"], serde_json::Value::Null);

    let deleted_again = json_ok(app.delete_reaction(ARTICLE, ALICE).await).await;
    assert_eq!(deleted_again, deleted, "deleting twice is harmless");

    assert_eq!(app.stored_reactions().await, 0);
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn two_visitors_each_count_and_each_see_their_own_reaction() {
    let app = spawn_app().await;

    app.put_reaction(ARTICLE, ALICE, "angry").await;
    let after_bob = json_ok(app.put_reaction(ARTICLE, BOB, "angry").await).await;
    assert_eq!(after_bob["counts"], counts(&[("angry", 2)]));
    json_ok(app.put_reaction(ARTICLE, BOB, "sad").await).await;

    let as_alice = app.summary(ARTICLE, Some(ALICE)).await;
    let as_bob = app.summary(ARTICLE, Some(BOB)).await;
    let anonymous = app.summary(ARTICLE, None).await;
    let stranger = app.summary(ARTICLE, Some("stranger-01")).await;

    assert_eq!(as_alice["counts"], counts(&[("angry", 1), ("sad", 1)]));
    assert_eq!(as_alice["total"], 2);
    assert_eq!(as_alice["viewer_reaction"], "angry");
    assert_eq!(as_bob["viewer_reaction"], "sad");
    assert_eq!(anonymous["viewer_reaction"], serde_json::Value::Null);
    assert_eq!(stranger["viewer_reaction"], serde_json::Value::Null);
    assert_eq!(anonymous["counts"], as_bob["counts"], "counts do not depend on who asks");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn reactions_on_one_article_do_not_touch_another() {
    let app = spawn_app().await;

    app.put_reaction("a", ALICE, "like").await;
    app.put_reaction("b", ALICE, "funny").await;
    app.delete_reaction("a", ALICE).await;

    assert_eq!(app.summary("a", Some(ALICE)).await["total"], 0);
    let b = app.summary("b", Some(ALICE)).await;
    assert_eq!(b["counts"], counts(&[("funny", 1)]));
    assert_eq!(b["viewer_reaction"], "funny");
}

#[tokio::test]
async fn every_reaction_key_is_accepted_and_counted_under_its_own_name() {
    let app = spawn_app().await;
    let keys = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];

    for (i, key) in keys.iter().enumerate() {
        app.put_reaction(ARTICLE, &format!("visitor-{i:04}"), key).await;
    }

    let summary = app.summary(ARTICLE, Some("visitor-0004")).await;
    let all_ones: Vec<(&str, i64)> = keys.iter().map(|k| (*k, 1)).collect();
    assert_eq!(summary["counts"], counts(&all_ones));
    assert_eq!(summary["total"], 7);
    assert_eq!(summary["viewer_reaction"], "angry");
}

#[tokio::test]
async fn article_ids_accept_slashes_unicode_and_exactly_256_bytes() {
    let app = spawn_app().await;
    let ids = [
        "2025/11/27/leaked-witkoff-call".to_owned(),
        "élection-présidentielle-2027".to_owned(),
        "記事/42".to_owned(),
        "a b+c?d#e%f".to_owned(),
        "é".repeat(128), // 256 bytes
        "x".repeat(256),
    ];
    for id in &ids {
        let summary = json_ok(app.put_reaction(id, ALICE, "wow").await).await;
        assert_eq!(summary["article_id"], id.as_str(), "{id:?} round-trips");
        assert_eq!(summary["counts"]["wow"], 1, "{id:?} is its own article");
    }
    let read_back =
        json_ok(app.batch(&ids.iter().map(String::as_str).collect::<Vec<_>>(), Some(ALICE)).await).await;
    for (i, summary) in read_back["articles"].as_array().unwrap().iter().enumerate() {
        assert_eq!(summary["article_id"], ids[i].as_str());
        assert_eq!(summary["viewer_reaction"], "wow");
    }
}

#[tokio::test]
async fn batch_answers_in_request_order_with_duplicates_each_time() {
    let app = spawn_app().await;
    app.put_reaction("b", ALICE, "love").await;
    app.put_reaction("c", BOB, "sad").await;

    let body = json_ok(app.batch(&["c", "a", "b", "c"], Some(ALICE)).await).await;

    let articles = body["articles"].as_array().unwrap();
    let ids: Vec<&str> = articles.iter().map(|a| a["article_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c", "a", "b", "c"]);
    assert_eq!(articles[0]["counts"], counts(&[("sad", 1)]));
    assert_eq!(articles[1]["counts"], counts(&[]));
    assert_eq!(articles[2]["counts"], counts(&[("love", 1)]));
    assert_eq!(articles[2]["viewer_reaction"], "love");
    assert_eq!(articles[3], articles[0], "a duplicate is answered again, identically");
    assert_eq!(articles[0]["viewer_reaction"], serde_json::Value::Null);
}

#[tokio::test]
async fn batch_accepts_one_to_a_hundred_ids() {
    let app = spawn_app().await;
    let hundred: Vec<String> = (0..100).map(|i| format!("article-{i}")).collect();
    let hundred: Vec<&str> = hundred.iter().map(String::as_str).collect();

    let one = json_ok(app.batch(&["only"], None).await).await;
    assert_eq!(one["articles"].as_array().unwrap().len(), 1);
    let max = json_ok(app.batch(&hundred, None).await).await;
    assert_eq!(max["articles"].as_array().unwrap().len(), 100);

    let mut too_many = hundred.clone();
    too_many.push("one-more");
    assert_problem(app.batch(&too_many, None).await, StatusCode::BAD_REQUEST, "101 ids").await;
    assert_problem(app.batch(&[], None).await, StatusCode::BAD_REQUEST, "no ids").await;
}

#[tokio::test]
async fn erase_me_removes_every_reaction_of_the_caller_only() {
    let app = spawn_app().await;
    for article in ["a", "b", "c"] {
        app.put_reaction(article, ALICE, "like").await;
    }
    app.put_reaction("a", BOB, "like").await;

    let erased = json_ok(app.erase_me(ALICE).await).await;
    assert_eq!(erased, json!({"removed": 3}));

    assert_eq!(app.summary("a", Some(ALICE)).await["counts"], counts(&[("like", 1)]), "Bob's stays");
    assert_eq!(app.summary("b", Some(ALICE)).await["total"], 0);
    assert_eq!(app.summary("a", Some(ALICE)).await["viewer_reaction"], serde_json::Value::Null);
    assert_eq!(json_ok(app.erase_me(ALICE).await).await, json!({"removed": 0}), "idempotent");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn state_survives_a_restart_of_the_service() {
    let app = spawn_app().await;
    app.put_reaction(ARTICLE, ALICE, "love").await;
    app.put_reaction(ARTICLE, BOB, "wow").await;

    let app = app.restart().await;

    let summary = app.summary(ARTICLE, Some(ALICE)).await;
    assert_eq!(summary["counts"], counts(&[("love", 1), ("wow", 1)]));
    assert_eq!(summary["viewer_reaction"], "love", "the same visitor is recognised after a restart");
}

#[tokio::test]
async fn raw_visitor_ids_never_reach_the_database() {
    let app = spawn_app().await;
    let marker = "MarkerVisitorId-7f3a9c";

    app.put_reaction(ARTICLE, marker, "love").await;

    let keys = app.db.visitor_keys().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].len(), 32, "a 256-bit keyed hash is stored");
    assert!(!keys[0].windows(marker.len()).any(|w| w == marker.as_bytes()), "the raw id is not stored");
}

#[tokio::test]
async fn another_instances_writes_show_within_the_cache_ttl() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    assert_eq!(first.summary(ARTICLE, None).await["total"], 0, "cached at zero");

    json_ok(second.put_reaction(ARTICLE, ALICE, "sad").await).await;
    tokio::time::sleep(crate::helpers::CACHE_TTL).await;

    assert_eq!(first.summary(ARTICLE, None).await["counts"]["sad"], 1, "visible after the TTL");
    assert_eq!(first.summary(ARTICLE, Some(ALICE)).await["viewer_reaction"], "sad", "never cached");
}

#[tokio::test]
async fn anonymous_reads_are_publicly_cacheable_with_an_etag_and_identified_ones_private() {
    let app = spawn_app().await;
    app.put_reaction(ARTICLE, ALICE, "love").await;

    let anonymous = app.get_reactions(ARTICLE, None).await;
    assert_eq!(anonymous.headers()["cache-control"], "public, max-age=1");
    assert!(anonymous.headers()["vary"].to_str().unwrap().contains("X-Visitor-Id"));
    let etag = anonymous.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let revalidated = app
        .client
        .get(app.url(&format!("/v1/articles/{}/reactions", crate::helpers::segment(ARTICLE))))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    assert!(revalidated.text().await.unwrap().is_empty());

    app.put_reaction(ARTICLE, BOB, "love").await;
    let changed = app
        .client
        .get(app.url(&format!("/v1/articles/{}/reactions", crate::helpers::segment(ARTICLE))))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK, "new counts, new ETag");
    assert_ne!(changed.headers()["etag"], etag.as_str());

    let identified = app.get_reactions(ARTICLE, Some(ALICE)).await;
    assert_eq!(identified.headers()["cache-control"], "private, no-cache");
    assert!(identified.headers().get("etag").is_none());
    let batch = app.batch(&[ARTICLE], None).await;
    assert!(batch.headers()["cache-control"].to_str().unwrap().starts_with("public"));
}

#[tokio::test]
async fn an_anonymous_batch_read_revalidates_with_its_etag() {
    let app = spawn_app().await;
    app.put_reaction(ARTICLE, ALICE, "love").await;
    let path = format!("/v1/reactions?article_id={}&article_id=other", crate::helpers::segment(ARTICLE));
    let get = |etag: Option<String>| {
        let mut request = app.client.get(app.url(&path));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };

    let first = get(None).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let revalidated = get(Some(etag.clone())).await.unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    assert!(revalidated.text().await.unwrap().is_empty());
    let other_tag = get(Some("\"something-else\"".to_owned())).await.unwrap();
    assert_eq!(other_tag.status(), StatusCode::OK, "another tag gets the body");

    app.put_reaction("other", BOB, "wow").await;
    tokio::time::sleep(crate::helpers::CACHE_TTL).await; // this instance's cache may hold the old counts
    let changed = get(Some(etag.clone())).await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK, "one article changed: new tag, new body");
    assert_ne!(changed.headers()["etag"], etag.as_str());
    assert_eq!(json_ok(changed).await["articles"][1]["counts"]["wow"], 1);
}

/// A read within the cache's TTL is answered from memory: a change made behind the service's
/// back does not show, while an article not yet cached shows it at once.
#[tokio::test]
async fn a_cached_read_is_served_without_asking_the_database() {
    let db = super::TestDatabase::create().await;
    let mut config = crate::helpers::test_config(&db.url);
    config.cache_ttl = std::time::Duration::from_secs(60);
    let app = crate::helpers::spawn_with(db, config).await;
    app.put_reaction("cached", ALICE, "love").await;
    assert_eq!(app.summary("cached", None).await["counts"]["love"], 1); // cached now
    app.db.insert_reactions(&[("uncached", "love", chrono::Utc::now())]).await; // never read

    let changed = app.db.execute("update article_reaction_counts set count = 7 where reaction = 'love'").await;
    assert!(changed.unwrap() >= 2, "both articles' love counts");

    assert_eq!(app.summary("cached", None).await["counts"]["love"], 1, "a hit: no query");
    assert_eq!(app.summary("uncached", None).await["counts"]["love"], 7, "a miss reads the database");
}
