//! Integration tests: the HTTP API over real sockets against a real PostgreSQL, one fresh
//! database per test. See `helpers` for `spawn_app`.

mod bad_input;
mod ballot_stuffing;
mod concurrency;
mod config;
mod cors;
mod health;
mod helpers;
mod hostile;
mod identity;
mod metrics;
mod openapi;
mod rate_limit;
mod reactions;
mod stats;
mod write_path;
