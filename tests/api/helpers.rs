//! `spawn_app()` and `TestApp`: everything a test needs to drive the service.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reader_reactions::config::Config;
use reader_reactions::startup::Application;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything but the RFC 3986 unreserved characters is percent-encoded, `/` included: an
/// article id is one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The server the tests create their databases on: `DATABASE_URL` (its database part is
/// ignored) or the local default.
fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    url.parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"))
}

async fn admin_connection() -> PgConnection {
    let options = server_options().database("postgres");
    match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "cannot reach PostgreSQL at {}:{} ({e}); start it (`pg_ctlcluster --skip-systemctl-redirect \
             $(ls /etc/postgresql) main start`, or `docker compose up -d postgres`) or point DATABASE_URL at one",
            options.get_host(),
            options.get_port()
        ),
    }
}

/// A database created for one test and dropped when the test ends, pass or fail.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("rr_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let options = server_options().database(&name);
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        Self { name, url }
    }

    /// A direct connection, for asserting against the tables.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&server_options().database(&self.name))
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a runtime of its own.
        let result = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let mut admin = admin_connection().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(r#"drop database if exists "{name}" with (force)"#)))
                    .execute(&mut admin)
                    .await
            })
        })
        .join();
        if !matches!(result, Ok(Ok(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
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

pub async fn spawn_app() -> TestApp {
    let db = TestDatabase::create().await;
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
        let mut request = self.client.request(method, self.url(path));
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
        let path = format!("/v1/articles/{}/reaction", segment(article_id));
        self.request(Method::PUT, &path, Some(visitor), Some(json!({ "reaction": reaction }))).await
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

    /// Checks the invariant against the tables: every count equals the rows holding that
    /// reaction, and no count row is missing.
    pub async fn assert_counts_match_rows(&self) {
        let mut conn = self.db.connect().await;
        let mismatches: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "select coalesce(c.article_id, r.article_id), coalesce(c.reaction, r.reaction)::text,
                    coalesce(c.count, 0), coalesce(r.n, 0)
             from article_reaction_counts c
             full join (select article_id, reaction, count(*) as n from reactions group by 1, 2) r
               on r.article_id = c.article_id and r.reaction = c.reaction
             where coalesce(c.count, 0) <> coalesce(r.n, 0)",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(
            mismatches.is_empty(),
            "counts differ from rows (article, reaction, count, rows): {mismatches:?}"
        );
    }

    /// Number of reaction rows stored, all articles.
    pub async fn stored_reactions(&self) -> i64 {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar("select count(*) from reactions").fetch_one(&mut conn).await.unwrap()
    }
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

/// The counts object with every reaction zero except the given ones.
pub fn counts(nonzero: &[(&str, i64)]) -> Value {
    let mut counts = json!({"like": 0, "dislike": 0, "love": 0, "funny": 0, "angry": 0, "sad": 0, "wow": 0});
    for (key, n) in nonzero {
        counts[*key] = json!(n);
    }
    counts
}
