//! Configuration from the environment (12-factor), each setting also a `--flag`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use ipnet::IpNet;

use crate::domain::VisitorSecret;

/// Where the service keeps its data when `DATABASE_URL` is not set: an SQLite file in the working
/// directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://reader-reactions.db";

/// The rate limits' defaults, for the settings below.
const LIMITS: RateLimitSettings = RateLimitSettings::DEFAULT;

/// Every setting of the service. See the README for what each one means.
#[derive(Debug, Clone, Parser)]
#[command(name = "reader-reactions", version, about = "Reaction buttons and counts for news articles")]
pub struct Config {
    /// `sqlite://FILE` for the embedded store or `postgres://…` for PostgreSQL; the file or
    /// database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Address to serve HTTP on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Key for visitor hashes and cookie signatures (at least 32 bytes). When unset, one is
    /// generated once and kept in the database.
    #[arg(long, env = "VISITOR_SECRET", hide_env_values = true)]
    pub visitor_secret: Option<VisitorSecret>,

    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,

    /// Sustained writes per minute per client IP.
    #[arg(long, env = "RATE_LIMIT_WRITES_PER_MINUTE", default_value_t = LIMITS.writes_per_minute)]
    pub rate_limit_writes_per_minute: NonZeroU32,

    /// Writes a client IP may send in a burst.
    #[arg(long, env = "RATE_LIMIT_WRITE_BURST", default_value_t = LIMITS.write_burst)]
    pub rate_limit_write_burst: NonZeroU32,

    /// Sustained reads per minute per client IP.
    #[arg(long, env = "RATE_LIMIT_READS_PER_MINUTE", default_value_t = LIMITS.reads_per_minute)]
    pub rate_limit_reads_per_minute: NonZeroU32,

    /// Reads a client IP may send in a burst.
    #[arg(long, env = "RATE_LIMIT_READ_BURST", default_value_t = LIMITS.read_burst)]
    pub rate_limit_read_burst: NonZeroU32,

    /// Sustained dashboard (stats) reads per minute per client IP.
    #[arg(long, env = "RATE_LIMIT_STATS_PER_MINUTE", default_value_t = LIMITS.stats_per_minute)]
    pub rate_limit_stats_per_minute: NonZeroU32,

    /// Dashboard (stats) reads a client IP may send in a burst.
    #[arg(long, env = "RATE_LIMIT_STATS_BURST", default_value_t = LIMITS.stats_burst)]
    pub rate_limit_stats_burst: NonZeroU32,

