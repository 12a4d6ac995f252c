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

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the requests in flight. Each request head must arrive within `head_timeout` of the
/// connection's opening or of the previous response; the connection is closed otherwise.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
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
        let _ = stream.set_nodelay(true);
        // What `into_make_service_with_connect_info` gives handlers: the peer's address.
        let service = router.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        });
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that went away or sent garbage; hyper has answered what it could.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
