//! The binary as a newcomer meets it: with no settings at all it serves on the embedded store,
//! in `reader-reactions.db` in its working directory; and `--healthcheck` tells whether an
//! instance is up, as the container health check asks it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::json_ok;

const BINARY: &str = env!("CARGO_BIN_EXE_reader-reactions");

/// A loopback address nothing listens on right now.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `reader-reactions --healthcheck` against `addr`: its exit code and what it printed.
fn healthcheck(addr: SocketAddr) -> (Option<i32>, String) {
    let output = Command::new(BINARY)
        .arg("--healthcheck")
        .env("LISTEN_ADDR", addr.to_string())
        .output()
        .expect("the binary runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Stops the service when the test ends, pass or fail.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn with_no_settings_the_service_keeps_reactions_in_a_file_in_its_working_directory() {
    let dir = std::env::temp_dir().join(format!("rr-zero-setup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    let addr = free_addr();
    let mut command = Command::new(BINARY);
    // Nothing from the environment but a free port (tests run side by side).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DATABASE_") {
            command.env_remove(name);
        }
    }
    let _service = Service(
        command
            .current_dir(&dir)
            .env("LISTEN_ADDR", addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );

    let started = Instant::now();
    while healthcheck(addr).0 != Some(0) {
        assert!(started.elapsed() < Duration::from_secs(30), "the service did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = reqwest::Client::new()
        .put(format!("http://{addr}/v1/articles/first-story/reaction"))
        .header("x-visitor-id", "newcomer-0001")
        .json(&serde_json::json!({"reaction": "love"}))
        .send()
        .await
        .unwrap();

    assert_eq!(json_ok(put).await["counts"]["love"], 1);
    assert!(dir.join("reader-reactions.db").is_file(), "the default store is ./reader-reactions.db");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn healthcheck_fails_with_one_line_when_nothing_answers() {
    let (code, stderr) = healthcheck(free_addr());

    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("not healthy"), "{stderr}");
}
