//! Hardening after an outside security review: each test reproduces one of its attacks over
//! HTTP (or at start-up) and checks that it no longer works.

use std::num::NonZeroU32;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reader_reactions::identity::{VisitorId, VisitorKey, VisitorSecret, key_file_for};
use reader_reactions::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::{TestDatabase, spawn_app};
use crate::helpers::{Backend, TestApp, assert_problem, json_ok, spawn_with, test_config};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) SharedBrowser/1.0";

fn values(response: &reqwest::Response, name: &str) -> Vec<String> {
    response.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Junk writes do not spend the per-(address, article) cap.

/// A service with an article cap of 4 an hour (2 at once), and a per-IP write quota of `burst`
/// at once refilled once a second.
async fn app_with_cap_and_burst(burst: u32) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_article_writes_per_hour = NonZeroU32::new(4).unwrap();
    config.rate_limit_write_burst = NonZeroU32::new(burst).unwrap();
    config.rate_limit_writes_per_minute = NonZeroU32::new(60).unwrap();
    spawn_with(db, config).await
}

#[tokio::test]
async fn malformed_writes_and_unknown_reactions_do_not_spend_the_article_cap() {
    let app = app_with_cap_and_burst(1_000).await;
    let url = app.url("/v1/articles/locked/reaction");
    let junk: [(&str, &str, StatusCode); 5] = [
        ("text/plain", r#"{"reaction":"love"}"#, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("application/json", "{not json", StatusCode::BAD_REQUEST),
        ("application/json", r#"["love"]"#, StatusCode::BAD_REQUEST),
        ("application/json", r#"{"reaction":"meh"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        ("application/json", r#"{"reaction":"love","extra":1}"#, StatusCode::BAD_REQUEST),
    ];

    // 60 junk writes from one address on one article, far past the cap of 4.
    for i in 0..60 {
        let (content_type, body, status) = junk[i % junk.len()];
        let response = app
            .client
            .put(&url)
            .header("x-visitor-id", format!("junk-{i:04}"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "junk write {i} ({body}) gets its own 4xx, never a 429");
    }
    assert_eq!(app.stored_reactions().await, 0);

    let valid = app.put_reaction("locked", "reader-0001", "love").await;
    assert_eq!(valid.status(), StatusCode::OK, "the address may still write the article");
    assert!(
        values(&valid, "ratelimit").iter().any(|v| v.starts_with("\"article-writes\";r=1;")),
        "the valid write is the first one spent (2 at once, 1 left): {:?}",
        values(&valid, "ratelimit")
    );
    let undo = app.delete_reaction("locked", "reader-0001").await;
    assert_eq!(undo.status(), StatusCode::OK, "a valid removal is a write too");
    assert!(values(&undo, "ratelimit").iter().any(|v| v.starts_with("\"article-writes\";r=0;")));
    let third = app.put_reaction("locked", "reader-0002", "love").await;
    assert_problem(third, StatusCode::TOO_MANY_REQUESTS, "the cap still holds for valid writes").await;
}

#[tokio::test]
async fn writes_refused_by_the_per_ip_limiter_do_not_spend_the_article_cap() {
    // One write at once per address, refilled every second.
    let app = app_with_cap_and_burst(1).await;
    assert_eq!(app.put_reaction("contested", "reader-0001", "love").await.status(), StatusCode::OK);

    for i in 0..30 {
        let refused = app.put_reaction("contested", &format!("reader-1{i:03}"), "love").await;
        let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "the per-IP quota").await;
        assert!(problem["detail"].as_str().unwrap().contains("writes quota"), "{problem}");
    }

    tokio::time::sleep(Duration::from_millis(1_100)).await; // the per-IP quota refills one
    let after = app.put_reaction("contested", "reader-0002", "love").await;
    assert_eq!(after.status(), StatusCode::OK, "the 30 refused writes did not spend the article cap");
    assert!(
        values(&after, "ratelimit").iter().any(|v| v.starts_with("\"article-writes\";r=0;")),
        "the second spent write of the cap: {:?}",
        values(&after, "ratelimit")
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A fingerprint never erases, reads or hands out another person's data.

async fn anonymous(app: &TestApp, method: Method, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path)).header("user-agent", UA);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("rr_vid={cookie}"));
    }
    if method == Method::PUT {
        request = request.json(&json!({"reaction": "love"}));
    }
    request.send().await.unwrap()
}

fn set_cookie(response: &reqwest::Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().unwrap().to_owned();
    Some(header.strip_prefix("rr_vid=")?.split(';').next()?.to_owned())
}

#[tokio::test]
async fn erase_me_without_a_header_is_a_400_that_erases_nothing_and_sets_no_cookie() {
    let app = spawn_app().await;
    // The first person reacts without a header (by fingerprint) and gets a cookie.
    let first = anonymous(&app, Method::PUT, "/v1/articles/story/reaction", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_cookie = set_cookie(&first).expect("a write by fingerprint sets the cookie");

    // A second person behind the same address with the same browser build, no header, no cookie.
    let erase = anonymous(&app, Method::DELETE, "/v1/visitors/me", None).await;
    assert!(erase.headers().get("set-cookie").is_none(), "no cookie is handed out");
    let problem = assert_problem(erase, StatusCode::BAD_REQUEST, "erase needs an identity").await;
    assert!(problem["detail"].as_str().unwrap().contains("X-Visitor-Id"), "says what to send: {problem}");
    assert_eq!(app.stored_reactions().await, 1, "nothing was erased");

    // A bad cookie is no identity either.
    let forged = anonymous(&app, Method::DELETE, "/v1/visitors/me", Some("v1.AAAA.BBBB")).await;
    assert_problem(forged, StatusCode::BAD_REQUEST, "a forged cookie").await;
    assert_eq!(app.stored_reactions().await, 1);

    // A reading neighbour sees the counts, never the first person's choice.
    let read = json_ok(anonymous(&app, Method::GET, "/v1/articles/story/reactions", None).await).await;
    assert_eq!(read["viewer_reaction"], Value::Null, "reads never resolve a fingerprint");
    assert_eq!(read["counts"]["love"], 1);

    // The neighbour's own fingerprinted write (another article) is handed the very same cookie:
    // it names the address and browser, not a person. So it reads nothing back and erases
    // nothing, for whoever holds it.
    let neighbour = anonymous(&app, Method::PUT, "/v1/articles/other-story/reaction", None).await;
    let neighbour_cookie = set_cookie(&neighbour).expect("a write by fingerprint sets the cookie");
    assert_eq!(neighbour_cookie, first_cookie, "the same fingerprint mints the same cookie");
    let read = anonymous(&app, Method::GET, "/v1/articles/story/reactions", Some(&neighbour_cookie)).await;
    assert!(
        read.headers()["cache-control"].to_str().unwrap().starts_with("public"),
        "a read with the cookie is anonymous: {:?}",
        read.headers()
    );
    let read = json_ok(read).await;
    assert_eq!(read["viewer_reaction"], Value::Null, "the cookie never reads the first person's choice");
    let batch =
        json_ok(anonymous(&app, Method::GET, "/v1/reactions?article_id=story", Some(&neighbour_cookie)).await).await;
    assert_eq!(batch["articles"][0]["viewer_reaction"], Value::Null, "nor does a batch read: {batch}");
    let erase = anonymous(&app, Method::DELETE, "/v1/visitors/me", Some(&neighbour_cookie)).await;
    assert!(erase.headers().get("set-cookie").is_none());
    assert_problem(erase, StatusCode::BAD_REQUEST, "a cookie minted from a fingerprint never erases").await;
    assert_eq!(app.stored_reactions().await, 2, "nothing was erased");

    // A header-identified visitor reads its own choice back and erases it.
    app.put_reaction("story", "reader-0001", "wow").await;
    let own = json_ok(app.request(Method::GET, "/v1/articles/story/reactions", Some("reader-0001"), None).await).await;
    assert_eq!(own["viewer_reaction"], "wow");
    assert_eq!(json_ok(app.erase_me("reader-0001").await).await["removed"], 1);
    assert_eq!(app.stored_reactions().await, 2);
    app.assert_counts_match_rows().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Malformed percent-encoding in a path is a 400.

#[tokio::test]
async fn malformed_percent_encoding_in_a_path_is_a_400_and_stores_nothing() {
    let app = spawn_app().await;
    for id in ["%ZZ", "ab%", "%G1x", "a%2"] {
        for (method, suffix) in
            [(Method::GET, "reactions"), (Method::PUT, "reaction"), (Method::DELETE, "reaction")]
        {
            let path = format!("/v1/articles/{id}/{suffix}");
            let response = app.request(method.clone(), &path, Some("reader-0001"), Some(json!({"reaction": "love"})));
            let problem = assert_problem(response.await, StatusCode::BAD_REQUEST, &format!("{method} {path}")).await;
            assert_eq!(problem["type"], "urn:reader-reactions:problem:invalid-path", "{method} {path}");
        }
        let timeseries = app.request(Method::GET, &format!("/v1/articles/{id}/timeseries"), None, None).await;
        assert_problem(timeseries, StatusCode::BAD_REQUEST, id).await;
        let batch = app.request(Method::GET, &format!("/v1/reactions?article_id={id}"), None, None).await;
        assert_problem(batch, StatusCode::BAD_REQUEST, &format!("batch read of {id}")).await;
    }
    assert_eq!(app.stored_reactions().await, 0, "nothing is stored");
    // Well-formed escapes still work, '%' itself included.
    let ok = app.put_reaction("100%", "reader-0001", "love").await;
    assert_eq!(json_ok(ok).await["article_id"], "100%");
}

// ---------------------------------------------------------------------------------------------
// 4. Unsafe settings refuse to start.

#[test]
fn unsafe_settings_exit_2_with_one_line_naming_the_setting() {
    let short_token = "a-short-admin-token";
    let cases = [
        ("ALLOWED_ORIGINS", "null", "allowed-origins"),
        ("ALLOWED_ORIGINS", "https://news.example,NULL", "allowed-origins"),
        ("ADMIN_TOKEN", "a", "admin-token"),
        ("ADMIN_TOKEN", short_token, "admin-token"),
        ("TRUSTED_PROXIES", "0.0.0.0/0", "trusted-proxies"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,::/0", "trusted-proxies"),
    ];
    for (variable, value, flag) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_reader-reactions"))
            .env(variable, value)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{variable}={value}: one line, got {stderr:?}");
        assert!(stderr.contains(flag) && stderr.contains(variable), "{variable}={value}: names it: {stderr}");
        assert!(!stderr.contains(short_token), "{variable}={value}: repeats no secret: {stderr}");
    }
}

#[test]
fn safe_values_of_those_settings_pass_the_start_up_checks() {
    let config = |pairs: &[(&str, &str)]| {
        let mut args = vec!["reader-reactions".to_owned()];
        for (flag, value) in pairs {
            args.push(format!("--{flag}={value}"));
        }
        <reader_reactions::config::Config as clap::Parser>::try_parse_from(args).unwrap()
    };
    let safe = config(&[
        ("allowed-origins", "https://news.example,https://null.example"),
        ("admin-token", &"x".repeat(32)),
        ("trusted-proxies", "10.0.0.0/8,::1/128"),
    ]);
    assert_eq!(safe.refuse_unsafe(), Ok(()));
    assert!(config(&[("admin-token", &"x".repeat(31))]).refuse_unsafe().is_err(), "31 bytes");
    assert_eq!(reader_reactions::config::check_token_length("--stats-token (STATS_TOKEN)", None), Ok(()));
    let refusal =
        reader_reactions::config::check_token_length("--stats-token (STATS_TOKEN)", Some("short")).unwrap_err();
    assert!(refusal.starts_with("--stats-token (STATS_TOKEN) must be at least 32 bytes"), "{refusal}");
}

// ---------------------------------------------------------------------------------------------
// 5. The generated secret lives outside the database.

const OLD_SECRET: [u8; 32] = [7; 32];

#[tokio::test]
async fn the_generated_secret_is_kept_in_a_0600_key_file_beside_sqlite_and_postgres_warns() {
    let db = TestDatabase::create().await;
    if db.backend == Backend::Postgres {
        return postgres_without_visitor_secret_warns_at_start_up(&db).await;
    }
    let mut config = test_config(&db.url);
    config.visitor_secret = None;
    let app = spawn_with(db, config.clone()).await;
    app.put_reaction("story", "reader-0001", "love").await;

    let file = db_file(&app);
    let key_file = key_file_for(&file);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's alone");
    let secret = read_key(&key_file);
    let dump = app.db.dump().await;
    assert!(!contains(dump.as_bytes(), &secret), "the database file does not hold the secret");

    // A restart reads the key file: the visitor is recognised.
    let mut app = app;
    app.stop().await;
    let app = app.another_instance_with(config).await;
    assert_eq!(json_ok(app.get_reactions("story", Some("reader-0001")).await).await["viewer_reaction"], "love");
    assert_eq!(read_key(&key_file), secret, "the same key");
}

#[tokio::test]
async fn a_secret_an_earlier_version_kept_in_sqlite_moves_to_the_key_file_and_visitors_stay_recognised() {
    let db = TestDatabase::create().await;
    if db.backend == Backend::Postgres {
        return; // PostgreSQL keeps its generated secret in the database (with a warning).
    }
    db.migrate_to(None).await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    sqlx::query("insert into service_secrets (name, secret, created_at) values ('visitor', $1, 0)")
        .bind(OLD_SECRET.as_slice())
        .execute(&mut conn)
        .await
        .unwrap();
    let mut config = test_config(&db.url);
    config.visitor_secret = None;

    let app = spawn_with(db, config).await;
    app.put_reaction("story", "reader-0001", "love").await;

    let old = VisitorSecret::from_bytes(OLD_SECRET.to_vec());
    let key = VisitorKey::from_header_id(&old, &VisitorId::parse(b"reader-0001").unwrap());
    assert_eq!(app.db.visitor_keys().await, [key.as_bytes().to_vec()], "keyed under the old secret");
    assert_eq!(read_key(&key_file_for(&db_file(&app))), OLD_SECRET, "the key file holds it now");
    let left: i64 =
        sqlx::query_scalar("select count(*) from service_secrets").fetch_one(&mut conn).await.unwrap();
    assert_eq!(left, 0, "and the database no longer does");
}

async fn postgres_without_visitor_secret_warns_at_start_up(db: &crate::helpers::TestDatabase) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reader-reactions"))
        .env("DATABASE_URL", &db.url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env_remove("VISITOR_SECRET")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut warnings = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["level"] == "WARN" && line.contains("VISITOR_SECRET") {
                warnings.push(line.clone());
            }
            if entry["fields"]["message"] == "serving" {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("the service starts");
    let _ = child.kill().await;
    assert_eq!(warnings.len(), 1, "one warning line names VISITOR_SECRET: {warnings:?}");
}

fn db_file(app: &TestApp) -> std::path::PathBuf {
    std::path::PathBuf::from(app.db.url.strip_prefix("sqlite://").unwrap())
}

fn read_key(path: &std::path::Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).expect("the key file exists");
    base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// 6. METRICS_ADDR moves /metrics off the public listener.

#[tokio::test]
async fn with_metrics_addr_metrics_is_served_there_only() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build(config).await.unwrap();
    let main = format!("http://{}", app.local_addr());
    let metrics = format!("http://{}", app.metrics_addr().expect("a metrics listener"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let public = client.get(format!("{main}/metrics")).send().await.unwrap();
    assert_problem(public, StatusCode::NOT_FOUND, "/metrics on LISTEN_ADDR").await;
    let scraped = client.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped.text().await.unwrap().contains("http_requests_total"));
    let other = client.get(format!("{metrics}/v1/articles/a/reactions")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "the metrics listener serves nothing else");
    assert_eq!(client.get(format!("{main}/healthz")).send().await.unwrap().status(), StatusCode::OK);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    drop(db);
}

// ---------------------------------------------------------------------------------------------
// 7. Connections: the file limit is raised, and a full house still answers the probes.

/// Sends one HTTP/1.1 request on `stream` and reads its answer: status and body.
async fn exchange(stream: &mut TcpStream, path: &str, keep_alive: bool) -> (u16, String) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: {connection}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_answer(stream).await
}

async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length || n == 0 {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..].to_owned());
            }
        }
        assert!(n > 0, "the connection closed before an answer: {text:?}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_probes_and_open_connections_are_still_served() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.max_connections = NonZeroU32::new(8).unwrap();
    let app = spawn_with(db, config).await;
    let addr = app.address.strip_prefix("http://").unwrap().to_owned();

    // A keep-alive connection in use before the cap is reached.
    let mut existing = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(exchange(&mut existing, "/healthz", true).await.0, 200);
    // Hold the rest of the cap, idle.
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // all accepted

    let started = Instant::now();
    let mut probe = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(exchange(&mut probe, "/healthz", false).await.0, 200, "/healthz past the cap");
    let mut read = TcpStream::connect(&addr).await.unwrap();
    let (status, body) = exchange(&mut read, "/v1/articles/a/reactions", false).await;
    assert_eq!(status, 503, "anything else past the cap is a quick 503: {body}");
    assert!(body.contains("over-capacity"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "quickly: {:?}", started.elapsed());
    assert_eq!(exchange(&mut existing, "/v1/articles/a/reactions", true).await.0, 200, "open ones go on");

    // Past the overflow lane too: a 503 without reading the request, then the close.
    for _ in 0..reader_reactions::serve::OVERFLOW_CONNECTIONS {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut beyond = TcpStream::connect(&addr).await.unwrap();
    let (status, body) = read_answer(&mut beyond).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], 503);
    assert_eq!(exchange(&mut existing, "/healthz", true).await.0, 200, "open ones still go on");
}

