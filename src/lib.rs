//! reader-reactions: the "What's your reaction?" buttons under news articles, and their counts.
//!
//! Dependencies point one way, `http → app → store → domain` (DEVELOPERS.md): a request enters
//! through [`http`] (layers, then a handler; the visitor is identified there with
//! [`app::identity`]), is served by the use cases in [`app`] over the [`domain`] types, and
//! reaches the database only through [`store`]. [`config`], [`telemetry`], [`startup`] and
//! [`serve`] wire and run it.

/// The use cases: reactions, identity, live counts, alerts.
pub mod app;
/// Settings from environment and flags.
pub mod config;
/// Articles, reactions and summaries: validated value types.
pub mod domain;
/// `--healthcheck`: is the instance on this machine up? For container health checks.
pub mod healthcheck;
/// The HTTP edge: routes, error shape, layers, OpenAPI.
pub mod http;
/// The HTTP/1.1 accept loop, with a deadline for each request head.
pub mod serve;
/// Wiring and running the service.
pub mod startup;
/// SQL and migrations.
pub mod store;
/// Log output and Prometheus metrics.
pub mod telemetry;
