//! The dashboard reads: top, totals, time series, trending and the CSV export, on data whose
//! answers are known, with their window edges, defaults, bad parameters, token rules and rate
//! limit class.

use std::num::NonZeroU32;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{TestDatabase, spawn_app};
use crate::helpers::{
    TestApp, assert_problem, counts, expected_top, json_ok, ranked, segment, spawn_with, test_config,
};

const ADMIN_TOKEN: &str = "analyst-token-0123456789";
const SINCE: &str = "2025-11-27T10:00:00Z";
const UNTIL: &str = "2025-11-27T12:00:00Z";

/// Stores reactions `(article, reaction, last change)` straight into both tables, each by a
/// visitor of its own, keeping every count equal to its rows.
async fn seed(app: &TestApp, rows: &[(&str, &str, &str)]) {
    let rows: Vec<(&str, &str, DateTime<Utc>)> =
        rows.iter().map(|&(article, reaction, at)| (article, reaction, at.parse().unwrap())).collect();
    app.db.insert_reactions(&rows).await;
    app.assert_counts_match_rows().await;
}

/// The window `[SINCE, UNTIL)` with reactions on both of its edges and just outside them:
///
/// | article | in the window | outside |
/// |---|---|---|
/// | a | angry ×3 (one at since, one a microsecond before until), love | |
/// | b | angry ×2, like | |
/// | c | like, wow | like a microsecond before since, like at until |
/// | d, e | sad | |
/// | z | | funny two hours before |
async fn seed_window(app: &TestApp) {
    seed(
        app,
        &[
            ("a", "angry", "2025-11-27T10:00:00Z"),
            ("a", "angry", "2025-11-27T10:30:00Z"),
            ("a", "angry", "2025-11-27T11:59:59.999999Z"),
            ("a", "love", "2025-11-27T11:00:00Z"),
            ("b", "angry", "2025-11-27T10:15:00Z"),
            ("b", "angry", "2025-11-27T10:45:00Z"),
            ("b", "like", "2025-11-27T11:30:00Z"),
            ("c", "like", "2025-11-27T09:59:59.999999Z"),
            ("c", "like", "2025-11-27T12:00:00Z"),
            ("c", "like", "2025-11-27T10:10:00Z"),
            ("c", "wow", "2025-11-27T11:10:00Z"),
            ("d", "sad", "2025-11-27T11:00:00Z"),
            ("e", "sad", "2025-11-27T11:05:00+00:00"),
            ("z", "funny", "2025-11-27T08:00:00Z"),
        ],
    )
    .await;
}

async fn get(app: &TestApp, path: &str) -> Response {
    app.request(Method::GET, path, None, None).await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    json_ok(get(app, path).await).await
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

async fn app_with_admin_token(token: Option<&str>) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.admin_token = token.map(str::to_owned);
    spawn_with(db, config).await
}

/// The service on a database that held `rows` at migration `before` and was then migrated to
/// the latest schema, as an upgrade leaves it.
async fn spawn_after_upgrade(before: i64, rows: &[(&str, &str, DateTime<Utc>)]) -> TestApp {
    let db = TestDatabase::create().await;
    db.migrate_to(Some(before)).await;
    db.insert_reactions(rows).await;
    db.migrate_to(None).await;
    let config = test_config(&db.url);
    spawn_with(db, config).await
}

