//! Makes every error answer problem+json, whichever layer produced it.
//!
//! Our handlers and extractors already answer with [`Problem`]s. Layers and axum itself do not:
//! an unknown method (405), a declared body over the limit (413, tower-http), a timeout (503,
//! tower-http), a caught panic (500). This normaliser gives those the same shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{MAX_BODY_BYTES, PROBLEM_JSON, Problem};

/// The normaliser itself, run on every answer by `http::layers::ProblemLayer`.
pub fn ensure_problem_body<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let response = response.map(axum::body::Body::new);
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such route; see /openapi.json for the API".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this route does not support the request method; see the Allow header".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("body-too-large", format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
        }
        StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "the request could not be completed in time; retry after the number of seconds in Retry-After"
                .to_owned(),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => {
            ("internal", "an unexpected error occurred; it has been logged".to_owned())
        }
        _ => ("http-error", status.canonical_reason().unwrap_or("error").to_lowercase()),
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let (mut parts, _) = response.into_parts();
    let mut problem = Problem::new(status, slug, title, detail).into_response();
    // Keep headers such as Allow, Retry-After and the rate-limit fields; replace the body's.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    for (name, value) in problem.headers().iter() {
        if !parts.headers.contains_key(name) {
            parts.headers.insert(name.clone(), value.clone());
        }
    }
    std::mem::swap(problem.headers_mut(), &mut parts.headers);
    problem
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}
