//! One error type for the HTTP edge, rendered as RFC 9457 problem+json.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Display;

use crate::reactions::ChangeError;
use crate::store::StoreError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The challenge sent with every 401.
pub const WWW_AUTHENTICATE_BEARER: &str = "Bearer realm=\"reader-reactions\"";

/// An RFC 9457 problem details object: the body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:reader-reactions:problem:invalid-article-id",
    "title": "Invalid article id",
    "status": 400,
    "detail": "the article id is 257 bytes long; at most 256 bytes are allowed"
}))]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients can branch on it.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Display) -> Self {
        Self {
            problem_type: format!("urn:reader-reactions:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.to_string(),
        }
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // What is left of a slow body would be read as the next request: close (RFC 9110).
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 requires a challenge with every 401; RFC 6750 names the bearer scheme.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE_BEARER));
        }
        response
    }
}

/// Everything a handler or middleware can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's fault: a 4xx with a detail that tells it what to fix.
    #[error("{}", .0.detail)]
    Client(Problem),
    /// The database cannot serve us right now: 503 with `Retry-After`.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure: 500, details logged, never shown to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn client(status: StatusCode, slug: &str, title: &str, detail: impl Display) -> Self {
        Self::Client(Problem::new(status, slug, title, detail))
    }

    pub fn invalid_article_id(detail: impl Display) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "invalid-article-id", "Invalid article id", detail)
    }

    pub fn invalid_visitor_id(detail: impl Display) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "invalid-visitor-id", "Invalid visitor id", detail)
    }

    /// A request that must name its visitor personally (erase-me) but carried no `X-Visitor-Id`.
    pub fn visitor_required(detail: impl Display) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "visitor-required", "Visitor identity required", detail)
    }

    pub fn invalid_query(detail: impl Display) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query string", detail)
    }

    pub fn invalid_body(detail: impl Display) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "invalid-body", "Invalid request body", detail)
    }

    pub fn unknown_reaction(detail: impl Display) -> Self {
        Self::client(StatusCode::UNPROCESSABLE_ENTITY, "unknown-reaction", "Unknown reaction", detail)
    }

    /// The article is closed to new reactions (editorial controls): 409.
    pub fn article_closed(detail: impl Display) -> Self {
        Self::client(StatusCode::CONFLICT, "article-closed", "Article closed to reactions", detail)
    }

    /// The reaction is a known one that the article does not offer (editorial controls): 422.
    pub fn reaction_not_offered(detail: impl Display) -> Self {
        Self::client(StatusCode::UNPROCESSABLE_ENTITY, "reaction-not-offered", "Reaction not offered", detail)
    }

    /// Well-formed article settings that are not valid (an empty or repeating list): 422.
    pub fn invalid_settings(detail: impl Display) -> Self {
        Self::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid-settings", "Invalid article settings", detail)
    }

    pub fn body_too_large() -> Self {
        Self::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("request bodies are limited to {} bytes", super::MAX_BODY_BYTES),
        )
    }

    /// The body did not arrive in time (slow or stalled client): 408, and the connection closes.
    pub fn body_timeout(budget: std::time::Duration) -> Self {
        Self::client(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
            format!("the request body did not arrive within {} ms; send it at once", budget.as_millis()),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as JSON with `Content-Type: application/json`",
        )
    }

    pub fn not_found(detail: impl Display) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// The request lacks the credentials the endpoint needs (401 with `WWW-Authenticate`).
    pub fn unauthorized(detail: impl Display) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
    }

    /// The endpoint exists but is switched off by configuration (404).
    pub fn disabled(detail: impl Display) -> Self {
        Self::client(StatusCode::NOT_FOUND, "disabled", "Endpoint disabled", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Closed => Self::article_closed(error),
            ChangeError::NotOffered { .. } => Self::reaction_not_offered(error),
            ChangeError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Client(problem) => {
                tracing::debug!(status = problem.status, detail = %problem.detail, "client error");
                problem.into_response()
            }
            Self::Unavailable(error) => {
                tracing::warn!(error = format!("{error:#}"), "database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "the database is unavailable or overloaded; retry after the number of seconds in Retry-After",
                )
                .into_response()
            }
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                    "an unexpected error occurred; it has been logged",
                )
                .into_response()
            }
        }
    }
}