#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let db = TestDatabase::create().await;
    // The service under a low soft limit, as on many hosts by default.
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -S -n 256 && exec \"$0\"", env!("CARGO_BIN_EXE_reader-reactions")])
        .env("DATABASE_URL", &db.url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("VISITOR_SECRET", "hardening-secret-hardening-secret-000001")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("\"serving\"") {
                return line;
            }
        }
        panic!("the service exited before serving");
    };
    let line = tokio::time::timeout(Duration::from_secs(60), serving).await.expect("it serves");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id().unwrap())).unwrap();
    let _ = child.kill().await;
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    let (soft, hard) = (open_files[3], open_files[4]);
    assert_eq!(soft, hard, "the soft limit is the hard one now: {limits}");
    assert_ne!(soft, "256");
    assert!(line.contains("max_connections"), "the cap in force is logged: {line}");
}

// ---------------------------------------------------------------------------------------------
// 8. A known-down database is answered at once.

#[tokio::test]
async fn once_the_database_is_known_down_requests_get_503_at_once() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.backend.unreachable_url());
    config.migrate_on_start = false;
    let app = spawn_with(db, config).await;

    // The first requests find out (each may wait for the pool); the probe then confirms.
    for i in 0..2 {
        let response = app.put_reaction("down", &format!("reader-000{i}"), "love").await;
        assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "the database is down").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut latencies = Vec::new();
    for i in 0..40 {
        let started = Instant::now();
        let response = match i % 4 {
            0 => app.put_reaction("down", &format!("reader-1{i:03}"), "love").await,
            1 => app.get_reactions(&format!("uncached-{i}"), Some("reader-0001")).await,
            2 => app.erase_me("reader-0001").await,
            _ => app.request(Method::GET, "/readyz", None, None).await,
        };
        latencies.push(started.elapsed());
        assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, &format!("request {i}")).await;
    }
    latencies.sort();
    let p95 = latencies[latencies.len() * 95 / 100 - 1];
    eprintln!("503s while the database is known down: p95 {p95:?}, slowest {:?}", latencies.last().unwrap());
    assert!(p95 <= Duration::from_millis(100), "p95 of the 503s: {p95:?}");
}
