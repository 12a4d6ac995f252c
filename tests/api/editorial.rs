//! Editorial controls: `/v1/admin/articles/{article_id}/settings`, and what closing an article
//! or restricting its reactions does to reads, writes and erasure.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection as _;

use super::{TestDatabase, spawn_app};
use crate::helpers::{
    Backend, CACHE_TTL, TestApp, assert_problem, counts, json_ok, segment, spawn_with, test_config,
};

const TOKEN: &str = "editor-token-0123456789-editor-token-0123456789";
const ALL: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
const ARTICLE: &str = "2025/11/28/obituary";

fn config_with_token(url: &str) -> reader_reactions::config::Config {
    let mut config = test_config(url);
    config.admin_token = Some(TOKEN.to_owned());
    config
}

async fn spawn_editorial() -> TestApp {
    let db = TestDatabase::create().await;
    let config = config_with_token(&db.url);
    spawn_with(db, config).await
}

fn settings_path(article: &str) -> String {
    format!("/v1/admin/articles/{}/settings", segment(article))
}

async fn put_settings(app: &TestApp, article: &str, body: Value) -> Response {
    app.client.put(app.url(&settings_path(article))).bearer_auth(TOKEN).json(&body).send().await.unwrap()
}

async fn get_settings(app: &TestApp, article: &str) -> Value {
    let response = app.client.get(app.url(&settings_path(article))).bearer_auth(TOKEN).send().await.unwrap();
    json_ok(response).await
}

/// `closed` and `reactions` of a summary.
fn settings_of(summary: &Value) -> (Value, Value) {
    (summary["closed"].clone(), summary["reactions"].clone())
}

#[tokio::test]
async fn settings_round_trip_in_display_order_and_every_answer_shows_them() {
    let app = spawn_editorial().await;
    assert_eq!(
        get_settings(&app, ARTICLE).await,
        json!({"closed": false, "reactions": null}),
        "never configured"
    );
    let before = app.get_reactions(ARTICLE, None).await;
    let etag_before = before.headers()["etag"].clone();
    assert_eq!(settings_of(&json_ok(before).await), (json!(false), json!(ALL)), "all seven offered");

    let stored = json_ok(put_settings(&app, ARTICLE, json!({"closed": false, "reactions": ["sad", "like", "love"]})).await).await;

    let expected = json!({"closed": false, "reactions": ["like", "love", "sad"]});
    assert_eq!(stored, expected, "answered in display order");
    assert_eq!(get_settings(&app, ARTICLE).await, expected, "and stored so");
    let offered = (json!(false), json!(["like", "love", "sad"]));
    let anonymous = app.get_reactions(ARTICLE, None).await;
    assert_ne!(anonymous.headers()["etag"], etag_before, "new settings, new ETag");
    assert_eq!(settings_of(&json_ok(anonymous).await), offered, "anonymous read");
    assert_eq!(settings_of(&app.summary(ARTICLE, Some("visitor-0001")).await), offered, "identified read");
    let written = json_ok(app.put_reaction(ARTICLE, "visitor-0001", "sad").await).await;
    assert_eq!(settings_of(&written), offered, "write answer");
    for visitor in [None, Some("visitor-0001")] {
        let batch = json_ok(app.batch(&[ARTICLE, "elsewhere"], visitor).await).await;
        assert_eq!(settings_of(&batch["articles"][0]), offered, "batch read, visitor {visitor:?}");
        assert_eq!(settings_of(&batch["articles"][1]), (json!(false), json!(ALL)), "another article");
    }

    let all_again = json_ok(put_settings(&app, ARTICLE, json!({"closed": false, "reactions": null})).await).await;
    assert_eq!(all_again, json!({"closed": false, "reactions": null}));
    assert_eq!(settings_of(&app.summary(ARTICLE, None).await), (json!(false), json!(ALL)), "lifted");
}

