//! The HTTP edge's part of the metrics: every request recorded by method, route template and
//! status through [`crate::telemetry::metrics`], by the global `RequestMetricsLayer`
//! (`http::layers`).

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, StatusCode};
use dashmap::DashMap;

use crate::telemetry::metrics;

/// The method and route labels of a request, taken before it is handled.
pub(in crate::http) fn labels<B>(request: &Request<B>) -> (&'static str, &'static str) {
    // The route template, not the path: label values stay bounded whatever ids arrive.
    (method_label(request.method()), route_label(request.extensions().get::<MatchedPath>()))
}

/// Counts and times one answered request.
pub(in crate::http) fn record(
    method: &'static str,
    route: &'static str,
    status: StatusCode,
    started: Instant,
) {
    metrics::http_request(method, route, status_label(status), started.elapsed().as_secs_f64());
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
