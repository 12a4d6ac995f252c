//! Faults under load: the database going away and coming back, the service killed with SIGKILL
//! and restarted, and SIGTERM with writes queued. In each case every acknowledged write must be
//! in the database, and counts must equal rows.
//!
//! The outage test runs its own throwaway PostgreSQL server (the machine's `initdb` and
//! `pg_ctl`, in a temporary directory, on a free port) and really stops and starts it; the
//! shared server the other tests use is never touched. It takes about 20 s, so it is ignored by
//! a plain `cargo test`: run it with `cargo test --test faults -- --ignored --nocapture`.
//! The process tests run the service binary as a child process against the shared server.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // This binary uses the database helpers only.
mod helpers;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reader_reactions::app::identity::{VisitorId, VisitorKey, VisitorSecret};
use reader_reactions::config::Config;
use reader_reactions::startup::Application;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::task::JoinHandle;

use helpers::{Backend, TestDatabase};

/// The visitor secret of every service these tests run, so they can compute stored keys.
const SECRET: &str = "fault-test-secret-fault-test-secret-0001";
const REACTIONS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
const ARTICLES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Load: workers that PUT, each write with a fresh visitor id, and remember every answer.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    /// No HTTP answer: the connection failed or was cut.
    Transport(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    article: String,
    visitor: String,
    reaction: &'static str,
    /// Since the load started.
    started: Duration,
    latency: Duration,
    outcome: Outcome,
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        self.outcome == Outcome::Status(200)
    }

    fn finished(&self) -> Duration {
        self.started + self.latency
    }
}

struct Load {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Attempt>>>,
}

impl Load {
    fn start(base: &str, workers: usize, pause: Duration) -> Self {
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        // The client never gives up first: the service's own timeouts are what is measured.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let workers = (0..workers)
            .map(|id| tokio::spawn(worker(client.clone(), base.to_owned(), id, stop.clone(), epoch, pause)))
            .collect();
        Self { epoch, stop, workers }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let mut attempts = Vec::new();
        for worker in self.workers {
            attempts.extend(worker.await.expect("a load worker does not panic"));
        }
        attempts.sort_by_key(|a| a.started);
        attempts
    }
}

async fn worker(
    client: reqwest::Client,
    base: String,
    id: usize,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    pause: Duration,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    for seq in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let article = format!("article-{}", seq % ARTICLES);
        let visitor = format!("load-{id:02}-{seq:06}");
        let reaction = REACTIONS[(id + seq) % REACTIONS.len()];
        let started = epoch.elapsed();
        let sent = Instant::now();
        let result = client
            .put(format!("{base}/v1/articles/{article}/reaction"))
            .header("x-visitor-id", &visitor)
            .json(&json!({ "reaction": reaction }))
            .send()
            .await;
        let outcome = match result {
            Ok(response) => Outcome::Status(response.status().as_u16()),
            Err(error) => Outcome::Transport(error.to_string()),
        };
        attempts.push(Attempt { article, visitor, reaction, started, latency: sent.elapsed(), outcome });
        tokio::time::sleep(pause).await;
    }
    attempts
}

// ---------------------------------------------------------------------------------------------
// Audit: what the database holds against what was acknowledged.

#[derive(Debug, Default)]
struct Audit {
    attempted: usize,
    acknowledged: usize,
    /// Acknowledged, but not in the database (or with another reaction).
    lost: usize,
    /// Answered with an error or not at all, yet committed: the commit outcome was unknown to
    /// the client, never half-applied (see `assert_counts_match_rows`).
    unacknowledged_but_applied: usize,
    /// Rows that no attempt explains.
    unexplained_rows: usize,
}

fn key_of(visitor: &str) -> Vec<u8> {
    let secret: VisitorSecret = SECRET.parse().unwrap();
    let id = VisitorId::parse(visitor.as_bytes()).unwrap();
    VisitorKey::from_header_id(&secret, &id).as_bytes().to_vec()
}

async fn audit(conn: &mut PgConnection, attempts: &[Attempt]) -> Audit {
    let rows: Vec<(String, Vec<u8>, String)> =
        sqlx::query_as("select article_id, visitor_key, reaction::text from reactions")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    audit_rows(rows, attempts)
}

