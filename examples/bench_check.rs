//! The checks `loadtest/run.sh` runs after each write scenario, with the same queries as the test
//! suite: how many reaction rows match a `LIKE` pattern, how many (article, reaction) counts
//! differ from the rows, how many rollup rows differ from the rows (the oracle), and on
//! PostgreSQL how many articles hold more reactions than their held bound. Prints
//! `RESULT rows=… count_mismatches=… rollup_mismatches=… bound_shortfalls=…`.
//!
//! ```sh
//! cargo run --example bench_check -- DATABASE_URL PATTERN
//! ```

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)] // Only the invariant queries are used here.
mod helpers;

use helpers::{BOUND_SHORTFALLS, Backend, COUNT_MISMATCHES, rollup_mismatches_sql};
use sqlx::Connection as _;

/// The checks on one connection (the same statements on either backend, but for the held
/// bounds, which only PostgreSQL keeps).
macro_rules! check {
    ($conn:expr, $pattern:expr, $backend:expr) => {{
        let conn = &mut $conn;
        let (rows,): (i64,) = sqlx::query_as("select count(*) from reactions where article_id like $1")
            .bind($pattern)
            .fetch_one(&mut *conn)
            .await?;
        let counts: Vec<(String, String, i64, i64)> =
            sqlx::query_as(COUNT_MISMATCHES).fetch_all(&mut *conn).await?;
        let rollups: Vec<(String, String, String, String, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(rollup_mismatches_sql($backend)))
                .fetch_all(&mut *conn)
                .await?;
        let bounds: Vec<(String, Option<String>, i64, Option<i64>)> = match $backend {
            Backend::Postgres => sqlx::query_as(BOUND_SHORTFALLS).fetch_all(&mut *conn).await?,
            Backend::Sqlite => Vec::new(),
        };
        println!(
            "RESULT rows={rows} count_mismatches={} rollup_mismatches={} bound_shortfalls={}",
            counts.len(),
            rollups.len(),
            bounds.len()
        );
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, pattern] = args.as_slice() else {
        anyhow::bail!("usage: bench_check DATABASE_URL PATTERN");
    };
    if url.starts_with("sqlite:") {
        check!(sqlx::SqliteConnection::connect(url).await?, pattern, Backend::Sqlite);
    } else {
        check!(sqlx::PgConnection::connect(url).await?, pattern, Backend::Postgres);
    }
    Ok(())
}
