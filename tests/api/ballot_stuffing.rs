//! The article write cap: one client network inventing visitor ids cannot push one article's
//! counts far, while its other articles, and other clients, are unaffected. (How far one client
//! gets in an hour under the defaults is measured in `src/http/article_cap.rs`.)

use std::num::NonZeroU32;

use reqwest::{Method, StatusCode};

use super::TestDatabase;
use crate::helpers::{TestApp, assert_problem, segment, spawn_with, test_config};

/// Behind a trusted proxy on loopback, so `X-Forwarded-For` names the client.
async fn app_with_article_cap(per_hour: u32, write_burst: u32) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    config.rate_limit_article_writes_per_hour = NonZeroU32::new(per_hour).unwrap();
    config.rate_limit_write_burst = NonZeroU32::new(write_burst).unwrap();
    config.rate_limit_writes_per_minute = NonZeroU32::new(1).unwrap(); // no refill during the test
    spawn_with(db, config).await
}

async fn write(
    app: &TestApp,
    method: Method,
    client: &str,
    path_id: &str,
    visitor: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method.clone(), app.url(&format!("/v1/articles/{path_id}/reaction")))
        .header("x-forwarded-for", client)
        .header("x-visitor-id", visitor);
    if method == Method::PUT {
        request = request.json(&serde_json::json!({"reaction": "love"}));
    }
    request.send().await.unwrap()
}

async fn love(app: &TestApp, client: &str, article: &str, visitor: &str) -> reqwest::Response {
    write(app, Method::PUT, client, &segment(article), visitor).await
}

fn values(response: &reqwest::Response, name: &str) -> Vec<String> {
    response.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

const STUFFER: &str = "198.51.100.1";
const NEIGHBOUR: &str = "198.51.100.2";

#[tokio::test]
async fn one_ip_with_many_visitor_ids_is_capped_on_one_article_only() {
    // A cap of 6 an hour: 3 at once, then one every 20 minutes.
    let app = app_with_article_cap(6, 10).await;

    for i in 0..3 {
        let response = love(&app, STUFFER, "hot", &format!("visitor-{i:04}")).await;
        assert_eq!(response.status(), StatusCode::OK, "write {i} is within the cap");
        let fields = values(&response, "ratelimit");
        assert!(fields[0].starts_with(r#""writes";"#), "the per-IP field comes first: {fields:?}");
        assert_eq!(fields[1], format!(r#""article-writes";r={};t={}"#, 2 - i, 1200 * (i + 1)));
        assert_eq!(values(&response, "ratelimit-policy")[1], r#""article-writes";q=6;w=3600"#);
    }

    let refused = love(&app, STUFFER, "hot", "visitor-0003").await;
    assert_eq!(values(&refused, "ratelimit"), [r#""article-writes";r=0;t=1200"#]);
    assert_eq!(values(&refused, "ratelimit-policy"), [r#""article-writes";q=6;w=3600"#]);
    assert_eq!(values(&refused, "retry-after"), ["1200"], "the next refill, in seconds");
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "a fourth visitor id").await;
    assert!(problem["detail"].as_str().unwrap().contains("this article"), "{problem}");

    let cases = [
        (Method::PUT, STUFFER, "h%6Ft", StatusCode::TOO_MANY_REQUESTS, "another spelling of the same id"),
        (Method::DELETE, STUFFER, "hot", StatusCode::TOO_MANY_REQUESTS, "a removal is a write too"),
        (Method::PUT, STUFFER, "cold", StatusCode::OK, "the same client on another article"),
        (Method::PUT, STUFFER, "2025%2F11%2Fcold", StatusCode::OK, "and on a third"),
        (Method::PUT, NEIGHBOUR, "hot", StatusCode::OK, "another client on the capped article"),
    ];
    for (method, client, path_id, expected, why) in cases {
        let response = write(&app, method, client, path_id, "visitor-0100").await;
        assert_eq!(response.status(), expected, "{why}");
    }
    let read = app
        .client
        .get(app.url("/v1/articles/hot/reactions"))
        .header("x-forwarded-for", STUFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK, "reads are not capped");

    assert_eq!(
        app.summary("hot", None).await["counts"]["love"],
        4,
        "3 from the stuffer, 1 from its neighbour"
    );
    app.assert_counts_match_rows().await;
}

#[tokio::test]
async fn writes_refused_by_the_article_cap_do_not_spend_the_ip_write_quota() {
    // A per-IP burst of 5 that does not refill during the test, and an article cap of 2 at once.
    let app = app_with_article_cap(4, 5).await;

    assert_eq!(love(&app, STUFFER, "hot", "visitor-0001").await.status(), StatusCode::OK);
    assert_eq!(love(&app, STUFFER, "hot", "visitor-0002").await.status(), StatusCode::OK);
    for i in 3..20 {
        let response = love(&app, STUFFER, "hot", &format!("visitor-{i:04}")).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "capped on the article");
    }

    for article in ["a", "b", "c"] {
        let response = love(&app, STUFFER, article, "visitor-0001").await;
        assert_eq!(response.status(), StatusCode::OK, "readers behind the address can still write {article}");
    }
    let spent = love(&app, STUFFER, "d", "visitor-0001").await;
    let problem = assert_problem(spent, StatusCode::TOO_MANY_REQUESTS, "the sixth admitted write").await;
    assert!(problem["detail"].as_str().unwrap().contains("writes quota"), "now the per-IP quota: {problem}");
}
