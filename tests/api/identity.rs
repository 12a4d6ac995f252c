//! Visitor identity: header, then signed cookie, then fingerprint; salts shared and rotated
//! through the database; nothing identifying stored.

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{TestDatabase, spawn_app};
use crate::helpers::{TestApp, json_ok, spawn_with, test_config};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";

/// A request with exactly the identity pieces given.
async fn send(
    app: &TestApp,
    method: Method,
    article: &str,
    header_id: Option<&str>,
    cookie: Option<&str>,
    user_agent: &str,
) -> reqwest::Response {
    let suffix = if method == Method::GET { "reactions" } else { "reaction" };
    let mut request = app
        .client
        .request(method.clone(), app.url(&format!("/v1/articles/{article}/{suffix}")))
        .header("user-agent", user_agent);
    if let Some(id) = header_id {
        request = request.header("x-visitor-id", id);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("rr_vid={cookie}"));
    }
    if method == Method::PUT {
        request = request.json(&serde_json::json!({"reaction": "love"}));
    }
    request.send().await.unwrap()
}

async fn viewer(app: &TestApp, header_id: Option<&str>, cookie: Option<&str>, user_agent: &str) -> Value {
    json_ok(send(app, Method::GET, "story", header_id, cookie, user_agent).await).await["viewer_reaction"]
        .clone()
}

/// The value of the `rr_vid` cookie a response sets, if any.
fn set_cookie(response: &reqwest::Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().unwrap().to_owned();
    let value = header.strip_prefix("rr_vid=")?.split(';').next()?.to_owned();
    Some(value)
}

