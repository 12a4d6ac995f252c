//! Extractors whose rejections use our problem+json shape.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::app::identity::WriteNetwork;
use crate::domain::ArticleId;

/// `axum::Json`, but every rejection (bad JSON, wrong content type, body too large) is a problem,
/// and a body that has not arrived by the request's `BodyDeadline` is a 408.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = request.extensions().get::<BodyDeadline>().copied();
        let parsed = axum::Json::<T>::from_request(request, state);
        let parsed = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.at, parsed)
                .await
                .map_err(|_| ApiError::body_timeout(deadline.budget))?,
            None => parsed.await,
        };
        match parsed {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::unsupported_media_type()),
            Err(JsonRejection::BytesRejection(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large())
            }
            Err(rejection) => Err(ApiError::invalid_body(rejection.body_text())),
        }
    }
}

/// When a request's body must have arrived: a client that trickles its body (or stops sending
/// it) is answered with a 408 problem, before the request timeout would answer a 503.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    at: tokio::time::Instant,
    budget: Duration,
}

impl BodyDeadline {
    /// `budget` from now: every request gets one (`http::layers::RequestContextLayer`).
    pub fn from_now(budget: Duration) -> Self {
        Self { at: tokio::time::Instant::now() + budget, budget }
    }
}

/// The `{article_id}` path segment, percent-decoded and validated.
pub struct ArticlePath(pub ArticleId);

/// The `{article_id}` path parameter as the OpenAPI document states it, for every route that
/// takes one through [`ArticlePath`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
pub(super) struct ArticleParam {
    /// The news site's article id as one percent-encoded path segment (encode `/` as `%2F`).
    /// After decoding: 1–256 bytes of UTF-8 without control characters.
    #[param(min_length = 1, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")]
    article_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ArticlePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) =
            Path::<String>::from_request_parts(parts, state).await.map_err(|rejection: PathRejection| {
                ApiError::invalid_article_id(format!(
                    "the article id must be one percent-encoded segment of UTF-8 ({})",
                    rejection.body_text()
                ))
            })?;
        ArticleId::parse(raw).map(Self).map_err(ApiError::invalid_article_id)
    }
}

/// The network key of a write, put in the request by the identity layer (`http::identity`).
impl<S: Send + Sync> FromRequestParts<S> for WriteNetwork {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<WriteNetwork>().copied().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the identity layer is not installed on this route"))
        })
    }
}

/// A decoded `(name, value)` pair of a query string.
pub type QueryPair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Splits a query string into strictly decoded `(name, value)` pairs.
///
/// Hand-written instead of `axum::extract::Query` because serde_urlencoded cannot collect a
/// repeated key (`article_id=a&article_id=b`) and decodes invalid UTF-8 lossily, which would let
/// a mangled id through; we want a 400 for it.
///
/// A name or value borrows from `query` unless decoding changed it, so a batch read's ids cost
/// no copy until they become [`ArticleId`](crate::domain::ArticleId)s.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<QueryPair<'_>>, ApiError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode_component(name)?, decode_component(value)?))
        })
        .collect()
}

fn decode_component(raw: &str) -> Result<Cow<'_, str>, ApiError> {
    if let Some(at) = malformed_escape(raw) {
        return Err(ApiError::invalid_query(format!(
            "the query string has a '%' not followed by two hex digits (at byte {at} of {raw:?}); encode '%' as %25"
        )));
    }
    let not_utf8 = |_| ApiError::invalid_query("the query string is not valid percent-encoded UTF-8");
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8().map_err(not_utf8)?;
        return Ok(Cow::Owned(decoded.into_owned()));
    }
    percent_encoding::percent_decode_str(raw).decode_utf8().map_err(not_utf8)
}

/// Where `raw` has a `%` that is not followed by two hex digits, if anywhere.
///
/// `percent_encoding` (like axum's path extractor) passes such a `%` through as a literal
/// character, so `%ZZ` would silently name the article `%ZZ`; RFC 3986 says it is not a URI.
pub fn malformed_escape(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().find_map(|(at, byte)| {
        let escape_ok = bytes.get(at + 1..at + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        (*byte == b'%' && !escape_ok).then_some(at)
    })
}

/// The 400 answer to a path with a malformed percent-escape, if it has one: the check runs
/// before routing (`http::layers::ProblemLayer`), so nothing (route, rate limit, handler) ever
/// sees such a path.
pub fn malformed_path_refusal(uri: &axum::http::Uri) -> Option<Response> {
    let at = malformed_escape(uri.path())?;
    let problem = super::Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-path",
        "Malformed path",
        format!("the path has a '%' not followed by two hex digits at byte {at}; percent-encode '%' as %25"),
    );
    Some(axum::response::IntoResponse::into_response(problem))
}

/// The JSON media type of every success body.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

impl<T: serde::Serialize> axum::response::IntoResponse for AppJson<T> {
    fn into_response(self) -> axum::response::Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => {
                ([(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(JSON_UTF8))], body)
                    .into_response()
            }
            Err(error) => {
                ApiError::Internal(anyhow::Error::new(error).context("while serializing a response"))
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_keep_repeats_order_and_decode_strictly() {
        let pairs = query_pairs(Some("article_id=a&article_id=b%2Fc&article_id=a&x=%C3%A9+1")).unwrap();
        assert_eq!(
            pairs,
            [("article_id", "a"), ("article_id", "b/c"), ("article_id", "a"), ("x", "é 1")]
                .map(|(a, b)| (Cow::Borrowed(a), Cow::Borrowed(b)))
        );
        assert!(matches!(pairs[0].1, Cow::Borrowed(_)), "nothing to decode, nothing copied");
        assert!(query_pairs(Some("article_id=%FF")).is_err(), "invalid UTF-8");
        assert!(query_pairs(None).unwrap().is_empty());
        assert!(query_pairs(Some("article_id=%ZZ")).is_err(), "a malformed escape");
    }

    #[test]
    fn malformed_escapes_are_found_and_well_formed_ones_pass() {
        for (raw, expected) in [
            ("/v1/articles/%ZZ/reactions", Some(13)),
            ("ab%", Some(2)),
            ("%G1x", Some(0)),
            ("a%2", Some(1)),
            ("%2F%c3%A9", None),
            ("plain", None),
            ("%25", None),
        ] {
            assert_eq!(malformed_escape(raw), expected, "{raw:?}");
        }
    }
}