async fn export(app: &TestApp, query: &str, authorization: Option<&str>) -> Response {
    let mut request = app.client.get(app.url(&format!("/v1/stats/export.csv{query}")));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn top_ranks_articles_by_reactions_in_the_window_with_exact_counts() {
    let app = spawn_app().await;
    seed_window(&app).await;
    let window = format!("since={SINCE}&until={UNTIL}");

    let all = get_json(&app, &format!("/v1/stats/top?{window}")).await;
    let angry = get_json(&app, &format!("/v1/stats/top?reaction=angry&{window}")).await;
    let like = get_json(&app, &format!("/v1/stats/top?reaction=like&{window}")).await;
    let two = get_json(&app, &format!("/v1/stats/top?{window}&limit=2")).await;
    let funny = get_json(&app, &format!("/v1/stats/top?reaction=funny&{window}")).await;

    assert_eq!(
        all,
        json!({
            "since": SINCE, "until": UNTIL, "reaction": null,
            "articles": ranked(&[("a", 4), ("b", 3), ("c", 2), ("d", 1), ("e", 1)]),
        }),
        "both edges of [since, until) as documented; ties by article id"
    );
    assert_eq!(angry["reaction"], "angry");
    assert_eq!(angry["articles"], ranked(&[("a", 3), ("b", 2)]));
    assert_eq!(like["articles"], ranked(&[("b", 1), ("c", 1)]), "c's likes on the edges are outside");
    assert_eq!(two["articles"], ranked(&[("a", 4), ("b", 3)]));
    assert_eq!(funny["articles"], json!([]), "z's reaction is before the window");
}

#[tokio::test]
async fn top_answers_ten_articles_unless_told_otherwise_and_at_most_a_hundred() {
    let app = spawn_app().await;
    let rows: Vec<(String, &str, &str)> =
        (0..120).map(|i| (format!("article-{i:03}"), "like", "2025-11-27T10:00:00Z")).collect();
    seed(&app, &rows.iter().map(|(a, r, t)| (a.as_str(), *r, *t)).collect::<Vec<_>>()).await;
    let window = format!("since={SINCE}&until={UNTIL}");

    let default = get_json(&app, &format!("/v1/stats/top?{window}")).await;
    let max = get_json(&app, &format!("/v1/stats/top?{window}&limit=100")).await;

    assert_eq!(default["articles"].as_array().unwrap().len(), 10);
    assert_eq!(default["articles"][0]["article_id"], "article-000");
    assert_eq!(max["articles"].as_array().unwrap().len(), 100);
    assert_eq!(max["articles"][99]["article_id"], "article-099");
}

#[tokio::test]
async fn totals_count_every_reaction_in_the_window_and_consecutive_windows_add_up() {
    let app = spawn_app().await;
    seed_window(&app).await;

    let whole = get_json(&app, &format!("/v1/stats/totals?since={SINCE}&until={UNTIL}")).await;
    let first = get_json(&app, &format!("/v1/stats/totals?since={SINCE}&until=2025-11-27T11:00:00Z")).await;
    let second = get_json(&app, &format!("/v1/stats/totals?since=2025-11-27T11:00:00Z&until={UNTIL}")).await;
    let empty =
        get_json(&app, "/v1/stats/totals?since=2025-11-20T00:00:00Z&until=2025-11-21T00:00:00Z").await;

    assert_eq!(
        whole,
        json!({
            "since": SINCE, "until": UNTIL,
            "counts": counts(&[("like", 2), ("love", 1), ("angry", 5), ("sad", 2), ("wow", 1)]),
            "total": 11,
        })
    );
    assert_eq!(first["counts"], counts(&[("like", 1), ("angry", 4)]));
    assert_eq!(first["total"], 5);
    assert_eq!(second["counts"], counts(&[("like", 1), ("love", 1), ("angry", 1), ("sad", 2), ("wow", 1)]));
    assert_eq!(second["total"], 6, "11:00 is in the second window only: nothing is counted twice");
    assert_eq!(empty["counts"], counts(&[]), "a window without reactions answers zeros");
    assert_eq!(empty["total"], 0);
}

#[tokio::test]
async fn a_window_counts_the_reactions_held_now_by_their_last_change() {
    let app = spawn_app().await;
    app.put_reaction("story", "alice-0001", "love").await;
    app.put_reaction("story", "bob-000001", "like").await;
    app.db.set_updated_at(None, "2025-11-27T10:30:00Z".parse().unwrap()).await;
    let ten_to_eleven = "/v1/stats/totals?since=2025-11-27T10:00:00Z&until=2025-11-27T11:00:00Z";

    let before = get_json(&app, ten_to_eleven).await;
    json_ok(app.put_reaction("story", "alice-0001", "love").await).await; // the same again: no change
    let unchanged = get_json(&app, ten_to_eleven).await;
    json_ok(app.put_reaction("story", "alice-0001", "wow").await).await; // a switch is a change, now
    let after_switch = get_json(&app, ten_to_eleven).await;
    let recent = get_json(&app, "/v1/stats/totals").await;
    json_ok(app.delete_reaction("story", "bob-000001").await).await;
    let after_delete = get_json(&app, ten_to_eleven).await;

    assert_eq!(before["counts"], counts(&[("like", 1), ("love", 1)]));
    assert_eq!(unchanged["counts"], before["counts"], "setting the held reaction again changes nothing");
    assert_eq!(after_switch["counts"], counts(&[("like", 1)]), "the switched reaction left the old window");
    assert_eq!(recent["counts"], counts(&[("wow", 1)]), "and counts where it last changed");
    assert_eq!(after_delete["counts"], counts(&[]), "a removed reaction is not counted");
}

#[tokio::test]
async fn without_since_and_until_a_window_is_the_last_24_hours() {
    let app = spawn_app().await;
    app.put_reaction("now", "alice-0001", "love").await;
    for (hours_ago, article) in [(23, "yesterday-evening"), (25, "two-days-ago")] {
        seed(&app, &[(article, "sad", "2025-11-27T10:00:00Z")]).await;
        app.db.set_updated_at(Some(article), Utc::now() - TimeDelta::hours(hours_ago)).await;
    }

    let totals = get_json(&app, "/v1/stats/totals").await;
    let top = get_json(&app, "/v1/stats/top").await;
    let only_until = get_json(&app, &format!("/v1/stats/totals?until={UNTIL}")).await;

    assert_eq!(totals["counts"], counts(&[("love", 1), ("sad", 1)]), "25 hours ago is outside");
    assert_eq!(instant(&totals["until"]) - instant(&totals["since"]), TimeDelta::hours(24));
    assert!((Utc::now() - instant(&totals["until"])).num_seconds().abs() < 60, "until is now");
    assert_eq!(top["articles"], ranked(&[("now", 1), ("yesterday-evening", 1)]));
    assert_eq!(only_until["since"], "2025-11-26T12:00:00Z", "since is 24 hours before a given until");
}

#[tokio::test]
async fn timeseries_lists_every_bucket_of_the_window_with_empty_ones_as_zeros() {
    let app = spawn_app().await;
    seed_window(&app).await;
    seed(&app, &[("a", "like", "2025-11-26T23:59:59Z"), ("a", "wow", "2025-11-28T00:00:00Z")]).await;

    let hourly = get_json(
        &app,
        "/v1/articles/a/timeseries?bucket=hour&since=2025-11-27T08:00:00Z&until=2025-11-27T13:00:00Z",
    )
    .await;
    let daily = get_json(
        &app,
        "/v1/articles/a/timeseries?bucket=day&since=2025-11-26T00:00:00Z&until=2025-11-29T00:00:00Z",
    )
    .await;

    let bucket = |start: &str, nonzero: &[(&str, i64)]| {
        let total: i64 = nonzero.iter().map(|(_, n)| n).sum();
        json!({"start": start, "counts": counts(nonzero), "total": total})
    };
    assert_eq!(
        hourly,
        json!({
            "article_id": "a", "bucket": "hour",
            "since": "2025-11-27T08:00:00Z", "until": "2025-11-27T13:00:00Z",
            "buckets": [
                bucket("2025-11-27T08:00:00Z", &[]),
                bucket("2025-11-27T09:00:00Z", &[]),
                bucket("2025-11-27T10:00:00Z", &[("angry", 2)]),
                bucket("2025-11-27T11:00:00Z", &[("love", 1), ("angry", 1)]),
                bucket("2025-11-27T12:00:00Z", &[]),
            ],
        }),
        "other articles (b, c, ...) are not counted"
    );
    assert_eq!(
        daily["buckets"],
        json!([
            bucket("2025-11-26T00:00:00Z", &[("like", 1)]),
            bucket("2025-11-27T00:00:00Z", &[("love", 1), ("angry", 3)]),
            bucket("2025-11-28T00:00:00Z", &[("wow", 1)]),
        ])
    );
}

#[tokio::test]
async fn timeseries_edge_buckets_count_only_the_part_inside_the_window() {
    let app = spawn_app().await;
    seed_window(&app).await;

    let partial = get_json(
        &app,
        "/v1/articles/a/timeseries?since=2025-11-27T10:20:00Z&until=2025-11-27T11:30:00%2B00:00",
    )
    .await;
    let offset = get_json(
        &app,
        "/v1/articles/a/timeseries?since=2025-11-27T11:00:00%2B01:00&until=2025-11-27T13:00:00%2B01:00",
    )
    .await;

    let buckets = partial["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!(buckets[0]["start"], "2025-11-27T10:00:00Z", "buckets stay aligned to the hour");
    assert_eq!(buckets[0]["counts"], counts(&[("angry", 1)]), "10:00 is before since; 10:30 counts");
    assert_eq!(buckets[1]["counts"], counts(&[("love", 1)]), "11:59:59.999999 is after until");
    assert_eq!(offset["since"], SINCE, "offsets are converted to UTC");
    assert_eq!(offset["buckets"][0]["counts"], counts(&[("angry", 2)]));
    assert_eq!(offset["buckets"][1]["total"], 2);
}

#[tokio::test]
async fn timeseries_defaults_to_the_last_24_hours_or_30_days_of_whole_buckets() {
    let app = spawn_app().await;
    json_ok(app.put_reaction("live", "alice-0001", "wow").await).await;

    let hourly = get_json(&app, "/v1/articles/live/timeseries").await;
    let daily = get_json(&app, "/v1/articles/live/timeseries?bucket=day").await;

    let hours = hourly["buckets"].as_array().unwrap();
    assert_eq!(hourly["bucket"], "hour");
    assert_eq!(hours.len(), 24);
    assert_eq!(hourly["since"], hours[0]["start"], "the first bucket is whole");
    assert_eq!(instant(&hours[23]["start"]) - instant(&hours[0]["start"]), TimeDelta::hours(23));
    let until = instant(&hourly["until"]);
    let last = instant(&hours[23]["start"]);
    assert!(last <= until && until < last + TimeDelta::hours(1), "the last bucket holds now");
    let total = |buckets: &[Value]| buckets.iter().map(|b| b["total"].as_i64().unwrap()).sum::<i64>();
    assert_eq!(total(hours), 1, "the reaction written a moment ago");
    let days = daily["buckets"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert!(days[0]["start"].as_str().unwrap().ends_with("T00:00:00Z"), "days start at midnight UTC");
    assert_eq!(instant(&days[29]["start"]) - instant(&days[0]["start"]), TimeDelta::days(29));
    assert_eq!(total(days), 1);
}

#[tokio::test]
async fn timeseries_answers_at_most_a_thousand_buckets() {
    let app = spawn_app().await;
    let midnight: DateTime<Utc> = "2025-11-27T00:00:00Z".parse().unwrap();
    let path = |hours_before_midnight: i64, until: &str| {
        let since = midnight - TimeDelta::hours(hours_before_midnight);
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!("/v1/articles/a/timeseries?since={since}&until={until}")
    };

    let thousand = get_json(&app, &path(1000, "2025-11-27T00:00:00Z")).await;
    let with_a_partial_last = get_json(&app, &path(999, "2025-11-27T00:00:01Z")).await;
    let too_many = get(&app, &path(1001, "2025-11-27T00:00:00Z")).await;
    let one_second_too_many = get(&app, &path(1000, "2025-11-27T00:00:01Z")).await;

    assert_eq!(thousand["buckets"].as_array().unwrap().len(), 1000);
    assert_eq!(with_a_partial_last["buckets"].as_array().unwrap().len(), 1000);
    let problem = assert_problem(too_many, StatusCode::BAD_REQUEST, "1001 hourly buckets").await;
    assert!(problem["detail"].as_str().unwrap().contains("1001"), "{problem}");
    assert_problem(one_second_too_many, StatusCode::BAD_REQUEST, "a partial 1001st bucket").await;
}

/// A service that lists trending articles whatever their networks (at least one): these tests
/// are about the score, `brigading.rs` about the networks. Seeded reactions come from a network
/// each.
async fn app_trending_from_any_network() -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.trending_min_networks = 1;
    spawn_with(db, config).await
}

#[tokio::test]
async fn trending_ranks_by_the_documented_score_on_known_data() {
    let app = app_trending_from_any_network().await;
    let mut rows: Vec<(&str, &str, String)> = Vec::new();
    let mut add = |article: &'static str, n: usize, at: &str| {
        rows.extend((0..n).map(|_| (article, "like", at.to_owned())));
    };
    // window=1h until 12:00: recent [11:00, 12:00), previous [10:00, 11:00).
    add("surging", 4, "2025-11-27T11:30:00Z"); // 0 -> 4: score 4
    add("steady-big", 8, "2025-11-27T10:30:00Z"); // 8 -> 17: 9 / 3 = 3
    add("steady-big", 17, "2025-11-27T11:30:00Z");
    add("small-rise", 1, "2025-11-27T10:00:00Z"); // the previous window's first instant
    add("small-rise", 2, "2025-11-27T10:59:59Z");
    add("small-rise", 1, "2025-11-27T11:00:00Z"); // the recent window's first instant
    add("small-rise", 4, "2025-11-27T11:45:00Z"); // 3 -> 5: 2 / 2 = 1
    add("small-rise", 3, "2025-11-27T12:00:00Z"); // after the recent window
    add("flat", 2, "2025-11-27T10:30:00Z"); // 2 -> 2: not trending
    add("flat", 2, "2025-11-27T11:30:00Z");
    add("falling", 5, "2025-11-27T10:30:00Z"); // 5 -> 1: not trending
    add("falling", 1, "2025-11-27T11:30:00Z");
    add("old", 2, "2025-11-27T09:30:00Z"); // before both windows
    add("yesterday-hit", 6, "2025-11-26T08:00:00Z"); // window=24h: 6 -> 2
    add("yesterday-hit", 2, "2025-11-27T08:00:00Z");
    seed(&app, &rows.iter().map(|(a, r, t)| (*a, *r, t.as_str())).collect::<Vec<_>>()).await;

    let hour = get_json(&app, &format!("/v1/stats/trending?window=1h&until={UNTIL}")).await;
    let top_two = get_json(&app, &format!("/v1/stats/trending?until={UNTIL}&limit=2")).await;
    let day = get_json(&app, &format!("/v1/stats/trending?window=24h&until={UNTIL}")).await;

    // Every seeded reaction comes from a network of its own: as many networks as reactions.
    let entry = |id: &str, score: f64, recent: i64, previous: i64| json!({"article_id": id, "score": score, "recent": recent, "previous": previous, "networks": recent});
    assert_eq!(
        hour,
        json!({
            "window": "1h", "since": "2025-11-27T11:00:00Z", "until": UNTIL,
            "articles": [
                entry("surging", 4.0, 4, 0),
                entry("steady-big", 3.0, 17, 8),
                entry("small-rise", 1.0, 5, 3),
            ],
        })
    );
    assert_eq!(top_two["window"], "1h", "1h is the default");
    assert_eq!(top_two["articles"], json!([hour["articles"][0], hour["articles"][1]]));
    // 24h: recent [26th 12:00, 27th 12:00), previous [25th 12:00, 26th 12:00). Ties on score
    // go to more recent reactions, then to the article id.
    assert_eq!(day["since"], "2025-11-26T12:00:00Z");
    assert_eq!(
        day["articles"],
        json!([
            entry("steady-big", 25.0, 25, 0),
            entry("small-rise", 8.0, 8, 0),
            entry("falling", 6.0, 6, 0),
            entry("flat", 4.0, 4, 0),
            entry("surging", 4.0, 4, 0),
            entry("old", 2.0, 2, 0),
        ]),
        "yesterday-hit slowed down (6 -> 2) and is not listed"
    );
}

#[tokio::test]
async fn trending_scores_a_fractional_pace_and_defaults_to_the_last_hour() {
    let app = app_trending_from_any_network().await;
    let mut rows = vec![("grower", "love", "2025-11-27T10:30:00Z"); 1];
    rows.extend(vec![("grower", "love", "2025-11-27T11:30:00Z"); 3]);
    seed(&app, &rows).await;
    json_ok(app.put_reaction("just-now", "alice-0001", "wow").await).await;

    let at_noon = get_json(&app, &format!("/v1/stats/trending?until={UNTIL}")).await;
    let now = get_json(&app, "/v1/stats/trending").await;

    let score = at_noon["articles"][0]["score"].as_f64().unwrap();
    assert!((score - 2.0 / 2f64.sqrt()).abs() < 1e-12, "1 -> 3: (3 - 1) / sqrt(2), got {score}");
    assert_eq!(
        now["articles"],
        json!([{"article_id": "just-now", "score": 1.0, "recent": 1, "previous": 0, "networks": 1}])
    );
    assert_eq!(instant(&now["until"]) - instant(&now["since"]), TimeDelta::hours(1));
}

/// Reactions spread over twelve days at random microseconds, with windows of minutes, hours and
/// days that start and end anywhere: a window is read from daily and hourly rollups and from the
/// rows of its partial first and last hour, and every answer must equal counts taken straight
/// from the seeded rows.
#[tokio::test]
async fn windows_of_any_length_and_alignment_count_exactly_the_reactions_inside_them() {
    use rand::{Rng as _, SeedableRng as _};
    const KEYS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
    const ARTICLES: [&str; 5] = ["a", "b", "c", "d", "e"];
    type Row<'a> = (&'a str, &'a str, DateTime<Utc>);
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20251127);
    // Twelve days of reactions around the present (some in the next hours), so that windows
    // ending now read their last partial hour from the rollups (minus what follows them).
    let now = Utc::now();
    let origin = now.duration_trunc(TimeDelta::days(1)).unwrap() - TimeDelta::days(10);
    let micros = |rng: &mut rand::rngs::StdRng, upto: TimeDelta| {
        TimeDelta::microseconds(rng.random_range(0..upto.num_microseconds().unwrap()))
    };
    let rows: Vec<Row> = (0..800)
        .map(|_| {
            // more reactions on the first articles
            let article = ARTICLES[rng.random_range(0..5).min(rng.random_range(0..5))];
            (article, KEYS[rng.random_range(0..7)], origin + micros(&mut rng, TimeDelta::days(12)))
        })
        .collect();
    app.db.insert_reactions(&rows).await;
    app.assert_counts_match_rows().await;

    let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = vec![
        (origin, origin + TimeDelta::days(12)),                          // whole days
        (origin + TimeDelta::hours(5), origin + TimeDelta::hours(53)),   // whole hours
        (origin - TimeDelta::days(3), origin + TimeDelta::days(30)),     // beyond the data
        (now - TimeDelta::minutes(90), now - TimeDelta::seconds(70)),     // ending just now
        (now - TimeDelta::days(1), now),                                  // the last 24 hours
        (now - TimeDelta::hours(3), now + TimeDelta::minutes(20)),        // ending soon
    ];
    for length in [TimeDelta::minutes(90), TimeDelta::hours(30), TimeDelta::days(14)] {
        for _ in 0..3 {
            let since = origin - TimeDelta::days(1) + micros(&mut rng, TimeDelta::days(13));
            windows.push((since, since + TimeDelta::microseconds(1) + micros(&mut rng, length)));
        }
    }

    let fmt = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for (since, until) in windows {
        let inside: Vec<&Row> = rows.iter().filter(|(_, _, at)| since <= *at && *at < until).collect();
        let count = |keep: &dyn Fn(&Row) -> bool| {
            inside.iter().filter(|row| keep(row)).count() as i64
        };
        let window = format!("since={}&until={}", fmt(since), fmt(until));
        let context = format!("window {window}");

        let per_key: Vec<(&str, i64)> = KEYS.iter().map(|k| (*k, count(&|r| r.1 == *k))).collect();
        let totals = get_json(&app, &format!("/v1/stats/totals?{window}")).await;
        assert_eq!(totals["counts"], counts(&per_key), "{context}");
        assert_eq!(totals["total"], inside.len(), "{context}");

        for reaction in [None, Some(KEYS[rng.random_range(0..7)])] {
            let mut expected: Vec<(&str, i64)> = ARTICLES
                .iter()
                .map(|a| (*a, count(&|r| r.0 == *a && reaction.is_none_or(|k| r.1 == k))))
                .filter(|(_, n)| *n > 0)
                .collect();
            expected.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let filter = reaction.map(|k| format!("&reaction={k}")).unwrap_or_default();
            let top = get_json(&app, &format!("/v1/stats/top?{window}&limit=100{filter}")).await;
            assert_eq!(top["articles"], ranked(&expected), "{context}{filter}");
        }

        let mut csv = String::from("article_id,reaction,count\r\n");
        for article in ARTICLES {
            for key in KEYS {
                let n = count(&|r| r.0 == article && r.1 == key);
                if n > 0 {
                    csv.push_str(&format!("{article},{key},{n}\r\n"));
                }
            }
        }
        let response = export(&app, &format!("?{window}"), Some(&bearer(ADMIN_TOKEN))).await;
        assert_eq!(response.text().await.unwrap(), csv, "{context}");

        for (bucket, width) in [("hour", TimeDelta::hours(1)), ("day", TimeDelta::days(1))] {
            let series = get_json(&app, &format!("/v1/articles/a/timeseries?bucket={bucket}&{window}")).await;
            let buckets = series["buckets"].as_array().unwrap();
            let first = buckets.first().map(|b| instant(&b["start"])).unwrap();
            assert!(first <= since && since < first + width, "{context}: the first {bucket} holds since");
            for (i, b) in buckets.iter().enumerate() {
                let start = instant(&b["start"]);
                assert_eq!(start, first + width * i as i32, "{context}: consecutive {bucket}s");
                let in_bucket: Vec<(&str, i64)> = KEYS
                    .iter()
                    .map(|k| (*k, count(&|r| r.0 == "a" && r.1 == *k && start <= r.2 && r.2 < start + width)))
                    .collect();
                assert_eq!(b["counts"], counts(&in_bucket), "{context}: the {bucket} from {start}");
            }
            let last = instant(&buckets.last().unwrap()["start"]);
            assert!(until <= last + width, "{context}: the last {bucket} holds until");
        }
    }
}

