//! The checks `loadtest/run.sh` runs after each write scenario, with the same queries as the test
//! suite: how many reaction rows match a `LIKE` pattern, how many (article, reaction) counts
//! differ from the rows, and how many rollup rows differ from the rows (the oracle). Prints
//! `RESULT rows=… count_mismatches=… rollup_mismatches=…`.
//!
//! ```sh
//! cargo run --example bench_check -- DATABASE_URL PATTERN
//! ```

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)] // Only the invariant queries are used here.
mod helpers;

use helpers::{Backend, COUNT_MISMATCHES, rollup_mismatches_sql};
use sqlx::Connection as _;

/// The three checks on one connection (the same statements on either backend).
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
        println!("RESULT rows={rows} count_mismatches={} rollup_mismatches={}", counts.len(), rollups.len());
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
