//! End to end in a real browser: headless Chromium, driven over WebDriver, reads and clicks the
//! widget on `/demo` served by the real service on a fresh PostgreSQL database.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`CHROMEDRIVER` and `CHROMIUM` override where
//! they are). Not part of plain `cargo test`; run it with
//! `cargo test --test browser -- --ignored`. It writes `target/artifacts/widget.png` (the widget)
//! and `target/artifacts/demo.png` (the page, also after a failure).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use reader_reactions::config::Config;
use reader_reactions::startup::Application;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

#[path = "support/chromium.rs"]
#[allow(dead_code)] // This binary uses part of the shared browser support.
mod chromium;
use chromium::{ChromeDriver, TempDir, eventually, programs, save_png};

/// The demo page's main article, and the three teasers of its "More from Local" list.
const ARTICLE: &str = "demo/2025/11/27/harbour-town-keeps-winter-ferry";
const LIST_ARTICLES: [&str; 3] = [
    "demo/2025/11/26/lighthouse-library",
    "demo/2025/11/25/coast-road-storm",
    "demo/2025/11/24/fish-market-centenary",
];
const KEYS: [&str; 7] = ["like", "dislike", "love", "funny", "angry", "sad", "wow"];
const MAIN_WIDGET: &str = "reader-reactions[article='demo/2025/11/27/harbour-town-keeps-winter-ferry']";

/// Other readers' reactions, there before our reader arrives.
const EARLIER_READERS: [(&str, usize); 4] = [("like", 4), ("love", 7), ("funny", 1), ("wow", 2)];

/// The browser's writes: Love, Wow, undo by keyboard, Like from another site. One more is
/// refused (429).
const BROWSER_WRITES: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run: cargo test --test browser -- --ignored"]
async fn a_reader_loves_switches_to_wow_and_finds_it_after_a_reload() {
    let (chromedriver, chromium) = programs();

    let db = TestDatabase::create().await;
    // Earlier readers arrive through an instance of their own, so that the browser's instance
    // has its whole (small) write quota for the test.
    let seeder = Service::start(config(&db.url, None)).await;
    seed_earlier_readers(&seeder).await;
    let service = Service::start(config(&db.url, Some(BROWSER_WRITES))).await;

    let driver = ChromeDriver::start(&chromedriver).await;
    let profile = TempDir::new("rr-chromium-profile");
    let browser = driver.connect(&chromium, profile.path()).await;

    let outcome = reader_session(&browser, &service).await;
    if outcome.is_err() {
        let _ = save_png(&browser.screenshot().await.unwrap_or_default(), "demo.png");
    }
    let _ = browser.close().await;
    drop(driver);
    seeder.stop().await;
    service.stop().await;
    if let Err(error) = outcome {
        panic!("{error:#}\n(the page as it was: target/artifacts/demo.png)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run: cargo test --test browser -- --ignored"]
async fn a_long_list_commas_blocked_storage_and_an_outage_on_the_page() {
    let (chromedriver, chromium) = programs();
    let db = TestDatabase::create().await;
    let service = Service::start(config(&db.url, None)).await;
    // A service whose database is down: pages and the widget load, reactions answer 503.
    let mut down = config("postgres://postgres@127.0.0.1:9/unreachable", None);
    down.migrate_on_start = false;
    down.database_acquire_timeout = Duration::from_millis(500);
    let outage = Service::start(down).await;

    let driver = ChromeDriver::start(&chromedriver).await;
    let profile = TempDir::new("rr-chromium-profile");
    let browser = driver.connect(&chromium, profile.path()).await;
    let outcome = page_edges(&browser, &service, &outage).await;
    if outcome.is_err() {
        let _ = save_png(&browser.screenshot().await.unwrap_or_default(), "edges.png");
    }
    let _ = browser.close().await;
    drop(driver);
    service.stop().await;
    outage.stop().await;
    if let Err(error) = outcome {
        panic!("{error:#}\n(the page as it was: target/artifacts/edges.png)");
    }
}

/// The widget's reads of `/v1/reactions` so far, as the ids each asked for.
async fn batch_reads(browser: &Client) -> anyhow::Result<Vec<usize>> {
    let reads: Vec<String> = serde_json::from_value(
        browser
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name)\
                 .filter(n => n.includes('/v1/reactions?'));",
                vec![],
            )
            .await?,
    )?;
    Ok(reads.iter().map(|r| r.matches("article_id=").count()).collect())
}

