//! The bearer tokens: `ADMIN_TOKEN` guards the admin endpoints (the CSV export, the editorial
//! controls), `STATS_TOKEN` (when set) the stats reads behind the dashboard.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::http::{ApiError, AppState};

/// A configured bearer token (`ADMIN_TOKEN`, `STATS_TOKEN`), kept only as its SHA-256 digest:
/// every check compares two 32-byte digests in constant time, so timing reveals neither the
/// token's bytes nor its length.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// The token from the setting, or `None` when it is unset or empty.
    pub fn from_setting(token: Option<&str>) -> Option<Self> {
        token.filter(|token| !token.is_empty()).map(|token| Self { digest: digest(token) })
    }

    /// Whether `presented` is this token.
    pub fn matches(&self, presented: &str) -> bool {
        self.digest.ct_eq(&digest(presented)).into()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Proof that a request carries `Authorization: Bearer <ADMIN_TOKEN>`.
///
/// Rejects with a 404 problem when the server has no admin token (the admin endpoints are off),
/// and with a 401 problem (and `WWW-Authenticate: Bearer`) when the header is missing, is not a
/// bearer token, or names another token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = &state.admin_token else {
            return Err(ApiError::disabled("this endpoint is switched off: the server has no ADMIN_TOKEN"));
        };
        check_bearer(parts, token, "admin").map(|()| Admin)
    }
}

/// Proof that a request may read the stats: the server has no `STATS_TOKEN` (the stats are
/// public), or the request carries `Authorization: Bearer <STATS_TOKEN>`.
///
/// Rejects with a 401 problem (and `WWW-Authenticate: Bearer`) as [`Admin`] does.
#[derive(Debug)]
pub struct StatsReader;

impl FromRequestParts<AppState> for StatsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match &state.stats_token {
            None => Ok(StatsReader),
            Some(token) => check_bearer(parts, token, "stats").map(|()| StatsReader),
        }
    }
}

/// Whether the request's `Authorization` header carries `token`; `name` names the token in the
/// 401's detail.
fn check_bearer(parts: &Parts, token: &BearerToken, name: &str) -> Result<(), ApiError> {
    let presented =
        parts.headers.get(header::AUTHORIZATION).map(|value| value.to_str().ok().and_then(bearer));
    match presented {
        None => {
            Err(ApiError::unauthorized(format!("send the {name} token as `Authorization: Bearer <token>`")))
        }
        Some(None) => Err(ApiError::unauthorized("the Authorization header is not `Bearer <token>`")),
        Some(Some(presented)) if token.matches(presented) => Ok(()),
        Some(Some(_)) => Err(ApiError::unauthorized(format!("the bearer token is not the {name} token"))),
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_matches() {
        let token = BearerToken::from_setting(Some("s3cret-admin-token")).unwrap();
        assert!(token.matches("s3cret-admin-token"));
        assert!(!token.matches("s3cret-admin-toke"), "a prefix");
        assert!(!token.matches("s3cret-admin-token2"), "longer");
        assert!(!token.matches(""));
        assert!(BearerToken::from_setting(None).is_none(), "unset: off");
        assert!(BearerToken::from_setting(Some("")).is_none(), "empty: off");
        assert_eq!(format!("{token:?}"), "BearerToken(..)", "never logged");
    }

    #[test]
    fn bearer_values_are_parsed_strictly() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc"), Some("abc"), "the scheme is case-insensitive");
        assert_eq!(bearer("Basic YWJj"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