/// Upgrading a database that holds reactions from before the rollups: the rollup migration fills
/// them from the stored rows, and the service then answers from them.
#[tokio::test]
async fn the_rollup_migration_fills_the_rollups_from_the_reactions_already_stored() {
    const BEFORE_ROLLUPS: i64 = 20261126000003;
    let origin: DateTime<Utc> = "2025-11-20T00:00:00Z".parse().unwrap();
    let keys = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
    // 300 reactions on 3 articles, one every 37 minutes: a week, every hour and day edge crossed.
    let rows: Vec<(&str, &str, DateTime<Utc>)> = (0..300)
        .map(|i| (["a", "b", "c"][i % 3], keys[i % 7], origin + TimeDelta::minutes(37 * i as i64)))
        .collect();
    let app = spawn_after_upgrade(BEFORE_ROLLUPS, &rows).await;

    let mismatches = app.db.rollup_mismatches().await;
    assert!(mismatches.is_empty(), "rollups differ from rows: {mismatches:?}");
    let window = "since=2025-11-20T00:30:00Z&until=2025-11-26T23:10:00Z";
    let since: DateTime<Utc> = "2025-11-20T00:30:00Z".parse().unwrap();
    let until: DateTime<Utc> = "2025-11-26T23:10:00Z".parse().unwrap();
    let inside = rows.iter().filter(|(_, _, at)| since <= *at && *at < until).count();
    let totals = get_json(&app, &format!("/v1/stats/totals?{window}")).await;
    assert_eq!(totals["total"], inside, "a week read from daily, hourly and partial-hour pieces");
    app.assert_counts_match_rows().await;
}

