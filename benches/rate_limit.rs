//! The rate limiter's cost per request, on the layer alone, and its memory with a million
//! distinct clients before and after purging.
//!
//!     cargo bench --bench rate_limit
//!
//! `cargo test --bench rate_limit` runs the memory report and its assertions and each benchmark
//! once, unmeasured (CI does).
//!
//! The memory report runs first and prints one table; criterion then times:
//! - `limiter/check/*`: one `ClassLimiter::check` (one client; a million rotating clients);
//! - `layer/*`: a request through a router with and without the rate-limit middleware, so the
//!   difference is what the layer costs per request (decision, headers and all).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group};
use governor::clock::FakeRelativeClock;
use reader_reactions::http::middleware::client_ip::ClientIp;
use reader_reactions::http::middleware::rate_limit::{ClassLimiter, ClassOf, Limit, RateLimits, rate_limit};
use tower::ServiceExt;

const CLIENTS: u32 = 1_000_000;

fn defaults(per_minute: u32, burst: u32) -> Limit {
    Limit { per_minute: NonZeroU32::new(per_minute).unwrap(), burst: NonZeroU32::new(burst).unwrap() }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn client(i: u32) -> IpAddr {
    // Spread over the IPv4 space so keys are not sequential.
    IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
}

/// A million distinct clients through the write limiter, then a purge once their buckets are full.
fn memory_report() {
    let clock = FakeRelativeClock::default();
    let limiter = ClassLimiter::with_clock("writes", defaults(60, 20), clock.clone());
    let before = rss_mib();
    for i in 0..CLIENTS {
        black_box(limiter.check(client(i)));
    }
    let filled = rss_mib();
    let tracked = limiter.tracked_clients();
    limiter.purge(); // nothing is idle yet: every bucket was just used
    let kept = limiter.tracked_clients();
    clock.advance(Duration::from_secs(2)); // one request each, refilled at one per second
    limiter.purge();
    let purged = limiter.tracked_clients();
    let after = rss_mib();
    println!("rate limiter memory, {CLIENTS} distinct clients (writes quota 60/min, burst 20):");
    println!("| moment | tracked clients | process RSS MiB |");
    println!("|---|---:|---:|");
    println!("| before | 0 | {before:.1} |");
    println!("| after 1,000,000 clients | {tracked} | {filled:.1} |");
    println!("| purge while all are recent | {kept} | - |");
    println!("| purge after their buckets refilled | {purged} | {after:.1} |");
    println!(
        "state per client ≈ {:.0} bytes (RSS growth / clients)",
        (filled - before) * 1024.0 * 1024.0 / f64::from(CLIENTS)
    );
    // What BENCHMARKS.md reports (about 70 bytes a client), with room for allocator noise; run
    // by CI as `cargo test --bench rate_limit` (each benchmark once, unmeasured).
    assert_eq!(tracked, CLIENTS as usize, "every client is tracked");
    assert_eq!(kept, tracked, "a purge keeps clients whose bucket is not full");
    assert_eq!(purged, 0, "idle clients are forgotten");
    let per_client = (filled - before) * 1024.0 * 1024.0 / f64::from(CLIENTS);
    assert!(per_client < 200.0, "state per client: {per_client:.0} bytes");
    assert!(after - before < 32.0, "the purge gives the memory back: {before:.1} -> {after:.1} MiB");
}

fn limiter_check(c: &mut Criterion) {
    let limiter = ClassLimiter::new("reads", defaults(u32::MAX / 2, u32::MAX / 2));
    let one = client(7);
    c.bench_function("limiter/check/one client", |b| b.iter(|| black_box(limiter.check(black_box(one)))));
    let mut i = 0u32;
    c.bench_function("limiter/check/a million rotating clients", |b| {
        b.iter(|| {
            i = (i + 1) % CLIENTS;
            black_box(limiter.check(client(i)))
        })
    });
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let generous = defaults(u32::MAX / 2, u32::MAX / 2);
    let limits = Arc::new(RateLimits {
        writes: ClassLimiter::new("writes", generous),
        reads: ClassLimiter::new("reads", generous),
        stats: ClassLimiter::new("stats", generous),
    });
    let bare = Router::new().route("/", get(|| async { "ok" }));
    let limited =
        bare.clone().route_layer(axum::middleware::from_fn_with_state((limits, ClassOf::Method), rate_limit));
    let request = || {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        request.extensions_mut().insert(ClientIp(client(42)));
        request
    };
    let mut group = c.benchmark_group("layer");
    group.bench_function("without rate limit", |b| {
        b.to_async(&runtime).iter(|| async { black_box(bare.clone().oneshot(request()).await.unwrap()) })
    });
    group.bench_function("with rate limit", |b| {
        b.to_async(&runtime).iter(|| async { black_box(limited.clone().oneshot(request()).await.unwrap()) })
    });
    group.finish();
}

criterion_group!(benches, limiter_check, layer);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
