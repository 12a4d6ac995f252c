//! PostgreSQL only: what SQLite has no counterpart of.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestDatabase, expected_top, json_ok, ranked, spawn_with, test_config};

/// The service applies the rollup migration at start-up on connections that carry its statement
/// timeout (SQLite has none: its busy timeout only bounds waits for the lock); the fill of a large table outlasts it, so the migration lifts the timeout for itself.
#[tokio::test]
async fn the_service_applies_the_rollup_migration_whatever_its_statement_timeout() {
    const BEFORE_ROLLUPS: i64 = 20261126000003;
    let db = TestDatabase::create(Backend::Postgres).await;
    db.migrate_to(Some(BEFORE_ROLLUPS)).await;
    // 200,000 reactions: their fill takes far longer than the 100 ms below.
    let at: DateTime<Utc> = "2025-11-20T00:00:00Z".parse().unwrap();
    let articles: Vec<String> = (0..2000).map(|i| format!("article-{i}")).collect();
    for chunk in 0..4 {
        let rows: Vec<(&str, &str, DateTime<Utc>)> = (0..50_000)
            .map(|i| {
                (articles[i % 2000].as_str(), "love", at + TimeDelta::seconds((chunk * 50_000 + i) as i64))
            })
            .collect();
        db.insert_reactions(&rows).await;
    }
    let mut config = test_config(&db.url);
    config.database_statement_timeout = std::time::Duration::from_millis(100);

    let app = spawn_with(db, config).await;

    let totals = json_ok(
        app.request(
            Method::GET,
            "/v1/stats/totals?since=2025-11-20T00:00:00Z&until=2025-11-23T00:00:00Z",
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(totals["total"], 200_000);

    // And the service's own statements do carry the 100 ms: a write that waits for a lock longer
    // is refused at once (it would wait the request timeout, 5 s, were the setting ignored).
    let lock = app.db.lock_writes().await;
    let started = std::time::Instant::now();
    let refused = app.put_reaction("article-1", "visitor-0001", "wow").await;
    let elapsed = started.elapsed();
    lock.release().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(elapsed < std::time::Duration::from_secs(2), "the statement timeout applies: {elapsed:?}");
}

/// Writes that arrive while the rollup migration fills the rollups (another instance of an older
/// release, during a rolling deploy, or an operator) end up in the rollups exactly once: the fill
/// makes them wait, then its triggers count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_during_the_rollup_fill_are_counted_exactly_once() {
    const BEFORE_ROLLUPS: i64 = 20261126000003;
    let db = std::sync::Arc::new(TestDatabase::create(Backend::Postgres).await);
    db.migrate_to(Some(BEFORE_ROLLUPS)).await;
    let at: DateTime<Utc> = "2025-11-20T00:00:00Z".parse().unwrap();
    let articles: Vec<String> = (0..2000).map(|i| format!("article-{i}")).collect();
    let rows: Vec<(&str, &str, DateTime<Utc>)> = (0..150_000)
        .map(|i| (articles[i % 2000].as_str(), "love", at + TimeDelta::seconds(i as i64)))
        .collect();
    db.insert_reactions(&rows).await;

    // An older writer: inserts, changes and deletes, each in a transaction of its own, as fast as
    // it can, from before the migration starts until after it ends.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = db.connect().await;
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = uuid::Uuid::new_v4().as_bytes().repeat(2);
                let article = format!("live-{}", written % 7);
                let kinds = ["like", "wow", "sad"];
                let (first, second) = (kinds[written as usize % 3], kinds[(written as usize + 1) % 3]);
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "begin;
                     insert into reactions (article_id, visitor_key, reaction, updated_at)
                         values ('{article}', '\\x{key}', '{first}', now());
                     insert into article_reaction_counts values ('{article}', '{first}', 1)
                         on conflict (article_id, reaction) do update set count = article_reaction_counts.count + 1;
                     commit;",
                    key = key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                if written.is_multiple_of(2) {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "begin;
                         update reactions set reaction = '{second}', updated_at = now()
                             where article_id = '{article}' and reaction = '{first}'
                             and ctid = (select ctid from reactions where article_id = '{article}'
                                         and reaction = '{first}' limit 1);
                         update article_reaction_counts set count = count - 1
                             where article_id = '{article}' and reaction = '{first}';
                         insert into article_reaction_counts values ('{article}', '{second}', 1)
                             on conflict (article_id, reaction) do update set count = article_reaction_counts.count + 1;
                         commit;"
                    )))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                }
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // writes before it, too

    let started = std::time::Instant::now();
    db.migrate_to(None).await;
    let fill = started.elapsed();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // and after it
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();

    eprintln!("{written} live writes around a {fill:?} migration");
    assert!(written > 20, "the writer wrote throughout: {written}");
    let counts = db.count_mismatches().await;
    assert!(counts.is_empty(), "counts differ from rows: {counts:?}");
    let rollups = db.rollup_mismatches().await;
    assert!(rollups.is_empty(), "rollups differ from rows: {rollups:?}");
}

