//! Load for the live counts: opens N Server-Sent-Event streams on one article of a running
//! service, writes a probe reaction on it now and then, and reports the service's memory per
//! stream and the delivery lag from commit to event.
//!
//! ```sh
//! # the service must admit N streams from one address: raise the reads burst for the run
//! RATE_LIMIT_READ_BURST=100000 RATE_LIMIT_READS_PER_MINUTE=1000000 reader-reactions &
//! cargo run --release --example live_streams -- \
//!     --base http://127.0.0.1:8080 --article hot --streams 5000 --seconds 60 --pid $!
//! ```
//!
//! How the lag is measured, honestly: a commit's instant is not visible from outside, so each
//! probe write gives an interval for it, `[sent, acknowledged]` (the write is acknowledged only
//! once committed). Every event carries in its `id` the instant its read started (the counts
//! include every commit before it). For each probe and each stream:
//! - the upper bound is the arrival of the first event whose read started after the
//!   acknowledgement (it surely includes the probe) minus the instant the probe was sent;
//! - the lower bound is the arrival of the first event whose read started after the probe was
//!   sent (no earlier event can include it) minus the acknowledgement.
//!
//! The true lag lies between, and both include the coalescing wait (`LIVE_MIN_INTERVAL_MS`). The
//! upper bound is loose by up to one interval: the read that follows a commit usually starts
//! before the client has its acknowledgement, so the event it produces counts only for the lower
//! bound, and the upper bound waits for the next one. On an article without other writes the
//! lower bound is the lag itself (the first read after the commit is the probe's). Times
//! are wall-clock milliseconds of this machine and the service's: run both on one machine.
//! Other writes to the article (a write benchmark on the same hot article) are welcome: they
//! do not disturb the bounds.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
struct Args {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The article every stream watches and the probes write to.
    #[arg(long, default_value = "live-streams-hot")]
    article: String,
    /// Streams to open.
    #[arg(long, default_value = "500")]
    streams: usize,
    /// Seconds to measure once every stream is open.
    #[arg(long, default_value = "20")]
    seconds: u64,
    /// Milliseconds between two probe writes, on average: each wait is drawn between half and
    /// one and a half times this, so that the probes do not keep one phase of the service's
    /// coalescing interval (which would make every lag alike).
    #[arg(long, default_value = "2000")]
    probe_interval_ms: u64,
    /// The service's process id, to read its resident memory (VmRSS) from /proc.
    #[arg(long)]
    pid: Option<u32>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Resident memory of a process, in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The events of one stream: (read started, arrived), both in ms since the epoch.
type Arrivals = Vec<(u64, u64)>;

async fn stream(
    client: reqwest::Client,
    url: String,
    opened: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Arrivals, String> {
    let answer = client.get(&url).send().await;
    opened.add_permits(1);
    let mut response = answer.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let (mut buffer, mut arrivals) = (Vec::<u8>::new(), Vec::new());
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = stop.wait_for(|stop| *stop) => return Ok(arrivals),
        };
        let Ok(Some(chunk)) = chunk else { return Ok(arrivals) };
        let arrived = now_ms();
        buffer.extend_from_slice(&chunk);
        // Whole events only (a blank line ends one); only their `id` matters here.
        let Some(end) = buffer.windows(2).rposition(|pair| pair == b"\n\n") else { continue };
        for line in buffer[..end].split(|&b| b == b'\n') {
            if let Some(read_at) =
                line.strip_prefix(b"id: ").and_then(|id| std::str::from_utf8(id).ok()?.parse().ok())
            {
                arrivals.push((read_at, arrived));
            }
        }
        buffer.drain(..end + 2);
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// One thread: the client shares the machine with the service it measures, so it should cost as
// little as it can (no wake-ups across worker threads).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let base = args.base.trim_end_matches('/').to_owned();
    let segment = percent_encoding::utf8_percent_encode(&args.article, percent_encoding::NON_ALPHANUMERIC);
    let events_url = format!("{base}/v1/articles/{segment}/events");
    let reaction_url = format!("{base}/v1/articles/{segment}/reaction");
    let rss_before = args.pid.and_then(rss_kb);

    // Every stream on a connection of its own (HTTP/1.1), at most 100 being opened at a time.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let opened = Arc::new(Semaphore::new(0));
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        if i >= 100 {
            // Wait until all but 100 of the streams asked so far have their answer.
            opened.acquire_many((i - 100 + 1) as u32).await?.forget();
            opened.add_permits(i - 100 + 1);
        }
        let (client, url) = (client.clone(), events_url.clone());
        tasks.push(tokio::spawn(stream(client, url, opened.clone(), stopping.clone())));
    }
    opened.acquire_many(args.streams as u32).await?.forget();
    println!("opened {} streams in {:.1} s", args.streams, started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = args.pid.and_then(rss_kb);

    // Probes: one visitor switching between two reactions, so that each probe changes the counts.
    let mut probes: Vec<(u64, u64)> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    let mut n = 0u64;
    while tokio::time::Instant::now() < until {
        let reaction = if n.is_multiple_of(2) { "love" } else { "wow" };
        n += 1;
        let sent = now_ms();
        let answer = client
            .put(&reaction_url)
            .header("x-visitor-id", "live-streams-probe")
            .json(&serde_json::json!({ "reaction": reaction }))
            .send()
            .await;
        let acknowledged = now_ms();
        match answer {
            Ok(response) if response.status().is_success() => probes.push((sent, acknowledged)),
            Ok(response) => eprintln!("probe answered {}", response.status()),
            Err(error) => eprintln!("probe failed: {error}"),
        }
        let wait = rand::Rng::random_range(
            &mut rand::rng(),
            args.probe_interval_ms / 2..=args.probe_interval_ms * 3 / 2,
        );
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    // Time for the last probe's events (at most one LIVE_MIN_INTERVAL_MS, usually 1 s, away).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_end = args.pid.and_then(rss_kb);
    stop.send_replace(true);

    let (mut lower, mut upper, mut missed) = (Vec::new(), Vec::new(), 0usize);
    let mut refused = std::collections::BTreeMap::<String, usize>::new();
    // Each event's fan-out: from its first stream's arrival to its last one's.
    let mut fan_out = std::collections::HashMap::<u64, (u64, u64, usize)>::new();
    for task in tasks {
        let arrivals = match task.await? {
            Ok(arrivals) => arrivals,
            Err(why) => {
                *refused.entry(why).or_default() += 1;
                continue;
            }
        };
        for &(read_at, arrived) in &arrivals {
            let (first, last, streams) = fan_out.entry(read_at).or_insert((arrived, arrived, 0));
            (*first, *last, *streams) = ((*first).min(arrived), (*last).max(arrived), *streams + 1);
        }
        for &(sent, acknowledged) in &probes {
            let first_after = |instant: u64| arrivals.iter().find(|(read_at, _)| *read_at >= instant);
            match (first_after(sent), first_after(acknowledged)) {
                (Some(&(_, low)), Some(&(_, high))) => {
                    lower.push(low.saturating_sub(acknowledged));
                    upper.push(high.saturating_sub(sent));
                }
                _ => missed += 1,
            }
        }
    }
    // Only the events every stream received (not the first events, read at different times).
    let mut spreads: Vec<u64> = fan_out
        .values()
        .filter(|(_, _, streams)| *streams == args.streams)
        .map(|(first, last, _)| last - first)
        .collect();
    spreads.sort_unstable();
    println!(
        "fan-out of an event to all {} streams (first to last arrival), over {} events: p50 {} ms, max {} ms",
        args.streams,
        spreads.len(),
        percentile(&spreads, 0.5),
        percentile(&spreads, 1.0)
    );
    lower.sort_unstable();
    upper.sort_unstable();
    println!("streams refused: {refused:?}");
    println!(
        "probes: {}, (probe, stream) pairs measured: {}, without an event: {missed}",
        probes.len(),
        upper.len()
    );
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        println!("lag {name}: between {} ms and {} ms", percentile(&lower, p), percentile(&upper, p));
    }
    if let (Some(before), Some(open)) = (rss_before, rss_open) {
        let per_stream = (open.saturating_sub(before)) as f64 * 1024.0 / args.streams.max(1) as f64;
        println!(
            "service VmRSS: {before} kB before, {open} kB with the streams open, {} kB at the end; \
             {per_stream:.0} bytes per stream",
            rss_end.unwrap_or(0)
        );
    }
    Ok(())
}