#[tokio::test]
async fn settings_need_the_admin_token_and_are_off_without_one() {
    let app = spawn_editorial().await;
    let url = app.url(&settings_path(ARTICLE));
    let closing = json!({"closed": true, "reactions": null});
    for (request, why) in [
        (app.client.get(&url), "GET without a token"),
        (app.client.put(&url).json(&closing), "PUT without a token"),
        (app.client.put(&url).bearer_auth("not-the-token").json(&closing), "PUT with another token"),
        (app.client.put(&url).header("authorization", format!("Basic {TOKEN}")).json(&closing), "not bearer"),
    ] {
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("www-authenticate"), "{why}: a challenge");
        assert_problem(response, StatusCode::UNAUTHORIZED, why).await;
    }
    assert_eq!(get_settings(&app, ARTICLE).await, json!({"closed": false, "reactions": null}), "nothing changed");
    assert_eq!(app.put_reaction(ARTICLE, "visitor-0001", "love").await.status(), StatusCode::OK);

    let off = spawn_app().await; // no ADMIN_TOKEN
    let url = off.url(&settings_path(ARTICLE));
    for request in [off.client.get(&url).bearer_auth(TOKEN), off.client.put(&url).bearer_auth(TOKEN).json(&closing)] {
        assert_problem(request.send().await.unwrap(), StatusCode::NOT_FOUND, "no ADMIN_TOKEN: off").await;
    }
    assert_eq!(off.put_reaction(ARTICLE, "visitor-0001", "love").await.status(), StatusCode::OK, "not closed");
}

