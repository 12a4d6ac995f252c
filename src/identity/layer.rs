//! The identity middleware: resolves the request's visitor once, before any handler runs.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::{VISITOR_ID_HEADER, VisitorId, VisitorKey, VisitorSecret};
use crate::http::ApiError;

/// What the identity layer needs to resolve visitors; shared by all requests.
#[derive(Debug)]
pub struct IdentityResolver {
    secret: VisitorSecret,
}

impl IdentityResolver {
    pub fn new(secret: VisitorSecret) -> Self {
        Self { secret }
    }

    /// Resolves the visitor from request headers. A malformed or repeated `X-Visitor-Id` is a
    /// client error; no header means an anonymous visitor.
    pub fn resolve(&self, headers: &axum::http::HeaderMap) -> Result<Visitor, ApiError> {
        let mut values = headers.get_all(VISITOR_ID_HEADER).iter();
        let Some(first) = values.next() else {
            return Ok(Visitor { key: None });
        };
        if values.next().is_some() {
            return Err(ApiError::invalid_visitor_id(
                super::VisitorIdError::Repeated,
            ));
        }
        let id = VisitorId::parse(first.as_bytes()).map_err(ApiError::invalid_visitor_id)?;
        Ok(Visitor {
            key: Some(VisitorKey::from_header_id(&self.secret, &id)),
        })
    }
}

/// The visitor behind a request, as resolved by [`resolve_visitor`]. Extract it in a handler.
#[derive(Debug, Clone)]
pub struct Visitor {
    key: Option<VisitorKey>,
}

impl Visitor {
    /// The visitor's key, when the request identified one.
    pub fn key(&self) -> Option<&VisitorKey> {
        self.key.as_ref()
    }

    /// The visitor's key, or a 400 explaining how to identify: writes need an identity.
    pub fn require(&self) -> Result<&VisitorKey, ApiError> {
        self.key.as_ref().ok_or_else(ApiError::visitor_required)
    }
}

/// Middleware: resolves the visitor and stores it in the request extensions for handlers.
pub async fn resolve_visitor(
    State(resolver): State<Arc<IdentityResolver>>,
    mut request: Request,
    next: Next,
) -> Response {
    match resolver.resolve(request.headers()) {
        Ok(visitor) => {
            request.extensions_mut().insert(visitor);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Visitor>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "the identity layer is not installed on this route"
            ))
        })
    }
}
