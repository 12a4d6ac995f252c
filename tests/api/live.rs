//! Live counts: `GET /v1/articles/{article_id}/events` as Server-Sent Events.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{TestDatabase, spawn_app};
use crate::helpers::{Backend, TestApp, assert_problem, segment, spawn_with, test_config};

/// One event of the stream.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

/// A stream being read.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

async fn open(app: &TestApp, article_id: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/articles/{}/events", segment(article_id))))
        .send()
        .await
        .expect("the request is answered")
}

impl EventStream {
    async fn open(app: &TestApp, article_id: &str) -> Self {
        let response = open(app, article_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped) within `within`; `None` when the stream ended.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        event = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a comment (heartbeat)
                }
                let data = serde_json::from_str(&data).expect("the data is JSON");
                return Some(SseEvent { event, id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event arrives in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Events arriving within `period`, stopping early at the end of the stream.
    async fn collect_for(&mut self, period: Duration) -> Vec<(Instant, SseEvent)> {
        let until = tokio::time::Instant::now() + period;
        let mut events = Vec::new();
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return events;
            }
            match tokio::time::timeout(left, self.next(left + Duration::from_secs(1))).await {
                Ok(Some(event)) => events.push((Instant::now(), event)),
                Ok(None) | Err(_) => return events,
            }
        }
    }
}

fn love(event: &SseEvent) -> i64 {
    event.data["counts"]["love"].as_i64().expect("counts has love")
}

#[tokio::test]
async fn the_first_event_comes_at_once_and_another_after_a_write() {
    let app = spawn_app().await;
    assert_eq!(app.put_reaction("live-1", "visitor-early", "love").await.status(), StatusCode::OK);
    let mut stream = EventStream::open(&app, "live-1").await;

    let first = stream.next(Duration::from_secs(2)).await.expect("a first event");
    assert_eq!(first.event, "counts");
    assert_eq!(first.data["article_id"], "live-1");
    assert_eq!(love(&first), 1);
    assert_eq!(first.data["viewer_reaction"], Value::Null);
    assert_eq!(first.data["counts"].as_object().unwrap().len(), 7, "all seven keys");

    let written_at = Instant::now();
    assert_eq!(app.put_reaction("live-1", "visitor-late", "love").await.status(), StatusCode::OK);
    let next = stream.next(Duration::from_secs(3)).await.expect("an event after the write");
    assert_eq!(next.event, "counts");
    assert_eq!(love(&next), 2, "{next:?}");
    assert!(written_at.elapsed() < Duration::from_millis(2500), "promptly");
    let read_at: u64 = next.id.as_deref().expect("a read event has an id").parse().unwrap();
    assert!(read_at > 1_700_000_000_000, "milliseconds since the epoch: {read_at}");

    // Another article's writes are not this stream's business.
    assert_eq!(app.put_reaction("live-other", "visitor-late", "wow").await.status(), StatusCode::OK);
    let quiet = stream.collect_for(Duration::from_millis(1500)).await;
    assert!(quiet.is_empty(), "{quiet:?}");
}

#[tokio::test]
async fn changes_are_coalesced_to_one_event_per_interval() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.live_min_interval = Duration::from_millis(1000);
    let app = spawn_with(db, config).await;
    let mut stream = EventStream::open(&app, "busy").await;
    assert_eq!(love(&stream.next(Duration::from_secs(2)).await.unwrap()), 0);

    // Events are timed as they arrive, while the writes go on.
    let writes = async {
        for n in 0..12 {
            assert_eq!(app.put_reaction("busy", &format!("visitor-{n}"), "love").await.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((), events) = tokio::join!(writes, stream.collect_for(Duration::from_millis(3500)));
    assert!(!events.is_empty() && events.len() <= 4, "12 writes over 1.2 s, at most ~1 event a second: {events:?}");
    for pair in events.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(800), "events {gap:?} apart");
    }
    assert_eq!(love(&events.last().unwrap().1), 12, "the last event has every change");
}

#[tokio::test]
async fn streams_beyond_live_max_streams_get_a_503() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.live_max_streams = std::num::NonZeroU32::new(2).unwrap();
    let app = spawn_with(db, config).await;
    let first = EventStream::open(&app, "a").await;
    let _second = EventStream::open(&app, "b").await;
    assert_problem(open(&app, "a").await, StatusCode::SERVICE_UNAVAILABLE, "a third stream").await;
    // Other reads go on.
    assert_eq!(app.get_reactions("a", None).await.status(), StatusCode::OK);

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = open(&app, "a").await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream frees its place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn opening_a_stream_is_charged_to_the_reads_limit() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_read_burst = std::num::NonZeroU32::new(2).unwrap();
    config.rate_limit_reads_per_minute = std::num::NonZeroU32::new(1).unwrap();
    let app = spawn_with(db, config).await;
    let _one = EventStream::open(&app, "a").await;
    let _two = EventStream::open(&app, "a").await;
    assert_problem(open(&app, "a").await, StatusCode::TOO_MANY_REQUESTS, "over the reads burst").await;
    assert_eq!(app.get_reactions("a", None).await.status(), StatusCode::TOO_MANY_REQUESTS, "the same quota");
}

