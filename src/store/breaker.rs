//! The circuit breaker in front of the database: once the database is known to be down, calls
//! fail at once with [`StoreError::Unavailable`] (a quick 503) instead of each waiting for the
//! pool's acquire timeout, while one background probe checks the database until it answers.
//!
//! A call that fails as unavailable only makes the breaker *suspect* the database: a probe (a
//! fresh connection and `select 1`, outside the pool, so a busy pool is not mistaken for a dead
//! database) decides. A lock timeout, a slow statement or a full pool leave the breaker closed
//! when the probe gets through; a refused connection opens it. While open, the probe runs every
//! [`PROBE_INTERVAL`] and closes the breaker as soon as one gets through.
//!
//! Hand-written rather than a tower layer: it guards the store, below the HTTP edge, so that
//! every caller (handlers, the writer tasks, the salt cache, readiness) shares one view of the
//! database.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{ConnectOptions as _, Connection as _};

use super::{Backend, StoreError};

/// How often the database is probed while it is down: it is back in service within this (and
/// one probe) of its return.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The gauge that is 1 while the breaker is open (described with the other metrics).
pub const DOWN_GAUGE: &str = "db_known_down";

/// The longest one probe may take; a database that does not answer within it is down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the database is known to be down, and the probe that finds out when it is back.
#[derive(Debug)]
pub(super) struct Breaker {
    backend: Backend,
    /// Open: calls fail at once.
    down: AtomicBool,
    /// A probe task is running.
    probing: AtomicBool,
}

impl Breaker {
    pub(super) fn new(backend: Backend) -> Arc<Self> {
        Arc::new(Self { backend, down: AtomicBool::new(false), probing: AtomicBool::new(false) })
    }

    /// Whether calls are refused at once.
    pub(super) fn is_open(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Runs `call` unless the database is known to be down; an unavailable answer makes the
    /// breaker probe the database.
    pub(super) async fn guard<T>(
        self: &Arc<Self>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.is_open() {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "the database is down; a background probe checks it every {} ms",
                PROBE_INTERVAL.as_millis()
            )));
        }
        let result = call.await;
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.suspect();
        }
        result
    }

    /// Starts the probe unless one runs.
    fn suspect(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Weak: the probe ends with the store (a service stopped during an outage).
        let breaker = Arc::downgrade(self);
        tokio::spawn(probe_until_up(breaker));
    }
}

async fn probe_until_up(breaker: Weak<Breaker>) {
    loop {
        let Some(this) = breaker.upgrade() else { return };
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, this.backend.probe()).await;
        match outcome {
            Ok(Ok(())) => {
                if this.down.swap(false, Ordering::AcqRel) {
                    metrics::gauge!(DOWN_GAUGE).set(0.0);
                    tracing::warn!("the database answers again: serving requests");
                }
                this.probing.store(false, Ordering::Release);
                return;
            }
            Ok(Err(error)) if !is_down(&error) => {
                // Reachable but refusing, e.g. out of connections: not for the breaker to
                // decide; the pool's own timeouts answer those requests.
                tracing::debug!(%error, "the database probe was refused; the breaker stays closed");
                this.probing.store(false, Ordering::Release);
                return;
            }
            failure => {
                if !this.down.swap(true, Ordering::AcqRel) {
                    metrics::gauge!(DOWN_GAUGE).set(1.0);
                    let why = match failure {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
                    };
                    tracing::error!(
                        error = why,
                        "the database is down: answering 503 at once, probing every {} ms",
                        PROBE_INTERVAL.as_millis()
                    );
                }
            }
        }
        drop(this);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Whether a probe's failure means the database cannot be reached (rather than that it
/// refused this connection, e.g. PostgreSQL's `too_many_connections`).
fn is_down(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: 53 is "insufficient resources" (too many connections, out of memory).
            !code.starts_with("53")
        }
        _ => true,
    }
}

impl Backend {
    /// A fresh connection, outside the pool, and `select 1`.
    async fn probe(&self) -> Result<(), sqlx::Error> {
        match self {
            Backend::Postgres(s) => {
                let mut connection = s.pool.connect_options().connect().await?;
                sqlx::query("select 1").execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Sqlite(s) => {
                let mut connection = s.pool.connect_options().connect().await?;
                sqlx::query("select 1").execute(&mut connection).await?;
                connection.close().await
            }
        }
    }
}
