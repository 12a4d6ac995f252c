//! `spawn_app_on()` and `TestApp`: everything a test needs to drive the service, on either
//! backend, and `TestDatabase`: a fresh database per test, with the few direct reads and writes
//! tests make, in each backend's SQL.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reader_reactions::config::Config;
use reader_reactions::startup::Application;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// A child of this module so that test binaries that include this file by path get it too.
#[path = "pg_server.rs"]
mod pg_server;

/// Everything but the RFC 3986 unreserved characters is percent-encoded, `/` included: an
/// article id is one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The storage backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// A `DATABASE_URL` of this backend that nothing answers: PostgreSQL on the discard port, an
    /// SQLite file in a directory that does not exist.
    pub fn unreachable_url(self) -> String {
        match self {
            Backend::Postgres => "postgres://postgres@127.0.0.1:9/unreachable".to_owned(),
            Backend::Sqlite => {
                let missing =
                    std::env::temp_dir().join(format!("rr-missing-{}", uuid::Uuid::new_v4().simple()));
                format!("sqlite://{}/reactions.db", missing.display())
            }
        }
    }
}

/// A database created for one test and removed when the test ends, pass or fail: a database on
/// the PostgreSQL test server, or an SQLite file of its own.
pub struct TestDatabase {
    pub backend: Backend,
    /// What the service is configured with.
    pub url: String,
    location: Location,
}

enum Location {
    Postgres { name: String },
    Sqlite { path: PathBuf },
}