async fn page_edges(browser: &Client, service: &Service, outage: &Service) -> anyhow::Result<()> {
    browser.goto(&service.url("/demo")).await?;
    eventually("the demo's widgets show their counts", || async move {
        Ok(widget_state(browser).await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    let before = batch_reads(browser).await?;

    // A list page of 150 articles, added in one task: two batch reads, 100 ids and 50.
    browser
        .execute(
            "for (let i = 0; i < 150; i++) {
               const el = document.createElement('reader-reactions');
               el.id = 'list-' + i; el.setAttribute('article', 'list/' + i);
               if (i === 0) el.setAttribute('reactions', 'wow, like,love ,unknown');
               document.body.append(el);
             }",
            vec![],
        )
        .await?;
    eventually("all 150 show counts", || async move {
        let ready: bool = serde_json::from_value(
            browser
                .execute(
                    "return [...document.querySelectorAll('[id^=list-]')].every(el =>
                       el.shadowRoot?.querySelector('button') &&
                       [...el.shadowRoot.querySelectorAll('button')].every(b => !b.disabled));",
                    vec![],
                )
                .await?,
        )?;
        Ok(ready.then_some(()))
    })
    .await?;
    let reads = batch_reads(browser).await?;
    ensure!(reads[..before.len()] == before[..], "{before:?} then {reads:?}");
    let mut new_reads = reads[before.len()..].to_vec();
    new_reads.sort();
    ensure!(new_reads == [50, 100], "150 articles in two batch reads: {new_reads:?}");

    // `reactions` with commas and spaces, in the attribute's order, unknown keys left out.
    let first = state_of(browser, "#list-0").await?.context("the first list widget")?;
    let subset: Vec<&str> = first.buttons.iter().map(|b| b.reaction.as_str()).collect();
    ensure!(subset == ["wow", "like", "love"], "commas separate reactions too: {subset:?}");

    // Storage blocked on the service's own page: the write goes with the cookie path and the
    // service mints the HttpOnly `rr_vid` cookie from the fingerprint. A widget added later for
    // the same article does not read the choice back (the cookie is shared by everyone behind
    // this address with this browser build), but the cookie keeps the reader's writes
    // deduplicated: pressing Love again holds one Love, not two.
    browser
        .execute(
            "Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('blocked'); } });
             const el = document.createElement('reader-reactions');
             el.id = 'no-storage'; el.setAttribute('article', 'cookie/article');
             document.body.append(el);",
            vec![],
        )
        .await?;
    eventually("the storage-less widget is ready", || async move {
        Ok(state_of(browser, "#no-storage").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    click(browser, "#no-storage", "love").await?;
    let love_count = || async move {
        let summary: Value = service
            .http
            .get(service.url("/v1/articles/cookie%2Farticle/reactions"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(summary["counts"]["love"].as_i64())
    };
    eventually("the write is stored", || async move { Ok((love_count().await? == Some(1)).then_some(())) })
        .await?;
    let cookies = browser.get_all_cookies().await?;
    ensure!(
        cookies.iter().any(|c| c.name() == "rr_vid" && c.http_only() == Some(true)),
        "the write set the HttpOnly cookie: {cookies:?}"
    );
    let script_cookies: String =
        serde_json::from_value(browser.execute("return document.cookie;", vec![]).await?)?;
    ensure!(!script_cookies.contains("rr_vid"), "the page's scripts cannot read it: {script_cookies:?}");
    browser
        .execute(
            "const el = document.createElement('reader-reactions');
             el.id = 'no-storage-again'; el.setAttribute('article', 'cookie/article');
             document.body.append(el);",
            vec![],
        )
        .await?;
    let again = eventually("the second widget shows the counts", || async move {
        Ok(state_of(browser, "#no-storage-again").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    ensure!(again.counts()["love"] == 1, "{again:?}");
    ensure!(again.pressed().is_empty(), "a shared cookie never reads the choice back: {again:?}");
    click(browser, "#no-storage-again", "love").await?;
    eventually("the second press is answered", || async move {
        Ok(state_of(browser, "#no-storage-again").await?.filter(|r| r.pressed() == ["love"]))
    })
    .await?;
    ensure!(love_count().await? == Some(1), "the reader's writes stay deduplicated: still one Love");

    // The database is down: the widget says so in words, with no counts to show.
    browser.goto(&outage.url("/demo")).await?;
    let row = eventually("the outage message", || async move {
        Ok(widget_state(browser).await?.filter(|r| !r.message.is_empty()))
    })
    .await?;
    ensure!(
        row.message == "Reactions are resting for a moment. Please try again shortly.",
        "the 503 message: {:?}",
        row.message
    );
    Ok(())
}

/// The editor's token in the second test.
const ADMIN_TOKEN: &str = "browser-test-admin-token-browser-test-admin-token";

/// A French news site: the widget speaks the page's language (or its own `lang`, or the site's
/// `labels`), shows only the reactions an article offers, and a closed article's counts with its
/// buttons disabled and a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver; run: cargo test --test browser -- --ignored"]
async fn a_french_page_speaks_french_and_follows_the_editors_settings() {
    let (chromedriver, chromium) = programs();
    let db = TestDatabase::create().await;
    let mut settings = config(&db.url, None);
    settings.admin_token = Some(ADMIN_TOKEN.to_owned());
    let service = Service::start(settings).await;
    let driver = ChromeDriver::start(&chromedriver).await;
    let profile = TempDir::new("rr-chromium-profile");
    let browser = driver.connect(&chromium, profile.path()).await;

    let outcome = french_session(&browser, &service).await;
    if outcome.is_err() {
        let _ = save_png(&browser.screenshot().await.unwrap_or_default(), "french.png");
    }
    let _ = browser.close().await;
    drop(driver);
    service.stop().await;
    if let Err(error) = outcome {
        panic!("{error:#}\n(the page as it was: target/artifacts/french.png)");
    }
}

/// The articles of the French page.
const FR_OPEN: &str = "fr/2025/11/28/le-port-garde-son-ferry";
const FR_RESTRICTED: &str = "fr/2025/11/28/necrologie";
const FR_CLOSED: &str = "fr/2025/11/20/archives";

async fn french_session(browser: &Client, service: &Service) -> anyhow::Result<()> {
    // An editor's choices, and readers who reacted before them.
    service.react(FR_RESTRICTED, "reader-funny-0001", "funny").await?;
    service.react(FR_RESTRICTED, "reader-sad-00001", "sad").await?;
    service.react(FR_CLOSED, "reader-love-0001", "love").await?;
    service.react(FR_CLOSED, "reader-love-0002", "love").await?;
    service.settings(FR_RESTRICTED, json!({"closed": false, "reactions": ["sad", "like"]})).await?;
    service.settings(FR_CLOSED, json!({"closed": true, "reactions": null})).await?;

    // A page of the site, in French, with the widget under each story.
    browser.goto(&service.url("/healthz")).await?;
    let page = format!(
        r#"<article><h1>Le port garde son ferry</h1></article>
        <reader-reactions id="open" article="{FR_OPEN}"></reader-reactions>
        <reader-reactions id="german" lang="de" article="{FR_OPEN}"></reader-reactions>
        <reader-reactions id="own" article="{FR_OPEN}" labels="like: D'accord ; heading: Et vous ?; nope: x"></reader-reactions>
        <reader-reactions id="restricted" article="{FR_RESTRICTED}"></reader-reactions>
        <reader-reactions id="closed" article="{FR_CLOSED}"></reader-reactions>"#
    );
    let build = "const [page, api] = arguments;
        document.documentElement.lang = 'fr-FR';
        document.body.innerHTML = page;
        const script = document.createElement('script');
        script.type = 'module'; script.src = api + '/widget.js'; document.head.append(script);";
    browser.execute(build, vec![json!(page), json!(service.address)]).await?;

    let row = eventually("the French widget shows the counts", || async move {
        Ok(state_of(browser, "#open").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    ensure!(row.heading == "Quelle est votre réaction\u{a0}?", "French heading: {:?}", row.heading);
    let labels: Vec<&str> = row.buttons.iter().map(|b| b.label.as_str()).collect();
    let french = ["J'aime", "Je n'aime pas", "J'adore", "Drôle", "En colère", "Triste", "Waouh"];
    ensure!(labels == french, "French labels: {labels:?}");

    let german = state_of(browser, "#german").await?.context("the German widget is there")?;
    ensure!(german.heading == "Wie finden Sie das?", "the element's own lang wins: {:?}", german.heading);
    ensure!(german.buttons[0].label == "Gefällt mir", "{:?}", german.buttons[0].label);

    let own = state_of(browser, "#own").await?.context("the widget with labels is there")?;
    let labels: Vec<&str> = own.buttons.iter().map(|b| b.label.as_str()).collect();
    ensure!(own.heading == "Et vous ?", "the site's heading: {:?}", own.heading);
    ensure!(
        labels[0] == "D'accord" && labels[1..] == french[1..],
        "the site's label, French for the rest: {labels:?}"
    );

    let restricted = eventually("the restricted widget shows what the article offers", || async move {
        Ok(state_of(browser, "#restricted").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    let offered: Vec<&str> = restricted.buttons.iter().map(|b| b.reaction.as_str()).collect();
    ensure!(offered == ["like", "sad"], "only the offered reactions, in display order: {offered:?}");
    ensure!(restricted.buttons[1].count == "1" && restricted.message.is_empty(), "{restricted:?}");
    click(browser, "#restricted", "like").await?;
    let summary = eventually("the offered reaction is taken", || async move {
        let summary = service.summary_of(FR_RESTRICTED).await?;
        Ok((summary["counts"]["like"] == 1).then_some(summary))
    })
    .await?;
    ensure!(summary["counts"]["funny"] == 1, "the reaction held from before stays counted: {summary}");

    let closed = eventually("the closed widget shows its counts and a note", || async move {
        Ok(state_of(browser, "#closed").await?.filter(|r| !r.message.is_empty()))
    })
    .await?;
    ensure!(closed.message == "Les réactions sont fermées pour cet article.", "a note: {:?}", closed.message);
    ensure!(
        closed.buttons.len() == 7 && closed.buttons.iter().all(|b| b.disabled),
        "buttons disabled: {closed:?}"
    );
    ensure!(closed.counts()["love"] == 2, "the counts stay visible: {closed:?}");
    let love = button(browser, "#closed", "love").await?;
    let _ = love.click().await; // a disabled button: nothing happens, whatever the driver says
    tokio::time::sleep(Duration::from_millis(300)).await;
    let summary = service.summary_of(FR_CLOSED).await?;
    ensure!(summary["counts"]["love"] == 2 && summary["closed"] == true, "nothing written: {summary}");
    save_png(&browser.screenshot().await?, "french.png")?;
    Ok(())
}

/// What a reader does, step by step, checking the page and the API along the way.
async fn reader_session(browser: &Client, service: &Service) -> anyhow::Result<()> {
    browser.set_window_size(1100, 1000).await?;
    browser.goto(&service.url("/demo")).await?;
    let row = eventually("the widget shows the counts", || async move {
        let row = widget_state(browser).await?;
        Ok(row.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;

    // Arrange-check: the row as a reader sees it.
    ensure!(row.heading == "What's your reaction?", "heading: {:?}", row.heading);
    let order: Vec<&str> = row.buttons.iter().map(|b| b.reaction.as_str()).collect();
    ensure!(order == KEYS, "seven buttons in the contract's order: {order:?}");
    let labels: Vec<&str> = row.buttons.iter().map(|b| b.label.as_str()).collect();
    ensure!(labels == ["Like", "Dislike", "Love", "Funny", "Angry", "Sad", "Wow"], "labels: {labels:?}");
    ensure!(row.counts() == expected_counts(&[]), "earlier readers' counts: {:?}", row.counts());
    ensure!(row.pressed().is_empty(), "nothing chosen yet: {:?}", row.pressed());

    // The list page: the main widget and three teasers were read with one batch GET.
    let reads: Vec<String> = serde_json::from_value(
        browser
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name)\
                 .filter(n => n.includes('/v1/'));",
                vec![],
            )
            .await?,
    )?;
    ensure!(reads.len() == 1 && reads[0].contains("/v1/reactions?"), "one batch read: {reads:?}");
    ensure!(reads[0].matches("article_id=").count() == 1 + LIST_ARTICLES.len(), "{reads:?}");
    let teaser = format!("reader-reactions[article='{}']", LIST_ARTICLES[0]);
    let teaser = teaser.as_str();
    let teaser_buttons = eventually("a teaser shows its subset", || async move {
        Ok(state_of(browser, teaser).await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    let subset: Vec<&str> = teaser_buttons.buttons.iter().map(|b| b.reaction.as_str()).collect();
    ensure!(subset == ["like", "love", "wow"], "the reactions attribute picks and orders: {subset:?}");

    // Love: the count rises at once and the service agrees.
    click(browser, MAIN_WIDGET, "love").await?;
    let row = widget_state(browser).await?.context("the widget is there")?;
    ensure!(row.pressed() == ["love"], "Love is chosen: {:?}", row.pressed());
    ensure!(row.counts() == expected_counts(&[("love", 1)]), "Love rose by one: {:?}", row.counts());
    service.await_counts(expected_counts(&[("love", 1)])).await?;

    // Wow: one reaction per reader, so Love goes back down.
    click(browser, MAIN_WIDGET, "wow").await?;
    let row = widget_state(browser).await?.context("the widget is there")?;
    ensure!(row.pressed() == ["wow"], "Wow is chosen: {:?}", row.pressed());
    ensure!(row.counts() == expected_counts(&[("wow", 1)]), "switched: {:?}", row.counts());
    service.await_counts(expected_counts(&[("wow", 1)])).await?;

    // Reload: the visitor id in localStorage brings the reader's choice back.
    browser.refresh().await?;
    let row = eventually("the reloaded widget shows the reader's choice", || async move {
        Ok(widget_state(browser).await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    ensure!(row.pressed() == ["wow"], "Wow is still chosen after a reload: {:?}", row.pressed());
    ensure!(row.counts() == expected_counts(&[("wow", 1)]), "after reload: {:?}", row.counts());
    let screenshot = browser.find(Locator::Css(MAIN_WIDGET)).await?.screenshot().await?;
    save_png(&screenshot, "widget.png")?;
    save_png(&browser.screenshot().await?, "demo.png")?;

    // Through the API: the counts, and the reader's choice under the browser's own visitor id.
    let visitor: String = serde_json::from_value(
        browser.execute("return localStorage.getItem('reader-reactions.visitor');", vec![]).await?,
    )
    .context("the widget keeps a visitor id in localStorage")?;
    let summary = service.summary(Some(&visitor)).await?;
    ensure!(summary["counts"] == json!(expected_counts(&[("wow", 1)])), "API counts: {summary}");
    ensure!(summary["viewer_reaction"] == "wow", "the API knows the reader's choice: {summary}");

    // Undo with the keyboard: Enter on the focused Wow button.
    button(browser, MAIN_WIDGET, "wow").await?.send_keys(&Key::Enter).await?;
    service.await_counts(expected_counts(&[])).await?;
    let row = widget_state(browser).await?.context("the widget is there")?;
    ensure!(row.pressed().is_empty(), "undone: {:?}", row.pressed());
    ensure!(row.counts() == expected_counts(&[]), "undone: {:?}", row.counts());

    // Another site: a page on http://localhost (any page without a CSP of its own) loads the
    // module and calls the API on http://127.0.0.1, so the browser enforces CORS throughout.
    browser.goto(&service.url("/healthz").replace("127.0.0.1", "localhost")).await?;
    let embed = "const [id, article, api] = arguments;
        if (!customElements.get('reader-reactions')) {
          const script = document.createElement('script');
          script.type = 'module'; script.src = api + '/widget.js'; document.head.append(script);
        }
        const el = document.createElement('reader-reactions');
        el.id = id; el.setAttribute('article', article); el.setAttribute('api', api);
        document.body.append(el);";
    browser.execute(embed, vec![json!("cross"), json!(ARTICLE), json!(service.address)]).await?;
    let row = eventually("the cross-origin widget shows the counts", || async move {
        Ok(state_of(browser, "#cross").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    ensure!(row.counts() == expected_counts(&[]), "read across origins: {:?} {}", row.counts(), row.message);
    click(browser, "#cross", "like").await?;
    service.await_counts(expected_counts(&[("like", 1)])).await?;
    let row = state_of(browser, "#cross").await?.context("the widget is there")?;
    ensure!(row.pressed() == ["like"], "written across origins: {:?} {}", row.pressed(), row.message);

    // Over the write quota: the choice rolls back and a quiet message says why.
    click(browser, "#cross", "sad").await?;
    let row = eventually("the refused write is rolled back", || async move {
        Ok(state_of(browser, "#cross").await?.filter(|r| !r.message.is_empty()))
    })
    .await?;
    ensure!(row.message.contains("try again"), "a quiet message: {:?}", row.message);
    ensure!(row.pressed() == ["like"], "rolled back to Like: {:?}", row.pressed());
    ensure!(row.counts() == expected_counts(&[("like", 1)]), "rolled back: {:?}", row.counts());
    service.await_counts(expected_counts(&[("like", 1)])).await?;

    // Storage blocked: no visitor id. The widget falls back to cookies, which a service allowing
    // any origin refuses, and then reads without them.
    browser
        .execute(
            "Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('blocked'); } });",
            vec![],
        )
        .await?;
    browser.execute(embed, vec![json!("blocked"), json!(LIST_ARTICLES[1]), json!(service.address)]).await?;
    let row = eventually("the widget reads without storage", || async move {
        Ok(state_of(browser, "#blocked").await?.filter(|r| r.buttons.iter().all(|b| !b.disabled)))
    })
    .await?;
    ensure!(row.message.is_empty() && row.pressed().is_empty(), "{row:?}");
    Ok(())
}

/// The widget as the page shows it, read from its shadow DOM.
#[derive(Debug, Deserialize)]
struct WidgetState {
    heading: String,
    message: String,
    buttons: Vec<ButtonState>,
}

#[derive(Debug, Deserialize)]
struct ButtonState {
    reaction: String,
    label: String,
    count: String,
    pressed: String,
    disabled: bool,
}

impl WidgetState {
    fn counts(&self) -> BTreeMap<String, u64> {
        self.buttons.iter().map(|b| (b.reaction.clone(), b.count.parse().unwrap_or(u64::MAX))).collect()
    }

    fn pressed(&self) -> Vec<&str> {
        self.buttons.iter().filter(|b| b.pressed == "true").map(|b| b.reaction.as_str()).collect()
    }
}

/// The earlier readers' counts plus the given changes, for all seven keys.
fn expected_counts(plus: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = KEYS.iter().map(|k| ((*k).to_owned(), 0)).collect();
    for (key, n) in EARLIER_READERS {
        *counts.get_mut(key).unwrap() += n as u64;
    }
    for (key, n) in plus {
        *counts.get_mut(*key).unwrap() += n;
    }
    counts
}

async fn widget_state(browser: &Client) -> anyhow::Result<Option<WidgetState>> {
    state_of(browser, MAIN_WIDGET).await
}

async fn state_of(browser: &Client, selector: &str) -> anyhow::Result<Option<WidgetState>> {
    let script = "const root = document.querySelector(arguments[0])?.shadowRoot;
        if (!root || !root.querySelector('button')) return null;
        const text = (el, part) => el.querySelector(`[part~=${part}]`)?.textContent ?? '';
        return {
          heading: text(root, 'heading'),
          message: text(root, 'message'),
          buttons: [...root.querySelectorAll('button')].map(b => ({
            reaction: b.dataset.reaction, label: text(b, 'label'), count: text(b, 'count'),
            pressed: b.getAttribute('aria-pressed'), disabled: b.disabled })),
        };";
    let value = browser.execute(script, vec![json!(selector)]).await?;
    Ok(serde_json::from_value(value)?)
}

async fn button(
    browser: &Client,
    widget: &str,
    reaction: &str,
) -> anyhow::Result<fantoccini::elements::Element> {
    let host = browser.find(Locator::Css(widget)).await?;
    let root = host.shadow_root().await?;
    Ok(root.find(Locator::Css(&format!("button[data-reaction='{reaction}']"))).await?)
}

/// A real pointer click on a reaction button, through the shadow root.
async fn click(browser: &Client, widget: &str, reaction: &str) -> anyhow::Result<()> {
    button(browser, widget, reaction).await?.click().await.with_context(|| format!("clicking {reaction}"))
}

/// The service's configuration: a free port, the default limits, or a small write quota.
fn config(database_url: &str, write_quota: Option<u32>) -> Config {
    let mut config = Config::for_database(database_url);
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.visitor_secret = Some("browser-test-secret-browser-test-secret-01".parse().unwrap());
    if let Some(quota) = write_quota {
        // The burst is the quota; one more token per minute is far slower than the test.
        config.rate_limit_write_burst = NonZeroU32::new(quota).unwrap();
        config.rate_limit_writes_per_minute = NonZeroU32::MIN;
    }
    config
}

/// The real service, serving until stopped.
struct Service {
    address: String,
    http: reqwest::Client,
    shutdown: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn start(config: Config) -> Self {
        let app = Application::build(config).await.expect("the service builds");
        let address = format!("http://{}", app.local_addr());
        let (shutdown, stopped) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        Self { address, http, shutdown, server }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.server.await;
    }

    fn article_url(&self, suffix: &str) -> String {
        self.url(&format!("/v1/articles/{}/{suffix}", ARTICLE.replace('/', "%2F")))
    }

    async fn summary(&self, visitor: Option<&str>) -> anyhow::Result<Value> {
        let mut request = self.http.get(self.article_url("reactions"));
        if let Some(visitor) = visitor {
            request = request.header("x-visitor-id", visitor);
        }
        let response = request.send().await?.error_for_status()?;
        Ok(response.json().await?)
    }

    /// Waits until the API reports exactly these counts (writes land after the click).
    async fn await_counts(&self, expected: BTreeMap<String, u64>) -> anyhow::Result<()> {
        let expected = json!(expected);
        let mut last = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            last = self.summary(None).await?["counts"].clone();
            if last == expected {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the API's counts are {last}, expected {expected}")
    }
}

impl Service {
    /// One reader's reaction on `article`, through the API.
    async fn react(&self, article: &str, visitor: &str, reaction: &str) -> anyhow::Result<()> {
        self.http
            .put(self.url(&format!("/v1/articles/{}/reaction", article.replace('/', "%2F"))))
            .header("x-visitor-id", visitor)
            .json(&json!({ "reaction": reaction }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// An editor's settings for `article`.
    async fn settings(&self, article: &str, settings: Value) -> anyhow::Result<()> {
        self.http
            .put(self.url(&format!("/v1/admin/articles/{}/settings", article.replace('/', "%2F"))))
            .bearer_auth(ADMIN_TOKEN)
            .json(&settings)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The anonymous summary of `article`.
    async fn summary_of(&self, article: &str) -> anyhow::Result<Value> {
        let url = self.url(&format!("/v1/articles/{}/reactions", article.replace('/', "%2F")));
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }
}

async fn seed_earlier_readers(seeder: &Service) {
    let mut reader = 0;
    for (reaction, n) in EARLIER_READERS {
        for _ in 0..n {
            reader += 1;
            seeder
                .http
                .put(seeder.article_url("reaction"))
                .header("x-visitor-id", format!("earlier-reader-{reader:04}"))
                .json(&json!({ "reaction": reaction }))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .expect("an earlier reader reacts");
        }
    }
}

/// A database of its own, dropped at the end (the same scheme as the API tests' helper).
struct TestDatabase {
    name: String,
    url: String,
}

fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    url.parse().unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"))
}

async fn admin_connection() -> PgConnection {
    let options = server_options().database("postgres");
    PgConnection::connect_with(&options).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {}:{} ({e}); start it or point DATABASE_URL at one",
            options.get_host(),
            options.get_port()
        )
    })
}

impl TestDatabase {
    async fn create() -> Self {
        let name = format!("rr_browser_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
            .execute(&mut admin_connection().await)
            .await
            .expect("create the test database");
        let options = server_options();
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(r#"drop database if exists "{name}" with (force)"#)))
                    .execute(&mut admin_connection().await)
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
