//! The identity middleware: resolves the request's visitor once, before any handler runs.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::app::identity::WriteNetwork;
use crate::app::identity::{
    IdentityToken, SaltCache, VISITOR_ID_HEADER, VisitorId, VisitorIdError, VisitorKey, VisitorSecret,
};
use crate::app::identity::{cookie, fingerprint};
use crate::http::ApiError;
use crate::http::middleware::client_ip::ClientIp;

/// What the identity layer needs to resolve visitors; shared by all requests.
#[derive(Debug)]
pub struct IdentityResolver {
    secret: VisitorSecret,
    salts: SaltCache,
    cookie_secure: bool,
}

/// Which kind of identity a request carried.
///
/// Only a header id is personal. The cookie is minted from a fingerprint by a fingerprinted
/// write, so everyone behind one address with one browser build that day is handed the same
/// one: like the fingerprint, it keeps a browser's writes deduplicated (after the salt rotates
/// too) but never reads a reaction back and never erases ([`Visitor::personal_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentitySource {
    /// `X-Visitor-Id`: a personal id the client keeps (the widget's, in localStorage).
    Header,
    /// The signed `rr_vid` cookie, carrying the fingerprint token of the browser's first write.
    Cookie,
    /// A keyed hash of the day's salt, the client address and the User-Agent (writes only).
    Fingerprint,
    /// No identity: an anonymous read, or a write while the salt was unavailable.
    None,
}

/// The visitor behind a request, as resolved by [`IdentityResolver::admit`] in the visitor routes' middleware. Extract it in a handler.
#[derive(Debug, Clone)]
pub struct Visitor {
    key: Option<VisitorKey>,
    source: IdentitySource,
    /// The fingerprint token, to hand to the browser as a cookie after a write.
    token: Option<IdentityToken>,
}

impl IdentityResolver {
    pub fn new(secret: VisitorSecret, salts: SaltCache, cookie_secure: bool) -> Self {
        Self { secret, salts, cookie_secure }
    }

    /// Resolves the visitor: `X-Visitor-Id`, else a valid `rr_vid` cookie, else (for writes) a
    /// fingerprint. A malformed or repeated header is a client error; a bad cookie is ignored.
    ///
    /// Reads never fingerprint: an answer to a request that carried no identity is the same for
    /// everyone, so browsers and CDNs may share it, and a reader behind the same NAT and browser
    /// build does not see another's choice highlighted.
    pub async fn resolve(
        &self,
        headers: &HeaderMap,
        client: ClientIp,
        fingerprint: bool,
    ) -> Result<Visitor, ApiError> {
        let mut ids = headers.get_all(VISITOR_ID_HEADER).iter();
        if let Some(first) = ids.next() {
            if ids.next().is_some() {
                return Err(ApiError::invalid_visitor_id(VisitorIdError::Repeated));
            }
            let id = VisitorId::parse(first.as_bytes()).map_err(ApiError::invalid_visitor_id)?;
            let key = VisitorKey::from_header_id(&self.secret, &id);
            return Ok(Visitor { key: Some(key), source: IdentitySource::Header, token: None });
        }
        if let Some(token) =
            cookie::cookie_values(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()))
                .find_map(|v| cookie::verify(&self.secret, v))
        {
            let key = VisitorKey::from_token(&self.secret, &token);
            return Ok(Visitor { key: Some(key), source: IdentitySource::Cookie, token: Some(token) });
        }
        if !fingerprint {
            return Ok(Visitor { key: None, source: IdentitySource::None, token: None });
        }
        match self.salts.current().await {
            Ok(salt) => {
                let user_agent = headers.get(header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default();
                let token = fingerprint::token(&self.secret, &salt, client.0, user_agent);
                let key = VisitorKey::from_token(&self.secret, &token);
                Ok(Visitor { key: Some(key), source: IdentitySource::Fingerprint, token: Some(token) })
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "no fingerprint salt: visitor unidentified");
                Ok(Visitor { key: None, source: IdentitySource::None, token: None })
            }
        }
    }
}

impl Visitor {
    /// The visitor's key when it names one person: a header id. What is stored under a
    /// fingerprint's or its cookie's key may be another person's doing (same address, same
    /// browser build), so reads by them are anonymous and they never erase.
    pub fn personal_key(&self) -> Option<&VisitorKey> {
        self.key.as_ref().filter(|_| self.source == IdentitySource::Header)
    }

    /// The visitor's key; writes need one. Without it the database was unreachable for the
    /// fingerprint salt, so the answer is a 503.
    pub fn require(&self) -> Result<&VisitorKey, ApiError> {
        self.key.as_ref().ok_or_else(|| {
            ApiError::Unavailable(anyhow::anyhow!("cannot identify the visitor without the fingerprint salt"))
        })
    }
}

/// Whether a request of `method` is a write: only writes may fall back to the fingerprint, and
/// only a successful write by fingerprint gets the cookie.
pub(in crate::http) fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The cookie to set once a write by fingerprint has succeeded.
pub struct PendingCookie(IdentityToken);

impl IdentityResolver {
    /// Resolves the request's visitor into its extensions, for handlers. Answers the cookie to
    /// set if the request is a write by fingerprint, or the error answer.
    pub async fn admit(
        &self,
        client: ClientIp,
        request: &mut Request,
    ) -> Result<Option<PendingCookie>, Response> {
        let is_write = is_write(request.method());
        let visitor =
            self.resolve(request.headers(), client, is_write).await.map_err(IntoResponse::into_response)?;
        let cookie = (is_write && visitor.source == IdentitySource::Fingerprint)
            .then_some(visitor.token)
            .flatten()
            .map(PendingCookie);
        // Only a set or switch (PUT) stores the network it came from: removals and erasures pay
        // for no keyed hash.
        let network = match request.method() == Method::PUT && visitor.key.is_some() {
            true => WriteNetwork::of(&self.secret, &self.salts, client.0).await,
            false => WriteNetwork(None),
        };
        request.extensions_mut().insert(network);
        request.extensions_mut().insert(visitor);
        Ok(cookie)
    }

    /// Sets the pending cookie on a successful answer.
    pub fn finish(&self, cookie: Option<PendingCookie>, response: &mut Response) {
        if let Some(PendingCookie(token)) = cookie
            && response.status().is_success()
        {
            let cookie = cookie::set_cookie(&self.secret, &token, self.cookie_secure);
            let cookie = HeaderValue::try_from(cookie).expect("base64url and ASCII attributes");
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
