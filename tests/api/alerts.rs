//! Newsroom alerts: events recorded once, delivered at least once with retries, signed as
//! Standard Webhooks says.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reader_reactions::config::Config;
use serde_json::Value;
use sha2::Sha256;

use super::TestDatabase;
use crate::helpers::{TestApp, spawn_with, test_config};

const SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUtYWxlcnQtdGVzdHMtMDEyMw==";

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: StatusCode,
}

/// A webhook receiver: answers 503 to the first `fail_first` requests (or all while `refusing`),
/// 204 to the rest, and keeps every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<(usize, bool)>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new((fail_first, false)));
        let (log_in, script_in) = (log.clone(), script.clone());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (log, script) = (log_in.clone(), script_in.clone());
                async move {
                    let answered = {
                        let mut script = script.lock().unwrap();
                        if script.1 || script.0 > 0 {
                            script.0 = script.0.saturating_sub(1);
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::NO_CONTENT
                        }
                    };
                    let header = |name: &str| {
                        headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
                    };
                    log.lock().unwrap().push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body,
                        answered,
                    });
                    answered
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, log, script }
    }

    fn refuse(&self, refusing: bool) {
        self.script.lock().unwrap().1 = refusing;
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The accepted requests by event id, once there are `events` distinct ones.
    async fn wait_for_accepted(&self, events: usize, within: Duration) -> BTreeMap<String, Vec<Received>> {
        let deadline = Instant::now() + within;
        loop {
            let mut accepted: BTreeMap<String, Vec<Received>> = BTreeMap::new();
            for received in self.received().into_iter().filter(|r| r.answered.is_success()) {
                accepted.entry(received.id.clone()).or_default().push(received);
            }
            if accepted.len() >= events {
                return accepted;
            }
            assert!(Instant::now() < deadline, "{events} events accepted in time; got {:?}", self.received());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A configuration that alerts on the third reaction and not before: trending at score 2.5
/// (three reactions after none score 3, two only 2, so an evaluation between the writes fires
/// nothing), a surge at three of one kind making half of the hour's.
fn alerting_config(db_url: &str, receiver: &Receiver) -> Config {
    let mut config = test_config(db_url);
    config.webhook_urls = vec![receiver.url.clone()];
    config.webhook_secret = Some(SECRET.to_owned());
    config.alert_check_interval = Duration::from_millis(200);
    config.alert_trending_score = 2.5;
    config.trending_min_networks = 1; // the readers all write from the loopback
    config.alert_surge_min = std::num::NonZeroU32::new(3).unwrap();
    config
}

/// Checks a request's signature from the specification alone (not the service's code).
fn assert_signed(received: &Received) {
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", received.id, received.timestamp, received.body).as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(received.signature, expected, "signature of {received:?}");
    let sent: i64 = received.timestamp.parse().expect("Unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 60, "a current timestamp");
    assert!(received.id.starts_with("msg_"), "{}", received.id);
}

async fn angry_readers(app: &TestApp, article_id: &str, readers: std::ops::Range<usize>) {
    for i in readers {
        assert_eq!(app.put_reaction(article_id, &format!("reader-{i}"), "angry").await.status(), 200);
    }
}

#[tokio::test]
async fn an_alert_refused_once_is_retried_with_the_same_id_and_signed() {
    let receiver = Receiver::start(1).await;
    let db = TestDatabase::create().await;
    let config = alerting_config(&db.url, &receiver);
    let app = spawn_with(db, config).await;
    angry_readers(&app, "story-1", 0..3).await;

    let accepted = receiver.wait_for_accepted(2, Duration::from_secs(20)).await;
    let received = receiver.received();
    let refused: Vec<&Received> = received.iter().filter(|r| !r.answered.is_success()).collect();
    assert_eq!(refused.len(), 1, "{received:?}");
    assert!(accepted.contains_key(&refused[0].id), "the retry carries the refused attempt's id");
    for request in &received {
        assert_signed(request);
    }

    let bodies: BTreeMap<String, Value> = accepted
        .values()
        .map(|requests| {
            let body: Value = serde_json::from_str(&requests[0].body).unwrap();
            (body["type"].as_str().unwrap().to_owned(), body)
        })
        .collect();
    let trending = &bodies["article.trending"];
    assert_eq!(trending["data"]["article_id"], "story-1");
    assert_eq!(trending["data"]["recent"], 3);
    assert_eq!(trending["data"]["previous"], 0);
    assert_eq!(trending["data"]["score"], 3.0);
    assert_eq!(trending["data"]["networks"], 1);
    assert_eq!(trending["data"]["counts"]["angry"], 3);
    assert_eq!(trending["data"]["counts"].as_object().unwrap().len(), 7);
    assert!(chrono::DateTime::parse_from_rfc3339(trending["timestamp"].as_str().unwrap()).is_ok());
    let surge = &bodies["article.reaction_surge"];
    assert_eq!(surge["data"]["article_id"], "story-1");
    assert_eq!(surge["data"]["reaction"], "angry");
    assert_eq!(surge["data"]["count"], 3);
    assert_eq!(surge["data"]["share"], 1.0);
    let since = chrono::DateTime::parse_from_rfc3339(surge["data"]["since"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(surge["data"]["until"].as_str().unwrap()).unwrap();
    assert_eq!(until - since, chrono::TimeDelta::hours(1));

    // Later evaluations in the same hour fire nothing again.
    angry_readers(&app, "story-1", 3..4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = receiver.wait_for_accepted(2, Duration::from_secs(1)).await;
    assert_eq!(again.len(), 2, "once per period: {again:?}");
    assert!(again.values().all(|requests| requests.len() == 1), "{again:?}");
}

#[tokio::test]
async fn an_alert_survives_a_restart_between_its_event_and_its_delivery() {
    let receiver = Receiver::start(0).await;
    receiver.refuse(true);
    let db = TestDatabase::create().await;
    let config = alerting_config(&db.url, &receiver);
    let mut app = spawn_with(db, config.clone()).await;
    angry_readers(&app, "story-2", 0..3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both attempts refused, and their outcomes recorded: stopping before the record would leave
    // the deliveries leased to this instance for a minute (also delivered again, but later than
    // this test waits).
    while receiver.received().iter().map(|r| &r.id).collect::<BTreeSet<_>>().len() < 2
        || app.db.query_i64("select count(*) from webhook_deliveries where last_error is not null").await < 2
    {
        assert!(Instant::now() < deadline, "both events attempted and their failures recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    let attempted: BTreeSet<String> = receiver.received().into_iter().map(|r| r.id).collect();

    receiver.refuse(false);
    let restarted = app.another_instance_with(config).await;
    let accepted = receiver.wait_for_accepted(2, Duration::from_secs(20)).await;
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), attempted, "the same events, the same ids");
    drop(restarted);
}

/// `article.trending` follows the trending list: a story whose readers all come from one
/// network is not alerted on as trending (the surge, a fact about its counts, still is).
#[tokio::test]
async fn a_story_from_one_network_is_not_alerted_as_trending() {
    let receiver = Receiver::start(0).await;
    let db = TestDatabase::create().await;
    let mut config = alerting_config(&db.url, &receiver);
    config.trending_min_networks = 2;
    let app = spawn_with(db, config).await;
    angry_readers(&app, "story-4", 0..3).await;

    receiver.wait_for_accepted(1, Duration::from_secs(10)).await;
    // Both rules are evaluated in one pass; a few more passes for good measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let types: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["article.reaction_surge"], "no article.trending from one network");
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    let receiver = Receiver::start(0).await;
    let db = TestDatabase::create().await;
    let config = alerting_config(&db.url, &receiver);
    let app = spawn_with(db, config.clone()).await;
    let other = app.another_instance_with(config).await;
    angry_readers(&app, "story-3", 0..2).await;
    angry_readers(&other, "story-3", 2..3).await;

    receiver.wait_for_accepted(2, Duration::from_secs(10)).await;
    // Several more evaluations by both instances.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2, "two events, each sent once: {received:?}");
    assert_ne!(received[0].id, received[1].id);
}

#[test]
fn bad_webhook_settings_exit_2_with_one_line_naming_them() {
    let url = "https://newsroom.example/hook?token=password";
    let cases = [
        (vec![("WEBHOOK_URLS", "ftp://newsroom.example/hook"), ("WEBHOOK_SECRET", SECRET)], "webhook-urls"),
        (vec![("WEBHOOK_URLS", "newsroom.example/hook"), ("WEBHOOK_SECRET", SECRET)], "webhook-urls"),
        (vec![("WEBHOOK_URLS", url)], "webhook-secret"),
        (vec![("WEBHOOK_URLS", url), ("WEBHOOK_SECRET", "c2VjcmV0LWZvci10aGUtYWxlcnQtdGVzdHM=")], "webhook-secret"),
        (vec![("WEBHOOK_URLS", url), ("WEBHOOK_SECRET", "whsec_cGFzc3dvcmQ=")], "webhook-secret"),
        (vec![("ALERT_SURGE_SHARE", "2")], "alert-surge-share"),
    ];
    for (settings, flag) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reader-reactions"))
            .envs(settings.iter().copied())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{settings:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{settings:?}: one line, got {stderr:?}");
        assert!(stderr.contains(flag), "{settings:?}: names the setting: {stderr}");
        assert!(!stderr.contains("password") && !stderr.contains("cGFzc3dvcmQ"), "repeats no secret: {stderr}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_retried_as_a_failure() {
    let receiver = Receiver::start(0).await;
    let moved = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (target, hits) = (receiver.url.clone(), moved.clone());
    let router = axum::Router::new().route(
        "/moved",
        axum::routing::post(move || {
            let (target, hits) = (target.clone(), hits.clone());
            async move {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (StatusCode::TEMPORARY_REDIRECT, [("location", target)])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let moved_url = format!("http://{}/moved", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let db = TestDatabase::create().await;
    let mut config = alerting_config(&db.url, &receiver);
    config.webhook_urls = vec![moved_url];
    let app = spawn_with(db, config).await;
    angry_readers(&app, "story-4", 0..3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both events attempted, and at least one retried after its 307.
    while moved.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the redirected deliveries are retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.received().is_empty(), "the redirect's target got nothing: {:?}", receiver.received());
}
