//! CORS for browser callers (any origin without credentials, or a list with credentials), and
//! the widget's own routes: `/widget.js` and `/demo`.

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{TestDatabase, spawn_app};
use crate::helpers::{TestApp, spawn_with, test_config};

const SITE: &str = "https://news.example";
const ARTICLE_PATH: &str = "/v1/articles/2025%2F11%2F27%2Fleaked-witkoff-call/reaction";

/// A service that only lets the given origins call it from a browser.
async fn spawn_with_origins(origins: &[&str], cookie_secure: bool) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.allowed_origins = origins.iter().map(|o| (*o).to_owned()).collect();
    config.cookie_secure = cookie_secure;
    spawn_with(db, config).await
}

/// What a browser sends before a PUT or DELETE with the widget's headers.
async fn preflight(app: &TestApp, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(ARTICLE_PATH))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type,x-visitor-id")
        .send()
        .await
        .unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(HeaderName::from_bytes(name.as_bytes()).unwrap()).map(|v| v.to_str().unwrap())
}

/// The comma-separated values of a header, lower case.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(HeaderName::from_bytes(name.as_bytes()).unwrap())
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[track_caller]
fn assert_preflight_allows(response: &reqwest::Response, method: &str, why: &str) {
    assert!(response.status().is_success(), "{why}: preflight status {}", response.status());
    let headers = response.headers();
    let methods = list(headers, "access-control-allow-methods");
    assert!(methods.contains(&method.to_ascii_lowercase()), "{why}: {method} allowed: {headers:?}");
    let allowed_headers = list(headers, "access-control-allow-headers");
    for name in ["x-visitor-id", "content-type"] {
        assert!(allowed_headers.contains(&name.to_owned()), "{why}: {name} allowed: {headers:?}");
    }
    assert!(header(headers, "access-control-max-age").is_some(), "{why}: preflight is cacheable");
}

