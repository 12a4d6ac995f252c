//! The client's IP address: the peer, or — behind trusted proxies — the rightmost
//! `X-Forwarded-For` entry that is not itself a trusted proxy.
//!
//! Hand-written because the ready-made extractors (e.g. tower_governor's `SmartIpKeyExtractor`)
//! believe `X-Forwarded-For` from anyone, which lets a client pick its own rate-limit key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

use crate::http::ApiError;

/// The resolved client address of a request, for rate limiting and fingerprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Proxies whose `X-Forwarded-For` we believe.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Walks `X-Forwarded-For` from the right while the hops are trusted proxies.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(&peer) {
            // An untrusted peer's X-Forwarded-For is whatever it wants it to be: ignore it.
            return peer;
        }
        let mut client = peer;
        // Several headers are one list, in order (RFC 9110 §5.3); walked from its end.
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .rev();
        for entry in entries {
            match parse_forwarded_ip(entry) {
                // A malformed hop ends the walk: nothing to its left can be trusted.
                None => break,
                Some(ip) => {
                    client = ip;
                    if !self.contains(&ip) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` and `[2001:db8::1]:443`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(canonical(ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, seen on dual-stack sockets) are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// The client address of `request`: resolved once per request by the global
    /// `RequestContextLayer` (`http::layers`), for the rate limiter and identity.
    pub fn resolve<B>(&self, request: &Request<B>) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            // Without connect info (e.g. in-process tests) every request is the same client.
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.client_ip(peer, request.headers())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        ClientIp::of(&parts.extensions)
    }
}

impl ClientIp {
    /// The address the global layer resolved, from a request's extensions.
    pub fn of(extensions: &axum::http::Extensions) -> Result<Self, ApiError> {
        extensions.get::<ClientIp>().copied().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the client-ip layer is not installed on this route"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn trusted(cidrs: &[&str]) -> TrustedProxies {
        TrustedProxies::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolves_the_client_ip_by_the_trusted_proxy_walk() {
        let proxies = trusted(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let cases: &[(&str, &str, &[&str], &str)] = &[
            ("untrusted peer: XFF ignored", "203.0.113.9", &["1.1.1.1"], "203.0.113.9"),
            ("trusted peer, one hop", "10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            ("spoofed left part is skipped", "10.0.0.1", &["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
            ("chain of trusted proxies", "10.0.0.1", &["198.51.100.7, 10.1.1.1, 10.2.2.2"], "198.51.100.7"),
            ("headers form one list", "10.0.0.1", &["6.6.6.6", "198.51.100.7, 10.9.9.9"], "198.51.100.7"),
            ("no XFF: the proxy itself", "10.0.0.1", &[], "10.0.0.1"),
            ("all trusted: leftmost", "10.0.0.1", &["10.3.3.3, 10.4.4.4"], "10.3.3.3"),
            ("malformed hop stops the walk", "10.0.0.1", &["198.51.100.7, garbage"], "10.0.0.1"),
            ("malformed after a trusted hop", "10.0.0.1", &["x, 10.5.5.5"], "10.5.5.5"),
            ("port and brackets", "10.0.0.1", &["[2001:db8::5]:443"], "2001:db8::5"),
            ("ipv4 with port", "10.0.0.1", &["198.51.100.7:5555"], "198.51.100.7"),
            ("ipv6 proxy", "2001:db8:ffff::1", &["2001:db8::9"], "2001:db8::9"),
            ("mapped ipv4 peer", "::ffff:10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
        ];
        for (why, peer, xff, expected) in cases {
            assert_eq!(proxies.client_ip(ip(peer), &headers(xff)), ip(expected), "{why}");
        }
    }

    /// The layer over a router: what a handler extracts, for a request from `peer`
    /// (`None`: no connect info, as in-process).
    async fn resolved(proxies: TrustedProxies, peer: Option<&str>, xff: &[&str]) -> String {
        use axum::body::Body;
        use tower::ServiceExt as _;
        let router = axum::Router::new()
            .route("/", axum::routing::get(|ClientIp(ip): ClientIp| async move { ip.to_string() }))
            .layer(crate::http::layers::RequestContextLayer::new(std::time::Duration::from_secs(5), proxies));
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        *request.headers_mut() = headers(xff);
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip(peer), 40000)));
        }
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 64).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_layer_hands_handlers_the_resolved_client() {
        let proxies = || trusted(&["10.0.0.0/8"]);
        assert_eq!(resolved(proxies(), Some("10.0.0.1"), &["198.51.100.7"]).await, "198.51.100.7");
        assert_eq!(resolved(proxies(), Some("203.0.113.9"), &["198.51.100.7"]).await, "203.0.113.9");
        assert_eq!(resolved(proxies(), None, &[]).await, "0.0.0.0", "no connect info: one client");
    }

    #[tokio::test]
    async fn a_route_without_the_layer_is_a_500_not_a_guess() {
        use axum::body::Body;
        use tower::ServiceExt as _;
        let router = axum::Router::new()
            .route("/", axum::routing::get(|ClientIp(ip): ClientIp| async move { ip.to_string() }));
        let response = router.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn with_no_trusted_proxies_the_peer_is_always_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("127.0.0.1"), &headers(&["1.2.3.4"])), ip("127.0.0.1"));
    }
}
