//! A corpus of hostile requests, sent over raw TCP so that anything can be expressed: invalid
//! UTF-8 in paths, repeated and huge headers, broken framing, slow bodies. Each gets its 4xx,
//! nothing is written, and the service stays healthy and fast.
//!
//! Most answers come from the service, as problem+json. A few requests are refused by hyper
//! while it parses the request head, before any of our code runs: it answers those with an
//! empty 400, 414 or 431 and closes the connection. hyper has no hook for that body and
//! `axum::serve` exposes none of its limits, so those stay bare 4xx (see RELIABILITY.md).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::TestDatabase;
use crate::helpers::{TestApp, spawn_with, test_config};

/// Lowered from the default so the slow-body cases end quickly; bodies get half of it.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(2000);

/// A piece of what the client sends: bytes, or a pause before the next piece.
#[derive(Clone)]
enum Part {
    Bytes(Vec<u8>),
    Pause(Duration),
}

/// Who answers a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// Our service: problem+json with the status in its body.
    Service,
    /// hyper, refusing the request head: an empty body and `Connection: close`.
    Hyper,
    /// Whichever sees it first: hyper's head limit depends on how the bytes arrive in reads,
    /// and what hyper lets through our own header limit refuses.
    HyperOrService,
}

struct Case {
    why: String,
    parts: Vec<Part>,
    status: u16,
    by: By,
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A request with `Host`, `Connection: close` and, when there is a body and no framing header
/// among `headers`, a `Content-Length`.
fn request(method: &str, target: &[u8], headers: &[(&str, &[u8])], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if let (Some(body), false) = (body, framed) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.unwrap_or_default());
    out
}

const VISITOR: (&str, &[u8]) = ("X-Visitor-Id", b"hostile-visitor-0001");
const JSON: (&str, &[u8]) = ("Content-Type", b"application/json");
const PUT_A: &[u8] = b"/v1/articles/a/reaction";

fn case(why: impl Into<String>, bytes: Vec<u8>, status: u16, by: By) -> Case {
    Case { why: why.into(), parts: vec![Part::Bytes(bytes)], status, by }
}

/// A PUT of `body` as JSON on article `a` by a well-formed visitor.
fn put_json(why: impl Into<String>, body: &[u8], status: u16) -> Case {
    case(why, request("PUT", PUT_A, &[VISITOR, JSON], Some(body)), status, By::Service)
}

/// A GET of article `segment`'s reactions (the segment as sent, already encoded or not).
fn get_article(why: impl Into<String>, segment: &[u8], status: u16, by: By) -> Case {
    let target = [b"/v1/articles/".as_slice(), segment, b"/reactions"].concat();
    case(why, request("GET", &target, &[], None), status, by)
}

