//! The dashboards: `STATS_TOKEN` on the stats reads, the `/dashboard` page and its files, and the
//! Grafana dashboard's queries against what `/metrics` exports.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::{Method, Response, StatusCode};

use super::TestDatabase;
use crate::helpers::{TestApp, assert_problem, json_ok, segment, spawn_with, test_config};

const STATS_TOKEN: &str = "stats-token-stats-token-stats-token-0001";
const ADMIN_TOKEN: &str = "admin-token-admin-token-admin-token-0001";

/// The reads `STATS_TOKEN` guards: every stats route but the export, and the time series.
fn guarded_reads() -> [String; 4] {
    [
        "/v1/stats/top".to_owned(),
        "/v1/stats/totals".to_owned(),
        "/v1/stats/trending".to_owned(),
        format!("/v1/articles/{}/timeseries", segment("2025/11/27/dashboard")),
    ]
}

async fn spawn_with_tokens(stats_token: Option<&str>, admin_token: Option<&str>) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.stats_token = stats_token.map(str::to_owned);
    config.admin_token = admin_token.map(str::to_owned);
    spawn_with(db, config).await
}

async fn get(app: &TestApp, path: &str, authorization: Option<&str>) -> Response {
    let mut request = app.client.get(app.url(path));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("the request is answered")
}

#[tokio::test]
async fn with_a_stats_token_the_stats_reads_need_it() {
    let app = spawn_with_tokens(Some(STATS_TOKEN), Some(ADMIN_TOKEN)).await;
    app.put_reaction("2025/11/27/dashboard", "dashboard-visitor-1", "love").await;
    let right = format!("Bearer {STATS_TOKEN}");
    let lower_case = format!("bearer {STATS_TOKEN}");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let prefix = format!("Bearer {}", &STATS_TOKEN[..STATS_TOKEN.len() - 1]);
    for path in guarded_reads() {
        for (authorization, why) in [
            (None, "no Authorization header"),
            (Some("Bearer wrong-token-wrong-token-wrong-token-01"), "another token"),
            (Some(prefix.as_str()), "a prefix of the token"),
            (Some(admin.as_str()), "the admin token is not the stats token"),
            (Some("Basic c3RhdHM6c2VjcmV0"), "not a bearer token"),
            (Some(STATS_TOKEN), "the token without its scheme"),
        ] {
            let response = get(&app, &path, authorization).await;
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            assert_problem(response, StatusCode::UNAUTHORIZED, &format!("{path}: {why}")).await;
            assert_eq!(challenge.as_deref(), Some("Bearer realm=\"reader-reactions\""), "{path}: {why}");
        }
        for authorization in [&right, &lower_case] {
            json_ok(get(&app, &path, Some(authorization)).await).await;
        }
    }
    // What the token opens is the real answer.
    let totals = json_ok(get(&app, "/v1/stats/totals", Some(&right)).await).await;
    assert_eq!(totals["counts"]["love"], 1, "{totals}");
}

#[tokio::test]
async fn without_a_stats_token_the_stats_reads_stay_public() {
    let app = spawn_with_tokens(None, None).await;
    for path in guarded_reads() {
        json_ok(get(&app, &path, None).await).await;
        // A stray header changes nothing when there is no token to compare it with.
        json_ok(get(&app, &path, Some("Bearer anything")).await).await;
    }
}