/// A write batch that PostgreSQL picks as a deadlock victim is retried, and the write is
/// answered and stored once. The deadlock is made on purpose: another transaction holds the
/// article's lock (the advisory lock the batch takes after its reaction rows) and then asks for
/// the reaction row the batch holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_batch_chosen_as_a_deadlock_victim_is_retried_and_stored_once() {
    use reader_reactions::app::identity::{VisitorId, VisitorKey};
    use sqlx::Connection as _;

    let db = TestDatabase::create(Backend::Postgres).await;
    let config = test_config(&db.url);
    let secret = config.visitor_secret.clone().unwrap();
    let app = spawn_with(db, config).await;
    assert_eq!(app.put_reaction("locked", "reader-0001", "love").await.status(), StatusCode::OK);
    let key = VisitorKey::from_header_id(&secret, &VisitorId::parse(b"reader-0001").unwrap());

    // Another session: holds the article's lock, so the batch below stops there, holding the
    // reader's row.
    let mut other = app.db.connect().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(29298, hashtext('locked'))").execute(&mut *tx).await.unwrap();
    let switch = {
        let app_client = app.client.clone();
        let url = format!("{}/v1/articles/locked/reaction", app.address);
        tokio::spawn(async move {
            app_client
                .put(url)
                .header("x-visitor-id", "reader-0001")
                .json(&serde_json::json!({"reaction": "sad"}))
                .send()
                .await
                .unwrap()
        })
    };
    let mut watcher = app.db.connect().await;
    loop {
        let (waiting,): (i64,) =
            sqlx::query_as("select count(*) from pg_locks where locktype = 'advisory' and not granted")
                .fetch_one(&mut watcher)
                .await
                .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Now ask for the reader's row, which the waiting batch holds: a deadlock. PostgreSQL
    // aborts the batch (it has waited longer), which lets this statement through.
    let row =
        sqlx::query("select 1 from reactions where article_id = 'locked' and visitor_key = $1 for update")
            .bind(key.as_bytes().as_slice())
            .execute(&mut *tx)
            .await;
    assert!(row.is_ok(), "the batch was the victim: {row:?}");
    tx.rollback().await.unwrap();

    let response = switch.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the batch was retried");
    let summary = json_ok(response).await;
    assert_eq!(summary["counts"]["sad"], 1);
    assert_eq!(summary["counts"]["love"], 0);
    assert_eq!(app.stored_reactions().await, 1);
    app.assert_counts_match_rows().await;
}

/// A switch whose row another transaction deletes after the batch's insert found it and before
/// the batch locks it: the batch's function finds neither an inserted nor a locked row for the
/// set, fails with a serialization failure, is rolled back and runs again, and the second run
/// inserts the row. The write is answered once, with counts that include it, and counts and
/// rollups equal the rows. (Were the missing row skipped instead, the reaction would be
/// acknowledged and never stored.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_deleted_between_the_batch_insert_and_its_lock_is_retried_and_stored_once() {
    const ARTICLE: &str = "contested";
    let app = crate::helpers::spawn_app_on(Backend::Postgres).await;
    assert_eq!(app.put_reaction(ARTICLE, "visitor-0001", "like").await.status(), StatusCode::OK);

    // Another writer holds the row...
    let mut other = app.db.connect().await;
    sqlx::raw_sql("begin; select 1 from reactions where article_id = 'contested' for update")
        .execute(&mut other)
        .await
        .unwrap();
    let mut watcher = app.db.connect().await;
    let other_writer = async {
        // ...until the batch of the switch below waits for it (its insert found the row, so it
        // went on to lock it); then it deletes the row and its count, as a removal does.
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity
                 where datname = current_database() and wait_event_type = 'Lock'
                   and query like '%reactions_apply_batch%'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "the batch never waited for the row"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        sqlx::raw_sql(
            "delete from reactions where article_id = 'contested';
             update article_reaction_counts set count = count - 1
             where article_id = 'contested' and reaction = 'like';
             commit",
        )
        .execute(&mut other)
        .await
        .unwrap();
    };
    let (switched, ()) = tokio::join!(app.put_reaction(ARTICLE, "visitor-0001", "wow"), other_writer);

    let switched = json_ok(switched).await;
    assert_eq!(switched["counts"], crate::helpers::counts(&[("wow", 1)]));
    assert_eq!(switched["viewer_reaction"], "wow");
    assert_eq!(app.stored_reactions().await, 1);
    app.assert_counts_match_rows().await;
}