#[tokio::test]
async fn a_fingerprinted_write_sets_a_cookie_and_precedence_is_header_cookie_fingerprint() {
    let app = spawn_app().await;

    let write = send(&app, Method::PUT, "story", None, None, UA).await;
    let cookie = set_cookie(&write).expect("a write identified by fingerprint gets the cookie");
    let attributes = write.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(attributes.contains("HttpOnly") && attributes.contains("Max-Age=31536000"), "{attributes}");
    assert_eq!(json_ok(write).await["viewer_reaction"], "love", "a write's answer shows what it set");

    assert_eq!(viewer(&app, None, None, UA).await, Value::Null, "reads without an identity are anonymous");
    assert_eq!(
        viewer(&app, None, Some(&cookie), "OtherBrowser/2").await,
        Value::Null,
        "the cookie is minted from a shared fingerprint: it never reads a reaction back"
    );
    // But it names the visitor for writes: from another browser, with the cookie, the same visitor.
    let by_cookie = send(&app, Method::PUT, "story", None, Some(&cookie), "OtherBrowser/2").await;
    assert!(set_cookie(&by_cookie).is_none(), "a visitor with a valid cookie keeps it");
    assert_eq!(json_ok(by_cookie).await["counts"]["love"], 1, "the cookie's holder, not a new visitor");

    let header_write = send(&app, Method::PUT, "story", Some("header-visitor"), Some(&cookie), UA).await;
    assert!(set_cookie(&header_write).is_none(), "header-identified writes get no cookie");
    assert_eq!(json_ok(header_write).await["counts"]["love"], 2, "the header wins over the cookie");
    assert_eq!(viewer(&app, Some("header-visitor"), Some(&cookie), UA).await, "love", "a header reads back");
    let other_browser = send(&app, Method::PUT, "story", None, None, "OtherBrowser/2").await;
    let other_cookie = set_cookie(&other_browser).expect("another fingerprint, another cookie");
    assert_ne!(other_cookie, cookie);
    assert_eq!(json_ok(other_browser).await["counts"]["love"], 3, "three different visitors");

    // The same IP and User-Agent without the cookie is the same fingerprint: it undoes its own.
    let undo = send(&app, Method::DELETE, "story", None, None, UA).await;
    assert_eq!(set_cookie(&undo).as_deref(), Some(cookie.as_str()), "the same identity token");
    assert_eq!(json_ok(undo).await["counts"]["love"], 2);
    let by_cookie = send(&app, Method::DELETE, "story", None, Some(&cookie), "Third/3").await;
    assert!(set_cookie(&by_cookie).is_none(), "a visitor with a valid cookie keeps it");
    assert_eq!(json_ok(by_cookie).await["counts"]["love"], 2, "already removed: idempotent");
    let read = send(&app, Method::GET, "story", None, None, "Reader/3").await;
    assert!(set_cookie(&read).is_none(), "reads never set cookies");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn a_tampered_or_foreign_cookie_is_ignored_never_an_error() {
    let app = spawn_app().await;
    let cookie = set_cookie(&send(&app, Method::PUT, "story", None, None, UA).await).unwrap();

    // The genuine cookie names the visitor who wrote: a write with it from another browser
    // changes nothing. A forgery that kept its token would do the same if the signature were
    // not checked; checked, it is ignored and the write goes by the forger's own fingerprint.
    let genuine = send(&app, Method::PUT, "story", None, Some(&cookie), "OtherBrowser/2").await;
    assert!(set_cookie(&genuine).is_none());
    assert_eq!(json_ok(genuine).await["counts"]["love"], 1, "the genuine cookie");
    // The token kept, one character of the signature changed (the middle one: base64url's last
    // character carries padding bits).
    let (token, signature) = cookie.rsplit_once('.').unwrap();
    let mut forged_signature = signature.to_owned().into_bytes();
    let middle = forged_signature.len() / 2;
    forged_signature[middle] = if forged_signature[middle] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{token}.{}", String::from_utf8(forged_signature).unwrap());
    let unsigned = format!("{token}.");
    let cases = [
        (tampered.as_str(), "tampered signature"),
        (unsigned.as_str(), "signature removed"),
        ("v1.AAAA.BBBB", "forged"),
        ("garbage", "garbage"),
        ("", "empty"),
    ];
    for (n, (value, why)) in cases.into_iter().enumerate() {
        let read = send(&app, Method::GET, "story", None, Some(value), "OtherBrowser/2").await;
        assert_eq!(read.status(), StatusCode::OK, "{why}");
        // Each forger writes from a browser of its own: a new visitor, by fingerprint.
        let write = send(&app, Method::PUT, "story", None, Some(value), &format!("Forger/{n}")).await;
        assert_eq!(write.status(), StatusCode::OK, "{why}");
        let fresh = set_cookie(&write).unwrap_or_else(|| panic!("{why}: identified by fingerprint"));
        assert_ne!(fresh, cookie, "{why}: not the cookie's visitor");
        assert_eq!(json_ok(write).await["counts"]["love"], n + 2, "{why}: a new visitor");
    }
    // A write with a bad cookie from the cookie's own browser is that browser's fingerprint.
    let write = send(&app, Method::PUT, "story", None, Some(&tampered), UA).await;
    assert_eq!(set_cookie(&write).as_deref(), Some(cookie.as_str()), "same fingerprint, same token");
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn fingerprints_change_when_the_salt_rotates_but_the_cookie_keeps_the_visitor() {
    let app = spawn_app().await;
    let cookie = set_cookie(&send(&app, Method::PUT, "story", None, None, UA).await).unwrap();

    // Rotate today's salt behind the service's back; a fresh instance reads it at once.
    let rotated = app.db.rotate_todays_salt().await;
    assert_eq!(rotated, 1, "one salt for today");
    let fresh = app.another_instance().await;

    let after = send(&fresh, Method::PUT, "story", None, None, UA).await;
    let new_cookie = set_cookie(&after).expect("a fingerprinted write");
    assert_ne!(new_cookie, cookie, "a new salt makes a new fingerprint");
    assert_eq!(json_ok(after).await["counts"]["love"], 2, "so the same browser without its cookie is new");
    let with_cookie = send(&fresh, Method::PUT, "story", None, Some(&cookie), UA).await;
    assert!(set_cookie(&with_cookie).is_none());
    assert_eq!(json_ok(with_cookie).await["counts"]["love"], 2, "the cookie survives the rotation");
    let undo = send(&fresh, Method::DELETE, "story", None, Some(&cookie), UA).await;
    assert_eq!(json_ok(undo).await["counts"]["love"], 1, "and undoes the first write");
    fresh.assert_counts_match_rows().await;
}

#[tokio::test]
async fn salts_older_than_48_hours_are_deleted() {
    let app = spawn_app().await;
    // Age and day disagree on purpose: deletion goes by when a salt was made, not by its day.
    app.db.insert_salt(1, TimeDelta::hours(49)).await;
    app.db.insert_salt(3, TimeDelta::hours(47)).await;

    send(&app, Method::PUT, "story", None, None, UA).await; // a fingerprinted write needs today's salt

    let days = app.db.salt_days_ago().await;
    assert_eq!(days, [3, 0], "the 49-hour-old salt is gone, the 47-hour-old one and today's remain");
}

#[tokio::test]
async fn two_instances_with_a_generated_secret_agree_on_every_kind_of_identity() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.visitor_secret = None; // generated once, kept in the database
    let first = spawn_with(db, config.clone()).await;
    let second = first.another_instance_with(config).await;

    send(&first, Method::PUT, "story", Some("header-visitor"), None, UA).await;
    let cookie = set_cookie(&send(&first, Method::PUT, "story", None, None, UA).await).unwrap();

    assert_eq!(viewer(&second, Some("header-visitor"), None, "X/1").await, "love", "header");
    let by_cookie = send(&second, Method::PUT, "story", None, Some(&cookie), "X/1").await;
    assert!(set_cookie(&by_cookie).is_none(), "the cookie verifies on the second instance");
    assert_eq!(json_ok(by_cookie).await["counts"]["love"], 2, "two visitors, counted once each");
    let undo = send(&second, Method::DELETE, "story", None, None, UA).await;
    assert_eq!(set_cookie(&undo).as_deref(), Some(cookie.as_str()), "fingerprint: the same token");
    assert_eq!(json_ok(undo).await["counts"]["love"], 1, "the fingerprint's reaction is removed");
}

#[tokio::test]
async fn a_database_dump_contains_no_raw_ip_user_agent_visitor_id_or_cookie() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
    let app = spawn_with(db, config).await;
    let ip = "203.0.113.77";
    let user_agent = "MarkerAgent/9.9 (privacy-test)";
    let header_id = "MarkerHeaderId-5d1e";

    let by_fingerprint = app
        .client
        .put(app.url("/v1/articles/story/reaction"))
        .header("x-forwarded-for", ip)
        .header("user-agent", user_agent)
        .json(&serde_json::json!({"reaction": "wow"}))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&by_fingerprint).unwrap();
    assert_eq!(by_fingerprint.status(), StatusCode::OK);
    send(&app, Method::PUT, "story", Some(header_id), None, user_agent).await;
    send(&app, Method::PUT, "other", None, Some(&cookie), user_agent).await;

    let dump = app.db.dump().await;
    assert!(dump.contains("story") && dump.contains("other"), "the dump holds the reactions");
    let token = cookie.split('.').nth(1).unwrap();
    for (marker, what) in [
        (ip, "client IP"),
        ("MarkerAgent", "User-Agent"),
        (header_id, "X-Visitor-Id"),
        (cookie.as_str(), "cookie value"),
        (token, "cookie token"),
    ] {
        assert!(!dump.contains(marker), "the database dump contains the raw {what}");
    }
}
