//! The cross-cutting layers of the visitor and stats routes: the client's address, the rate
//! limits, the ballot-stuffing cap, the visitor's identity and the request metrics.

pub mod article_cap;
pub mod client_ip;
pub mod identity;
pub mod rate_limit;
pub(super) mod request_metrics;
