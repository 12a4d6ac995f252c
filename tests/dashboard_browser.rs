//! End to end in a real browser: headless Chromium, driven over WebDriver, reads `/dashboard`
//! served by the real service on a fresh PostgreSQL database with seeded reactions.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`CHROMEDRIVER` and `CHROMIUM` override where
//! they are). Not part of plain `cargo test`; run it with
//! `cargo test --test dashboard_browser -- --ignored`. It writes `target/artifacts/dashboard.png`
//! (the page with an article open; `docs/dashboard.png` is a copy) and
//! `target/artifacts/dashboard-phone.png`.

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

#[path = "support/chromium.rs"]
mod chromium;
// The API tests' helpers: a fresh database, seeding with timestamps, a running service.
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use chromium::{ChromeDriver, TempDir, eventually, eventually_within, save_png};
use helpers::{Backend, TestApp, TestDatabase, segment, spawn_with, test_config};

const KEYS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
const STATS_TOKEN: &str = "dashboard-browser-stats-token-0123456789";
const ADMIN_TOKEN: &str = "dashboard-browser-admin-token-0123456789";

/// Reactions already there: (article, reaction, hours ago, how many). Everything but the last
/// rows is within the last 20 hours; the last rows are 10 days old, so that the 30-day window
/// ranks the articles differently from the 24-hour one.
const SEED: &[(&str, &str, i64, usize)] = &[
    ("2026/11/30/harbour-town-keeps-winter-ferry", "love", 1, 9),
    ("2026/11/30/harbour-town-keeps-winter-ferry", "like", 3, 6),
    ("2026/11/30/harbour-town-keeps-winter-ferry", "wow", 7, 3),
    ("2026/11/30/harbour-town-keeps-winter-ferry", "love", 12, 4),
    ("2026/11/30/council-budget-cuts-libraries", "angry", 0, 8),
    ("2026/11/30/council-budget-cuts-libraries", "sad", 2, 5),
    ("2026/11/30/council-budget-cuts-libraries", "dislike", 6, 2),
    ("2026/11/29/lighthouse-keeper-retires", "love", 5, 4),
    ("2026/11/29/lighthouse-keeper-retires", "sad", 9, 3),
    ("2026/11/29/lighthouse-keeper-retires", "like", 15, 2),
    ("2026/11/29/seal-pup-rescued-at-pier", "funny", 4, 3),
    ("2026/11/29/seal-pup-rescued-at-pier", "love", 8, 2),
    ("2026/11/28/storm-closes-coast-road", "wow", 18, 2),
    ("2026/11/28/storm-closes-coast-road", "sad", 19, 1),
    ("2026/11/28/fish-market-centenary", "funny", 240, 20),
    ("2026/11/28/fish-market-centenary", "like", 250, 6),
];

