//! Building and running the service: configuration in, a bound listener out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::article_cap::ArticleCap;
use crate::http::client_ip::TrustedProxies;
use crate::http::rate_limit::{ClassLimiter, Limit, RateLimits};
use crate::http::{self, AppState, EdgeLayers, HttpOptions};
use crate::identity::{IdentityResolver, SaltCache};
use crate::reactions::Reactions;
use crate::reactions::cache::CountsCache;
use crate::reactions::writer::{BatchWriter, WriterOptions, WriterTasks};
use crate::store::{Store, StoreOptions};

/// A built service, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// How long a request head may take to arrive: the request timeout.
    head_timeout: std::time::Duration,
    purger: tokio::task::JoinHandle<()>,
    writers: WriterTasks,
}

/// The longest shutdown waits for queued writes to commit.
const WRITE_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often idle clients are dropped from the rate limiters.
const RATE_LIMIT_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Application {
    /// Connects the store, applies migrations (unless told not to), resolves the visitor secret
    /// and binds the listener (port 0 picks a free port; see [`Application::local_addr`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::telemetry::metrics::handle(); // installs the recorder before anything records
        let store = Store::connect(&StoreOptions {
            database_url: config.database_url.clone(),
            max_connections: config.database_max_connections.get(),
            acquire_timeout: config.database_acquire_timeout,
            statement_timeout: config.database_statement_timeout,
        })
        .context("while configuring the database connection")?;
        if config.migrate_on_start {
            store.migrate().await.context("while migrating the database at start-up")?;
        }
        let secret = match config.visitor_secret.clone() {
            Some(secret) => secret,
            None => store
                .visitor_secret()
                .await
                .context("while loading the visitor secret from the database (or set VISITOR_SECRET)")?,
        };
        let identity =
            Arc::new(IdentityResolver::new(secret, SaltCache::new(store.clone()), config.cookie_secure));
        let rate_limits = Arc::new(RateLimits {
            writes: ClassLimiter::new(
                "writes",
                Limit {
                    per_minute: config.rate_limit_writes_per_minute,
                    burst: config.rate_limit_write_burst,
                },
            ),
            reads: ClassLimiter::new(
                "reads",
                Limit { per_minute: config.rate_limit_reads_per_minute, burst: config.rate_limit_read_burst },
            ),
            stats: ClassLimiter::new(
                "stats",
                Limit {
                    per_minute: config.rate_limit_stats_per_minute,
                    burst: config.rate_limit_stats_burst,
                },
            ),
        });
        let purger = rate_limits.spawn_purger(RATE_LIMIT_PURGE_INTERVAL);
        let article_writes = Arc::new(ArticleCap::new(config.rate_limit_article_writes_per_hour));
        // Ends by itself once the router (the cap's only owner) is dropped.
        article_writes.spawn_purger(RATE_LIMIT_PURGE_INTERVAL);
        let cache = CountsCache::new(config.cache_ttl, config.cache_capacity.get() as usize);
        let (writer, writers) = BatchWriter::start(
            store.clone(),
            cache.clone(),
            WriterOptions {
                workers: config.write_workers.get() as usize,
                queue_capacity: config.write_queue_capacity.get() as usize,
                max_batch: config.write_batch_max.get() as usize,
                max_delay: config.write_batch_delay,
            },
        );
        let admin_token = http::BearerToken::from_setting(config.admin_token.as_deref());
        let stats_token = http::BearerToken::from_setting(config.stats_token.as_deref());
        let state = AppState::new(http::Shared {
            public_cache_control: http::public_cache_control(cache.ttl()),
            reactions: Reactions::new(store.clone(), cache, writer),
            store,
            admin_token,
            stats_token,
        });
        let options = HttpOptions {
            request_timeout: config.request_timeout,
            allowed_origins: config.allowed_origins.clone(),
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        };
        let edge = EdgeLayers { identity, rate_limits, article_writes };
        let router = http::app(state, edge, &options);
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("while binding {}", config.listen_addr))?;
        Ok(Self { listener, router, head_timeout: config.request_timeout, purger, writers })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "serving");
        let served = crate::serve::serve(self.listener, self.router, self.head_timeout, shutdown).await;
        self.purger.abort();
        // The router (and with it every handle on the write queue) is gone: the writers commit
        // and answer what is queued, then stop.
        self.writers.drain(WRITE_DRAIN_LIMIT).await;
        served.context("while serving HTTP")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
