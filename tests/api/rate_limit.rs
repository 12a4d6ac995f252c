//! Rate limiting over real sockets: the peer address matters.

use std::num::NonZeroU32;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::TestDatabase;
use crate::helpers::{TestApp, assert_problem, spawn_with, test_config};

fn n(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap()
}

/// A service with a write quota of `burst` at once and one more a minute: an expected 429
/// stays a 429 whatever pause a loaded machine puts between two requests.
async fn app_with_write_burst(burst: u32, trusted: &[&str], listen: &str) -> TestApp {
    app_with_write_quota(burst, 1, trusted, listen).await
}

async fn app_with_write_quota(burst: u32, per_minute: u32, trusted: &[&str], listen: &str) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_writes_per_minute = n(per_minute);
    config.rate_limit_write_burst = n(burst);
    config.trusted_proxies = trusted.iter().map(|c| c.parse().unwrap()).collect();
    config.listen_addr = listen.parse().unwrap();
    spawn_with(db, config).await
}

async fn put(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url("/v1/articles/a/reaction"))
        .header("x-visitor-id", "visitor-0001")
        .json(&serde_json::json!({"reaction": "love"}));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_burst_passes_with_rate_limit_fields_then_429_then_recovery() {
    let app = app_with_write_burst(3, &[], "127.0.0.1:0").await;

    for remaining in [2, 1, 0] {
        let response = put(&app, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), r#""writes";q=3;w=60"#);
        let ratelimit = header(&response, "ratelimit");
        assert!(ratelimit.starts_with(&format!(r#""writes";r={remaining};t="#)), "{ratelimit}");
    }

    let refused = put(&app, None).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry_after), "one write a minute refills: {retry_after}");
    assert_eq!(header(&refused, "ratelimit"), format!(r#""writes";r=0;t={retry_after}"#));
    assert_eq!(header(&refused, "ratelimit-policy"), r#""writes";q=3;w=60"#);
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "over the burst").await;
    assert!(problem["detail"].as_str().unwrap().contains("writes"));

    let read = app.get_reactions("a", Some("visitor-0001")).await;
    assert_eq!(read.status(), StatusCode::OK, "reads have their own quota");
    assert!(header(&read, "ratelimit").starts_with(r#""reads";"#));
    let probe = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(probe.status(), StatusCode::OK, "probes are never limited");

    assert_eq!(app.summary("a", None).await["counts"]["love"], 1, "refused writes changed nothing extra");
}

#[tokio::test]
async fn the_quota_refills_one_write_at_a_time_when_retry_after_says() {
    // One write every 3 s: long enough that the 429 right after a refill cannot become a 200
    // on a slow machine, short enough to wait for.
    let app = app_with_write_quota(1, 20, &[], "127.0.0.1:0").await;
    assert_eq!(put(&app, None).await.status(), StatusCode::OK);
    let refused = put(&app, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");

    // Waits as told, then once more as told if a rounded-down wait came a moment early.
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let mut refilled = put(&app, None).await;
    while refilled.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(started.elapsed() < Duration::from_secs(10), "the quota never refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        refilled = put(&app, None).await;
    }
    assert_eq!(refilled.status(), StatusCode::OK, "the quota refills");
    assert_eq!(put(&app, None).await.status(), StatusCode::TOO_MANY_REQUESTS, "one at a time");
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = app_with_write_burst(2, &[], "127.0.0.1:0").await;

    assert_eq!(put(&app, Some("198.51.100.1")).await.status(), StatusCode::OK);
    assert_eq!(put(&app, Some("198.51.100.2")).await.status(), StatusCode::OK);

    let spoofed = put(&app, Some("198.51.100.3")).await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS, "the peer address is the key");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_forwarded_address_is_the_client() {
    let app = app_with_write_burst(1, &["127.0.0.0/8"], "127.0.0.1:0").await;

    assert_eq!(put(&app, Some("198.51.100.1")).await.status(), StatusCode::OK);
    assert_eq!(put(&app, Some("198.51.100.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(put(&app, Some("198.51.100.2")).await.status(), StatusCode::OK, "another client");
    assert_eq!(
        put(&app, Some("6.6.6.6, 198.51.100.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a client-written left part does not make a new client"
    );
    assert_eq!(
        put(&app, Some("198.51.100.3, 127.0.0.5")).await.status(),
        StatusCode::OK,
        "trusted hops are skipped"
    );
    assert_eq!(
        put(&app, Some("not-an-ip")).await.status(),
        StatusCode::OK,
        "malformed: the proxy's own bucket"
    );
    assert_eq!(put(&app, None).await.status(), StatusCode::TOO_MANY_REQUESTS, "which is the proxy's");
}

#[tokio::test]
async fn ipv6_clients_are_keyed_by_their_64() {
    let app = app_with_write_burst(1, &["::1/128"], "[::1]:0").await;
    assert!(app.address.starts_with("http://[::1]:"), "a real IPv6 socket: {}", app.address);

    assert_eq!(put(&app, Some("2001:db8:1:2::1")).await.status(), StatusCode::OK);
    assert_eq!(
        put(&app, Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "same /64"
    );
    assert_eq!(put(&app, Some("2001:db8:1:3::1")).await.status(), StatusCode::OK, "another /64");
    assert_eq!(
        put(&app, Some("[2001:db8:1:4::1]:443")).await.status(),
        StatusCode::OK,
        "bracketed with port"
    );
    assert_eq!(put(&app, None).await.status(), StatusCode::OK, "the proxy ::1 itself");
}

#[tokio::test]
async fn an_ipv6_peer_without_proxies_is_limited_by_its_own_address() {
    let app = app_with_write_burst(1, &[], "[::1]:0").await;

    assert_eq!(put(&app, Some("2001:db8::1")).await.status(), StatusCode::OK);
    assert_eq!(put(&app, Some("2001:db8:9::1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
}