#[tokio::test]
async fn by_default_any_origin_may_call_without_credentials() {
    let app = spawn_app().await;

    for method in ["PUT", "DELETE"] {
        let response = preflight(&app, SITE, method).await;
        assert_preflight_allows(&response, method, method);
        assert_eq!(header(response.headers(), "access-control-allow-origin"), Some("*"), "{method}");
        assert_eq!(
            header(response.headers(), "access-control-allow-credentials"),
            None,
            "{method}: browsers refuse credentials with a literal *"
        );
    }

    let write = app
        .client
        .put(app.url(ARTICLE_PATH))
        .header("origin", "https://any.example")
        .header("x-visitor-id", "visitor-cors-0001")
        .json(&json!({"reaction": "love"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::OK);
    assert_eq!(header(write.headers(), "access-control-allow-origin"), Some("*"));
    let exposed = list(write.headers(), "access-control-expose-headers");
    for name in ["retry-after", "ratelimit", "ratelimit-policy", "x-request-id"] {
        assert!(exposed.contains(&name.to_owned()), "{name} is readable by the page: {exposed:?}");
    }
}

#[tokio::test]
async fn a_listed_origin_is_echoed_with_credentials_and_others_get_no_grant() {
    // Configured the way people write it: capitals and a trailing slash.
    let app = spawn_with_origins(&["https://News.Example/", "https://other.example"], false).await;

    for method in ["PUT", "DELETE"] {
        let response = preflight(&app, SITE, method).await;
        assert_preflight_allows(&response, method, method);
        let headers = response.headers();
        assert_eq!(
            header(headers, "access-control-allow-origin"),
            Some(SITE),
            "{method}: the origin is echoed"
        );
        assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"), "{method}");
        assert!(list(headers, "vary").contains(&"origin".to_owned()), "{method}: caches key on Origin");
    }

    let stranger = preflight(&app, "https://evil.example", "PUT").await;
    assert_eq!(header(stranger.headers(), "access-control-allow-origin"), None, "an unlisted origin");
    let stranger_read = app
        .client
        .get(app.url("/v1/reactions?article_id=a"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(stranger_read.headers(), "access-control-allow-origin"), None, "unlisted read");
}

#[tokio::test]
async fn the_cookie_path_works_cross_site_with_credentials() {
    let app = spawn_with_origins(&[SITE], true).await;

    // A credentialed write without X-Visitor-Id: the fingerprint identifies it and a cookie is set.
    let write = app
        .client
        .put(app.url(ARTICLE_PATH))
        .header("origin", SITE)
        .json(&json!({"reaction": "wow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::OK);
    let headers = write.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), Some(SITE));
    assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"), "the page sees the answer");
    let cookie = header(headers, "set-cookie").expect("a fingerprinted write gets the cookie").to_owned();
    assert!(cookie.contains("SameSite=None") && cookie.contains("Secure"), "sent cross-site: {cookie}");

    // The browser sends the cookie back from another browser: still the same visitor, so the
    // switch replaces the first reaction.
    let value = cookie.split(';').next().unwrap().to_owned();
    let switch = app
        .client
        .put(app.url(ARTICLE_PATH))
        .header("origin", SITE)
        .header("cookie", value)
        .header("user-agent", "AnotherBrowser/1.0")
        .json(&json!({"reaction": "love"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(switch.headers(), "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(switch.headers(), "set-cookie"), None, "the cookie was accepted");
    let body: serde_json::Value = switch.json().await.unwrap();
    assert_eq!(body["total"], 1, "the cookie identified the visitor: {body}");
    assert_eq!(body["counts"]["love"], 1, "{body}");
}

#[tokio::test]
async fn a_rate_limited_answer_is_readable_cross_origin() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    let one = std::num::NonZeroU32::new(1).unwrap();
    config.rate_limit_writes_per_minute = one;
    config.rate_limit_write_burst = one;
    let app = spawn_with(db, config).await;

    let mut last = None;
    for _ in 0..2 {
        last = Some(
            app.client
                .put(app.url(ARTICLE_PATH))
                .header("origin", SITE)
                .header("x-visitor-id", "visitor-cors-0002")
                .json(&json!({"reaction": "sad"}))
                .send()
                .await
                .unwrap(),
        );
    }
    let limited = last.unwrap();

    // Without the grant the widget would see a network error instead of the 429.
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(limited.headers(), "access-control-allow-origin"), Some("*"));
    assert!(header(limited.headers(), "retry-after").is_some());
}

#[tokio::test]
async fn widget_js_is_a_small_long_cached_module() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/widget.js")).header("origin", SITE).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let cache_control = header(&headers, "cache-control").unwrap();
    assert!(cache_control.contains("public") && cache_control.contains("max-age=86400"), "{cache_control}");
    assert!(cache_control.contains("stale-while-revalidate"), "{cache_control}");
    // A module script is fetched with CORS: the embedding site must be granted it.
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let etag = header(&headers, "etag").expect("an ETag for cheap revalidation").to_owned();
    let body = response.text().await.unwrap();
    // The budget is what travels, as the README states it: `gzip -9`.
    let mut gzip = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    std::io::Write::write_all(&mut gzip.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let gzipped = gzip.wait_with_output().unwrap().stdout.len();
    assert!(gzipped < 6 * 1024, "the widget stays under 6 KB gzipped, is {gzipped} bytes");
    assert_eq!(body, include_str!("../../assets/widget.js"));
    assert!(body.contains("customElements.define('reader-reactions'"), "defines the element");

    let revalidated =
        app.client.get(app.url("/widget.js")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(revalidated.headers(), "etag"), Some(etag.as_str()));
    assert!(revalidated.text().await.unwrap().is_empty());

    let stale =
        app.client.get(app.url("/widget.js")).header("if-none-match", "\"old\"").send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK, "another release's tag gets the file");
}

#[tokio::test]
async fn demo_is_an_article_page_with_the_widget_under_it() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/demo")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "content-type"), Some("text/html; charset=utf-8"));
    let csp = header(response.headers(), "content-security-policy").unwrap().to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="/widget.js"></script>"#), "embeds the widget");
    let headline = page.find("<h1>").expect("a headline");
    let widget = page.find("<reader-reactions article=").expect("a widget");
    assert!(headline < widget, "the widget comes under the article");

    // Routes the browser only reaches through the page are in the API description too.
    let document: serde_json::Value =
        serde_json::from_str(&reader_reactions::http::openapi_document()).unwrap();
    for path in ["/widget.js", "/demo"] {
        assert!(document["paths"][path]["get"].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn preflights_are_answered_before_rate_limiting_and_cached_for_ten_minutes() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    let one = std::num::NonZeroU32::new(1).unwrap();
    (config.rate_limit_reads_per_minute, config.rate_limit_read_burst) = (one, one);
    (config.rate_limit_writes_per_minute, config.rate_limit_write_burst) = (one, one);
    let app = spawn_with(db, config).await;
    let put = || {
        app.client
            .put(app.url(ARTICLE_PATH))
            .header("origin", SITE)
            .header("x-visitor-id", "visitor-0001")
            .json(&json!({"reaction": "love"}))
            .send()
    };
    assert_eq!(put().await.unwrap().status(), StatusCode::OK);
    assert_eq!(put().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS, "the write quota is spent");

    for method in ["PUT", "DELETE", "GET"] {
        let response = preflight(&app, SITE, method).await;
        assert_preflight_allows(&response, method, method);
        assert_eq!(header(response.headers(), "access-control-max-age"), Some("600"), "{method}");
        assert!(header(response.headers(), "retry-after").is_none(), "{method}: not rate limited");
    }
}