/// Emptying the reactions by hand (`truncate`, which fires no delete trigger) empties what the
/// dashboards read too.
#[tokio::test]
async fn reactions_emptied_by_hand_leave_nothing_in_the_windows() {
    let app = spawn_app().await;
    seed_window(&app).await;
    let window = format!("/v1/stats/totals?since={SINCE}&until={UNTIL}");
    assert_eq!(get_json(&app, &window).await["total"], 11);

    app.db.empty_reactions().await;

    app.assert_counts_match_rows().await;
    assert_eq!(get_json(&app, &window).await["total"], 0);
    assert_eq!(get_json(&app, &format!("/v1/stats/top?since={SINCE}&until={UNTIL}")).await["articles"], json!([]));
}

#[tokio::test]
async fn export_streams_one_csv_row_per_article_and_reaction_in_the_window() {
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    seed_window(&app).await;
    seed(
        &app,
        &[
            ("x,y", "like", "2025-11-27T10:00:00Z"),
            ("=1+1", "love", "2025-11-27T10:00:00Z"),
            ("say \"hi\"", "wow", "2025-11-27T10:00:00Z"),
        ],
    )
    .await;

    let response = export(&app, &format!("?since={SINCE}&until={UNTIL}"), Some(&bearer(ADMIN_TOKEN))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8; header=present");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"reactions-20251127T100000Z-20251127T120000Z.csv\""
    );
    assert_eq!(headers["cache-control"], "no-store");
    // No length up front; that the body really is streamed (flat memory, cut on a database
    // failure mid-way) is checked on 500,000 rows in tests/faults.rs.
    assert!(headers.get("content-length").is_none(), "chunked, with no length known up front");
    assert!(headers["ratelimit-policy"].to_str().unwrap().starts_with("\"stats\";"));
    assert_eq!(
        response.text().await.unwrap(),
        "article_id,reaction,count\r\n\
         \"'=1+1\",love,1\r\n\
         a,love,1\r\n\
         a,angry,3\r\n\
         b,like,1\r\n\
         b,angry,2\r\n\
         c,like,1\r\n\
         c,wow,1\r\n\
         d,sad,1\r\n\
         e,sad,1\r\n\
         \"say \"\"hi\"\"\",wow,1\r\n\
         \"x,y\",like,1\r\n",
        "ordered by article id (bytes) then reaction (display order); quoted and defused"
    );
}

