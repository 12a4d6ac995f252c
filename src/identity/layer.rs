//! The identity middleware: resolves the request's visitor once, before any handler runs.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::cookie;
use super::{IdentityToken, VISITOR_ID_HEADER, VisitorId, VisitorIdError, VisitorKey, VisitorSecret};
use crate::http::ApiError;

/// What the identity layer needs to resolve visitors; shared by all requests.
#[derive(Debug)]
pub struct IdentityResolver {
    secret: VisitorSecret,
    cookie_secure: bool,
}

/// Which kind of identity a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    Header,
    Cookie,
    /// A write that carried no identity: a new visitor, handed the cookie of a fresh random token.
    New,
    /// No identity: an anonymous read.
    None,
}

/// The visitor behind a request, as resolved by [`IdentityResolver::admit`] in the visitor routes' middleware. Extract it in a handler.
#[derive(Debug, Clone)]
pub struct Visitor {
    key: Option<VisitorKey>,
    source: IdentitySource,
    /// The identity token, to hand to the browser as a cookie after a write by a new visitor.
    token: Option<IdentityToken>,
}

impl IdentityResolver {
    pub fn new(secret: VisitorSecret, cookie_secure: bool) -> Self {
        Self { secret, cookie_secure }
    }

    /// Resolves the visitor: `X-Visitor-Id`, else a valid `rr_vid` cookie, else (for writes) a
    /// new visitor with a fresh random token. A malformed or repeated header is a client error; a
    /// bad cookie is ignored.
    ///
    /// No request is ever identified by its address and User-Agent (a fingerprint): everyone
    /// behind one address with the same browser build shares those, so a fingerprint would let
    /// one reader switch, undo, erase or read another's reactions, and the cookie it led to would
    /// hand out the other's identity. A write without identity is a new visitor instead, whose
    /// cookie keeps it; a client that keeps no cookie is a new visitor at every write (bounded,
    /// like visitor ids a client invents, by the per-article cap). Reads without identity are
    /// anonymous: the same for everyone, so browsers and CDNs may share them.
    pub fn resolve(&self, headers: &HeaderMap, is_write: bool) -> Result<Visitor, ApiError> {
        let mut ids = headers.get_all(VISITOR_ID_HEADER).iter();
        if let Some(first) = ids.next() {
            if ids.next().is_some() {
                return Err(ApiError::invalid_visitor_id(VisitorIdError::Repeated));
            }
            let id = VisitorId::parse(first.as_bytes()).map_err(ApiError::invalid_visitor_id)?;
            let key = VisitorKey::from_header_id(&self.secret, &id);
            return Ok(Visitor { key: Some(key), source: IdentitySource::Header, token: None });
        }
        if let Some(token) = cookie::cookie_values(headers).find_map(|v| cookie::verify(&self.secret, v)) {
            let key = VisitorKey::from_token(&self.secret, &token);
            return Ok(Visitor { key: Some(key), source: IdentitySource::Cookie, token: Some(token) });
        }
        if !is_write {
            return Ok(Visitor { key: None, source: IdentitySource::None, token: None });
        }
        let token = IdentityToken::generate();
        let key = VisitorKey::from_token(&self.secret, &token);
        Ok(Visitor { key: Some(key), source: IdentitySource::New, token: Some(token) })
    }
}

impl Visitor {
    /// The visitor's key, when the request identified one.
    pub fn key(&self) -> Option<&VisitorKey> {
        self.key.as_ref()
    }

    /// How the visitor was identified.
    pub fn source(&self) -> IdentitySource {
        self.source
    }

    /// The visitor's key; writes need one, and the identity layer gives every write one.
    pub fn require(&self) -> Result<&VisitorKey, ApiError> {
        self.key.as_ref().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the identity layer left a write without a visitor"))
        })
    }
}

/// The cookie to set once a write by a new visitor has succeeded.
pub struct PendingCookie(IdentityToken);

impl IdentityResolver {
    /// Resolves the request's visitor into its extensions, for handlers. Answers the cookie to
    /// set if the request is a write by a new visitor, or the error answer.
    // The refusal is the answer itself, returned at once by the caller, never propagated.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, request: &mut Request) -> Result<Option<PendingCookie>, Response> {
        let is_write = !matches!(*request.method(), Method::GET | Method::HEAD);
        let visitor = self.resolve(request.headers(), is_write).map_err(IntoResponse::into_response)?;
        let cookie =
            (visitor.source == IdentitySource::New).then_some(visitor.token).flatten().map(PendingCookie);
        request.extensions_mut().insert(visitor);
        Ok(cookie)
    }

    /// Sets the pending cookie on a successful answer.
    pub fn finish(&self, cookie: Option<PendingCookie>, response: &mut Response) {
        if let Some(PendingCookie(token)) = cookie
            && response.status().is_success()
        {
            let cookie = cookie::set_cookie(&self.secret, &token, self.cookie_secure);
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Visitor>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the identity layer is not installed on this route"))
        })
    }
}
