//! The HTTP/1.1 accept loop: `axum::serve`, plus a deadline for reading each request head.
//!
//! Hand-written because `axum::serve` (0.8) gives hyper no timer, which leaves hyper's
//! `header_read_timeout` inactive: a client that opens a connection and sends its request head
//! slowly, or not at all, holds the connection (and its memory and file descriptor) for as long
//! as it likes, since the request timeout starts only once the head is parsed. This loop is
//! `axum::serve`'s (accept, one task per connection, graceful shutdown that finishes the requests
//! in flight) with hyper's timer set, so that every head must arrive within the deadline, and an
//! idle keep-alive connection is closed after it too. HTTP/1.1 only, without upgrades: the service
//! speaks nothing else (axum is built with its `http1` feature alone).
//!
//! It also caps the connections served at once ([`ServeOptions::max_connections`]), so that a
//! crowd of held connections cannot exhaust the process's file descriptors: past the cap, a small
//! overflow lane still serves `/healthz` and `/readyz` (one request per connection, a short head
//! deadline) and answers anything else with a quick 503; past that lane, a connection is answered
//! 503 and closed at once. Connections already open keep being served either way.
//!
//! [`ServeOptions::max_connections`]: crate::serve::ServeOptions::max_connections

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Connections past the cap that are still served: enough for orchestrators' probes.
pub const OVERFLOW_CONNECTIONS: usize = 64;

/// The longest an overflow connection may take to send its request head.
const OVERFLOW_HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// The paths the overflow lane serves; everything else there is a 503.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// The answer to a connection past the cap and the overflow lane, written without reading the
/// request: a 503 problem, then the connection is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 163\r\n\r\n\
{\"type\":\"urn:reader-reactions:problem:over-capacity\",\"title\":\"Over capacity\",\"status\":503,\
\"detail\":\"the service holds as many connections as it may; retry in 1 s\"}";

/// How the accept loop serves connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a request head may take to arrive.
    pub head_timeout: Duration,
    /// Most connections served normally at once; [`OVERFLOW_CONNECTIONS`] more are kept for the
    /// probes and quick 503s.
    pub max_connections: usize,
}

/// Raises the soft limit on open files to the hard limit, so the connection cap and not the
/// limit is what bounds connections. Answers the soft limit in force afterwards, if known.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit (RLIMIT_NOFILE)");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// Counts a connection for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the requests in flight. Each request head must arrive within `head_timeout` of the
/// connection's opening or of the previous response; the connection is closed otherwise.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(options.head_timeout);
    let mut overflow = hyper::server::conn::http1::Builder::new();
    overflow
        .timer(TokioTimer::new())
        .header_read_timeout(options.head_timeout.min(OVERFLOW_HEAD_TIMEOUT))
        .keep_alive(false);
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // As axum::serve does: a connection that failed before it was accepted is
                // that client's problem; anything else (out of file descriptors, ...) gets a
                // second's pause rather than a busy loop.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting connections failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let counted = Counted(open.clone());
        let already_open = open.fetch_add(1, Ordering::Relaxed);
        if already_open >= options.max_connections + OVERFLOW_CONNECTIONS {
            // Past the overflow lane too: a quick 503 without reading anything, then close. A
            // fresh socket's send buffer takes these few bytes at once; if not, the client gets
            // the close alone.
            let _ = stream.try_write(OVER_CAPACITY);
            crate::telemetry::metrics::connection_refused();
            drop((stream, counted));
            continue;
        }
        let _ = stream.set_nodelay(true);
        // What `into_make_service_with_connect_info` gives handlers: the peer's address.
        let service = router.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        });
        let io = TokioIo::new(stream);
        if already_open < options.max_connections {
            let connection = graceful.watch(builder.serve_connection(io, TowerToHyperService::new(service)));
            tokio::spawn(async move {
                let _counted = counted;
                if let Err(e) = connection.await {
                    // A client that went away or sent garbage; hyper has answered what it could.
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            });
        } else {
            crate::telemetry::metrics::connection_refused();
            // The overflow lane: the probes are served, anything else is a 503.
            let service = tower::service_fn(move |request: axum::http::Request<Incoming>| {
                let service = service.clone();
                async move {
                    if PROBES.contains(&request.uri().path()) {
                        service.oneshot(request).await
                    } else {
                        Ok(over_capacity())
                    }
                }
            });
            let connection = graceful.watch(overflow.serve_connection(io, TowerToHyperService::new(service)));
            tokio::spawn(async move {
                let _counted = counted;
                let _ = connection.await;
            });
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The problem of a connection past the cap.
fn over_capacity_problem() -> crate::http::Problem {
    crate::http::Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "over-capacity",
        "Over capacity",
        "the service holds as many connections as it may; retry in 1 s",
    )
}

/// The overflow lane's answer to anything but a probe.
fn over_capacity() -> axum::response::Response {
    let mut response = axum::response::IntoResponse::into_response(over_capacity_problem());
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(1));
    response
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_over_capacity_answer_is_a_well_formed_503_problem() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|value| value.parse().ok())
            .unwrap();
        assert_eq!(length, body.len(), "content-length matches the body");
        let problem: crate::http::Problem = serde_json::from_str(body).unwrap();
        assert_eq!(problem, over_capacity_problem(), "the same problem as the overflow lane's");
    }
}