#[tokio::test]
async fn every_bad_settings_body_is_a_problem_that_changes_nothing() {
    let app = spawn_editorial().await;
    let original = json!({"closed": false, "reactions": ["like", "love"]});
    json_ok(put_settings(&app, ARTICLE, original.clone()).await).await;

    let cases: [(&str, StatusCode, &str); 14] = [
        (r#"{"closed": false, "reactions": []}"#, StatusCode::UNPROCESSABLE_ENTITY, "an empty list"),
        (r#"{"closed": false, "reactions": ["love", "meh"]}"#, StatusCode::UNPROCESSABLE_ENTITY, "an unknown key"),
        (r#"{"closed": false, "reactions": ["Love"]}"#, StatusCode::UNPROCESSABLE_ENTITY, "keys are case-sensitive"),
        (r#"{"closed": false, "reactions": ["sad", "love", "sad"]}"#, StatusCode::UNPROCESSABLE_ENTITY, "a duplicate"),
        (r#"{"closed": "true", "reactions": null}"#, StatusCode::BAD_REQUEST, "closed as a string"),
        (r#"{"closed": 1, "reactions": null}"#, StatusCode::BAD_REQUEST, "closed as a number"),
        (r#"{"closed": null, "reactions": null}"#, StatusCode::BAD_REQUEST, "closed null"),
        (r#"{"closed": true, "reactions": null, "note": "x"}"#, StatusCode::BAD_REQUEST, "an unknown member"),
        (r#"{"closed": true}"#, StatusCode::BAD_REQUEST, "reactions missing"),
        (r#"{"reactions": null}"#, StatusCode::BAD_REQUEST, "closed missing"),
        (r#"{"closed": true, "reactions": "sad"}"#, StatusCode::BAD_REQUEST, "reactions not a list"),
        (r#"{"closed": true, "reactions": [1]}"#, StatusCode::BAD_REQUEST, "a key that is not a string"),
        (r#"[true, null]"#, StatusCode::BAD_REQUEST, "an array"),
        (r#"{"closed": true,"#, StatusCode::BAD_REQUEST, "malformed JSON"),
    ];
    for (body, status, why) in cases {
        let response = app
            .client
            .put(app.url(&settings_path(ARTICLE)))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, status, why).await;
        assert_eq!(get_settings(&app, ARTICLE).await, original, "{why}: nothing changed");
    }
    let not_json = app
        .client
        .put(app.url(&settings_path(ARTICLE)))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"closed": true, "reactions": null}"#)
        .send()
        .await
        .unwrap();
    assert_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not JSON").await;
    assert_eq!(get_settings(&app, ARTICLE).await, original, "not JSON: nothing changed");
    assert_eq!(settings_of(&app.summary(ARTICLE, None).await), (json!(false), json!(["like", "love"])));
    assert_eq!(app.put_reaction(ARTICLE, "visitor-0001", "love").await.status(), StatusCode::OK, "still open");
}

#[tokio::test]
async fn a_closed_article_refuses_writes_with_409_while_reads_and_erasure_go_on() {
    let app = spawn_editorial().await;
    json_ok(app.put_reaction(ARTICLE, "visitor-0001", "love").await).await;
    json_ok(app.put_reaction("elsewhere", "visitor-0001", "wow").await).await;

    json_ok(put_settings(&app, ARTICLE, json!({"closed": true, "reactions": null})).await).await;

    for (response, why) in [
        (app.put_reaction(ARTICLE, "visitor-0002", "sad").await, "a new reaction"),
        (app.put_reaction(ARTICLE, "visitor-0001", "sad").await, "a switch"),
        (app.put_reaction(ARTICLE, "visitor-0001", "love").await, "the same reaction again"),
        (app.delete_reaction(ARTICLE, "visitor-0001").await, "a removal"),
    ] {
        let problem = assert_problem(response, StatusCode::CONFLICT, why).await;
        assert_eq!(problem["type"], "urn:reader-reactions:problem:article-closed", "{why}");
    }
    let summary = app.summary(ARTICLE, Some("visitor-0001")).await;
    assert_eq!(summary["counts"], counts(&[("love", 1)]), "nothing changed");
    assert_eq!(summary["viewer_reaction"], "love");
    assert_eq!(summary["closed"], true, "reads go on and say so");
    assert_eq!(app.summary(ARTICLE, None).await["closed"], true);
    assert_eq!(json_ok(app.batch(&[ARTICLE], None).await).await["articles"][0]["closed"], true);
    assert_eq!(app.put_reaction("elsewhere", "visitor-0002", "wow").await.status(), StatusCode::OK, "other articles are open");

    let erased = json_ok(app.erase_me("visitor-0001").await).await;
    assert_eq!(erased["removed"], 2, "erasure goes on, on the closed article too");
    assert_eq!(app.summary(ARTICLE, None).await["counts"], counts(&[]));
    app.assert_counts_match_rows().await;

    json_ok(put_settings(&app, ARTICLE, json!({"closed": false, "reactions": null})).await).await;
    let reopened = json_ok(app.put_reaction(ARTICLE, "visitor-0002", "sad").await).await;
    assert_eq!((reopened["closed"].clone(), reopened["counts"].clone()), (json!(false), counts(&[("sad", 1)])));
}

#[tokio::test]
async fn a_restricted_article_refuses_other_reactions_with_422_and_keeps_those_held() {
    let app = spawn_editorial().await;
    json_ok(app.put_reaction(ARTICLE, "visitor-0001", "funny").await).await;
    json_ok(app.put_reaction(ARTICLE, "visitor-0002", "love").await).await;

    json_ok(put_settings(&app, ARTICLE, json!({"closed": false, "reactions": ["like", "love", "sad"]})).await)
        .await;

    for (visitor, why) in [("visitor-0003", "a new reader"), ("visitor-0002", "a switch"), ("visitor-0001", "the one held")] {
        let problem = assert_problem(app.put_reaction(ARTICLE, visitor, "funny").await, StatusCode::UNPROCESSABLE_ENTITY, why).await;
        assert_eq!(problem["type"], "urn:reader-reactions:problem:reaction-not-offered", "{why}");
    }
    let unknown = assert_problem(app.put_reaction(ARTICLE, "visitor-0003", "meh").await, StatusCode::UNPROCESSABLE_ENTITY, "unknown").await;
    assert_eq!(unknown["type"], "urn:reader-reactions:problem:unknown-reaction", "an unknown key stays unknown-reaction");
    let summary = app.summary(ARTICLE, Some("visitor-0001")).await;
    assert_eq!(summary["counts"], counts(&[("funny", 1), ("love", 1)]), "held reactions stay counted");
    assert_eq!(summary["viewer_reaction"], "funny");

    let switched = json_ok(app.put_reaction(ARTICLE, "visitor-0001", "sad").await).await;
    assert_eq!(switched["counts"], counts(&[("sad", 1), ("love", 1)]), "a held reaction can be changed");
    json_ok(app.delete_reaction(ARTICLE, "visitor-0002").await).await;
    assert_eq!(app.summary(ARTICLE, None).await["counts"], counts(&[("sad", 1)]), "or taken back");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn another_instance_applies_a_change_within_the_cache_ttl() {
    let app = spawn_editorial().await;
    let other = app.another_instance().await; // no token needed to serve readers
    // The other instance caches the open article: a read and a write.
    assert_eq!(other.summary(ARTICLE, None).await["closed"], false);
    json_ok(other.put_reaction(ARTICLE, "visitor-0001", "love").await).await;

    json_ok(put_settings(&app, ARTICLE, json!({"closed": true, "reactions": null})).await).await;
    let changed = Instant::now();
    assert_eq!(app.summary(ARTICLE, None).await["closed"], true, "at once on the instance that changed it");

    let deadline = CACHE_TTL + Duration::from_millis(150); // the TTL, and time for the requests
    loop {
        let status = other.put_reaction(ARTICLE, "visitor-0002", "love").await.status();
        let closed = other.summary(ARTICLE, None).await["closed"].clone();
        if status == StatusCode::CONFLICT && closed == true {
            break;
        }
        assert!(changed.elapsed() < deadline, "not applied after {:?}: {status}, closed {closed}", changed.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until then the other instance may still take writes (by design, within the TTL); from
    // then on it takes none.
    let counts_then = other.summary(ARTICLE, None).await["counts"].clone();
    assert_eq!(other.delete_reaction(ARTICLE, "visitor-0001").await.status(), StatusCode::CONFLICT);
    assert_eq!(other.summary(ARTICLE, None).await["counts"], counts_then);
}

/// Renames `article_settings` behind the service's back, so that any read of it fails.
async fn hide_settings_table(db: &crate::helpers::TestDatabase) {
    const SQL: &str = "alter table article_settings rename to article_settings_hidden";
    match db.backend {
        Backend::Postgres => sqlx::query(SQL).execute(&mut db.connect().await).await.map(drop),
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(SQL).execute(&mut conn).await.map(drop)
        }
    }
    .unwrap();
}

/// The hot path: once an unconfigured article's settings are cached (here by a read), writes on
/// it read no settings. Observed from outside: with the settings table gone, such writes still
/// succeed, while a write that needs the settings fails.
#[tokio::test]
async fn writes_on_a_cached_unconfigured_article_read_no_settings() {
    let db = TestDatabase::create().await;
    let mut config = config_with_token(&db.url);
    config.cache_ttl = Duration::from_secs(5); // longer than the test's writes
    let app = spawn_with(db, config).await;
    assert_eq!(app.summary(ARTICLE, None).await["closed"], false, "caches the counts and settings");

    hide_settings_table(&app.db).await;

    for i in 0..5 {
        let visitor = format!("visitor-{i:04}");
        let written = json_ok(app.put_reaction(ARTICLE, &visitor, "love").await).await;
        assert_eq!(written["counts"]["love"], i + 1);
    }
    json_ok(app.delete_reaction(ARTICLE, "visitor-0000").await).await;
    assert_eq!(app.summary(ARTICLE, None).await["counts"], counts(&[("love", 4)]), "a cached read too");
    // The other side: an article whose settings are not cached needs the table.
    let uncached = app.put_reaction("never-read", "visitor-0001", "love").await;
    assert!(uncached.status().is_server_error(), "a settings read would have failed: {}", uncached.status());
}

/// Writes spread over articles nobody read: one read of the configured articles per
/// `CACHE_TTL_MS` serves them all, a closed article among them included. Observed from
/// outside: once that read is made, the settings table can vanish and such writes still
/// succeed, and the closed article still refuses them.
#[tokio::test]
async fn writes_on_articles_never_read_use_one_read_of_the_configured_articles() {
    let db = TestDatabase::create().await;
    let mut config = config_with_token(&db.url);
    config.cache_ttl = Duration::from_secs(5); // longer than the test's writes
    let app = spawn_with(db, config.clone()).await;
    // Closed through another instance, so that this one holds no entry of it.
    let editor = app.another_instance_with(config).await;
    assert_eq!(put_settings(&editor, ARTICLE, json!({"closed": true, "reactions": null})).await.status(), 200);

    json_ok(app.put_reaction("spread-0", "visitor-0000", "love").await).await; // reads the directory
    hide_settings_table(&app.db).await;

    for i in 1..20 {
        let written = json_ok(app.put_reaction(&format!("spread-{i}"), "visitor-0000", "wow").await).await;
        assert_eq!(written["counts"]["wow"], 1, "spread-{i}");
    }
    assert_eq!(
        app.put_reaction(ARTICLE, "visitor-0000", "love").await.status(),
        StatusCode::CONFLICT,
        "the closed article, known from the same read"
    );
}