    /// Writes one client IP (IPv6: its /64) may make on one article in any hour, whatever the
    /// visitor ids: the ballot-stuffing cap. Half are allowed at once, the rest refill evenly.
    #[arg(
        long,
        env = "RATE_LIMIT_ARTICLE_WRITES_PER_HOUR",
        default_value_t = LIMITS.article_writes_per_hour
    )]
    pub rate_limit_article_writes_per_hour: NonZeroU32,

    /// Comma-separated origins allowed to call the API from a browser, or `*`.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',', default_value = "*")]
    pub allowed_origins: Vec<String>,

    /// Mark the visitor cookie `Secure; SameSite=None` (needed cross-site over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false, action = ArgAction::Set)]
    pub cookie_secure: bool,

    /// Apply pending migrations at start-up.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Bearer token for the CSV export and the editorial controls (at least 32 bytes); both are
    /// off when unset.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Bearer token (at least 32 bytes) the stats reads and so the dashboard need; when unset
    /// they are public.
    #[arg(long, env = "STATS_TOKEN", hide_env_values = true)]
    pub stats_token: Option<String>,

    /// A second address to serve `/metrics` on, alone; `/metrics` then answers 404 on
    /// LISTEN_ADDR. Unset: `/metrics` is served on LISTEN_ADDR.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Most client connections served at once; a few more are kept for `/healthz` and
    /// `/readyz`, and anything beyond gets a quick 503. Lowered to fit the open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: NonZeroU32,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Milliseconds after which any request is answered with 503. A request body must arrive
    /// within half of it (else 408), a request head within all of it (else the connection is
    /// closed).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value = "5000", value_parser = parse_millis)]
    pub request_timeout: Duration,

    /// Milliseconds a cached count may be served; another instance's writes show within it.
    /// 0 turns the read cache off.
    #[arg(long, env = "CACHE_TTL_MS", default_value = "1000", value_parser = parse_millis_or_zero)]
    pub cache_ttl: Duration,

    /// Most articles whose counts this instance caches.
    #[arg(long, env = "CACHE_CAPACITY", default_value = "100000")]
    pub cache_capacity: NonZeroU32,

    /// Writer tasks; changes are sharded over them by article. Unset: 2 on PostgreSQL, whose
    /// writers of different articles never wait for each other (more writers make smaller
    /// batches, which cost the database more per write), and 1 on SQLite, which commits one
    /// transaction at a time whatever the number of writers.
    #[arg(long, env = "WRITE_WORKERS")]
    pub write_workers: Option<NonZeroU32>,

    /// Most changes committed in one transaction.
    #[arg(long, env = "WRITE_BATCH_MAX", default_value = "512")]
    pub write_batch_max: NonZeroU32,

    /// Milliseconds a batch, once a commit slot is free, waits for more changes (0: it takes
    /// what is queued; batches still grow under load while both slots are busy).
    #[arg(long, env = "WRITE_BATCH_DELAY_MS", default_value = "0", value_parser = parse_millis_or_zero)]
    pub write_batch_delay: Duration,

    /// Changes each writer queues before further writes get a 503.
    #[arg(long, env = "WRITE_QUEUE_CAPACITY", default_value = "4096")]
    pub write_queue_capacity: NonZeroU32,

    /// Largest number of database connections this instance opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value = "16")]
    pub database_max_connections: NonZeroU32,

    /// Milliseconds a request waits for a database connection before it gets a 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value = "2000", value_parser = parse_millis)]
    pub database_acquire_timeout: Duration,

    /// Milliseconds any one SQL statement may run on PostgreSQL, or wait for another writer's
    /// lock on SQLite.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value = "3000", value_parser = parse_millis)]
    pub database_statement_timeout: Duration,

    /// Milliseconds between two live-count events of one article (`/events`): changes in
    /// between are coalesced into the next.
    #[arg(long, env = "LIVE_MIN_INTERVAL_MS", default_value = "1000", value_parser = parse_millis)]
    pub live_min_interval: Duration,

    /// Most live-count streams this instance holds open; more are answered 503.
    #[arg(long, env = "LIVE_MAX_STREAMS", default_value = "10000")]
    pub live_max_streams: NonZeroU32,

    /// Comma-separated http(s) URLs that newsroom alerts are POSTed to; alerts are off when unset.
    #[arg(long, env = "WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,

    /// The Standard Webhooks signing secret: `whsec_` and base64 of at least 24 random bytes.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Milliseconds between two evaluations of the alert rules.
    #[arg(long, env = "ALERT_CHECK_INTERVAL_MS", default_value = "10000", value_parser = parse_millis)]
    pub alert_check_interval: Duration,

    /// Distinct client networks (IPv4 /24, IPv6 /48) an article's reactions in the recent window
    /// must come from for it to be listed as trending (and alerted on): 0 to 1000. 0 lists
    /// articles whatever their networks.
    #[arg(long, env = "TRENDING_MIN_NETWORKS", default_value = "5",
          value_parser = clap::value_parser!(u32).range(0..=MAX_TRENDING_MIN_NETWORKS as i64))]
    pub trending_min_networks: u32,

    /// The `1h` trending score at which `article.trending` fires.
    #[arg(long, env = "ALERT_TRENDING_SCORE", default_value = "8")]
    pub alert_trending_score: f64,

    /// Reactions of one kind in an hour an `article.reaction_surge` needs at least.
    #[arg(long, env = "ALERT_SURGE_MIN", default_value = "50")]
    pub alert_surge_min: NonZeroU32,

    /// The share (0 to 1) of an article's reactions in an hour that one reaction needs for an
    /// `article.reaction_surge`.
    #[arg(long, env = "ALERT_SURGE_SHARE", default_value = "0.5")]
    pub alert_surge_share: f64,

    /// Instead of serving, ask the instance serving on LISTEN_ADDR for `/healthz` and exit with
    /// 0 if it answers 200, 1 if not: the container health check.
    #[arg(long)]
    pub healthcheck: bool,
}

