//! Integration tests: the HTTP API over real sockets, each test on a fresh database of its own.
//!
//! Every test that runs the service runs twice, once per storage backend, from the same source:
//! `postgres::…` and `sqlite::…` (`cargo test postgres::` or `cargo test sqlite::` picks one).
//! The PostgreSQL server is `DATABASE_URL`, or a throwaway one (see `pg_server.rs`); SQLite needs
//! nothing. See `helpers` for `TestApp` and `TestDatabase`.

// Each test file is a module of both backends' suites, on purpose.
#![allow(clippy::duplicate_mod)]

/// The test files that run the service, compiled once into each backend's module. A test file
/// gets its backend's `spawn_app()` and `TestDatabase::create()` from `super`, and everything
/// else from `crate::helpers`.
macro_rules! backend_suite {
    ($backend:expr) => {
        /// A running service on a fresh database of this suite's backend.
        pub async fn spawn_app() -> crate::helpers::TestApp {
            crate::helpers::spawn_app_on($backend).await
        }

        /// Fresh databases of this suite's backend: `TestDatabase::create()`.
        pub struct TestDatabase;

        impl TestDatabase {
            pub async fn create() -> crate::helpers::TestDatabase {
                crate::helpers::TestDatabase::create($backend).await
            }
        }

        #[path = "alerts.rs"]
        mod alerts;
        #[path = "bad_input.rs"]
        mod bad_input;
        #[path = "ballot_stuffing.rs"]
        mod ballot_stuffing;
        #[path = "brigading.rs"]
        mod brigading;
        #[path = "cache_consistency.rs"]
        mod cache_consistency;
        #[path = "concurrency.rs"]
        mod concurrency;
        #[path = "cors.rs"]
        mod cors;
        #[path = "dashboard.rs"]
        mod dashboard;
        #[path = "editorial.rs"]
        mod editorial;
        #[path = "hardening.rs"]
        mod hardening;
        #[path = "health.rs"]
        mod health;
        #[path = "hostile.rs"]
        mod hostile;
        #[path = "identity.rs"]
        mod identity;
        #[path = "live.rs"]
        mod live;
        #[path = "metrics.rs"]
        mod metrics;
        #[path = "rate_limit.rs"]
        mod rate_limit;
        #[path = "reactions.rs"]
        mod reactions;
        #[path = "stats.rs"]
        mod stats;
        #[path = "timeouts.rs"]
        mod timeouts;
        #[path = "write_path.rs"]
        mod write_path;
    };
}

mod config;
mod helpers;
mod openapi;
mod postgres;
mod postgres_only;
mod sqlite;
mod zero_setup;