#[tokio::test]
async fn the_export_keeps_the_admin_token_whatever_the_stats_token() {
    let app = spawn_with_tokens(Some(STATS_TOKEN), Some(ADMIN_TOKEN)).await;
    let stats = format!("Bearer {STATS_TOKEN}");
    let response = get(&app, "/v1/stats/export.csv", Some(&stats)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "the stats token does not open the export").await;
    let response = get(&app, "/v1/stats/export.csv", None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "nor does nothing").await;
    let response = get(&app, "/v1/stats/export.csv", Some(&format!("Bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(response.status(), StatusCode::OK, "the admin token does");
    assert!(response.text().await.unwrap().starts_with("article_id,reaction,count\r\n"));

    // Without an ADMIN_TOKEN the export is off, a stats token or not.
    let app = spawn_with_tokens(Some(STATS_TOKEN), None).await;
    let response = get(&app, "/v1/stats/export.csv", Some(&stats)).await;
    assert_problem(response, StatusCode::NOT_FOUND, "the export is off").await;
}

#[tokio::test]
async fn the_dashboard_page_is_served_with_its_files_and_says_whether_a_token_is_needed() {
    for (stats_token, meta) in [
        (None, r#"<meta name="stats-token" content="none">"#),
        (Some(STATS_TOKEN), r#"<meta name="stats-token" content="required">"#),
    ] {
        let app = spawn_with_tokens(stats_token, None).await;
        let response = app.request(Method::GET, "/dashboard", None, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "the CSP has {directive}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "no inline script or style: {csp}");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        // A revalidated page keeps its policies.
        let again =
            app.client.get(app.url("/dashboard")).header("If-None-Match", headers["etag"].clone()).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "the page revalidates");
        assert_eq!(again.headers()["content-security-policy"], headers["content-security-policy"]);
        assert_eq!(again.headers()["referrer-policy"], "no-referrer");
        let page = response.text().await.unwrap();
        assert!(page.contains(meta), "{stats_token:?}: the page says {meta}");

        // Every file the page names is served from this origin, with its type.
        for (path, content_type) in
            [("/dashboard.js", "text/javascript; charset=utf-8"), ("/dashboard.css", "text/css; charset=utf-8")]
        {
            assert!(page.contains(&format!("\"{path}\"")), "the page loads {path}");
            let response = app.request(Method::GET, path, None, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["content-type"], content_type, "{path}");
            let etag = response.headers()["etag"].clone();
            let again = app.client.get(app.url(path)).header("If-None-Match", etag).send().await.unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path} revalidates");
        }
    }
}

#[tokio::test]
async fn a_stats_token_under_32_bytes_refuses_to_start_with_one_line_naming_it() {
    for short in ["too-short", "", &"x".repeat(31)] {
        let output = Command::new(env!("CARGO_BIN_EXE_reader-reactions"))
            .env("STATS_TOKEN", short)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "STATS_TOKEN={short:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.contains("STATS_TOKEN"), "names the setting: {stderr}");
        assert!(short.is_empty() || !stderr.contains(short), "does not repeat the token: {stderr}");
    }
}

/// The metric names a PromQL expression selects: every name directly before a `{`, and the
/// metric of a `label_values(metric, label)` template query.
fn metric_names(expr: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    for (at, _) in expr.match_indices('{') {
        let before = &expr[..at];
        let start = before.rfind(|c| !is_name_char(c)).map_or(0, |i| i + 1);
        if start < at && !before[start..].starts_with(|c: char| c.is_ascii_digit()) {
            names.push(before[start..].to_owned());
        }
    }
    if let Some(rest) = expr.strip_prefix("label_values(") {
        names.push(rest.split([',', ')']).next().unwrap().trim().to_owned());
    }
    names
}

#[test]
fn metric_names_are_read_from_selectors_and_template_queries() {
    assert_eq!(
        metric_names(r#"sum by (le) (rate(a_bucket{job="$job"}[5m])) / sum(b_total{job="$job",x="{y}"})"#),
        ["a_bucket", "b_total"]
    );
    assert_eq!(metric_names("label_values(http_requests_total, job)"), ["http_requests_total"]);
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../deploy/grafana/reader-reactions.json"))
        .expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()) {
        let expr = target["expr"].as_str().expect("every target is a PromQL expression");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "every query names its metric with a selector: {expr}");
        queried.extend(names);
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queried.extend(metric_names(query));
        }
    }
    assert!(queried.len() >= 10, "the dashboard queries the service's metrics: {queried:?}");

    // Traffic that moves every family: requests, writes and so write batches, and a 429.
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_stats_burst = 1.try_into().unwrap();
    config.rate_limit_stats_per_minute = 1.try_into().unwrap();
    let app = spawn_with(db, config).await;
    app.put_reaction("grafana-article", "grafana-visitor-1", "wow").await;
    app.get_reactions("grafana-article", None).await;
    app.request(Method::GET, "/v1/stats/totals", None, None).await;
    let refused = app.request(Method::GET, "/v1/stats/totals", None, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let exported = app.request(Method::GET, "/metrics", None, None).await.text().await.unwrap();

    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| {
            !exported.lines().any(|line| {
                line.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .collect();
    assert!(missing.is_empty(), "the Grafana dashboard queries metrics /metrics does not export: {missing:?}");
}
