//! The committed OpenAPI document is exactly what the code generates, and what is served.

use reader_reactions::config::RateLimitSettings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestDatabase, spawn_app_on, spawn_with, test_config};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

/// Fails when the handlers' annotations and `openapi/openapi.json` disagree. To accept a change,
/// run `UPDATE_OPENAPI=1 cargo test openapi` and review the diff.
#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = reader_reactions::http::openapi_document();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(std::path::Path::new(COMMITTED).parent().unwrap()).unwrap();
        std::fs::write(COMMITTED, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test openapi` and commit the diff"
    );
}

#[test]
fn document_is_openapi_3_1_and_describes_every_v1_route() {
    let document: serde_json::Value =
        serde_json::from_str(&reader_reactions::http::openapi_document()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/articles/{article_id}/reactions", "get"),
        ("/v1/articles/{article_id}/reaction", "put"),
        ("/v1/articles/{article_id}/reaction", "delete"),
        ("/v1/reactions", "get"),
        ("/v1/visitors/me", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    let summary = &document["components"]["schemas"]["ReactionSummary"];
    assert!(summary["required"].as_array().unwrap().len() >= 4, "{summary}");
}

#[tokio::test]
async fn served_document_is_the_committed_file() {
    // The document does not depend on the backend: the one that needs no server will do.
    let app = spawn_app_on(Backend::Sqlite).await;

    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();

    assert_eq!(served, reader_reactions::http::openapi_document());
}

/// The rate-limit policies and the identity cookie the document states for each `/v1/`
/// operation are those the service sends under the default settings: the document follows the
/// limiters, their defaults and the layers each route is mounted under.
#[tokio::test]
async fn every_v1_answer_carries_the_documented_rate_limit_policy_and_cookie() {
    let document: Value = serde_json::from_str(&reader_reactions::http::openapi_document()).unwrap();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut config = test_config(&db.url);
    let defaults = RateLimitSettings::DEFAULT;
    config.rate_limit_writes_per_minute = defaults.writes_per_minute;
    config.rate_limit_write_burst = defaults.write_burst;
    config.rate_limit_reads_per_minute = defaults.reads_per_minute;
    config.rate_limit_read_burst = defaults.read_burst;
    config.rate_limit_stats_per_minute = defaults.stats_per_minute;
    config.rate_limit_stats_burst = defaults.stats_burst;
    config.rate_limit_article_writes_per_hour = defaults.article_writes_per_hour;
    let app = spawn_with(db, config).await;

    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let url = app.url(&path.replace("{article_id}", "a"));
            // No X-Visitor-Id: a write is then identified by fingerprint and gets the cookie.
            let mut request = app.client.request(method.clone(), url);
            if method == Method::PUT {
                request = request.json(&json!({ "reaction": "like" }));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_str().to_owned();
            let documented = &operation["responses"][&status];
            let what = format!("{method} {path} answered {status}");
            assert!(documented.is_object(), "{what}, which is not documented");
            let headers = &documented["headers"];
            let policy: Vec<&str> =
                response.headers().get_all("ratelimit-policy").iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(policy.join(", "), headers["RateLimit-Policy"]["example"].as_str().unwrap(), "{what}");
            assert_eq!(
                response.headers().contains_key("set-cookie"),
                headers["Set-Cookie"].is_object(),
                "{what}: the Set-Cookie field as documented"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "every /v1/ operation was checked ({checked})");
}
