//! The HTTP edge's part of the metrics: a middleware that records every request by method,
//! route template and status through [`crate::telemetry::metrics`].

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use dashmap::DashMap;

use crate::telemetry::metrics;

/// Middleware: counts and times every request by method, route template and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // The route template, not the path: label values stay bounded whatever ids arrive.
    let route = route_label(request.extensions().get::<MatchedPath>());
    let response = next.run(request).await;
    metrics::http_request(method, route, status_label(response.status()), started.elapsed().as_secs_f64());
    response
}

// The label values below are `&'static str`, so that recording a request allocates no label:
// this runs for every request, and the read path is measured against `/healthz`.

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        // Invented methods do not become label values either.
        _ => "other",
    }
}

/// A route template, interned: the templates are the router's, few and fixed, so each is
/// leaked once and every later request borrows it.
fn route_label(path: Option<&MatchedPath>) -> &'static str {
    static ROUTES: LazyLock<DashMap<Box<str>, &'static str>> = LazyLock::new(DashMap::new);
    let Some(path) = path else { return "unmatched" };
    if let Some(label) = ROUTES.get(path.as_str()) {
        return *label;
    }
    *ROUTES.entry(path.as_str().into()).or_insert_with(|| Box::leak(path.as_str().into()))
}

/// Every status code's decimal digits, made once.
fn status_label(status: StatusCode) -> &'static str {
    static CODES: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| (0..1000u16).map(|code| &*Box::leak(code.to_string().into_boxed_str())).collect());
    CODES[usize::from(status.as_u16())]
}