/// On PostgreSQL a window of a week or more reads its top list from the articles of largest
/// held bound (of all reactions, or of the one asked) down, and stops once no article left can
/// enter it (`store::postgres::stats`). The data makes that walk read on: the articles holding
/// the most reactions hold them from before the window, and a hundred and fifty articles of the
/// window tie often. Likes are the most frequent reaction, so their lists are read from their
/// own bounds; wows are rare, and their lists end in counts too low to settle from the bounds.
/// In the week after the window, 2,200 articles hold one reaction each: all tie, more of them
/// than the walk reads before it leaves the list to the full grouping, and the list is of the
/// smallest ids, which the walk reaches last; the week after that, 760 articles tie at 66
/// reactions each, past the implicit bound of articles without a row but more than a week's walk
/// may read. Every list, whichever way it was read, must be the exact one.
#[tokio::test]
async fn long_windows_rank_exactly_whatever_the_articles_hold_outside_them() {
    use rand::{Rng as _, SeedableRng as _};
    const KEYS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
    let db = TestDatabase::create(Backend::Postgres).await;
    let config = test_config(&db.url);
    let app = spawn_with(db, config).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
    let since: DateTime<Utc> = "2025-11-01T00:00:00Z".parse().unwrap();
    let until = since + TimeDelta::days(14);
    let at = |rng: &mut rand::rngs::StdRng, from: DateTime<Utc>, days: i64| {
        from + TimeDelta::seconds(rng.random_range(0..days * 86_400))
    };
    // The first reactions far more often than the last: like about 37 %, wow about 0.3 %.
    let key = |rng: &mut rand::rngs::StdRng| {
        KEYS[rng.random_range(0..7).min(rng.random_range(0..7)).min(rng.random_range(0..7))]
    };
    let mut owned: Vec<(String, &str, DateTime<Utc>)> = Vec::new();
    for i in 0..120 {
        let article = format!("old-{i:03}");
        for _ in 0..rng.random_range(200..400) {
            owned.push((article.clone(), key(&mut rng), at(&mut rng, since - TimeDelta::days(10), 9)));
        }
        for _ in 0..rng.random_range(0..3) {
            owned.push((article.clone(), key(&mut rng), at(&mut rng, since, 14)));
        }
    }
    for i in 0..150 {
        let article = format!("new-{i:03}");
        for _ in 0..rng.random_range(70..250) {
            owned.push((article.clone(), key(&mut rng), at(&mut rng, since, 14)));
        }
    }
    for i in 0..2200 {
        owned.push((format!("one-{i:04}"), key(&mut rng), at(&mut rng, until, 7)));
    }
    // The week after those: 760 articles of 66 reactions each, all tied, more than the 700 a
    // week's walk reads, the smallest id read last.
    for i in 0..760 {
        let article = format!("cap-{i:03}");
        for _ in 0..66 {
            owned.push((article.clone(), key(&mut rng), at(&mut rng, until + TimeDelta::days(8), 7)));
        }
    }
    let rows: Vec<(&str, &str, DateTime<Utc>)> = owned.iter().map(|(a, k, t)| (a.as_str(), *k, *t)).collect();
    app.db.insert_reactions(&rows).await;
    app.assert_counts_match_rows().await;

    let fmt = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let windows = [
        (since, until),                                                 // the window's articles
        (since - TimeDelta::days(16), until + TimeDelta::days(7)),      // every article
        (since + TimeDelta::hours(30), until - TimeDelta::minutes(90)), // partial hours and days
        (until, until + TimeDelta::days(7)),                            // the ties of one reaction
        (until + TimeDelta::days(8), until + TimeDelta::days(15)),      // more ties than a walk reads
        (since + TimeDelta::days(2), since + TimeDelta::days(5)),       // shorter: grouped
    ];
    for (since, until) in windows {
        for reaction in [None, Some("like"), Some("wow")] {
            for limit in [1, 3, 10, 64, 100] {
                let filter = reaction.map(|k| format!("&reaction={k}")).unwrap_or_default();
                let path =
                    format!("/v1/stats/top?since={}&until={}&limit={limit}{filter}", fmt(since), fmt(until));
                let top = json_ok(app.request(Method::GET, &path, None, None).await).await;
                let expected = expected_top(&rows, since, until, reaction, limit);
                assert_eq!(top["articles"], ranked(&expected), "{path}");
            }
        }
    }
}

