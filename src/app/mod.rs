//! The use cases: what the HTTP handlers ask for, in domain terms, over the [`store`](crate::store).
//!
//! Nothing here knows HTTP: requests arrive as domain values (an [`ArticleId`](crate::domain::ArticleId),
//! a [`VisitorKey`](crate::domain::VisitorKey)) and leave as domain values or rendered bytes.

/// Newsroom alerts: signed webhooks when a story trends or a reaction surges under it.
pub mod alerts;
/// The read cache of per-article counts and their rendered answers.
pub mod cache;
/// Cache misses of many requests read together.
pub mod fill;
/// Visitor identity: keyed hashes of whoever reacts (salts, fingerprints, the cookie's token,
/// the generated secret).
pub mod identity;
/// Live counts: one read per article per interval, shared by all its subscribers.
pub mod live;
/// Read and change reactions.
pub mod reactions;
/// Editorial settings of articles, cached for the write path.
pub mod settings;
/// The dashboards' reads and the instance's health.
pub mod stats;
/// The group-commit writer: queued changes to the store in batches.
pub mod writer;

pub use reactions::Reactions;
pub use stats::Stats;
