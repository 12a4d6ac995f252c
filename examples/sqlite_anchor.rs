//! The SQLite anchor of `loadtest/run.sh`: the naive write on the embedded store, one transaction
//! per reaction (insert the visitor's row, bump the article's count row) on the minimal schema of
//! `loadtest/anchors/schema.sqlite.sql`, with the service's own connection settings (WAL, a full
//! sync at every commit, the busy timeout). Prints `RESULT tps=…`.
//!
//! ```sh
//! cargo run --release --example sqlite_anchor -- FILE SECONDS CLIENTS ARTICLES
//! ```
//! `ARTICLES` 1 writes to one hot article, more picks one at random per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const REACTIONS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, seconds, clients, articles] = args.as_slice() else {
        anyhow::bail!("usage: sqlite_anchor FILE SECONDS CLIENTS ARTICLES");
    };
    let seconds: u64 = seconds.parse()?;
    let clients: u32 = clients.parse()?;
    let articles: u32 = articles.parse()?;
    let options = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new().max_connections(clients).connect_with(options).await?;
    sqlx::raw_sql(include_str!("../loadtest/anchors/schema.sqlite.sql")).execute(&pool).await?;

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (pool, done) = (pool.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let (visitor, reaction, article) = {
                    let mut rng = rand::rng();
                    let visitor: [u8; 32] = rng.random();
                    let article = if articles == 1 {
                        "hot".to_owned()
                    } else {
                        format!("spread-{}", rng.random_range(1..=articles))
                    };
                    (visitor, REACTIONS[rng.random_range(0..7)], article)
                };
                let now = chrono::Utc::now().timestamp_micros();
                let mut tx = pool.begin_with("begin immediate").await?;
                let inserted = sqlx::query(
                    "insert into reactions (article_id, visitor_key, reaction, updated_at) values ($1, $2, $3, $4)
                     on conflict do nothing",
                )
                .bind(&article)
                .bind(visitor.as_slice())
                .bind(reaction)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    sqlx::query(
                        "insert into article_reaction_counts (article_id, reaction, count) values ($1, $2, 1)
                         on conflict (article_id, reaction) do update set count = count + 1",
                    )
                    .bind(&article)
                    .bind(reaction)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("RESULT tps={:.0}", done.load(Ordering::Relaxed) as f64 / elapsed);
    Ok(())
}
