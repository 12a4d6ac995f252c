//! reader-reactions: the "What's your reaction?" buttons under news articles, and their counts.
//!
//! A request enters through [`http`] (layers, then a handler), is identified by [`identity`],
//! is served by the use cases in [`reactions`] over the [`domain`] types, and reaches the
//! database only through [`store`].

/// Newsroom alerts: signed webhooks when a story trends or a reaction surges under it.
pub mod alerts;
/// Settings from environment and flags.
pub mod config;
/// Articles, reactions and summaries: validated value types.
pub mod domain;
/// `--healthcheck`: is the instance on this machine up? For container health checks.
pub mod healthcheck;
/// The HTTP edge: routes, error shape, layers, OpenAPI.
pub mod http;
/// Visitor identity: keyed hashes of whoever reacts, resolved by middleware.
pub mod identity;
/// Read and change reactions: what handlers call.
pub mod reactions;
/// The HTTP/1.1 accept loop, with a deadline for each request head.
pub mod serve;
/// Wiring and running the service.
pub mod startup;
/// SQL and migrations.
pub mod store;
/// Log output and Prometheus metrics.
pub mod telemetry;