/// A PUT of a valid body on a malformed article `segment`: a 400 problem.
fn put_bad_article(why: impl Into<String>, segment: &[u8]) -> Case {
    let target = [b"/v1/articles/".as_slice(), segment, b"/reaction"].concat();
    case(why, request("PUT", &target, &[VISITOR, JSON], Some(br#"{"reaction":"love"}"#)), 400, By::Service)
}

fn get_with_visitor(why: impl Into<String>, visitor_headers: &[&[u8]], status: u16, by: By) -> Case {
    let headers: Vec<(&str, &[u8])> = visitor_headers.iter().map(|v| ("X-Visitor-Id", *v)).collect();
    case(why, request("GET", b"/v1/articles/a/reactions", &headers, None), status, by)
}

/// A PUT whose head promises a body that then arrives in `pieces` with pauses between.
fn slow_put(why: &str, head_headers: &[(&str, &[u8])], pieces: &[&[u8]], pause: Duration) -> Case {
    let mut parts = vec![Part::Bytes(request("PUT", PUT_A, head_headers, None))];
    for piece in pieces {
        parts.push(Part::Pause(pause));
        parts.push(Part::Bytes(piece.to_vec()));
    }
    Case { why: why.to_owned(), parts, status: 408, by: By::Service }
}

fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
    format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

/// Every hostile request and what it must get, except the slow ones.
fn corpus() -> Vec<Case> {
    use By::{Hyper, HyperOrService, Service};
    let mut cases = vec![
        // Article ids in the path.
        get_article("article id of 10,000 bytes", "x".repeat(10_000).as_bytes(), 400, Service),
        put_bad_article("article id of 60,000 bytes, under hyper's URI limit", "y".repeat(60_000).as_bytes()),
        get_article("a path over hyper's 64 KiB URI limit", "z".repeat(70_000).as_bytes(), 414, Hyper),
        get_article("257 two-byte characters", "%C3%A9".repeat(257).as_bytes(), 400, Service),
        get_article("raw 0xFF 0xFE bytes in the path", b"\xff\xfe", 400, Hyper),
        get_article("raw truncated UTF-8 (0xC3 0x28) in the path", b"\xc3\x28", 400, Hyper),
        get_article("an unencoded space in the path", b"a b", 400, Hyper),
        put_bad_article("percent-encoded lone 0xFF", b"%FF"),
        put_bad_article("overlong UTF-8 for '/'", b"%C0%AF"),
        put_bad_article("a UTF-16 surrogate in UTF-8", b"%ED%A0%80"),
        put_bad_article("a code point above U+10FFFF", b"%F4%90%80%80"),
        put_bad_article("truncated UTF-8", b"ok%E2%82"),
        put_bad_article("an unencoded slash", b"2025/11/a"),
        get_article("an empty id", b"", 400, Service),
    ];
    for (name, encoded) in [
        ("NUL", "%00"),
        ("escape", "%1B"),
        ("tab", "%09"),
        ("CR LF", "%0D%0A"),
        ("DEL", "%7F"),
        ("C1 next-line", "%C2%85"),
        ("C1 control 0x9F", "%C2%9F"),
    ] {
        cases.push(put_bad_article(format!("article id with {name}"), format!("a{encoded}b").as_bytes()));
    }
    cases.extend([
        // The visitor header.
        get_with_visitor("visitor id of 10 KB", &["v".repeat(10_000).as_bytes()], 400, Service),
        get_with_visitor("visitor id sent 50 times", &[b"visitor-00000001".as_slice(); 50], 400, Service),
        get_with_visitor("visitor id with an obs-text byte", &[b"visitor-0001\xff"], 400, Service),
        get_with_visitor("empty visitor id", &[b""], 400, Service),
        get_with_visitor("visitor id with spaces", &[b"visitor 0001 x"], 400, Service),
        get_with_visitor("two visitor ids in one field", &[b"visitor-0001, visitor-0002"], 400, Service),
        get_with_visitor("visitor id with a NUL byte", &[b"visitor\x000001"], 400, Hyper),
        case(
            "visitor id on a write, 127 characters over the limit",
            request(
                "PUT",
                PUT_A,
                &[("X-Visitor-Id", "w".repeat(255).as_bytes()), JSON],
                Some(br#"{"reaction":"love"}"#),
            ),
            400,
            Service,
        ),
        // Huge, many and malformed header fields.
        case(
            "one header field of 500 KB, over hyper's ~400 KB head limit",
            request("GET", b"/healthz", &[("X-Junk", "j".repeat(500_000).as_bytes())], None),
            431,
            HyperOrService,
        ),
        case(
            "header fields of 40 KB in all, over the service's 32 KiB",
            request("GET", b"/healthz", &[("X-Junk", "j".repeat(40_000).as_bytes())], None),
            431,
            Service,
        ),
        case(
            "150 header fields, over hyper's 100",
            request("GET", b"/healthz", &vec![("X-Repeated", b"1".as_slice()); 150], None),
            431,
            Hyper,
        ),
        case(
            "a header line without a colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(),
            400,
            Hyper,
        ),
        case(
            "an obs-fold continuation line",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n".to_vec(),
            400,
            Hyper,
        ),
        case(
            "HTTP/3.0 on an HTTP/1 connection",
            b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
            400,
            Hyper,
        ),
        case("a method token with '@'", b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, Hyper),
        // Body framing.
        case(
            "two different Content-Lengths",
            request(
                "PUT",
                PUT_A,
                &[VISITOR, JSON, ("Content-Length", b"5"), ("Content-Length", b"6")],
                Some(b"abcdef"),
            ),
            400,
            Hyper,
        ),
        case(
            "a non-numeric Content-Length",
            request("PUT", PUT_A, &[VISITOR, JSON, ("Content-Length", b"abc")], None),
            400,
            Hyper,
        ),
        case(
            "Transfer-Encoding other than chunked",
            request("PUT", PUT_A, &[VISITOR, JSON, ("Transfer-Encoding", b"gzip")], None),
            400,
            Hyper,
        ),
        case(
            "a malformed chunk size",
            request(
                "PUT",
                PUT_A,
                &[VISITOR, JSON, ("Transfer-Encoding", b"chunked")],
                Some(b"zz\r\nabc\r\n0\r\n\r\n"),
            ),
            400,
            Service,
        ),
        case(
            "a chunked body over 4 KiB",
            request(
                "PUT",
                PUT_A,
                &[VISITOR, JSON, ("Transfer-Encoding", b"chunked")],
                Some(
                    &[format!("400\r\n{}\r\n", " ".repeat(1024)).repeat(5).as_bytes(), b"0\r\n\r\n"].concat(),
                ),
            ),
            413,
            Service,
        ),
        case(
            "a declared Content-Length over 4 KiB, body not sent",
            request("PUT", PUT_A, &[VISITOR, JSON, ("Content-Length", b"100000")], None),
            413,
            Service,
        ),
        case(
            "a declared Content-Length of u64::MAX, beyond hyper's largest body",
            request("PUT", PUT_A, &[VISITOR, JSON, ("Content-Length", b"18446744073709551615")], None),
            431,
            Hyper,
        ),
        // Bodies: deep, huge, wrong types, unknown fields, bad encodings.
        put_json("arrays nested 2,000 deep", &nested("[", "]", 2000), 400),
        put_json("objects nested 300 deep", &nested(r#"{"reaction":"#, "}", 300), 400),
        put_json(
            "a reaction nested 1,000 arrays deep",
            &[br#"{"reaction":"#.as_slice(), &nested("[", "]", 1000), b"}"].concat(),
            400,
        ),
        put_json(
            "JSON one byte over 4 KiB",
            format!(r#"{{"reaction":"love"}}{}"#, " ".repeat(4096 - 18)).as_bytes(),
            413,
        ),
        put_json(
            "a 4,000-character reaction",
            format!(r#"{{"reaction":"{}"}}"#, "l".repeat(4000)).as_bytes(),
            422,
        ),
        put_json("reaction true", br#"{"reaction":true}"#, 400),
        put_json("reaction 1e999", br#"{"reaction":1e999}"#, 400),
        put_json("reaction an object", br#"{"reaction":{"love":1}}"#, 400),
        put_json("reaction an array", br#"{"reaction":["love"]}"#, 400),
        put_json("the body a bare string", br#""love""#, 400),
        put_json("the body null", b"null", 400),
        put_json("the body a number", b"42", 400),
        put_json("an unknown field", br#"{"reaction":"love","weight":1000}"#, 400),
        put_json("the field name in another case", br#"{"Reaction":"love"}"#, 400),
        put_json("the field twice", br#"{"reaction":"love","reaction":"wow"}"#, 400),
        put_json("a byte-order mark first", b"\xef\xbb\xbf{\"reaction\":\"love\"}", 400),
        put_json("invalid UTF-8 in a string", b"{\"reaction\":\"lo\xffve\"}", 400),
        put_json("a lone surrogate escape", br#"{"reaction":"\ud800"}"#, 400),
        put_json("trailing garbage", br#"{"reaction":"love"} x"#, 400),
        put_json("two documents", br#"{"reaction":"love"}{"reaction":"wow"}"#, 400),
        put_json("an empty body", b"", 400),
        put_json("a NUL inside the reaction", br#"{"reaction":"lo\u0000ve"}"#, 422),
        put_json("a reaction with trailing space", br#"{"reaction":"love "}"#, 422),
        case(
            "a JSON body declared text/json",
            request(
                "PUT",
                PUT_A,
                &[VISITOR, ("Content-Type", b"text/json")],
                Some(br#"{"reaction":"love"}"#),
            ),
            415,
            Service,
        ),
        case(
            "a JSON body declared multipart",
            request(
                "PUT",
                PUT_A,
                &[VISITOR, ("Content-Type", b"multipart/form-data; boundary=x")],
                Some(b"--x--"),
            ),
            415,
            Service,
        ),
        // Methods.
        case(
            "POST on the reaction",
            request("POST", PUT_A, &[VISITOR, JSON], Some(br#"{"reaction":"love"}"#)),
            405,
            Service,
        ),
        case(
            "PATCH on the reaction",
            request("PATCH", PUT_A, &[VISITOR, JSON], Some(br#"{"reaction":"love"}"#)),
            405,
            Service,
        ),
        case("TRACE on the reaction", request("TRACE", PUT_A, &[VISITOR], None), 405, Service),
        case("an invented method", request("BREW", PUT_A, &[VISITOR], None), 405, Service),
        case(
            "PUT on the batch read",
            request("PUT", b"/v1/reactions?article_id=a", &[VISITOR, JSON], Some(b"{}")),
            405,
            Service,
        ),
        case("POST on erase-me", request("POST", b"/v1/visitors/me", &[VISITOR], None), 405, Service),
        case("DELETE on the probe", request("DELETE", b"/healthz", &[], None), 405, Service),
        case(
            "CONNECT to another host",
            b"CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            404,
            Service,
        ),
        // Query strings.
        case(
            "101 article ids",
            request("GET", format!("/v1/reactions?{}", "article_id=a&".repeat(101)).as_bytes(), &[], None),
            400,
            Service,
        ),
        case(
            "5,000 article ids (60 KB of query)",
            request(
                "GET",
                format!("/v1/reactions?{}", "article_id=abcdefg&".repeat(3000)).as_bytes(),
                &[],
                None,
            ),
            400,
            Service,
        ),
        case(
            "one 60 KB article id in the query",
            request("GET", format!("/v1/reactions?article_id={}", "q".repeat(60_000)).as_bytes(), &[], None),
            400,
            Service,
        ),
        case(
            "a query over hyper's 64 KiB URI limit",
            request("GET", format!("/v1/reactions?article_id={}", "q".repeat(70_000)).as_bytes(), &[], None),
            414,
            Hyper,
        ),
        case(
            "invalid UTF-8 in the query",
            request("GET", b"/v1/reactions?article_id=%FF%FE", &[], None),
            400,
            Service,
        ),
        case("a bare parameter name", request("GET", b"/v1/reactions?article_id", &[], None), 400, Service),
        case(
            "a 50 KB unknown parameter on a stats read",
            request("GET", format!("/v1/stats/totals?{}=1", "p".repeat(50_000)).as_bytes(), &[], None),
            400,
            Service,
        ),
    ]);
    cases
}

/// The slow-body cases: each must end in a 408 before the request timeout.
fn slow_corpus() -> Vec<Case> {
    let body: &[u8] = br#"{"reaction":"love"}"#;
    let length = body.len().to_string();
    let declared = [VISITOR, JSON, ("Content-Length", length.as_bytes())];
    let trickle: Vec<&[u8]> = body.chunks(1).collect();
    vec![
        slow_put("a body trickled one byte every 300 ms", &declared, &trickle, Duration::from_millis(300)),
        slow_put("a body that stalls after its first byte", &declared, &[&body[..1]], Duration::ZERO),
        slow_put("a declared body that never comes", &declared, &[], Duration::ZERO),
        slow_put(
            "a chunked body that never ends",
            &[VISITOR, JSON, ("Transfer-Encoding", b"chunked")],
            &[b"1\r\n{\r\n", b"1\r\n\"\r\n"],
            Duration::from_millis(200),
        ),
    ]
}

/// Sends `parts` on a fresh connection and reads until the server closes it. The write side
/// stays open after the last part, as a slow client's would.
async fn exchange(address: SocketAddr, parts: Vec<Part>) -> RawResponse {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for part in parts {
            match part {
                // The server may refuse and close before it has read everything.
                Part::Bytes(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Part::Pause(pause) => tokio::time::sleep(pause).await,
            }
        }
        std::future::pending::<()>().await;
    });
    let mut data = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let read = async {
        // A reset after the answer (the server closed with our bytes unread) ends the read too.
        while let Ok(n @ 1..) = reader.read(&mut buffer).await {
            data.extend_from_slice(&buffer[..n]);
        }
    };
    let answered = tokio::time::timeout(Duration::from_secs(15), read).await;
    let elapsed = started.elapsed();
    sender.abort();
    assert!(answered.is_ok(), "no answer within 15 s");
    parse(&data, elapsed)
}

fn parse(data: &[u8], elapsed: Duration) -> RawResponse {
    let split = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("not an HTTP response: {:?}", String::from_utf8_lossy(&data[..data.len().min(200)]))
    });
    let head = String::from_utf8_lossy(&data[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse { status, headers, body: data[split + 4..].to_vec(), elapsed }
}

#[track_caller]
fn assert_answer(case: &Case, response: &RawResponse) {
    let why = &case.why;
    let body = String::from_utf8_lossy(&response.body);
    assert_eq!(response.status, case.status, "{why}: status (body {body})");
    assert!(response.elapsed < REQUEST_TIMEOUT, "{why}: answered in {:?}", response.elapsed);
    let by = match case.by {
        By::HyperOrService if response.body.is_empty() => By::Hyper,
        By::HyperOrService => By::Service,
        by => by,
    };
    match by {
        By::HyperOrService => unreachable!("resolved above"),
        By::Service => {
            assert_eq!(response.header("content-type"), Some("application/problem+json"), "{why}");
            let problem: Value = serde_json::from_slice(&response.body)
                .unwrap_or_else(|e| panic!("{why}: the problem is not JSON ({e}): {body}"));
            assert_eq!(problem["status"], case.status, "{why}: {body}");
            for field in ["type", "title", "detail"] {
                assert!(problem[field].as_str().is_some_and(|s| !s.is_empty()), "{why}: no {field}: {body}");
            }
        }
        By::Hyper => {
            assert!(response.body.is_empty(), "{why}: hyper's answer has no body, got {body}");
            assert_eq!(response.header("connection"), Some("close"), "{why}: and closes the connection");
        }
    }
}

async fn hostile_app() -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.request_timeout = REQUEST_TIMEOUT;
    spawn_with(db, config).await
}

fn socket_address(app: &TestApp) -> SocketAddr {
    app.address.trim_start_matches("http://").parse().unwrap()
}

/// The slowest of `n` liveness probes.
async fn slowest_probe(app: &TestApp, n: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "/healthz");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_its_4xx_and_changes_nothing() {
    let app = hostile_app().await;
    let address = socket_address(&app);
    let cases = corpus();
    let slow = slow_corpus();
    let by_hyper = cases.iter().filter(|c| c.by == By::Hyper).count();
    eprintln!(
        "hostile corpus: {} requests ({} answered by the service, {by_hyper} refused by hyper) and {} slow bodies",
        cases.len(),
        cases.len() - by_hyper,
        slow.len()
    );

    for case in &cases {
        let response = exchange(address, case.parts.clone()).await;
        assert_answer(case, &response);
    }

    // The slow bodies all at once, while the service goes on answering others quickly.
    let slow_answers: Vec<_> =
        slow.iter().map(|case| tokio::spawn(exchange(address, case.parts.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe_during = slowest_probe(&app, 10).await;
    for (case, answer) in slow.iter().zip(slow_answers) {
        let response = answer.await.unwrap();
        assert_answer(case, &response);
        let budget = REQUEST_TIMEOUT / 2;
        assert!(
            response.elapsed >= budget,
            "{}: not before the body deadline: {:?}",
            case.why,
            response.elapsed
        );
    }

    assert_eq!(app.stored_reactions().await, 0, "no hostile request wrote a reaction");
    let probe_after = slowest_probe(&app, 20).await;
    eprintln!("slowest /healthz during the slow bodies {probe_during:?}, after the corpus {probe_after:?}");
    assert!(probe_during < Duration::from_millis(500), "/healthz during slow bodies: {probe_during:?}");
    assert!(probe_after < Duration::from_millis(500), "/healthz after the corpus: {probe_after:?}");
    let summary = crate::helpers::json_ok(app.put_reaction("a", "visitor-after", "love").await).await;
    assert_eq!(summary["total"], 1, "and still takes an honest write");
}

#[tokio::test]
async fn forged_huge_and_repeated_cookies_are_ignored_not_trusted() {
    let app = hostile_app().await;
    // A reaction held by a cookie, so that a forged cookie that were trusted would name its
    // holder: a write with it from another browser would change nothing.
    let write = app
        .client
        .put(app.url("/v1/articles/a/reaction"))
        .json(&serde_json::json!({"reaction": "love"}))
        .send()
        .await
        .unwrap();
    let genuine = write.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let write_with = |cookie: String, user_agent: String| {
        let request = app
            .client
            .put(app.url("/v1/articles/a/reaction"))
            .header("cookie", cookie)
            .header("user-agent", user_agent)
            .json(&serde_json::json!({"reaction": "love"}));
        async move { crate::helpers::json_ok(request.send().await.unwrap()).await }
    };
    let summary = write_with(genuine.clone(), "GenuineHolder/1".to_owned()).await;
    assert_eq!(summary["total"], 1, "the genuine cookie names its visitor");
    let (token, signature) = genuine.rsplit_once('.').unwrap();
    let cookies = [
        format!("rr_vid={}", "A".repeat(20_000)),
        format!("{token}.{}", "A".repeat(signature.len())),
        format!("{token}."),
        token.to_owned(),
        format!("{genuine}.{signature}"),
        format!("{token}.{}", &signature[..signature.len() - 1]),
        format!("{token}.{signature}A"),
        format!("rr_vid={}", genuine.trim_start_matches("rr_vid=").replacen("v1", "v2", 1)),
        "rr_vid=v1.AAAA.BBBB".to_owned(),
        "rr_vid=v1..".to_owned(),
        "rr_vid=%F0%9F%98%80".to_owned(),
        "rr_vid=a; rr_vid=b; rr_vid=c".to_owned(),
        ";;;;=;=;rr_vid".to_owned(),
    ];

    // Each forger writes from a browser of its own: ignored, the cookie leaves it a new visitor
    // (by its fingerprint), never the genuine cookie's.
    for (n, cookie) in cookies.iter().enumerate() {
        let summary = write_with(cookie.clone(), format!("Forger/{n}")).await;
        assert_eq!(summary["total"], n + 2, "{:.40}: a new visitor", cookie);
        assert_eq!(summary["viewer_reaction"], "love", "{:.40}", cookie);
    }
    app.assert_counts_match_rows().await;
}

/// A slow request head (slowloris) holds a connection only as long as the request timeout: the
/// head of a request must arrive within it, whether it never ends, trickles in or never starts,
/// and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_does_not_arrive_in_time_loses_its_connection() {
    let app = hostile_app().await;
    let address = socket_address(&app);
    let heads: [(&str, &[&[u8]]); 3] = [
        ("a head that stops before its end", &[b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "]),
        ("a head trickled a byte every 300 ms", &[b"G", b"E", b"T", b" ", b"/", b"h", b"e", b"a", b"l", b"t", b"h"]),
        ("a connection that sends nothing", &[]),
    ];
    let mut cases = Vec::new();
    for (why, pieces) in heads {
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        cases.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let (mut reader, mut writer) = stream.split();
            let send = async {
                for piece in pieces {
                    if writer.write_all(&piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                std::future::pending::<()>().await
            };
            let mut data = Vec::new();
            let mut buffer = [0u8; 4096];
            let started = Instant::now();
            let read = async {
                while let Ok(n @ 1..) = reader.read(&mut buffer).await {
                    data.extend_from_slice(&buffer[..n]);
                }
            };
            let closed = tokio::select! {
                () = send => unreachable!(),
                closed = tokio::time::timeout(REQUEST_TIMEOUT * 3, read) => closed.is_ok().then(|| started.elapsed()),
            };
            (why, data, closed)
        }));
    }
    let served_meanwhile = slowest_probe(&app, 5).await;

    for case in cases {
        let (why, data, closed) = case.await.unwrap();
        let closed = closed.unwrap_or_else(|| panic!("{why}: the connection is still open after {:?}", REQUEST_TIMEOUT * 3));
        assert!(closed >= REQUEST_TIMEOUT - Duration::from_millis(100), "{why}: closed early, after {closed:?}");
        assert!(closed < REQUEST_TIMEOUT + Duration::from_secs(1), "{why}: closed after {closed:?}");
        let answer = String::from_utf8_lossy(&data);
        assert!(
            data.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{why}: nothing, or a 408, before the close; got {answer:?}"
        );
    }
    assert!(served_meanwhile < Duration::from_secs(1), "other clients waited {served_meanwhile:?}");
}