#[tokio::test]
async fn export_reads_every_batch_of_a_large_window() {
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    // 2,500 articles with one like and one love each: 5,000 rows, five batches.
    let articles: Vec<String> = (1..=2500).map(|i| format!("article-{i:05}")).collect();
    let at: DateTime<Utc> = SINCE.parse().unwrap();
    let rows: Vec<(&str, &str, DateTime<Utc>)> = articles
        .iter()
        .flat_map(|article| ["like", "love"].map(|reaction| (article.as_str(), reaction, at)))
        .collect();
    app.db.insert_reactions(&rows).await;

    let response = export(&app, &format!("?since={SINCE}&until={UNTIL}"), Some(&bearer(ADMIN_TOKEN))).await;
    let body = response.text().await.unwrap();
    let empty =
        export(&app, "?since=2025-11-20T00:00:00Z&until=2025-11-21T00:00:00Z", Some(&bearer(ADMIN_TOKEN)))
            .await
            .text()
            .await
            .unwrap();

    let lines: Vec<&str> = body.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1 + 5000);
    assert_eq!(lines[1], "article-00001,like,1");
    assert_eq!(lines[1000], "article-00500,love,1", "the last row of the first batch");
    assert_eq!(lines[1001], "article-00501,like,1", "the first row of the second batch");
    assert_eq!(lines[5000], "article-02500,love,1");
    assert_eq!(empty, "article_id,reaction,count\r\n", "no rows: the header alone");
}

