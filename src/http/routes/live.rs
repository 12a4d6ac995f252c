//! `GET /v1/articles/{article_id}/events`: an article's counts as Server-Sent Events.

use super::responses;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::live::{CountsEvent, LiveError, Subscription};
use crate::http::extract::{ArticleParam, ArticlePath};
use crate::http::{ApiError, AppState, Problem};

/// The longest a stream goes without a line: proxies and browsers keep a connection that
/// speaks, and a client that is gone is noticed when the write fails.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(article_events))
}

/// Live counts of one article, as Server-Sent Events.
///
/// At once an event `counts` whose data is the article's `ReactionSummary` (`viewer_reaction`
/// null), then another whenever its counts change, whichever instance took the write, at most
/// one per `LIVE_MIN_INTERVAL_MS`, and a comment line (`:`) every 15 s. An event read from the
/// database carries an `id`: the instant the read started, in milliseconds since the Unix
/// epoch (every change committed before it is included). Counts against the `reads` rate limit
/// when it connects. A client that stops reading is dropped; the stream ends when the service
/// shuts down, and `EventSource` reconnects.
#[utoipa::path(
    get,
    path = "/v1/articles/{article_id}/events",
    tag = "reactions",
    params(ArticleParam),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `event: counts` with a \
`ReactionSummary` as `data`, first at once, then after every change.", content_type = "text/event-stream",
            body = String, example = json!("event: counts\nid: 1764500000000\ndata: {\"article_id\":\"a\",\"counts\":{\"like\":1,\"dislike\":0,\"love\":0,\"funny\":0,\"angry\":0,\"sad\":0,\"wow\":0},\"total\":1,\"viewer_reaction\":null}\n\n")),
        responses::MalformedArticleId,
        (status = 429, description = "Over the `reads` rate limit; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`LIVE_MAX_STREAMS` streams are open on this instance, the service is \
shutting down, or the database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn article_events(
    State(state): State<AppState>,
    ArticlePath(article_id): ArticlePath,
) -> Result<Response, ApiError> {
    let subscription = match state.live.subscribe(&article_id).await {
        Ok(subscription) => subscription,
        Err(LiveError::Store(error)) => return Err(error.into()),
        Err(refused @ (LiveError::Full | LiveError::Closing)) => {
            return Err(ApiError::Client(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-streams",
                "Too many live streams",
                format!("{refused}; retry later"),
            )));
        }
    };
    let mut response = Sse::new(events(subscription)).into_response();
    // Tells nginx-style proxies not to buffer the stream.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The SSE event of some counts.
fn counts_event(event: &CountsEvent) -> Event {
    let data = std::str::from_utf8(&event.rendered.json).expect("rendered JSON is UTF-8");
    let sse = Event::default().event("counts").data(data);
    match event.read_at_ms {
        Some(at) => sse.id(at.to_string()),
        None => sse,
    }
}

struct StreamState {
    first: Option<Arc<CountsEvent>>,
    subscription: Subscription,
    last_tag: u64,
    heartbeat: tokio::time::Interval,
}

/// The first event, then each new one and the heartbeats, until the service shuts down or the
/// client falls too far behind.
fn events(subscription: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let state = StreamState {
        last_tag: subscription.first.rendered.tag,
        first: Some(subscription.first.clone()),
        subscription,
        heartbeat: tokio::time::interval_at(start, HEARTBEAT),
    };
    stream::unfold(state, |mut state| async move {
        if let Some(first) = state.first.take() {
            return Some((Ok(counts_event(&first)), state));
        }
        loop {
            let subscription = &mut state.subscription;
            let next = tokio::select! {
                biased;
                _ = subscription.closing.wait_for(|closing| *closing) => None,
                received = subscription.events.recv() => match received {
                    // The same counts again (a new feed's first read): nothing to tell.
                    Ok(event) if event.rendered.tag == state.last_tag => continue,
                    Ok(event) => {
                        state.last_tag = event.rendered.tag;
                        Some(counts_event(&event))
                    }
                    // Fell behind (a client that does not read) or the feed is gone: end the
                    // stream rather than buffer; EventSource reconnects and starts afresh.
                    Err(RecvError::Lagged(_)) => {
                        crate::telemetry::metrics::live_stream_dropped();
                        None
                    }
                    Err(RecvError::Closed) => None,
                },
                _ = state.heartbeat.tick() => Some(Event::default().comment("")),
            };
            return next.map(|event| (Ok(event), state));
        }
    })
}
