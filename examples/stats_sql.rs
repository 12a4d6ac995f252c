//! Prints what `scripts/stats-explain.sh` needs to run the stats statements exactly as the
//! service does:
//!
//! ```text
//! cargo run --example stats_sql -- statement TOP_ARTICLES       # the statement's text
//! cargo run --example stats_sql -- window SINCE UNTIL hour|day  # the window's six instants
//! ```
//!
//! A window is printed as the six instants of its `WindowParts`, as SQL literals separated by
//! commas, to be spliced into an `EXECUTE`.

use chrono::{DateTime, Utc};
use reader_reactions::domain::{Bucket, TimeWindow, WindowParts, rfc3339};
use reader_reactions::store::stats_sql as sql;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["statement", name] => {
            let statement = match *name {
                "TOP_ARTICLES" => sql::TOP_ARTICLES.as_str(),
                "TOP_ARTICLES_AMONG" => sql::TOP_ARTICLES_AMONG.as_str(),
                "HELD_BOUNDS" => sql::HELD_BOUNDS.as_str(),
                "HELD_BOUNDS_OF" => sql::HELD_BOUNDS_OF.as_str(),
                "WINDOW_TOTALS" => sql::WINDOW_TOTALS.as_str(),
                "ARTICLE_TIMESERIES" => sql::ARTICLE_TIMESERIES.as_str(),
                "TRENDING" => sql::TRENDING.as_str(),
                "EXPORT_SETTINGS" => sql::EXPORT_SETTINGS,
                "EXPORT_CURSOR" => sql::EXPORT_CURSOR.as_str(),
                other => fail(&format!("no statement {other}")),
            };
            println!("{}", statement.trim());
        }
        ["window", since, until, coarsest] => {
            let instant = |s: &str| {
                s.parse::<DateTime<Utc>>()
                    .unwrap_or_else(|e| fail(&format!("{s} is not an RFC 3339 instant: {e}")))
            };
            let window =
                TimeWindow::new(instant(since), instant(until)).unwrap_or_else(|e| fail(&e.to_string()));
            let coarsest: Bucket = coarsest
                .parse()
                .unwrap_or_else(|e: reader_reactions::domain::UnknownBucket| fail(&e.to_string()));
            let parts = WindowParts::new(&window, coarsest).instants();
            println!("{}", parts.map(|at| format!("'{}'::timestamptz", rfc3339(at))).join(", "));
        }
        _ => fail("usage: stats_sql statement NAME | stats_sql window SINCE UNTIL hour|day"),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("stats_sql: {message}");
    std::process::exit(2)
}
