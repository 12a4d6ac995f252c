//! Building and running the service: configuration in, a bound listener out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::cache::CountsCache;
use crate::app::fill::CacheFiller;
use crate::app::identity::SaltCache;
use crate::app::live::{LiveCounts, LiveOptions};
use crate::app::reactions::Reactions;
use crate::app::writer::{BatchWriter, WriterOptions, WriterTasks};
use crate::config::Config;
use crate::http::middleware::article_cap::ArticleCap;
use crate::http::middleware::client_ip::TrustedProxies;
use crate::http::middleware::identity::IdentityResolver;
use crate::http::middleware::rate_limit::{RateLimits, spawn_purger};
use crate::http::{self, AppState, EdgeLayers, HttpOptions};
use crate::serve::ServeOptions;
use crate::store::{Store, StoreOptions};

/// The configuration from flags and environment, or a refusal to start (one line naming the
/// setting, exit code 2): the settings' own checks ([`Config::from_environment`]), then those of
/// the parts that own them: a database URL no backend serves, and the newsroom alerts'.
pub fn configuration() -> Config {
    let config = Config::from_environment();
    if !Store::supports(&config.database_url) {
        // Not the URL itself: it may carry a password.
        crate::config::refuse(
            "--database-url (DATABASE_URL) must start with sqlite:// (the embedded store) or postgres:// \
             (PostgreSQL)",
        );
    }
    if let Err(line) = crate::app::alerts::check_settings(&config) {
        crate::config::refuse(&line);
    }
    config
}

/// A built service, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The `METRICS_ADDR` listener and its router, when `/metrics` is served apart.
    metrics: Option<(TcpListener, axum::Router)>,
    /// The request-head deadline (the request timeout) and the connection cap.
    serve: ServeOptions,
    purger: tokio::task::JoinHandle<()>,
    writers: WriterTasks,
    /// Ended at shutdown, so that open streams do not hold the drain.
    live: LiveCounts,
    /// The newsroom alerts' tasks, when configured.
    alerts: Option<crate::app::alerts::AlertTasks>,
}

/// The longest shutdown waits for queued writes to commit.
const WRITE_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often idle clients are dropped from the rate limiters.
const RATE_LIMIT_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// File descriptors kept free of client connections: listeners, log output, the SQLite file
/// and its journal, and the like (database connections are counted on top).
const RESERVED_FILES: u64 = 64;

/// Connections the `METRICS_ADDR` listener serves at once: it is for a scraper or two.
const METRICS_CONNECTIONS: usize = 16;

/// The connection cap in force: `MAX_CONNECTIONS`, lowered if the open-file limit (raised to its
/// hard limit first) could not hold that many besides the database pool and the overflow lane.
fn connection_cap(config: &Config) -> usize {
    let wanted = config.max_connections.get() as usize;
    let Some(files) = crate::serve::raise_open_file_limit() else { return wanted };
    let spare = files
        .saturating_sub(RESERVED_FILES + u64::from(config.database_max_connections.get()))
        .saturating_sub(crate::serve::OVERFLOW_CONNECTIONS as u64);
    let cap = wanted.min(usize::try_from(spare).unwrap_or(usize::MAX)).max(1);
    if cap < wanted {
        tracing::warn!(
            open_file_limit = files,
            max_connections = cap,
            "the open-file limit holds fewer connections than MAX_CONNECTIONS; serving at most {cap}"
        );
    }
    cap
}

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
        let secret = crate::app::identity::resolve_secret(config.visitor_secret.clone(), &store).await?;
        let identity =
            Arc::new(IdentityResolver::new(secret, SaltCache::new(store.clone()), config.cookie_secure));
        let limits = config.rate_limits();
        let rate_limits = Arc::new(RateLimits::new(&limits));
        let purger = spawn_purger(Arc::downgrade(&rate_limits), RATE_LIMIT_PURGE_INTERVAL);
        let article_writes = Arc::new(ArticleCap::new(limits.article_writes_per_hour));
        // Ends by itself once the router (the cap's only owner) is dropped.
        spawn_purger(Arc::downgrade(&article_writes), RATE_LIMIT_PURGE_INTERVAL);
        let cache = CountsCache::new(config.cache_ttl, config.cache_capacity.get() as usize);
        let (writer, writers) = BatchWriter::start(
            store.clone(),
            cache.clone(),
            WriterOptions {
                workers: config.write_workers(),
                queue_capacity: config.write_queue_capacity.get() as usize,
                max_batch: config.write_batch_max.get() as usize,
                max_delay: config.write_batch_delay,
            },
        );
        let live = LiveCounts::start(
            store.clone(),
            cache.clone(),
            LiveOptions {
                min_interval: config.live_min_interval,
                max_streams: config.live_max_streams.get() as usize,
            },
        );
        let alerts = crate::app::alerts::AlertTasks::start(&config, &store)?;
        let admin_token = http::BearerToken::from_setting(config.admin_token.as_deref());
        let stats_token = http::BearerToken::from_setting(config.stats_token.as_deref());
        let state = AppState::new(http::Shared {
            public_cache_control: http::public_cache_control(cache.ttl()),
            reactions: Reactions::new(
                store.clone(),
                cache.clone(),
                CacheFiller::start(store.clone(), cache),
                writer,
            ),
            live: live.clone(),
            stats: crate::app::Stats::new(store, config.trending_min_networks),
            admin_token,
            stats_token,
        });
        let options = HttpOptions {
            request_timeout: config.request_timeout,
            allowed_origins: config.allowed_origins.clone(),
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            metrics_elsewhere: config.metrics_addr.is_some(),
        };
        let edge = EdgeLayers { identity, rate_limits, article_writes };
        let metrics_router = http::metrics_app(state.clone());
        let router = http::app(state, edge, &options);
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("while binding {}", config.listen_addr))?;
        let metrics = match config.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("while binding METRICS_ADDR {addr}"))?;
                Some((listener, metrics_router))
            }
            None => None,
        };
        let serve =
            ServeOptions { head_timeout: config.request_timeout, max_connections: connection_cap(&config) };
        Ok(Self { listener, router, metrics, serve, purger, writers, live, alerts })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address `/metrics` is served on apart (`METRICS_ADDR`), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(|(listener, _)| listener.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let addr = self.local_addr();
        // One shutdown for both listeners.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let live = self.live.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Live streams never end by themselves: end them, or the drain would wait for ever.
            live.close();
            let _ = stop.send(true);
        });
        let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
        };
        let metrics = match self.metrics {
            Some((listener, router)) => {
                let addr = listener.local_addr().expect("a bound listener has an address");
                tracing::info!(%addr, "serving /metrics");
                let options = ServeOptions { max_connections: METRICS_CONNECTIONS, ..self.serve };
                Some(tokio::spawn(crate::serve::serve(listener, router, options, stopped(stopping.clone()))))
            }
            None => None,
        };
        tracing::info!(%addr, max_connections = self.serve.max_connections, "serving");
        let served = crate::serve::serve(self.listener, self.router, self.serve, stopped(stopping)).await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        self.purger.abort();
        if let Some(alerts) = self.alerts {
            alerts.stop().await;
        }
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