/// Matches the stored rows (article, visitor key, reaction) with the attempts.
fn audit_rows(rows: Vec<(String, Vec<u8>, String)>, attempts: &[Attempt]) -> Audit {
    let mut stored: HashMap<(String, Vec<u8>), String> =
        rows.into_iter().map(|(article, key, reaction)| ((article, key), reaction)).collect();
    let mut audit = Audit { attempted: attempts.len(), ..Audit::default() };
    for attempt in attempts {
        let held = stored.remove(&(attempt.article.clone(), key_of(&attempt.visitor)));
        let applied = held.as_deref() == Some(attempt.reaction);
        if attempt.acknowledged() {
            audit.acknowledged += 1;
            audit.lost += usize::from(!applied);
        } else {
            audit.unacknowledged_but_applied += usize::from(applied);
        }
    }
    audit.unexplained_rows = stored.len();
    audit
}

async fn assert_counts_match_rows(conn: &mut PgConnection) {
    let mismatches: Vec<(String, String, i64, i64)> =
        sqlx::query_as(helpers::COUNT_MISMATCHES).fetch_all(&mut *conn).await.unwrap();
    assert!(
        mismatches.is_empty(),
        "counts differ from rows (article, reaction, count, rows): {mismatches:?}"
    );
    let rollups: Vec<(String, String, String, String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(helpers::rollup_mismatches_sql(Backend::Postgres)))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert!(rollups.is_empty(), "rollups differ from rows: {rollups:?}");
    let bounds: Vec<(String, Option<String>, i64, Option<i64>)> =
        sqlx::query_as(helpers::BOUND_SHORTFALLS).fetch_all(conn).await.unwrap();
    assert!(bounds.is_empty(), "held bounds below the counts: {bounds:?}");
}

async fn stored_rows(db: &TestDatabase) -> i64 {
    sqlx::query_scalar("select count(*) from reactions").fetch_one(&mut db.connect().await).await.unwrap()
}

