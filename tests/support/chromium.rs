//! Headless Chromium over WebDriver for the browser tests: finding the programs, chromedriver on
//! a free port, a throwaway profile, screenshots, polling, and the browser's console log.
//!
//! Included by path (`#[path = "support/chromium.rs"] mod chromium;`) by the test binaries that
//! need it.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// chromedriver and Chromium from `CHROMEDRIVER` and `CHROMIUM`, or from `PATH`; panics with the
/// package names when either is missing.
pub fn programs() -> (PathBuf, PathBuf) {
    let chromedriver = find_program("CHROMEDRIVER", &["chromedriver", "/usr/lib/chromium/chromedriver"])
        .unwrap_or_else(|| {
            panic!("chromedriver not found: apt-get install chromium chromium-driver, or set CHROMEDRIVER")
        });
    let chromium = find_program("CHROMIUM", &["chromium", "chromium-browser", "google-chrome"])
        .unwrap_or_else(|| {
            panic!("chromium not found: apt-get install chromium chromium-driver, or set CHROMIUM")
        });
    (chromedriver, chromium)
}

/// An executable from an environment variable, or the first of `candidates` found on `PATH`
/// (or given as an absolute path).
fn find_program(variable: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        let name = Path::new(name);
        if name.is_absolute() {
            return name.is_file().then(|| name.to_owned());
        }
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    })
}

/// chromedriver on a free loopback port, killed when dropped.
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    pub async fn start(program: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Self { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// A session of headless Chromium with a fresh profile, nothing that calls home, and the
    /// console kept for [`ChromeDriver::console`].
    pub async fn connect(&self, chromium: &Path, profile: &Path) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ]
        .map(str::to_owned);
        let mut args = args.to_vec();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium ({}): {e}", chromium.display()))
    }

    /// Sends a Chrome DevTools Protocol command (e.g. `Emulation.setEmulatedMedia`) through
    /// chromedriver, which fantoccini does not wrap.
    pub async fn cdp(&self, browser: &Client, cmd: &str, params: Value) -> anyhow::Result<Value> {
        let session = browser.session_id().await?.context("the browser has a session")?;
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/goog/cdp/execute", self.url))
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["value"].clone())
    }

    /// The browser console's entries since the last call, as (level, message): JavaScript
    /// errors, failed loads and `console.*` calls. Through chromedriver's log endpoint, which
    /// fantoccini does not wrap.
    pub async fn console(&self, browser: &Client) -> anyhow::Result<Vec<(String, String)>> {
        let session = browser.session_id().await?.context("the browser has a session")?;
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.url))
            .json(&json!({"type": "browser"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let entries = answer["value"].as_array().context("the log is a list")?;
        Ok(entries
            .iter()
            .map(|e| {
                (e["level"].as_str().unwrap_or("").to_owned(), e["message"].as_str().unwrap_or("").to_owned())
            })
            .collect())
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a PNG to `target/artifacts/` (or `$CARGO_TARGET_DIR/artifacts/`).
pub fn save_png(png: &[u8], name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, png).with_context(|| format!("while writing {name}"))?;
    Ok(path)
}

/// Polls `check` until it yields a value; fails after ten seconds.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    eventually_within(what, Duration::from_secs(10), check).await
}

/// Polls `check` until it yields a value; fails after `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
