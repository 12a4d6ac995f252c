//! Who is reacting: turning a request into a [`VisitorKey`] without storing anything that
//! identifies a person.
//!
//! In order of precedence a visitor is identified by the `X-Visitor-Id` header, the signed
//! `rr_vid` cookie, or an anonymous fingerprint (a keyed hash of a daily salt, the client IP and
//! the User-Agent). Every identity is reduced to a keyed hash under the service's
//! [`VisitorSecret`] before anything else sees it. Handlers receive the resolved `Visitor` from
//! the HTTP edge's identity middleware (`http::identity`); they never see raw ids, cookies, IPs or User-Agents.
//!
//! [`VisitorKey`]: crate::domain::VisitorKey
//! [`VisitorSecret`]: crate::domain::VisitorSecret

pub mod cookie;
pub mod fingerprint;
pub mod network;
mod secret;

pub use crate::domain::{IdentityToken, VisitorId, VisitorIdError, VisitorKey, VisitorSecret};
pub use fingerprint::SaltCache;
pub use network::WriteNetwork;
pub use secret::{key_file_for, resolve_secret};

/// Name of the request header a client uses to identify its visitor.
pub const VISITOR_ID_HEADER: &str = "x-visitor-id";