/// What the rate limiters are built from: the `RATE_LIMIT_*` settings (see [`Config`] for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub writes_per_minute: NonZeroU32,
    pub write_burst: NonZeroU32,
    pub reads_per_minute: NonZeroU32,
    pub read_burst: NonZeroU32,
    pub stats_per_minute: NonZeroU32,
    pub stats_burst: NonZeroU32,
    pub article_writes_per_hour: NonZeroU32,
}

impl RateLimitSettings {
    /// The settings' defaults. The OpenAPI document states the policies of these, so that it is
    /// the same whatever an instance is configured with, and follows a changed default.
    pub const DEFAULT: Self = Self {
        writes_per_minute: NonZeroU32::new(60).unwrap(),
        write_burst: NonZeroU32::new(20).unwrap(),
        reads_per_minute: NonZeroU32::new(1200).unwrap(),
        read_burst: NonZeroU32::new(200).unwrap(),
        stats_per_minute: NonZeroU32::new(120).unwrap(),
        stats_burst: NonZeroU32::new(30).unwrap(),
        article_writes_per_hour: NonZeroU32::new(120).unwrap(),
    };
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Parses flags and environment, and refuses unsafe settings ([`Config::refuse_unsafe`]). On a
    /// bad value prints one line naming it and exits with 2. (The settings other parts check
    /// themselves, the database URL's scheme and the alerts', are refused by
    /// `startup::configuration`, which calls this.)
    pub fn from_environment() -> Self {
        match Self::try_parse() {
            Ok(config) => match config.refuse_unsafe() {
                Ok(()) => config,
                Err(line) => refuse(&line),
            },
            Err(error) if !error.use_stderr() => error.exit(), // --help, --version
            Err(error) => {
                let rendered = error.to_string();
                let line = rendered.lines().next().unwrap_or("invalid configuration");
                refuse(line.trim_start_matches("error: "))
            }
        }
    }

    /// Settings that parse but are unsafe, as the one line that names the first of them:
    /// `null` among the allowed origins (a sandboxed iframe or a `file:` page sends
    /// `Origin: null`, which would then be allowed with credentials), a short admin or stats
    /// token (or an empty stats token), and a
    /// trusted proxy network that covers every address (any client could then choose its
    /// address through `X-Forwarded-For`).
    pub fn refuse_unsafe(&self) -> Result<(), String> {
        if self.allowed_origins.iter().any(|origin| origin.trim().eq_ignore_ascii_case("null")) {
            return Err(
                "--allowed-origins (ALLOWED_ORIGINS) must not contain null: any sandboxed iframe or \
                        local file sends Origin: null"
                    .to_owned(),
            );
        }
        check_token_length("--admin-token (ADMIN_TOKEN)", self.admin_token.as_deref())?;
        // An empty admin token turns the export off (closed), but an empty stats token would turn
        // the stats public (open): `STATS_TOKEN=$(cat missing-file)` must not open what the
        // operator meant to close.
        if self.stats_token.as_deref() == Some("") {
            return Err("--stats-token (STATS_TOKEN) is set but empty: unset it to keep the stats public,                         or give a token of at least 32 bytes"
                .to_owned());
        }
        check_token_length("--stats-token (STATS_TOKEN)", self.stats_token.as_deref())?;
        if let Some(everything) = self.trusted_proxies.iter().find(|net| net.prefix_len() == 0) {
            return Err(format!(
                "--trusted-proxies (TRUSTED_PROXIES) must not contain {everything}: it covers every address, \
                 so any client could choose its own through X-Forwarded-For; list the proxies' networks"
            ));
        }
        Ok(())
    }