/// Connects to the PostgreSQL test server as its superuser, or fails the test with one line.
async fn postgres_admin() -> PgConnection {
    let options = pg_server::admin_options().unwrap_or_else(|why| panic!("{why}"));
    PgConnection::connect_with(&options).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {}:{} ({e}); start it, point DATABASE_URL at another server, \
             or unset DATABASE_URL to use a throwaway one",
            options.get_host(),
            options.get_port()
        )
    })
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let name = format!("rr_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = postgres_admin().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
                    .execute(&mut admin)
                    .await
                    .expect("create the test database");
                let options = pg_server::admin_options().expect("the server answered");
                let url = format!(
                    "postgres://{}@{}:{}/{name}",
                    options.get_username(),
                    options.get_host(),
                    options.get_port()
                );
                Self { backend, url, location: Location::Postgres { name } }
            }
            Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("reader-reactions-test-{}.db", uuid::Uuid::new_v4().simple()));
                let url = format!("sqlite://{}", path.display());
                Self { backend, url, location: Location::Sqlite { path } }
            }
        }
    }

    /// A direct connection to this database, which must be a PostgreSQL one.
    pub async fn connect(&self) -> PgConnection {
        let Location::Postgres { name } = &self.location else { panic!("not a PostgreSQL database") };
        let options = pg_server::admin_options().expect("the server answered").database(name);
        PgConnection::connect_with(&options).await.expect("connect to the test database")
    }

    async fn sqlite(&self) -> SqliteConnection {
        SqliteConnection::connect(&self.url).await.expect("open the test database")
    }

    /// Number of reaction rows stored, all articles.
    pub async fn stored_reactions(&self) -> i64 {
        const SQL: &str = "select count(*) from reactions";
        match self.backend {
            Backend::Postgres => sqlx::query_scalar(SQL).fetch_one(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_scalar(SQL).fetch_one(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// Every (article, reaction) whose count differs from its rows, as (article, reaction,
    /// count, rows); counts rows with no reaction rows behind them included.
    pub async fn count_mismatches(&self) -> Vec<(String, String, i64, i64)> {
        match self.backend {
            Backend::Postgres => sqlx::query_as(COUNT_MISMATCHES).fetch_all(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_as(COUNT_MISMATCHES).fetch_all(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// Every rollup row (hourly or daily) whose counts differ from the reaction rows of its
    /// article and bucket, as (rollup, article, bucket, rollup counts, row counts), the counts in
    /// display order; buckets missing on either side included, unless all their counts are zero.
    pub async fn rollup_mismatches(&self) -> Vec<(String, String, String, String, String)> {
        let sql = sqlx::AssertSqlSafe(rollup_mismatches_sql(self.backend));
        match self.backend {
            Backend::Postgres => sqlx::query_as(sql).fetch_all(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_as(sql).fetch_all(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// [`BOUND_SHORTFALLS`] on PostgreSQL once its migrations made the table; nothing otherwise.
    pub async fn bound_shortfalls(&self) -> Vec<(String, Option<String>, i64, Option<i64>)> {
        if self.backend != Backend::Postgres {
            return Vec::new();
        }
        let mut conn = self.connect().await;
        let made: bool = sqlx::query_scalar("select to_regclass('article_held_bounds') is not null")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if !made {
            return Vec::new();
        }
        sqlx::query_as(BOUND_SHORTFALLS).fetch_all(&mut conn).await.unwrap()
    }

    /// Applies this backend's migrations up to and including `version` (all of them with
    /// `None`) through sqlx, as the service or `sqlx migrate run` would.
    pub async fn migrate_to(&self, version: Option<i64>) {
        match self.backend {
            Backend::Postgres => {
                let migrator = &reader_reactions::store::MIGRATOR;
                let mut conn = self.connect().await;
                match version {
                    Some(version) => migrator.run_to(version, &mut conn).await,
                    None => migrator.run(&mut conn).await,
                }
            }
            Backend::Sqlite => {
                let migrator = &reader_reactions::store::SQLITE_MIGRATOR;
                let options: sqlx::sqlite::SqliteConnectOptions = self.url.parse().unwrap();
                let mut conn =
                    SqliteConnection::connect_with(&options.create_if_missing(true)).await.unwrap();
                match version {
                    Some(version) => migrator.run_to(version, &mut conn).await,
                    None => migrator.run(&mut conn).await,
                }
            }
        }
        .expect("the migrations apply");
    }

    /// Every reaction row: (article, visitor key, reaction key).
    #[allow(dead_code)] // The fault tests' audit; the API tests compare counts instead.
    pub async fn reaction_rows(&self) -> Vec<(String, Vec<u8>, String)> {
        const SQL: &str = "select article_id, visitor_key, cast(reaction as text) from reactions";
        match self.backend {
            Backend::Postgres => sqlx::query_as(SQL).fetch_all(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_as(SQL).fetch_all(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// The network keys stored with `article`'s reactions, one per reaction (null: none).
    pub async fn network_keys(&self, article: &str) -> Vec<Option<Vec<u8>>> {
        const SQL: &str = "select network from reactions where article_id = $1";
        match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar(SQL).bind(article).fetch_all(&mut self.connect().await).await
            }
            Backend::Sqlite => {
                sqlx::query_scalar(SQL).bind(article).fetch_all(&mut self.sqlite().await).await
            }
        }
        .unwrap()
    }

    /// Every visitor key stored, as bytes.
    pub async fn visitor_keys(&self) -> Vec<Vec<u8>> {
        const SQL: &str = "select visitor_key from reactions";
        match self.backend {
            Backend::Postgres => sqlx::query_scalar(SQL).fetch_all(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_scalar(SQL).fetch_all(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// Replaces today's fingerprint salt with another, behind the service's back; answers how
    /// many salts were replaced.
    pub async fn rotate_todays_salt(&self) -> u64 {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        let today = Utc::now().date_naive();
        const SQL: &str = "update visitor_salts set salt = $1 where day = $2";
        match self.backend {
            Backend::Postgres => sqlx::query(SQL)
                .bind(salt.as_slice())
                .bind(today)
                .execute(&mut self.connect().await)
                .await
                .map(|done| done.rows_affected()),
            Backend::Sqlite => sqlx::query(SQL)
                .bind(salt.as_slice())
                .bind(today)
                .execute(&mut self.sqlite().await)
                .await
                .map(|done| done.rows_affected()),
        }
        .unwrap()
    }

    /// Stores a fingerprint salt for the day `days_ago` days before today, created `age` ago.
    pub async fn insert_salt(&self, days_ago: i64, age: chrono::TimeDelta) {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        let day = Utc::now().date_naive() - chrono::TimeDelta::days(days_ago);
        let created_at = Utc::now() - age;
        match self.backend {
            Backend::Postgres => {
                sqlx::query("insert into visitor_salts (day, salt, created_at) values ($1, $2, $3)")
                    .bind(day)
                    .bind(salt.as_slice())
                    .bind(created_at)
                    .execute(&mut self.connect().await)
                    .await
                    .map(drop)
            }
            Backend::Sqlite => {
                sqlx::query("insert into visitor_salts (day, salt, created_at) values ($1, $2, $3)")
                    .bind(day)
                    .bind(salt.as_slice())
                    .bind(created_at.timestamp_micros())
                    .execute(&mut self.sqlite().await)
                    .await
                    .map(drop)
            }
        }
        .unwrap();
    }

    /// The days of the stored salts, as days before today, oldest first.
    pub async fn salt_days_ago(&self) -> Vec<i64> {
        const SQL: &str = "select day from visitor_salts order by day";
        let days: Vec<chrono::NaiveDate> = match self.backend {
            Backend::Postgres => sqlx::query_scalar(SQL).fetch_all(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_scalar(SQL).fetch_all(&mut self.sqlite().await).await,
        }
        .unwrap();
        let today = Utc::now().date_naive();
        days.into_iter().map(|day| (today - day).num_days()).collect()
    }

    /// Stores reactions `(article, reaction key, time of the last change)` straight into both
    /// tables, each by a visitor of its own from a client network of its own (a random network
    /// key, once the schema has them), keeping every count equal to its rows.
    pub async fn insert_reactions(&self, rows: &[(&str, &str, DateTime<Utc>)]) {
        // Upgrade tests store reactions under an older schema, without networks.
        let with_networks = self.has_reaction_networks().await;
        let articles: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let reactions: Vec<&str> = rows.iter().map(|r| r.1).collect();
        let random = |length: usize| {
            let mut key = vec![0u8; length];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            key
        };
        let visitors: Vec<Vec<u8>> = rows.iter().map(|_| random(32)).collect();
        let networks: Vec<Vec<u8>> = rows.iter().map(|_| random(16)).collect();
        match self.backend {
            Backend::Postgres => {
                let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.2).collect();
                let mut conn = self.connect().await;
                sqlx::query(if with_networks {
                    "insert into reactions (article_id, visitor_key, reaction, updated_at, network)
                     select article_id, visitor_key, reaction::reaction, updated_at, network
                     from unnest($1::text[], $2::bytea[], $3::text[], $4::timestamptz[], $5::bytea[])
                       as s(article_id, visitor_key, reaction, updated_at, network)"
                } else {
                    "insert into reactions (article_id, visitor_key, reaction, updated_at)
                     select article_id, visitor_key, reaction::reaction, updated_at
                     from unnest($1::text[], $2::bytea[], $3::text[], $4::timestamptz[])
                       as s(article_id, visitor_key, reaction, updated_at)"
                })
                .bind(&articles)
                .bind(&visitors)
                .bind(&reactions)
                .bind(&times)
                .bind(with_networks.then_some(&networks))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(
                    "insert into article_reaction_counts (article_id, reaction, count)
                     select article_id, reaction, count(*) from reactions group by 1, 2
                     on conflict (article_id, reaction) do update set count = excluded.count",
                )
                .execute(&mut conn)
                .await
                .unwrap();
            }
            Backend::Sqlite => {
                // SQLite has no array parameters: one JSON array of rows, unpacked by json_each.
                let json: Vec<Value> = rows
                    .iter()
                    .zip(visitors.iter().zip(&networks))
                    .map(|((article, reaction, at), (visitor, network))| {
                        json!([article, reaction, at.timestamp_micros(), hex(visitor), hex(network)])
                    })
                    .collect();
                let mut conn = self.sqlite().await;
                sqlx::query(if with_networks {
                    "insert into reactions (article_id, visitor_key, reaction, updated_at, network)
                     select value ->> 0, unhex(value ->> 3), value ->> 1, value ->> 2, unhex(value ->> 4)
                     from json_each($1)"
                } else {
                    "insert into reactions (article_id, visitor_key, reaction, updated_at)
                     select value ->> 0, unhex(value ->> 3), value ->> 1, value ->> 2 from json_each($1)"
                })
                .bind(Value::Array(json).to_string())
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(
                    "insert into article_reaction_counts (article_id, reaction, count)
                     select article_id, reaction, count(*) from reactions where true group by 1, 2
                     on conflict (article_id, reaction) do update set count = excluded.count",
                )
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
    }

    /// Whether `reactions` has the `network` column yet (migration 20261201000001).
    async fn has_reaction_networks(&self) -> bool {
        match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar(
                    "select exists (select 1 from information_schema.columns
                                where table_name = 'reactions' and column_name = 'network')",
                )
                .fetch_one(&mut self.connect().await)
                .await
            }
            Backend::Sqlite => {
                sqlx::query_scalar(
                    "select count(*) > 0 from pragma_table_info('reactions') where name = 'network'",
                )
                .fetch_one(&mut self.sqlite().await)
                .await
            }
        }
        .unwrap()
    }

    /// Empties `reactions` and the counts behind the service's back, as an operator would:
    /// `truncate` on PostgreSQL, `delete` on SQLite (which has no truncate).
    pub async fn empty_reactions(&self) {
        match self.backend {
            Backend::Postgres => sqlx::raw_sql("truncate reactions, article_reaction_counts")
                .execute(&mut self.connect().await)
                .await
                .map(drop),
            Backend::Sqlite => sqlx::raw_sql("delete from reactions; delete from article_reaction_counts")
                .execute(&mut self.sqlite().await)
                .await
                .map(drop),
        }
        .unwrap();
    }

    /// Sets the time of the last change of every reaction on `article`, or of every reaction.
    pub async fn set_updated_at(&self, article: Option<&str>, at: DateTime<Utc>) {
        match self.backend {
            Backend::Postgres => {
                sqlx::query("update reactions set updated_at = $1 where $2::text is null or article_id = $2")
                    .bind(at)
                    .bind(article)
                    .execute(&mut self.connect().await)
                    .await
                    .map(drop)
            }
            Backend::Sqlite => {
                sqlx::query("update reactions set updated_at = $1 where $2 is null or article_id = $2")
                    .bind(at.timestamp_micros())
                    .bind(article)
                    .execute(&mut self.sqlite().await)
                    .await
                    .map(drop)
            }
        }
        .unwrap();
    }

    /// Runs one statement straight on the database, behind the service's back.
    pub async fn execute(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        match self.backend {
            Backend::Postgres => {
                sqlx::query(sql).execute(&mut self.connect().await).await.map(|d| d.rows_affected())
            }
            Backend::Sqlite => {
                sqlx::query(sql).execute(&mut self.sqlite().await).await.map(|d| d.rows_affected())
            }
        }
    }

    /// One integer from a query run straight on the database, behind the service's back.
    pub async fn query_i64(&self, sql: &'static str) -> i64 {
        match self.backend {
            Backend::Postgres => sqlx::query_scalar(sql).fetch_one(&mut self.connect().await).await,
            Backend::Sqlite => sqlx::query_scalar(sql).fetch_one(&mut self.sqlite().await).await,
        }
        .unwrap()
    }

    /// Takes the database's write lock from a connection of its own and holds it until
    /// [`WriteLock::release`]: `lock table` on PostgreSQL (reads go on), `begin immediate` on
    /// SQLite. The service's writes wait for it, up to their statement (busy) timeout.
    pub async fn lock_writes(&self) -> WriteLock {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self.connect().await;
                sqlx::raw_sql("begin; lock table reactions in exclusive mode")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteLock::Postgres(conn)
            }
            Backend::Sqlite => {
                let mut conn = self.sqlite().await;
                sqlx::raw_sql("begin immediate").execute(&mut conn).await.unwrap();
                WriteLock::Sqlite(conn)
            }
        }
    }

    /// Everything the database holds, as text: `pg_dump`'s data, or the SQLite file and its
    /// write-ahead log, byte for byte.
    pub async fn dump(&self) -> String {
        match &self.location {
            Location::Postgres { .. } => {
                let dump = std::process::Command::new("pg_dump")
                    .args(["--no-owner", "--data-only", "--dbname", &self.url])
                    .output()
                    .expect("pg_dump runs");
                assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
                String::from_utf8_lossy(&dump.stdout).into_owned()
            }
            Location::Sqlite { path } => {
                let mut bytes = std::fs::read(path).expect("read the database file");
                bytes.extend(std::fs::read(wal_path(path)).unwrap_or_default());
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// A write lock held on a test database; see [`TestDatabase::lock_writes`].
pub enum WriteLock {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl WriteLock {
    /// Ends the locking transaction, having written nothing.
    pub async fn release(self) {
        match self {
            WriteLock::Postgres(mut conn) => sqlx::raw_sql("rollback").execute(&mut conn).await.map(drop),
            WriteLock::Sqlite(mut conn) => sqlx::raw_sql("rollback").execute(&mut conn).await.map(drop),
        }
        .unwrap();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn wal_path(path: &std::path::Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.location {
            Location::Postgres { name } => {
                let name = name.clone();
                // Drop runs inside the test's runtime; do the async work on a runtime of its own.
                let result = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
                        async {
                            let mut admin = postgres_admin().await;
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                r#"drop database if exists "{name}" with (force)"#
                            )))
                            .execute(&mut admin)
                            .await
                        },
                    )
                })
                .join();
                if !matches!(result, Ok(Ok(_))) {
                    eprintln!("warning: could not drop test database {name}", name = self.url);
                }
            }
            Location::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(file));
                }
                // The generated visitor secret's key file, when the service made one.
                let _ = std::fs::remove_file(reader_reactions::app::identity::key_file_for(path));
            }
        }
    }
}

/// A running service on a fresh database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: Arc<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The configuration tests run with: a free port, a fixed secret, nothing from the environment
/// but `DATABASE_URL`.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::for_database(database_url);
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.visitor_secret = Some("test-secret-test-secret-test-secret-0123".parse().unwrap());
    // Other instances' writes show within this; tests with several instances wait it out.
    config.cache_ttl = CACHE_TTL;
    // Tests that are not about rate limiting must not trip over it.
    let plenty = std::num::NonZeroU32::new(1_000_000).unwrap();
    config.rate_limit_writes_per_minute = plenty;
    config.rate_limit_write_burst = plenty;
    config.rate_limit_reads_per_minute = plenty;
    config.rate_limit_read_burst = plenty;
    config.rate_limit_stats_per_minute = plenty;
    config.rate_limit_stats_burst = plenty;
    config.rate_limit_article_writes_per_hour = plenty;
    config
}

/// The read cache's freshness bound in tests.
pub const CACHE_TTL: Duration = Duration::from_millis(300);

/// A running service on a fresh database of `backend`. Test files call their suite's
/// `spawn_app()`, which names the backend.
pub async fn spawn_app_on(backend: Backend) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let config = test_config(&db.url);
    spawn_with(db, config).await
}

pub async fn spawn_with(db: TestDatabase, config: Config) -> TestApp {
    spawn_on(Arc::new(db), config).await
}

async fn spawn_on(db: Arc<TestDatabase>, config: Config) -> TestApp {
    init_logs();
    let app = Application::build(config).await.expect("the service builds");
    let address = format!("http://{}", app.local_addr());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        db,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A client whose connections come from `127.10.{network}.{host}`, an address of the client
/// network (IPv4 /24) `127.10.{network}.0/24`: Linux delivers all of 127.0.0.0/8 to the
/// loopback, so a test can be many networks at once without a proxy in between.
pub fn client_in_network(network: u8, host: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 10, network, host]))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Logs only when a test asks for them: `TEST_LOG=1 cargo test`.
fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
        }
    });
}

/// Percent-encodes an article id as one path segment.
pub fn segment(article_id: &str) -> String {
    utf8_percent_encode(article_id, SEGMENT).to_string()
}

impl TestApp {
    /// Stops the service gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let TestApp { db, .. } = self;
        let config = test_config(&db.url);
        spawn_on(db, config).await
    }

    /// A second service instance on the same database, as behind a load balancer.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(test_config(&self.db.url)).await
    }

    /// A second instance on the same database with its own configuration.
    pub async fn another_instance_with(&self, config: Config) -> TestApp {
        spawn_on(self.db.clone(), config).await
    }

    /// Stops the service gracefully and waits for it to finish.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task does not panic").expect("the server stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        visitor: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        self.request_by(&self.client, method, path, visitor, body).await
    }

    /// [`TestApp::request`] sent by `client` (say one of [`client_in_network`]).
    pub async fn request_by(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        visitor: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = client.request(method, self.url(path));
        if let Some(visitor) = visitor {
            request = request.header("X-Visitor-Id", visitor);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the request is answered")
    }

    pub async fn get_reactions(&self, article_id: &str, visitor: Option<&str>) -> Response {
        self.request(Method::GET, &format!("/v1/articles/{}/reactions", segment(article_id)), visitor, None)
            .await
    }

    pub async fn put_reaction(&self, article_id: &str, visitor: &str, reaction: &str) -> Response {
        self.put_reaction_by(&self.client, article_id, visitor, reaction).await
    }

    /// [`TestApp::put_reaction`] sent by `client`.
    pub async fn put_reaction_by(
        &self,
        client: &reqwest::Client,
        article_id: &str,
        visitor: &str,
        reaction: &str,
    ) -> Response {
        let path = format!("/v1/articles/{}/reaction", segment(article_id));
        self.request_by(client, Method::PUT, &path, Some(visitor), Some(json!({ "reaction": reaction })))
            .await
    }

    pub async fn delete_reaction(&self, article_id: &str, visitor: &str) -> Response {
        let path = format!("/v1/articles/{}/reaction", segment(article_id));
        self.request(Method::DELETE, &path, Some(visitor), None).await
    }

    pub async fn batch(&self, article_ids: &[&str], visitor: Option<&str>) -> Response {
        let query: Vec<String> = article_ids.iter().map(|id| format!("article_id={}", segment(id))).collect();
        self.request(Method::GET, &format!("/v1/reactions?{}", query.join("&")), visitor, None).await
    }

    pub async fn erase_me(&self, visitor: &str) -> Response {
        self.request(Method::DELETE, "/v1/visitors/me", Some(visitor), None).await
    }

    /// The summary of one article, asserting a 200.
    pub async fn summary(&self, article_id: &str, visitor: Option<&str>) -> Value {
        json_ok(self.get_reactions(article_id, visitor).await).await
    }

    /// Checks the invariants against the tables: every count equals the rows holding that
    /// reaction, no count row is missing, every hourly and daily rollup row equals the rows
    /// of its article and bucket, and (PostgreSQL) every article's held bound covers its counts.
    pub async fn assert_counts_match_rows(&self) {
        let mismatches = self.db.count_mismatches().await;
        assert!(
            mismatches.is_empty(),
            "counts differ from rows (article, reaction, count, rows): {mismatches:?}"
        );
        let mismatches = self.db.rollup_mismatches().await;
        assert!(
            mismatches.is_empty(),
            "rollups differ from rows (rollup, article, bucket, rollup counts, row counts): {mismatches:?}"
        );
        let shortfalls = self.db.bound_shortfalls().await;
        assert!(
            shortfalls.is_empty(),
            "held bounds below the counts (article, reaction or total, held, bound): {shortfalls:?}"
        );
    }

    /// Number of reaction rows stored, all articles.
    pub async fn stored_reactions(&self) -> i64 {
        self.db.stored_reactions().await
    }
}

/// A write sent over a socket of its own with `Expect: 100-continue`: answers once the service
/// has read the request and its handler has started reading the body (hyper sends the interim
/// `100 Continue` then), so the write is in the service's hands. The returned stream reads the
/// final answer.
pub async fn write_in_flight(base: &str, article: &str, visitor: &str) -> BufReader<TcpStream> {
    let address = base.trim_start_matches("http://");
    let body = r#"{"reaction":"love"}"#;
    let request = format!(
        "PUT /v1/articles/{}/reaction HTTP/1.1\r\nHost: {address}\r\nX-Visitor-Id: {visitor}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{body}",
        segment(article),
        body.len()
    );
    let mut stream = BufReader::new(TcpStream::connect(address).await.unwrap());
    stream.get_mut().write_all(request.as_bytes()).await.unwrap();
    let mut interim = String::new();
    stream.read_line(&mut interim).await.unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n", "the service takes the request");
    let mut blank = String::new();
    stream.read_line(&mut blank).await.unwrap();
    assert_eq!(blank, "\r\n");
    stream
}

/// The status of the final answer on a stream from [`write_in_flight`].
pub async fn final_status(mut stream: BufReader<TcpStream>) -> u16 {
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.unwrap();
    status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| {
        panic!("not an HTTP status line: {status_line:?}");
    })
}

/// Asserts a 200 with a JSON body and returns the body.
#[track_caller]
pub fn json_ok(response: Response) -> impl std::future::Future<Output = Value> {
    let caller = std::panic::Location::caller();
    async move {
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "expected 200 at {caller}, body: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON at {caller} ({e}): {body}"))
    }
}