#[tokio::test]
async fn an_abandoned_export_gives_its_database_connection_back() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.admin_token = Some(ADMIN_TOKEN.to_owned());
    config.database_max_connections = NonZeroU32::new(2).unwrap();
    let app = spawn_with(db, config).await;
    // About 16 MB of CSV (article ids of 250 bytes): far more than the socket buffers hold, so
    // the export is mid-stream when the client goes away.
    let articles: Vec<String> = (1..=20000).map(|i| format!("{}-{i:05}", "x".repeat(244))).collect();
    let at: DateTime<Utc> = SINCE.parse().unwrap();
    let rows: Vec<(&str, &str, DateTime<Utc>)> = articles
        .iter()
        .flat_map(|article| ["like", "love", "wow"].map(|reaction| (article.as_str(), reaction, at)))
        .collect();
    app.db.insert_reactions(&rows).await;

    for _ in 0..4 {
        let mut response =
            export(&app, &format!("?since={SINCE}&until={UNTIL}"), Some(&bearer(ADMIN_TOKEN))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.chunk().await.unwrap().is_some(), "the export has started");
        drop(response); // the client goes away mid-stream
    }

    // With two connections in the pool, a leaked one per export would leave none.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let totals = get(&app, "/v1/stats/totals").await;
        if totals.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pool did not recover: {}", totals.status());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let again = export(&app, &format!("?since={SINCE}&until={UNTIL}"), Some(&bearer(ADMIN_TOKEN))).await;
    assert_eq!(again.text().await.unwrap().lines().count(), 1 + 60_000, "a later export is whole");
}