    /// The writer tasks to run: `WRITE_WORKERS`, else the backend's default.
    pub fn write_workers(&self) -> usize {
        match self.write_workers {
            Some(workers) => workers.get() as usize,
            None if self.database_url.starts_with("sqlite:") => 1,
            None => 2,
        }
    }

    /// The rate limiters' settings (`RATE_LIMIT_*`).
    pub fn rate_limits(&self) -> RateLimitSettings {
        RateLimitSettings {
            writes_per_minute: self.rate_limit_writes_per_minute,
            write_burst: self.rate_limit_write_burst,
            reads_per_minute: self.rate_limit_reads_per_minute,
            read_burst: self.rate_limit_read_burst,
            stats_per_minute: self.rate_limit_stats_per_minute,
            stats_burst: self.rate_limit_stats_burst,
            article_writes_per_hour: self.rate_limit_article_writes_per_hour,
        }
    }

    /// The defaults, for `database_url`, with nothing read from the environment (for tests).
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut config =
            Self::try_parse_from(["reader-reactions"]).unwrap_or_else(|e| panic!("defaults must parse: {e}"));
        config.database_url = database_url.into();
        config
    }
}

/// Largest `TRENDING_MIN_NETWORKS` accepted: a story read from a thousand networks within the
/// hour is big news already; a larger threshold would quietly empty the trending list.
pub const MAX_TRENDING_MIN_NETWORKS: u32 = 1000;

/// Shortest bearer token accepted: as long as the visitor secret, so that guessing one is out of
/// reach.
pub const MIN_TOKEN_BYTES: usize = 32;

/// Refuses to start: one line naming the setting, exit code 2.
pub fn refuse(line: &str) -> ! {
    eprintln!("reader-reactions: {line}");
    std::process::exit(2)
}

/// Checks a bearer-token setting (`setting` names it, e.g. `--admin-token (ADMIN_TOKEN)`): unset
/// or empty (the endpoints it guards are off) or at least [`MIN_TOKEN_BYTES`] long. The message
/// names the setting and the length, never the value.
pub fn check_token_length(setting: &str, token: Option<&str>) -> Result<(), String> {
    match token.map(str::len) {
        Some(length) if length > 0 && length < MIN_TOKEN_BYTES => Err(format!(
            "{setting} must be at least {MIN_TOKEN_BYTES} bytes long (got {length}); generate one with \
             `openssl rand -base64 48`"
        )),
        _ => Ok(()),
    }
}

fn parse_cidr(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not a CIDR such as 10.0.0.0/8 or an IP address"))
}

fn parse_millis_or_zero(raw: &str) -> Result<Duration, String> {
    raw.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{raw:?} is not a number of milliseconds"))
}

fn parse_millis(raw: &str) -> Result<Duration, String> {
    match raw.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{raw:?} is not a positive number of milliseconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_default_to_two_on_postgresql_and_one_on_sqlite_unless_set() {
        assert_eq!(Config::for_database("postgres://db/reactions").write_workers(), 2);
        assert_eq!(Config::for_database("sqlite://reactions.db").write_workers(), 1);
        let mut config = Config::for_database("sqlite://reactions.db");
        config.write_workers = Some(3.try_into().unwrap());
        assert_eq!(config.write_workers(), 3);
    }

    #[test]
    fn a_bearer_token_under_32_bytes_is_refused_without_repeating_it() {
        let short = "x".repeat(MIN_TOKEN_BYTES - 1);
        let line = check_token_length("--stats-token (STATS_TOKEN)", Some(&short)).unwrap_err();
        assert!(line.contains("STATS_TOKEN") && line.contains("got 31"), "{line}");
        assert!(!line.contains(&short), "the token is not repeated: {line}");
        assert!(
            check_token_length("--stats-token (STATS_TOKEN)", Some(&"x".repeat(MIN_TOKEN_BYTES))).is_ok()
        );
        assert!(check_token_length("--stats-token (STATS_TOKEN)", None).is_ok(), "unset: stats public");
        let mut config = Config::for_database("sqlite://unused.db");
        config.stats_token = Some(String::new());
        assert!(config.refuse_unsafe().is_err(), "a stats token set but empty is refused");
    }
}