#[tokio::test]
async fn shutdown_ends_the_streams_and_stays_quick() {
    let mut app = spawn_app().await;
    let mut stream = EventStream::open(&app, "a").await;
    stream.next(Duration::from_secs(2)).await.expect("a first event");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.stop()).await.expect("the drain does not wait for streams");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(stream.next(Duration::from_secs(2)).await.is_none(), "the stream ended");
}

#[tokio::test]
async fn a_write_on_one_instance_reaches_a_subscriber_of_another() {
    let app = spawn_app().await;
    if app.db.backend != Backend::Postgres {
        return; // SQLite serves one machine from one process
    }
    let other = app.another_instance().await;
    let mut stream = EventStream::open(&other, "shared").await;
    assert_eq!(love(&stream.next(Duration::from_secs(2)).await.unwrap()), 0);
    // Let the listening connection settle (its first read is also sent, if it differs).
    let _ = stream.collect_for(Duration::from_millis(300)).await;

    assert_eq!(app.put_reaction("shared", "visitor-1", "love").await.status(), StatusCode::OK);
    let event = stream.next(Duration::from_secs(3)).await.expect("the other instance's write arrives");
    assert_eq!(love(&event), 1);
    assert_eq!(app.put_reaction("shared", "visitor-2", "love").await.status(), StatusCode::OK);
    let event = stream.next(Duration::from_secs(3)).await.expect("and the next");
    assert_eq!(love(&event), 2);
}

#[tokio::test]
async fn erasing_a_visitor_updates_the_streams_of_its_articles() {
    let app = spawn_app().await;
    assert_eq!(app.put_reaction("erased", "visitor-gone", "love").await.status(), StatusCode::OK);
    let mut stream = EventStream::open(&app, "erased").await;
    assert_eq!(love(&stream.next(Duration::from_secs(2)).await.unwrap()), 1);
    let _ = stream.collect_for(Duration::from_millis(300)).await;
    assert_eq!(app.erase_me("visitor-gone").await.status(), StatusCode::OK);
    let event = stream.next(Duration::from_secs(3)).await.expect("an event after the erasure");
    assert_eq!(love(&event), 0);
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.request_timeout = Duration::from_millis(500);
    let app = spawn_with(db, config).await;
    let mut stream = EventStream::open(&app, "long").await;
    stream.next(Duration::from_secs(2)).await.expect("a first event");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.put_reaction("long", "visitor-late", "sad").await.status(), StatusCode::OK);
    let event = stream.next(Duration::from_secs(3)).await.expect("still open after the request timeout");
    assert_eq!(event.data["counts"]["sad"], 1);
}

#[tokio::test]
async fn a_burst_of_writes_to_many_articles_reaches_every_subscriber_of_another_instance() {
    let app = spawn_app().await;
    if app.db.backend != Backend::Postgres {
        return; // SQLite serves one machine from one process
    }
    // The writing instance gathers its announcements (one NOTIFY round per 50 ms at most): the
    // articles of every batch of the burst must be in some round, none dropped.
    let other = app.another_instance().await;
    let articles: Vec<String> = (0..12).map(|i| format!("burst-{i}")).collect();
    let mut streams = Vec::new();
    for article in &articles {
        let mut stream = EventStream::open(&other, article).await;
        assert_eq!(love(&stream.next(Duration::from_secs(2)).await.unwrap()), 0);
        streams.push(stream);
    }
    for stream in &mut streams {
        let _ = stream.collect_for(Duration::from_millis(50)).await;
    }
    let writes = articles.iter().enumerate().map(|(i, article)| {
        let app = &app;
        async move { app.put_reaction(article, &format!("visitor-{i}"), "love").await.status() }
    });
    for status in futures_util::future::join_all(writes).await {
        assert_eq!(status, StatusCode::OK);
    }
    for (article, stream) in articles.iter().zip(&mut streams) {
        let event = stream.next(Duration::from_secs(3)).await;
        assert_eq!(event.as_ref().map(love), Some(1), "{article}: the other instance's write arrives");
    }
}