/// Asserts an error status with a problem+json body naming that status, and returns the body.
pub async fn assert_problem(response: Response, status: StatusCode, why: &str) -> Value {
    let actual = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "{why}: wrong status, body: {body}");
    assert_eq!(content_type, "application/problem+json", "{why}: wrong content type, body: {body}");
    let problem: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{why}: problem is not JSON ({e})"));
    for field in ["type", "title", "detail"] {
        assert!(
            problem[field].as_str().is_some_and(|s| !s.is_empty()),
            "{why}: problem lacks {field}: {body}"
        );
    }
    assert_eq!(problem["status"], status.as_u16(), "{why}: problem status field");
    problem
}

/// A top list as the stats API answers it: `[{"article_id": …, "count": …}, …]`.
pub fn ranked(pairs: &[(&str, i64)]) -> Value {
    Value::Array(pairs.iter().map(|(id, n)| json!({"article_id": id, "count": n})).collect())
}

/// The top list of every (article, reaction, last change) row inside `[since, until)`: the
/// articles with the most reactions of `reaction` (all when `None`), most first, ties by article
/// id, at most `limit`.
pub fn expected_top<'a>(
    rows: &[(&'a str, &str, DateTime<Utc>)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    reaction: Option<&str>,
    limit: usize,
) -> Vec<(&'a str, i64)> {
    let mut counts: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (article, key, at) in rows {
        if since <= *at && *at < until && reaction.is_none_or(|k| k == *key) {
            *counts.entry(article).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, i64)> = counts.into_iter().collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    ranked.truncate(limit);
    ranked
}

/// The counts object with every reaction zero except the given ones.
pub fn counts(nonzero: &[(&str, i64)]) -> Value {
    let mut counts = json!({"like": 0, "dislike": 0, "love": 0, "funny": 0, "angry": 0, "sad": 0, "wow": 0});
    for (key, n) in nonzero {
        counts[*key] = json!(n);
    }
    counts
}

/// Every (article, reaction) whose count differs from its rows, as (article, reaction, count,
/// rows); counts rows with no reaction rows behind them included. Both backends.
pub const COUNT_MISMATCHES: &str = "
    select coalesce(c.article_id, r.article_id), cast(coalesce(c.reaction, r.reaction) as text),
           coalesce(c.count, 0), coalesce(r.n, 0)
    from article_reaction_counts c
    full join (select article_id, reaction, count(*) as n from reactions group by 1, 2) r
      on r.article_id = c.article_id and r.reaction = c.reaction
    where coalesce(c.count, 0) <> coalesce(r.n, 0)";

/// Every article and reaction whose held count exceeds its held bound (the bounds' threshold
/// without a row), and every article whose held total does, as (article, reaction or none for
/// the total, held, bound): PostgreSQL's `article_held_bounds`, which the top lists of long
/// windows read (empty where that table does not exist yet: a schema before it, SQLite).
pub const BOUND_SHORTFALLS: &str = "
    select h.article_id, h.reaction::text, h.held, b.bound
    from (select article_id, reaction, sum(count)::int8 as held
          from article_reaction_counts
          group by grouping sets ((article_id, reaction), (article_id))) h
    left join article_held_bounds b
      on b.article_id = h.article_id and b.reaction is not distinct from h.reaction
    where h.held > coalesce(b.bound, article_held_bounds_threshold())";

/// The query behind [`TestDatabase::rollup_mismatches`] on `backend`.
pub fn rollup_mismatches_sql(backend: Backend) -> String {
    const KEYS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
    let list = |side: &str| KEYS.map(|k| format!("coalesce({side}.{k}_count, 0)")).join(", ");
    let differ = KEYS.map(|k| format!("coalesce(h.{k}_count, 0) <> coalesce(r.{k}_count, 0)")).join(" or ");
    let rolled = "select 'hourly' as width, * from reaction_counts_hourly
                  union all select 'daily', * from reaction_counts_daily";
    match backend {
        Backend::Postgres => {
            let held_columns =
                KEYS.map(|k| format!("count(*) filter (where reaction = '{k}') as {k}_count")).join(", ");
            let sql = format!(
                "with held as (
                     select b.width, article_id, b.start, {held_columns}
                     from reactions
                     cross join lateral (values
                         ('hourly', date_bin('1 hour', updated_at, timestamptz '1970-01-01 00:00:00+00')),
                         ('daily', date_bin('1 day', updated_at, timestamptz '1970-01-01 00:00:00+00'))) as b(width, start)
                     group by 1, 2, 3
                 ), rolled as ({rolled})
                 select coalesce(h.width, r.width), coalesce(h.article_id, r.article_id),
                        coalesce(h.start, r.bucket_start)::text,
                        concat_ws(',', {r}), concat_ws(',', {h})
                 from held h full join rolled r
                   on r.width = h.width and r.article_id = h.article_id and r.bucket_start = h.start
                 where {differ}",
                r = list("r"),
                h = list("h"),
            );
            sql
        }
        Backend::Sqlite => {
            let held = |width: &str, micros: i64| {
                let columns = KEYS.map(|k| format!("sum(reaction = '{k}') as {k}_count")).join(", ");
                format!(
                    "select '{width}' as width, article_id,
                            updated_at - ((updated_at % {micros}) + {micros}) % {micros} as start, {columns}
                     from reactions group by 1, 2, 3"
                )
            };
            let sql = format!(
                "with held as ({} union all {}), rolled as ({rolled})
                 select coalesce(h.width, r.width), coalesce(h.article_id, r.article_id),
                        cast(coalesce(h.start, r.bucket_start) as text),
                        concat_ws(',', {r}), concat_ws(',', {h})
                 from held h full join rolled r
                   on r.width = h.width and r.article_id = h.article_id and r.bucket_start = h.start
                 where {differ}",
                held("hourly", 3_600_000_000),
                held("daily", 86_400_000_000),
                r = list("r"),
                h = list("h"),
            );
            sql
        }
    }
}