fn plenty_of_rate_limit() -> [(&'static str, &'static str); 7] {
    [
        ("RATE_LIMIT_WRITES_PER_MINUTE", "1000000"),
        ("RATE_LIMIT_WRITE_BURST", "1000000"),
        ("RATE_LIMIT_READS_PER_MINUTE", "1000000"),
        ("RATE_LIMIT_READ_BURST", "1000000"),
        ("RATE_LIMIT_STATS_PER_MINUTE", "1000000"),
        ("RATE_LIMIT_STATS_BURST", "1000000"),
        ("RATE_LIMIT_ARTICLE_WRITES_PER_HOUR", "1000000"),
    ]
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL server that can really be stopped.

struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `initdb` in a fresh temporary directory, then start on a free port with trust auth.
    fn start() -> Self {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!("rr-faults-pg-{}", uuid::Uuid::new_v4().simple()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Self { bin, dir, port };
        let dir = server.dir.to_str().unwrap().to_owned();
        server.run("initdb", &["-D", &dir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
        server.start_server();
        server
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn start_server(&self) {
        let dir = self.dir.to_str().unwrap();
        let log = self.dir.join("server.log");
        let options = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1", self.port);
        self.run(
            "pg_ctl",
            &["-D", dir, "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "60", "start"],
        );
    }

    /// Stops the server the hard way: every backend exits at once, as in a crash.
    fn stop_server(&self) {
        self.run("pg_ctl", &["-D", self.dir.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    /// One of the server's tools; as root, run as the `postgres` user (initdb and postgres
    /// refuse to run as root).
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.command(tool).args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {tool} from {} ({e}); as root this needs runuser", self.bin.display())
        });
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "{tool} {args:?} failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.dir.join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", self.dir.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls until the server runs a query (every 20 ms, for at most 60 s).
async fn wait_until_it_answers(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut conn) = PgConnection::connect(url).await
            && sqlx::query("select 1").execute(&mut conn).await.is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not come back within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `PG_BIN`, or the newest `/usr/lib/postgresql/*/bin` that has `pg_ctl`.
fn postgres_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return bin.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("pg_ctl").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the outage test needs PostgreSQL's server binaries (initdb, pg_ctl): none in \
             /usr/lib/postgresql/*/bin and PG_BIN is unset (on Debian: apt install postgresql)"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The service as a child process.

struct Service {
    child: tokio::process::Child,
    base: String,
    /// Every JSON log line after "serving", as the service wrote it; complete once it exited.
    logs: Arc<std::sync::Mutex<Vec<Value>>>,
    _log_reader: JoinHandle<()>,
}

/// Starts the service binary on `database_url` and waits until it serves.
async fn spawn_service(database_url: &str, settings: &[(&str, &str)]) -> Service {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_reader-reactions"));
    command
        .env("DATABASE_URL", database_url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("VISITOR_SECRET", SECRET)
        .envs(plenty_of_rate_limit())
        .envs(settings.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the service binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if entry["fields"]["message"] == "serving" {
                return entry["fields"]["addr"].as_str().map(str::to_owned);
            }
        }
        None
    };
    let address = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .expect("the service serves within 60 s")
        .expect("the service logs its address before it exits");
    // Keep reading, so the service never blocks on a full pipe.
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = logs.clone();
    let log_reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let entry = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "not json": line }));
            kept.lock().unwrap().push(entry);
        }
    });
    Service { child, base: format!("http://{address}"), logs, _log_reader: log_reader }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops and starts a private PostgreSQL server for about 20 s; run: cargo test --test faults -- --ignored"]
async fn a_database_outage_gets_quick_503s_recovers_by_itself_and_loses_nothing() {
    // Arrange: the service in-process, on its own PostgreSQL server.
    let postgres = PrivatePostgres::start();
    let mut config = Config::for_database(postgres.url("reader_reactions"));
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.visitor_secret = Some(SECRET.parse().unwrap());
    let plenty = std::num::NonZeroU32::new(1_000_000).unwrap();
    config.rate_limit_writes_per_minute = plenty;
    config.rate_limit_write_burst = plenty;
    config.rate_limit_article_writes_per_hour = plenty;
    let request_timeout = config.request_timeout;
    let app = Application::build(config).await.expect("the service builds");
    let base = format!("http://{}", app.local_addr());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    // Act: steady writes; PostgreSQL down for 5 s in the middle.
    let load = Load::start(&base, 8, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.stop_server();
    let down_at = load.now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart_at = load.now();
    let postgres = Arc::new(postgres);
    let starting = tokio::task::spawn_blocking({
        let postgres = postgres.clone();
        move || postgres.start_server()
    });
    wait_until_it_answers(&postgres.url("reader_reactions")).await;
    let up_at = load.now();
    starting.await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts = load.finish().await;
    let _ = shutdown.send(());
    server.await.unwrap().expect("the service stops cleanly");

    // Assert: quick 503s while down, recovery without help, nothing acknowledged lost.
    let unexpected: Vec<(Duration, &Outcome)> = attempts
        .iter()
        .filter(|a| !matches!(a.outcome, Outcome::Status(200 | 503)))
        .map(|a| (a.started, &a.outcome))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 200 and 503 (down {down_at:?}, restart {restart_at:?}, up {up_at:?}); {} others, the first: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    let during: Vec<&Attempt> =
        attempts.iter().filter(|a| a.started >= down_at && a.started < restart_at).collect();
    assert!(during.len() >= 8, "the load went on during the outage: {}", during.len());
    // A write that started during the outage is a 503, unless it was still waiting for a
    // connection when PostgreSQL came back (within the acquire timeout) and then succeeded.
    let succeeded_while_down: Vec<_> = during
        .iter()
        .filter(|a| a.outcome != Outcome::Status(503) && a.started + a.latency < restart_at)
        .map(|a| (a.started, a.latency))
        .collect();
    assert!(
        succeeded_while_down.is_empty(),
        "every write answered during the outage ({down_at:?}..{restart_at:?}) is a 503: {succeeded_while_down:?}"
    );
    let mut refusal_latencies: Vec<Duration> =
        attempts.iter().filter(|a| a.outcome == Outcome::Status(503)).map(|a| a.latency).collect();
    refusal_latencies.sort();
    let slowest_refusal = *refusal_latencies.last().unwrap();
    let median_refusal = percentile(&refusal_latencies, 50);
    assert!(
        slowest_refusal < request_timeout + Duration::from_millis(500),
        "no 503 waited past the request timeout: {slowest_refusal:?}"
    );
    // Once the database is known down, the circuit breaker answers at once: only the requests
    // already waiting for a connection when it went away wait for it.
    let mut outage_refusals: Vec<Duration> =
        during.iter().filter(|a| a.outcome == Outcome::Status(503)).map(|a| a.latency).collect();
    outage_refusals.sort();
    let p95_refusal = percentile(&outage_refusals, 95);
    assert!(p95_refusal <= Duration::from_millis(100), "p95 of the outage's 503s: {p95_refusal:?}");

    let first_success = attempts
        .iter()
        .filter(|a| a.started >= up_at && a.acknowledged())
        .map(Attempt::finished)
        .min()
        .expect("writes succeed again after the database is back");
    let recovery = first_success - up_at;
    assert!(recovery <= Duration::from_secs(1), "writes served again within a second: {recovery:?}");
    let settled = first_success + Duration::from_millis(500);
    let failed_after = attempts.iter().filter(|a| a.started >= settled && !a.acknowledged()).count();
    assert_eq!(failed_after, 0, "and stays recovered");

    let mut conn = PgConnection::connect(&postgres.url("reader_reactions")).await.unwrap();
    let audit = audit(&mut conn, &attempts).await;
    assert_counts_match_rows(&mut conn).await;
    eprintln!(
        "outage: {} writes ({} acknowledged, {} answered 503); PostgreSQL stopped for {} ms and \
         answering again {} ms after its restart began; 503s answered in {} ms median, {} ms p95 \
         during the outage, {} ms at most; writes succeeded again {} ms after PostgreSQL answered; acknowledged writes lost: {}; \
         unacknowledged writes applied: {}; unexplained rows: {}",
        audit.attempted,
        audit.acknowledged,
        refusal_latencies.len(),
        millis(restart_at - down_at),
        millis(up_at - restart_at),
        millis(median_refusal),
        millis(p95_refusal),
        millis(slowest_refusal),
        millis(recovery),
        audit.lost,
        audit.unacknowledged_but_applied,
        audit.unexplained_rows,
    );
    assert!(audit.acknowledged > 100, "a real load: {audit:?}");
    assert_eq!(audit.lost, 0, "no acknowledged write is lost: {audit:?}");
    assert_eq!(audit.unexplained_rows, 0, "every row is an attempted write: {audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_then_restart_loses_no_acknowledged_write() {
    sigkill_under_load_then_restart(Backend::Postgres).await;
}

/// SQLite: a write is acknowledged once its transaction is in the write-ahead log, which a killed
/// process leaves behind for the next one to recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigkill_under_load_then_restart_loses_no_acknowledged_write() {
    sigkill_under_load_then_restart(Backend::Sqlite).await;
}

async fn sigkill_under_load_then_restart(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let mut service = spawn_service(&db.url, &[]).await;

    let load = Load::start(&service.base, 8, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.child.start_kill().expect("SIGKILL is sent");
    let killed_at = load.now();
    let status = service.child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts = load.finish().await;
    let restarted = spawn_service(&db.url, &[]).await;

    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    let audit = audit_rows(db.reaction_rows().await, &attempts);
    let mismatches = (db.count_mismatches().await, db.rollup_mismatches().await);
    assert_eq!(mismatches, (vec![], vec![]), "counts and rollups equal the rows (counts, rollups)");
    let before_kill = attempts.iter().filter(|a| a.started < killed_at).count();
    let cut = attempts.iter().filter(|a| a.started < killed_at && !a.acknowledged()).count();
    eprintln!(
        "SIGKILL on {backend:?}: {before_kill} writes sent before the kill ({} acknowledged, {cut} cut off by \
         it); acknowledged writes lost: {}; unacknowledged writes applied: {}",
        audit.acknowledged, audit.lost, audit.unacknowledged_but_applied
    );
    assert!(audit.acknowledged > 50, "a real load before the kill: {audit:?}");
    // Whether a request was in flight at the very instant of the kill is timing; that the load
    // ran into the kill is not.
    assert!(
        attempts.iter().any(|a| a.started >= killed_at && !a.acknowledged()),
        "the load ran into the kill ({cut} requests cut off)"
    );
    assert_eq!(audit.lost, 0, "no acknowledged write is lost: {audit:?}");
    assert_eq!(audit.unexplained_rows, 0, "every row is an attempted write: {audit:?}");

    // The restarted service answers with what was acknowledged.
    let client = reqwest::Client::new();
    let acknowledged: Vec<&Attempt> = attempts.iter().filter(|a| a.acknowledged()).collect();
    for attempt in acknowledged.iter().step_by((acknowledged.len() / 25).max(1)) {
        let summary: Value = client
            .get(format!("{}/v1/articles/{}/reactions", restarted.base, attempt.article))
            .header("x-visitor-id", &attempt.visitor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(summary["viewer_reaction"], attempt.reaction, "{}", attempt.visitor);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_and_answers_every_queued_write_then_exits_0() {
    let db = TestDatabase::create(Backend::Postgres).await;
    // Writes wait 3 s in the queue for company, far longer than they take to arrive, so SIGTERM
    // finds them queued.
    let mut service = spawn_service(&db.url, &[("WRITE_BATCH_DELAY_MS", "3000")]).await;
    let mut writes = Vec::new();
    for i in 0..20 {
        // Returns once the service has the request (its `100 Continue`).
        writes.push(helpers::write_in_flight(&service.base, "drain", &format!("drain-visitor-{i:03}")).await);
    }
    assert_eq!(stored_rows(&db).await, 0, "queued, not yet committed");

    let pid = service.child.id().expect("running").to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().expect("the kill command runs");
    assert!(kill.success());
    // The listener closes at once, while the queued writes still wait for their commit.
    let address = service.base.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(Instant::now() < deadline, "new connections are still accepted 2 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(service.child.try_wait().unwrap().is_none(), "refused while still draining, not after exit");

    for write in writes {
        assert_eq!(helpers::final_status(write).await, 200, "every queued write is answered");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), service.child.wait())
        .await
        .expect("the service exits within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit: {status:?}");
    assert_eq!(stored_rows(&db).await, 20, "and every one committed");
    assert_counts_match_rows(&mut db.connect().await).await;
}

/// The service process's resident memory, from `/proc`.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the service is running");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stores 500,000 reactions (about 30 s); run: cargo test --test faults -- --ignored"]
async fn a_large_export_streams_in_flat_memory_and_a_database_failure_mid_stream_cuts_it() {
    const ROWS: usize = 500_000;
    const TOKEN: &str = "export-test-token-0123456789-0123456789";
    let db = TestDatabase::create(Backend::Postgres).await;
    db.migrate_to(None).await;
    // One (article, reaction) row of the export per reaction: long ids make a large CSV.
    let at: chrono::DateTime<chrono::Utc> = "2025-11-20T10:00:00Z".parse().unwrap();
    let articles: Vec<String> =
        (0..ROWS).map(|i| format!("https://news.example/2025/11/20/a-rather-long-slug-{i:07}")).collect();
    for chunk in articles.chunks(100_000) {
        let rows: Vec<(&str, &str, _)> = chunk.iter().map(|a| (a.as_str(), "love", at)).collect();
        db.insert_reactions(&rows).await;
    }
    let service = spawn_service(&db.url, &[("ADMIN_TOKEN", TOKEN)]).await;
    let pid = service.child.id().expect("running");
    let client = reqwest::Client::new();
    let export = |window: &'static str| {
        client.get(format!("{}/v1/stats/export.csv?{window}", service.base)).bearer_auth(TOKEN).send()
    };
    const ALL: &str = "since=2025-11-20T00:00:00Z&until=2025-11-21T00:00:00Z";

    // Baseline: the service warmed up by an export of an empty window.
    let empty = export("since=2025-11-19T00:00:00Z&until=2025-11-19T01:00:00Z").await.unwrap();
    assert_eq!(empty.text().await.unwrap(), "article_id,reaction,count\r\n");
    let baseline = resident_bytes(pid);

    // The whole export, sampling the service's memory as it arrives.
    let mut response = export(ALL).await.unwrap();
    assert_eq!(response.status(), 200);
    let (mut received, mut lines, mut peak) = (0usize, 0usize, baseline);
    while let Some(chunk) = response.chunk().await.expect("the export completes") {
        received += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        peak = peak.max(resident_bytes(pid));
    }
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "export of {ROWS} rows: {} MiB of CSV; service RSS {} MiB before, peak {} MiB (+{} KiB)",
        received >> 20,
        baseline >> 20,
        peak >> 20,
        growth >> 10
    );
    assert_eq!(lines, ROWS + 1, "every row and the header");
    assert!(
        growth < received as u64 / 4,
        "memory grows with the export: +{growth} bytes for {received} bytes of CSV"
    );

    // A database failure mid-stream: the connection is cut, never ended as if complete.
    let mut response = export(ALL).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    while received < 1 << 20 {
        received += response.chunk().await.unwrap().expect("more than 1 MiB of CSV").len();
    }
    let mut admin = db.connect().await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(terminated.contains(&true), "the export's connection is terminated");
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(received),
            Err(error) => break Err(error),
        }
    };
    assert!(outcome.is_err(), "the body must not end cleanly after {received} bytes: {outcome:?}");
    let health = client.get(format!("{}/readyz", service.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "and the service recovers by itself");
}

/// Every line the service logs while it answers requests carries the request id of the request it
/// is about (the one `X-Request-Id` names), whatever the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_log_line_about_a_request_carries_its_request_id() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut service = spawn_service(&db.url, &[("RUST_LOG", "debug,sqlx=warn,hyper=info,h2=info")]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", service.base);
    let requests = [
        client
            .put(url("/v1/articles/a/reaction"))
            .header("x-visitor-id", "visitor-0001")
            .json(&json!({"reaction": "wow"})),
        client.get(url("/v1/articles/a/reactions")),
        client.put(url("/v1/articles/a/reaction")).header("x-visitor-id", "visitor-0001").body("{not json"),
        client
            .put(url("/v1/articles/a/reaction"))
            .header("x-visitor-id", "bad id")
            .json(&json!({"reaction": "wow"})),
        client
            .put(url("/v1/articles/a/reaction"))
            .header("x-visitor-id", "visitor-0001")
            .json(&json!({"reaction": "meh"})),
        client.get(url("/no/such/route")),
        client.get(url("/v1/stats/export.csv")),
        client.delete(url("/v1/visitors/me")).header("x-visitor-id", "visitor-0001"),
    ];
    let mut ids = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        ids.push((id, response.status().as_u16()));
    }
    let statuses: Vec<u16> = ids.iter().map(|(_, status)| *status).collect();
    assert_eq!(statuses, [200, 200, 415, 400, 422, 404, 404, 200], "the outcomes this test means to log");

    let pid = service.child.id().expect("running").to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::timeout(Duration::from_secs(10), service.child.wait()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the reader drains the closed pipe
    let logs = service.logs.lock().unwrap().clone();

    // From the first request's line to the signal, every line is about a request.
    let first = logs.iter().position(|l| l["span"]["name"] == "request").expect("requests are logged");
    let last = logs.iter().rposition(|l| l["span"]["name"] == "request").unwrap();
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for line in &logs[first..=last] {
        let id = line["span"]["request_id"].as_str().unwrap_or_else(|| panic!("no request id: {line}"));
        *per_request.entry(id.to_owned()).or_default() += 1;
    }
    for (id, status) in &ids {
        let lines = per_request.get(id).copied().unwrap_or(0);
        assert!(lines >= 2, "the {status} answer {id} is logged as it starts and ends: {lines} lines");
    }
    assert_eq!(per_request.len(), ids.len(), "no line names a request that was not made: {per_request:?}");
}

/// The p-th percentile (0–100) of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p).div_ceil(100).saturating_sub(1).min(sorted.len() - 1)]
}