#[tokio::test]
async fn export_needs_the_admin_token_as_a_bearer_token() {
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    let window = format!("?since={SINCE}&until={UNTIL}");

    let cases = [
        (None, "no Authorization header"),
        (Some("Bearer wrong-token".to_owned()), "another token"),
        (Some(format!("Bearer {ADMIN_TOKEN}x")), "the token with one character more"),
        (Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])), "a prefix of the token"),
        (Some(format!("Basic {ADMIN_TOKEN}")), "another scheme"),
        (Some(ADMIN_TOKEN.to_owned()), "no scheme"),
        (Some("Bearer ".to_owned()), "an empty token"),
    ];
    for (authorization, why) in cases {
        let response = export(&app, &window, authorization.as_deref()).await;
        assert_eq!(
            response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()),
            Some("Bearer realm=\"reader-reactions\"".to_owned()),
            "{why}: a 401 names the scheme"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED, why).await;
    }
    let unauthenticated_bad_query = export(&app, "?since=garbage", None).await;
    assert_problem(unauthenticated_bad_query, StatusCode::UNAUTHORIZED, "the token is checked first").await;

    let lower_case_scheme = export(&app, &window, Some(&format!("bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(lower_case_scheme.status(), StatusCode::OK, "the scheme is case-insensitive");
    let right = export(&app, &window, Some(&bearer(ADMIN_TOKEN))).await;
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(right.text().await.unwrap(), "article_id,reaction,count\r\n");
}

#[tokio::test]
async fn export_is_off_when_no_admin_token_is_configured() {
    for token in [None, Some("")] {
        let app = app_with_admin_token(token).await;

        let with_a_token = export(&app, "", Some(&bearer(ADMIN_TOKEN))).await;
        let without = export(&app, "", None).await;

        let problem = assert_problem(with_a_token, StatusCode::NOT_FOUND, "export off").await;
        assert_eq!(problem["type"], "urn:reader-reactions:problem:disabled");
        assert!(problem["detail"].as_str().unwrap().contains("ADMIN_TOKEN"), "{problem}");
        assert_problem(without, StatusCode::NOT_FOUND, "export off, no token").await;
    }
}

#[tokio::test]
async fn bad_stats_parameters_are_400_problems() {
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    let long_id = segment(&"x".repeat(257));
    let cases: Vec<(String, &str)> = vec![
        ("/v1/stats/top?since=yesterday".into(), "not a timestamp"),
        ("/v1/stats/top?since=2025-11-27".into(), "a date without a time"),
        ("/v1/stats/top?since=2025-11-27T10:00:00".into(), "no offset"),
        ("/v1/stats/top?since=2025-11-27T10:00:00+01:00".into(), "an unencoded + (a space)"),
        ("/v1/stats/top?since=2025-11-27T25:00:00Z".into(), "hour 25"),
        (format!("/v1/stats/top?since={UNTIL}&until={UNTIL}"), "an empty window"),
        (format!("/v1/stats/top?since={UNTIL}&until={SINCE}"), "since after until"),
        ("/v1/stats/top?since=".into(), "an empty value"),
        ("/v1/stats/top?since=%FF".into(), "invalid UTF-8"),
        ("/v1/stats/top?limit=0".into(), "limit 0"),
        ("/v1/stats/top?limit=101".into(), "limit 101"),
        ("/v1/stats/top?limit=-1".into(), "a negative limit"),
        ("/v1/stats/top?limit=ten".into(), "a limit in words"),
        ("/v1/stats/top?limit=1.5".into(), "a fractional limit"),
        ("/v1/stats/top?reaction=meh".into(), "an unknown reaction"),
        ("/v1/stats/top?reaction=Love".into(), "reaction keys are lower case"),
        ("/v1/stats/top?reaction=like&reaction=love".into(), "a repeated parameter"),
        ("/v1/stats/top?sort=asc".into(), "an unknown parameter"),
        ("/v1/stats/totals?limit=5".into(), "totals take no limit"),
        ("/v1/stats/totals?until=soon".into(), "until not a timestamp"),
        ("/v1/articles/a/timeseries?bucket=week".into(), "an unknown bucket"),
        ("/v1/articles/a/timeseries?bucket=Hour".into(), "bucket names are lower case"),
        (
            "/v1/articles/a/timeseries?since=2025-01-01T00:00:00Z&until=2025-11-27T00:00:00Z".into(),
            "8,000 hours",
        ),
        ("/v1/articles/a/timeseries?limit=3".into(), "timeseries takes no limit"),
        ("/v1/articles/a%00b/timeseries".into(), "a control character in the article id"),
        (format!("/v1/articles/{long_id}/timeseries"), "a 257-byte article id"),
        ("/v1/articles/a/b/timeseries".into(), "an unencoded / in the article id"),
        ("/v1/stats/trending?window=2h".into(), "an unknown window"),
        ("/v1/stats/trending?window=1d".into(), "24h is spelled 24h"),
        ("/v1/stats/trending?limit=0".into(), "a trending limit of 0"),
        ("/v1/stats/trending?until=now".into(), "until not a timestamp"),
        ("/v1/stats/trending?since=2025-11-27T10:00:00Z".into(), "trending takes no since"),
    ];
    for (path, why) in &cases {
        assert_problem(get(&app, path).await, StatusCode::BAD_REQUEST, &format!("{why} ({path})")).await;
    }
    for (query, why) in [("?since=yesterday", "export: not a timestamp"), ("?limit=5", "export: no limit")] {
        let response = export(&app, query, Some(&bearer(ADMIN_TOKEN))).await;
        assert_problem(response, StatusCode::BAD_REQUEST, why).await;
    }

    let plus = assert_problem(
        get(&app, "/v1/stats/totals?since=2025-11-27T10:00:00+01:00").await,
        StatusCode::BAD_REQUEST,
        "+",
    )
    .await;
    assert!(plus["detail"].as_str().unwrap().contains("%2B"), "the detail says how to fix it: {plus}");
    let unknown =
        assert_problem(get(&app, "/v1/stats/top?sort=asc").await, StatusCode::BAD_REQUEST, "sort").await;
    assert!(unknown["detail"].as_str().unwrap().contains("reaction, since, until, limit"), "{unknown}");
}

#[tokio::test]
async fn every_stats_answer_carries_the_stats_rate_limit_policy() {
    let app = app_with_admin_token(Some(ADMIN_TOKEN)).await;
    let paths = [
        "/v1/stats/top",
        "/v1/stats/totals",
        "/v1/articles/a/timeseries",
        "/v1/stats/trending",
        "/v1/stats/top?limit=0",
    ];

    for path in paths {
        let response = get(&app, path).await;
        let policy = response.headers()["ratelimit-policy"].to_str().unwrap().to_owned();
        let ratelimit = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(policy.starts_with("\"stats\";q="), "{path}: {policy}");
        assert!(ratelimit.starts_with("\"stats\";r="), "{path}: {ratelimit}");
    }
    let export = export(&app, "", Some(&bearer(ADMIN_TOKEN))).await;
    assert!(export.headers()["ratelimit-policy"].to_str().unwrap().starts_with("\"stats\";"));
    let read = app.get_reactions("a", None).await;
    assert!(
        read.headers()["ratelimit-policy"].to_str().unwrap().starts_with("\"reads\";"),
        "reads stay reads"
    );
}

#[tokio::test]
async fn stats_share_a_quota_of_their_own() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.rate_limit_stats_per_minute = NonZeroU32::new(1).unwrap();
    config.rate_limit_stats_burst = NonZeroU32::new(2).unwrap();
    let app = spawn_with(db, config).await;

    let first = get(&app, "/v1/stats/top").await;
    let second = get(&app, "/v1/stats/totals").await;
    let third = get(&app, "/v1/articles/a/timeseries").await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-policy"], "\"stats\";q=2;w=60");
    assert_eq!(second.headers()["ratelimit"], "\"stats\";r=0;t=120");
    assert_eq!(third.headers()["ratelimit-policy"], "\"stats\";q=2;w=60");
    assert!(third.headers().contains_key("retry-after"));
    let problem = assert_problem(third, StatusCode::TOO_MANY_REQUESTS, "the third stats read").await;
    assert!(problem["detail"].as_str().unwrap().contains("stats"), "{problem}");
    let read = app.get_reactions("a", None).await;
    assert_eq!(read.status(), StatusCode::OK, "article reads have their own quota");
}

