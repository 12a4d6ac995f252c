//! Prometheus metrics through the `metrics` facade, rendered at `/metrics` in the text format
//! (version 0.0.4).
//!
//! Recorded where things happen (HTTP layer, write path, rate limiter); the gauges that describe
//! state (queue depth, pool use, cache size) are set when `/metrics` is scraped.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Reaction;

/// Latency buckets in seconds, from a cache hit to a request timeout.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Write batch sizes.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// The process-wide recorder; installed once, shared by every service instance in the process.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("write_batch_size".into()), BATCH_BUCKETS))
            .expect("bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (e.g. by an embedding program); then our
        // metrics go there and /metrics shows what this handle has.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests answered, by method, route and status");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer HTTP requests, by method, route and status"
    );
    describe_counter!(
        "reactions_written_total",
        "Reaction changes committed, by the reaction set (`none` for a removal)"
    );
    describe_counter!("rate_limited_total", "Requests refused by the rate limiter, by class");
    describe_gauge!(
        crate::store::DB_KNOWN_DOWN_GAUGE,
        "1 while the database is known to be down and requests needing it get 503 at once"
    );
    describe_counter!(
        "connections_over_capacity_total",
        "Connections accepted past MAX_CONNECTIONS (served only for the probes, or answered 503)"
    );
    describe_histogram!("write_batch_size", "Changes committed per write transaction");
    describe_histogram!("write_commit_seconds", Unit::Seconds, "Time to commit one write batch");
    describe_counter!(
        "write_batches_failed_total",
        "Write batches that failed (every request in them got a 503)"
    );
    describe_gauge!("write_queue_depth", "Changes waiting for a writer");
    describe_gauge!("db_pool_connections", "Database connections of this instance, by state (idle, in_use)");
    describe_gauge!("db_pool_max_connections", "Largest number of database connections this instance opens");
    describe_gauge!("read_cache_articles", "Articles whose counts are cached");
    describe_counter!(
        "read_cache_fills_total",
        "Database reads of the read cache's filler (each for the misses and refreshes of many requests)"
    );
    describe_counter!(
        "read_cache_filled_articles_total",
        "Articles read by the read cache's filler, each once per read, by cause: `miss` (a request waited for it), `refresh` (read ahead of expiry)"
    );
    describe_gauge!("live_streams", "Live-count streams (/events) open on this instance");
    describe_counter!(
        "live_streams_dropped_total",
        "Live-count streams ended because their client fell behind"
    );
    // Exported from the start, so that a failure rate is 0 rather than absent until the first one.
    counter!("write_batches_failed_total").absolute(0);
}

/// One answered HTTP request, by method, route template and status (all bounded label values).
pub fn http_request(method: &'static str, route: &'static str, status: &'static str, seconds: f64) {
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!("http_requests_total", &labels).increment(1);
    histogram!("http_request_duration_seconds", &labels).record(seconds);
}

/// One committed write batch.
pub fn write_batch_committed(size: usize, seconds: f64, reactions: impl Iterator<Item = Option<Reaction>>) {
    histogram!("write_batch_size").record(size as f64);
    histogram!("write_commit_seconds").record(seconds);
    // Counted per batch, one registry lookup per kind rather than per reaction.
    let mut written = [0u64; Reaction::ALL.len() + 1];
    for reaction in reactions {
        written[reaction.map_or(Reaction::ALL.len(), Reaction::index)] += 1;
    }
    for (slot, n) in written.into_iter().enumerate().filter(|(_, n)| *n > 0) {
        let key = Reaction::ALL.get(slot).map_or("none", |r| r.key());
        counter!("reactions_written_total", "reaction" => key).increment(n);
    }
}

/// One failed write batch.
pub fn write_batch_failed(seconds: f64) {
    histogram!("write_commit_seconds").record(seconds);
    counter!("write_batches_failed_total").increment(1);
}

/// One read of the read cache's filler: `missed` distinct articles requests wait for,
/// `refreshed` distinct others read ahead of their expiry.
pub fn read_cache_fill(missed: usize, refreshed: usize) {
    counter!("read_cache_fills_total").increment(1);
    counter!("read_cache_filled_articles_total", "cause" => "miss").increment(missed as u64);
    counter!("read_cache_filled_articles_total", "cause" => "refresh").increment(refreshed as u64);
}

/// A request refused by the rate limiter.
pub fn rate_limited(class: &'static str) {
    counter!("rate_limited_total", "class" => class).increment(1);
}

/// Live-count streams open now.
pub fn live_streams(open: usize) {
    gauge!("live_streams").set(open as f64);
}

/// A live-count stream dropped because its client fell behind.
pub fn live_stream_dropped() {
    counter!("live_streams_dropped_total").increment(1);
}

/// A connection accepted past the connection cap.
pub fn connection_refused() {
    counter!("connections_over_capacity_total").increment(1);
}

/// State sampled at scrape time.
pub struct Snapshot {
    pub queued_writes: usize,
    pub pool_size: u32,
    pub pool_idle: usize,
    pub pool_max: u32,
    pub cached_articles: usize,
}

/// The text exposition, after setting the sampled gauges.
pub fn render(snapshot: Snapshot) -> String {
    let handle = handle();
    gauge!("write_queue_depth").set(snapshot.queued_writes as f64);
    gauge!("db_pool_connections", "state" => "idle").set(snapshot.pool_idle as f64);
    gauge!("db_pool_connections", "state" => "in_use")
        .set(snapshot.pool_size.saturating_sub(snapshot.pool_idle as u32) as f64);
    gauge!("db_pool_max_connections").set(f64::from(snapshot.pool_max));
    gauge!("read_cache_articles").set(snapshot.cached_articles as f64);
    handle.run_upkeep();
    handle.render()
}