/// Hours back the 24-hour window reaches in the seed (the older rows are 10 days old).
const RECENT_HOURS: i64 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run: cargo test --test dashboard_browser -- --ignored"]
async fn an_editor_reads_totals_top_articles_and_an_articles_time_series() {
    let (chromedriver, chromium) = chromium::programs();
    let db = TestDatabase::create(Backend::Postgres).await;
    seed(&db).await;
    let mut config = test_config(&db.url);
    config.admin_token = Some(ADMIN_TOKEN.to_owned());
    let app = spawn_with(db, config).await;

    let driver = ChromeDriver::start(&chromedriver).await;
    let profile = TempDir::new("rr-chromium-profile");
    let browser = driver.connect(&chromium, profile.path()).await;

    let outcome = async {
        editor_session(&browser, &app, &driver).await?;
        let console = driver.console(&browser).await?;
        let errors: Vec<_> =
            console.iter().filter(|(level, _)| level == "SEVERE" || level == "WARNING").collect();
        ensure!(errors.is_empty(), "the console shows errors: {errors:?}");
        Ok(())
    }
    .await;
    if outcome.is_err() {
        let _ = save_png(&browser.screenshot().await.unwrap_or_default(), "dashboard-failed.png");
    }
    let _ = browser.close().await;
    drop(driver);
    if let Err(error) = outcome {
        panic!("{error:#}\n(the page as it was: target/artifacts/dashboard-failed.png)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run: cargo test --test dashboard_browser -- --ignored"]
async fn with_a_stats_token_the_page_asks_for_it_once_per_browser_session() {
    let (chromedriver, chromium) = chromium::programs();
    let db = TestDatabase::create(Backend::Postgres).await;
    seed(&db).await;
    let mut config = test_config(&db.url);
    config.stats_token = Some(STATS_TOKEN.to_owned());
    let app = spawn_with(db, config).await;

    let driver = ChromeDriver::start(&chromedriver).await;
    let profile = TempDir::new("rr-chromium-profile");
    let browser = driver.connect(&chromium, profile.path()).await;

    let outcome = async {
        token_session(&browser, &app, &driver).await?;
        // The one wrong token was answered 401, which the console reports; nothing else.
        let console = driver.console(&browser).await?;
        let errors: Vec<_> = console
            .iter()
            .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
            .filter(|(_, message)| !message.contains("status of 401"))
            .collect();
        ensure!(errors.is_empty(), "the console shows errors: {errors:?}");
        Ok(())
    }
    .await;
    if outcome.is_err() {
        let _ = save_png(&browser.screenshot().await.unwrap_or_default(), "dashboard-token-failed.png");
    }
    let _ = browser.close().await;
    drop(driver);
    if let Err(error) = outcome {
        panic!("{error:#}\n(the page as it was: target/artifacts/dashboard-token-failed.png)");
    }
}

async fn seed(db: &TestDatabase) {
    db.migrate_to(None).await;
    let now = Utc::now();
    let rows: Vec<(&str, &str, chrono::DateTime<Utc>)> = SEED
        .iter()
        .flat_map(|&(article, reaction, hours_ago, n)| {
            // A few minutes into the hour back, so that no row sits on a bucket edge.
            let at = now - TimeDelta::hours(hours_ago) - TimeDelta::minutes(5);
            std::iter::repeat_n((article, reaction, at), n)
        })
        .collect();
    db.insert_reactions(&rows).await;
}

/// The seed's counts per reaction within the last `hours`.
fn expected_totals(hours: i64) -> BTreeMap<String, u64> {
    let mut totals: BTreeMap<String, u64> = KEYS.iter().map(|k| ((*k).to_owned(), 0)).collect();
    for &(_, reaction, _, n) in SEED.iter().filter(|row| row.2 < hours) {
        *totals.get_mut(reaction).unwrap() += n as u64;
    }
    totals
}

/// The seed's articles within the last `hours`, most reactions first (ties by id), as the
/// service ranks them.
fn expected_top(hours: i64, reaction: Option<&str>) -> Vec<(String, u64)> {
    let mut by_article: BTreeMap<&str, u64> = BTreeMap::new();
    for &(article, r, _, n) in SEED.iter().filter(|row| row.2 < hours) {
        if reaction.is_none_or(|wanted| wanted == r) {
            *by_article.entry(article).or_default() += n as u64;
        }
    }
    let mut top: Vec<(String, u64)> = by_article.into_iter().map(|(a, n)| (a.to_owned(), n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top
}

/// What the page shows, read from its DOM.
#[derive(Debug, Deserialize)]
struct PageState {
    loaded: bool,
    total: String,
    totals: BTreeMap<String, String>,
    bars: usize,
    top: Vec<(String, String)>,
    trending: Vec<String>,
    article: Option<String>,
    buckets: usize,
    series_rows: usize,
    series_sum: u64,
    article_counts: BTreeMap<String, String>,
    dialog_open: bool,
    url: String,
}

async fn page_state(browser: &Client) -> anyhow::Result<PageState> {
    let script = "const $ = (s) => document.querySelector(s), all = (s) => [...document.querySelectorAll(s)];
        const article = $('#article');
        return {
          loaded: !!document.body.dataset.loaded,
          total: $('#total-count').textContent,
          totals: Object.fromEntries(all('#totals-table tbody tr').map(r => [r.dataset.reaction, r.querySelector('td').textContent])),
          bars: all('#totals-chart g.bar rect').length,
          top: all('#top-list li').map(li => [li.querySelector('button').dataset.article, li.querySelector('.count').textContent]),
          trending: all('#trending-table tbody tr button').map(b => b.dataset.article),
          article: article.hidden ? null : $('#article-id').textContent,
          buckets: all('#series-chart g.bucket').length,
          series_rows: all('#series-table tbody tr').length,
          series_sum: all('#series-table tbody tr').reduce((s, r) => s + Number(r.cells[r.cells.length - 1].textContent.replace(/\\D/g, '')), 0),
          article_counts: Object.fromEntries(all('#article-counts li').map(li => [li.dataset.reaction, li.querySelector('strong').textContent])),
          dialog_open: $('#token-dialog').open,
          url: location.href,
        };";
    Ok(serde_json::from_value(browser.execute(script, vec![]).await?)?)
}

fn as_numbers(shown: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
    shown.iter().map(|(k, v)| (k.clone(), v.replace(',', "").parse().unwrap_or(u64::MAX))).collect()
}

async fn loaded_state(browser: &Client, what: &str) -> anyhow::Result<PageState> {
    eventually(what, || async move {
        let state = page_state(browser).await?;
        Ok(state.loaded.then_some(state))
    })
    .await
}

async fn editor_session(browser: &Client, app: &TestApp, driver: &ChromeDriver) -> anyhow::Result<()> {
    browser.set_window_size(1280, 1600).await?;
    browser.goto(&app.url("/dashboard")).await?;
    let state = loaded_state(browser, "the dashboard shows the stats").await?;

    // The last 24 hours: totals as numbers and as seven bars, and the top list in order.
    let totals = expected_totals(RECENT_HOURS);
    ensure!(as_numbers(&state.totals) == totals, "totals: {:?}, expected {totals:?}", state.totals);
    let sum: u64 = totals.values().sum();
    ensure!(state.total == sum.to_string(), "the total: {:?}, expected {sum}", state.total);
    ensure!(state.bars == KEYS.len(), "one bar per reaction: {}", state.bars);
    let top: Vec<(String, u64)> =
        state.top.iter().map(|(a, n)| (a.clone(), n.replace(',', "").parse().unwrap_or(u64::MAX))).collect();
    ensure!(top == expected_top(RECENT_HOURS, None), "the top list: {top:?}");
    let trending = app.client.get(app.url("/v1/stats/trending")).send().await?.json::<Value>().await?;
    let trending: Vec<&str> = trending["articles"]
        .as_array()
        .context("articles")?
        .iter()
        .filter_map(|a| a["article_id"].as_str())
        .collect();
    ensure!(state.trending == trending, "trending: {:?}, the API says {trending:?}", state.trending);
    ensure!(state.article.is_none() && !state.dialog_open, "no article open, no token asked: {state:?}");
    ensure!(state.url.contains("window=24h"), "the window is in the URL: {}", state.url);

    // The CSV export asks for the admin token when used, and downloads the window.
    browser.find(Locator::Css("#export")).await?.click().await?;
    let title: Value = eventually("the export asks for the admin token", || async {
        let title = browser
            .execute("const d = document.querySelector('#token-dialog'); return d.open ? d.querySelector('h2').textContent : null;", vec![])
            .await?;
        Ok((!title.is_null()).then_some(title))
    })
    .await?;
    ensure!(title == json!("Admin token"), "the dialog names the admin token: {title}");
    submit_token(browser, ADMIN_TOKEN).await?;
    let exported = eventually("the export is downloaded", || async {
        let statuses = browser
            .execute(
                "return performance.getEntriesByType('resource').filter(e => e.name.includes('/export.csv')).map(e => e.responseStatus);",
                vec![],
            )
            .await?;
        Ok(statuses.as_array().filter(|s| !s.is_empty()).cloned())
    })
    .await?;
    ensure!(exported == [json!(200)], "one export, answered 200: {exported:?}");
    let state = page_state(browser).await?;
    ensure!(!state.dialog_open, "the dialog is closed");

    // By one reaction.
    browser.find(Locator::Css("#reaction")).await?.select_by_value("love").await?;
    let love = expected_top(RECENT_HOURS, Some("love"));
    let state = eventually("the top list counts Love only", || async {
        let state = page_state(browser).await?;
        let shown: Vec<String> = state.top.iter().map(|(a, _)| a.clone()).collect();
        let wanted: Vec<String> = love.iter().map(|(a, _)| a.clone()).collect();
        Ok((shown == wanted).then_some(state))
    })
    .await?;
    ensure!(state.url.contains("reaction=love"), "the reaction is in the URL: {}", state.url);
    browser.find(Locator::Css("#reaction")).await?.select_by_value("").await?;

    // Click the first article: its hourly series, as many columns as the API has buckets.
    let all = expected_top(RECENT_HOURS, None);
    eventually("the top list is back to all reactions", || async {
        let shown: Vec<String> = page_state(browser).await?.top.into_iter().map(|(a, _)| a).collect();
        Ok((shown.iter().eq(all.iter().map(|(a, _)| a))).then_some(()))
    })
    .await?;
    let first = all[0].0.clone();
    browser.find(Locator::Css(&format!("#top-list button[data-article='{first}']"))).await?.click().await?;
    let series = api_series(app, &first, "bucket=hour").await?;
    let buckets = series["buckets"].as_array().context("buckets")?.len();
    ensure!(buckets == 24, "the API's hourly series has 24 buckets: {buckets}");
    let state = eventually("the article's chart is drawn", || async {
        let state = page_state(browser).await?;
        Ok((state.article.as_deref() == Some(first.as_str()) && state.buckets > 0).then_some(state))
    })
    .await?;
    ensure!(state.buckets == buckets, "{} columns drawn for {buckets} buckets", state.buckets);
    ensure!(state.series_rows == buckets, "the table has a row per bucket: {}", state.series_rows);
    let in_day: u64 = SEED.iter().filter(|r| r.0 == first && r.2 < RECENT_HOURS).map(|r| r.3 as u64).sum();
    ensure!(
        state.series_sum == in_day,
        "the series adds up to the article's day: {} != {in_day}",
        state.series_sum
    );
    let summary = app.summary(&first, None).await;
    let current: BTreeMap<String, u64> = serde_json::from_value(summary["counts"].clone())?;
    ensure!(as_numbers(&state.article_counts) == current, "current counts: {:?}", state.article_counts);
    ensure!(
        state.url.contains(&format!("article={}", segment(&first))),
        "the article is in the URL: {}",
        state.url
    );
    // The whole page in one picture (docs/dashboard.png is a copy).
    let height = browser
        .execute("window.scrollTo(0, 0); return document.documentElement.scrollHeight;", vec![])
        .await?;
    browser.set_window_size(1280, height.as_u64().context("the page's height")? as u32).await?;
    save_png(&browser.screenshot().await?, "dashboard.png")?;

    // Keyboard: the article buttons are reached and pressed with the keyboard.
    let second = expected_top(RECENT_HOURS, None)[1].0.clone();
    let second_button =
        browser.find(Locator::Css(&format!("#top-list button[data-article='{second}']"))).await?;
    second_button.send_keys(&Key::Enter).await?;
    eventually("Enter opens the second article", || async {
        let state = page_state(browser).await?;
        Ok((state.article.as_deref() == Some(second.as_str()) && state.buckets == 24).then_some(()))
    })
    .await?;

    // The last 30 days: another order, and a daily series of 30 buckets.
    browser.find(Locator::Css("#window")).await?.select_by_value("30d").await?;
    let month = expected_top(30 * 24, None);
    let state = eventually("the 30-day window is shown", || async {
        let state = page_state(browser).await?;
        let shown: Vec<String> = state.top.iter().map(|(a, _)| a.clone()).collect();
        let wanted: Vec<String> = month.iter().map(|(a, _)| a.clone()).collect();
        Ok((shown == wanted && state.buckets == 30).then_some(state))
    })
    .await?;
    ensure!(month[0].0 != expected_top(RECENT_HOURS, None)[0].0, "the seed ranks the windows differently");
    ensure!(as_numbers(&state.totals) == expected_totals(30 * 24), "30-day totals: {:?}", state.totals);
    ensure!(state.series_rows == 30, "a row per day: {}", state.series_rows);

    // The URL is the view: a fresh load of it shows the same window and article.
    let shared = state.url.clone();
    browser.goto("about:blank").await?;
    browser.goto(&shared).await?;
    let state = eventually("the shared view is restored", || async {
        let state = page_state(browser).await?;
        Ok((state.loaded && state.buckets == 30).then_some(state))
    })
    .await?;
    ensure!(
        state.article.as_deref() == Some(second.as_str()),
        "the article is open again: {:?}",
        state.article
    );
    let window: Value = browser.execute("return document.querySelector('#window').value;", vec![]).await?;
    ensure!(window == json!("30d"), "the window is selected again: {window}");

    // Every 30 seconds the page reads again, keeping the window, the article and the focus.
    let before = state;
    browser
        .execute(
            "document.querySelector(`#top-list button[data-article='${arguments[0]}']`).focus();",
            vec![json!(second)],
        )
        .await?;
    let now = Utc::now();
    app.db
        .insert_reactions(&[
            (second.as_str(), "wow", now),
            (second.as_str(), "wow", now),
            (second.as_str(), "like", now),
        ])
        .await;
    let after =
        eventually_within("the page refreshes by itself", std::time::Duration::from_secs(40), || async {
            let state = page_state(browser).await?;
            Ok((state.series_sum == before.series_sum + 3).then_some(state))
        })
        .await?;
    ensure!(
        as_numbers(&after.totals)["wow"] == as_numbers(&before.totals)["wow"] + 2,
        "totals: {:?}",
        after.totals
    );
    ensure!(
        after.article.as_deref() == Some(second.as_str()) && after.buckets == 30,
        "the article stays open"
    );
    ensure!(after.url == before.url, "the view is unchanged: {} then {}", before.url, after.url);
    let focused: Value =
        browser.execute("return document.activeElement.dataset.article ?? null;", vec![]).await?;
    ensure!(focused == json!(second), "the focus stays on the article's button: {focused}");

    // A phone: one column, nothing wider than the screen, the charts redrawn at its width.
    browser.set_window_size(390, 844).await?;
    eventually("the charts are redrawn at the phone's width", || async {
        let fits: Value = browser
            .execute(
                "const chart = document.querySelector('#totals-chart');
                 return Math.abs(chart.viewBox.baseVal.width - chart.getBoundingClientRect().width) < 2;",
                vec![],
            )
            .await?;
        Ok((fits == json!(true)).then_some(()))
    })
    .await?;
    let overflow: Value = browser
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await?;
    ensure!(overflow.as_i64() == Some(0), "no sideways scrolling on a phone: {overflow}");
    save_png(&browser.screenshot().await?, "dashboard-phone.png")?;

    // Dark mode follows the system's.
    let background = "return getComputedStyle(document.body).backgroundColor;";
    let light = browser.execute(background, vec![]).await?;
    let dark = json!([{"name": "prefers-color-scheme", "value": "dark"}]);
    driver.cdp(browser, "Emulation.setEmulatedMedia", json!({ "features": dark })).await?;
    let dark = browser.execute(background, vec![]).await?;
    ensure!(light != dark, "the page has a dark scheme: {light} and {dark}");
    browser.set_window_size(1280, 1600).await?;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await; // the charts' redraw
    save_png(&browser.screenshot().await?, "dashboard-dark.png")?;
    Ok(())
}

async fn api_series(app: &TestApp, article: &str, query: &str) -> anyhow::Result<Value> {
    let url = app.url(&format!("/v1/articles/{}/timeseries?{query}", segment(article)));
    Ok(app.client.get(url).send().await?.error_for_status()?.json().await?)
}

async fn token_session(browser: &Client, app: &TestApp, driver: &ChromeDriver) -> anyhow::Result<()> {
    browser.set_window_size(1280, 900).await?;
    browser.goto(&app.url("/dashboard")).await?;

    // The page asks before it reads anything: no read has been refused yet.
    eventually("the token dialog opens", || async {
        Ok(page_state(browser).await?.dialog_open.then_some(()))
    })
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refused: Vec<_> =
        driver.console(browser).await?.into_iter().filter(|(_, m)| m.contains("401")).collect();
    ensure!(refused.is_empty(), "nothing is read before the token is given: {refused:?}");
    let reads: Value = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/v1/'));",
            vec![],
        )
        .await?;
    ensure!(reads == json!([]), "nothing is read before the token is given: {reads}");

    // A wrong token is refused and asked for again.
    submit_token(browser, "not-the-stats-token-not-the-stats-token").await?;
    eventually("the dialog says the token was refused", || async {
        let refused: Value = browser
            .execute("return document.querySelector('#token-dialog').open && !document.querySelector('#token-error').hidden;", vec![])
            .await?;
        Ok((refused == json!(true)).then_some(()))
    })
    .await?;

    // The right one opens the dashboard and is kept for the browser session.
    submit_token(browser, STATS_TOKEN).await?;
    let state = loaded_state(browser, "the dashboard shows the stats after the token").await?;
    ensure!(!state.dialog_open, "the dialog is closed");
    ensure!(as_numbers(&state.totals) == expected_totals(RECENT_HOURS), "totals: {:?}", state.totals);
    let kept: Value =
        browser.execute("return sessionStorage.getItem('reader-reactions.stats-token');", vec![]).await?;
    ensure!(kept == json!(STATS_TOKEN), "the token is kept in sessionStorage: {kept}");

    browser.refresh().await?;
    let state = loaded_state(browser, "the reloaded dashboard reads without asking").await?;
    ensure!(!state.dialog_open, "not asked again in the same session");
    Ok(())
}

async fn submit_token(browser: &Client, token: &str) -> anyhow::Result<()> {
    let input = browser.find(Locator::Css("#token-input")).await?;
    input.clear().await?;
    input.send_keys(token).await?;
    browser.find(Locator::Css("#token-submit")).await?.click().await?;
    Ok(())
}