#[test]
fn the_openapi_document_defines_the_trending_score_and_the_export_token() {
    let document: Value = serde_json::from_str(&reader_reactions::http::openapi_document()).unwrap();
    let paths = &document["paths"];

    let trending = paths["/v1/stats/trending"]["get"]["description"].as_str().unwrap();
    let export = &paths["/v1/stats/export.csv"]["get"];
    let top = &paths["/v1/stats/top"]["get"];

    assert!(trending.contains("score = (recent - previous) / sqrt(previous + 1)"), "{trending}");
    assert!(trending.contains("TRENDING_MIN_NETWORKS") && trending.contains("/24"), "{trending}");
    let entry = &document["components"]["schemas"]["TrendingArticle"];
    assert!(entry["required"].as_array().unwrap().contains(&json!("networks")), "{entry}");
    assert_eq!(entry["properties"]["networks"]["type"], "integer");
    assert_eq!(export["security"], json!([{"admin_token": []}]));
    assert_eq!(document["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    for status in ["200", "400", "401", "404", "429", "503"] {
        assert!(export["responses"][status].is_object(), "export documents {status}");
    }
    assert!(top["description"].as_str().unwrap().contains("[since, until)"), "half-open windows");
    let parameters: Vec<&str> =
        top["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(parameters, ["reaction", "since", "until", "limit"], "no visitor cookie on stats");
}

/// Bounds filled by the migration are the articles' exact counts, so an article whose reactions
/// all fall in the window counts exactly its bound. Here the walk's first chunk (64 articles)
/// ends with `w-b` (100 reactions, the best of the chunk), and the next article, `w-a`, is
/// bounded by exactly 100: it could tie and win on its id, so the walk must read on rather than
/// stop, and the top article is `w-a`.
#[tokio::test]
async fn an_article_that_could_tie_with_the_last_of_the_list_is_still_read() {
    const BEFORE_BOUNDS: i64 = 20261201000002;
    let since: DateTime<Utc> = "2025-11-01T00:00:00Z".parse().unwrap();
    let until = since + TimeDelta::days(14);
    let old: Vec<String> = (0..63).map(|i| format!("old-{i:02}")).collect();
    let mut rows: Vec<(&str, &str, DateTime<Utc>)> = Vec::new();
    for article in &old {
        rows.extend((0..200).map(|i| (article.as_str(), "like", since - TimeDelta::days(20) + TimeDelta::minutes(i))));
    }
    for article in ["w-a", "w-b"] {
        rows.extend((0..100).map(|i| (article, "love", since + TimeDelta::hours(i))));
    }
    let app = spawn_after_upgrade(BEFORE_BOUNDS, &rows).await;
    app.assert_counts_match_rows().await;

    let window = "since=2025-11-01T00:00:00Z&until=2025-11-15T00:00:00Z";
    for limit in [1, 2, 3] {
        let top = get_json(&app, &format!("/v1/stats/top?{window}&limit={limit}")).await;
        assert_eq!(top["articles"], ranked(&expected_top(&rows, since, until, None, limit)), "limit {limit}");
    }
    for filter in ["", "&reaction=love"] {
        let top = get_json(&app, &format!("/v1/stats/top?{window}&limit=1{filter}")).await;
        assert_eq!(top["articles"], json!([{"article_id": "w-a", "count": 100}]), "{filter}");
    }
}