/// The held bounds follow the service's own write batches (through the triggers on the count
/// rows, which the batch function's count statement fires): an article raised past the bounds'
/// threshold by one reaction, another only in all, through concurrent writes (which the writer
/// gathers into batches as they come), with switches and removals among them, ends with
/// bounds at least what it holds, and rows only where a count passed the threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_batches_raise_the_held_bounds_of_what_they_add() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let config = test_config(&db.url);
    let app = std::sync::Arc::new(spawn_with(db, config).await);
    let threshold: i64 = {
        let mut conn = app.db.connect().await;
        sqlx::query_scalar("select article_held_bounds_threshold()").fetch_one(&mut conn).await.unwrap()
    };
    // "likes": 100 likes, then 10 of them switched to love and 5 removed (85 likes held, above
    // the threshold alone); "mixed": 14 of each of five reactions (70 in all, none above alone).
    let mut writes = Vec::new();
    for v in 0..100 {
        writes.push(("likes", format!("visitor-{v:03}"), "like"));
    }
    for v in 0..70 {
        writes.push(("mixed", format!("visitor-{v:03}"), ["like", "love", "funny", "sad", "wow"][v % 5]));
    }
    let tasks: Vec<_> = writes
        .into_iter()
        .map(|(article, visitor, reaction)| {
            let app = app.clone();
            tokio::spawn(async move { app.put_reaction(article, &visitor, reaction).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    for v in 0..15 {
        let visitor = format!("visitor-{v:03}");
        let response = if v < 10 {
            app.put_reaction("likes", &visitor, "love").await
        } else {
            app.delete_reaction("likes", &visitor).await
        };
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Every held bound at least what it bounds (and a row for each count above the threshold).
    app.assert_counts_match_rows().await;
    let mut conn = app.db.connect().await;
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "select article_id, reaction::text, bound from article_held_bounds order by 1, 2 nulls first",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let bound = |article: &str, reaction: Option<&str>| {
        rows.iter().find(|(a, r, _)| a == article && r.as_deref() == reaction).map(|(_, _, b)| *b)
    };
    assert!(bound("likes", Some("like")).is_some_and(|b| b >= 85 && b > threshold), "{rows:?}");
    assert!(bound("likes", None).is_some_and(|b| b >= 95), "{rows:?}");
    assert!(bound("mixed", None).is_some_and(|b| b >= 70), "{rows:?}");
    assert_eq!(bound("mixed", Some("like")), None, "no reaction of mixed passed the threshold: {rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
}

/// The pool checks a connection before a request gets it only once the connection has sat idle
/// for a second (not before every batch). A session the server ended meanwhile (a restart, an
/// idle-session timeout, an operator) is then found dead and replaced, never handed to a request
/// to fail with a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_the_server_ended_while_idle_are_replaced_before_a_request_gets_them() {
    let app = std::sync::Arc::new(crate::helpers::spawn_app_on(Backend::Postgres).await);
    // Identified reads, each on a pooled connection of its own while they overlap: the pool
    // opens most of its connections.
    let reads = |app: &std::sync::Arc<crate::helpers::TestApp>| {
        (0..48)
            .map(|v| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.get_reactions("idle", Some(&format!("visitor-{v}"))).await.status()
                })
            })
            .collect::<Vec<_>>()
    };
    let statuses = statuses_of(reads(&app)).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "reads before: {statuses:?}");
    let mut admin = app.db.connect().await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and application_name = 'reader-reactions'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        ended.iter().filter(|ended| **ended).count() >= 4,
        "the service's sessions were ended: {ended:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let statuses = statuses_of(reads(&app)).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "reads after the sessions ended: {statuses:?}");
    assert_eq!(app.put_reaction("idle", "visitor-0", "wow").await.status(), StatusCode::OK);
    app.assert_counts_match_rows().await;
}

async fn statuses_of(tasks: Vec<tokio::task::JoinHandle<StatusCode>>) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}
