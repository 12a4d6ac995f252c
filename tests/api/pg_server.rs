//! The PostgreSQL server that the `postgres::…` tests create their databases on.
//!
//! `DATABASE_URL=postgres://…` names one (its database part is ignored). Otherwise the first test
//! that needs it starts a throwaway server from the PostgreSQL binaries on this machine, in a
//! temporary directory, shared by every test of this process. A small shell watchdog holds the
//! read end of a pipe whose write end only this process holds: when the process exits, however it
//! exits, the watchdog stops the server and deletes its directory.
//!
//! (The pgtemp crate starts such servers too, but one per handle and stopped on `Drop`, which a
//! server shared through a `static` never reaches; and when run as root it needs `sudo`.)

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

/// How long the throwaway server may take to accept connections.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// Connection options for the server, as its superuser, database `postgres`; or why there is
/// none, in one line.
pub fn admin_options() -> Result<PgConnectOptions, &'static str> {
    static SERVER: OnceLock<Result<PgConnectOptions, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => url
            .parse::<PgConnectOptions>()
            .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")),
        _ => start_throwaway().map_err(|why| {
            format!(
                "the PostgreSQL tests need DATABASE_URL=postgres://… or PostgreSQL's server binaries \
                 (initdb and postgres on PATH or in /usr/lib/postgresql/*/bin; Debian: apt install \
                 postgresql) to start a throwaway server: {why}"
            )
        }),
    });
    match server {
        Ok(options) => Ok(options.clone().database("postgres")),
        Err(why) => Err(why.as_str()),
    }
}

/// Keeps the watchdog's pipe open for as long as this process lives.
static WATCHDOG: Mutex<Option<(Child, ChildStdin)>> = Mutex::new(None);

fn start_throwaway() -> Result<PgConnectOptions, String> {
    let bin = server_binaries().ok_or("no initdb and postgres found")?;
    // PostgreSQL refuses to run as root: then run it as an unprivileged user.
    let run_as = if current_uid()? == 0 { Some(unprivileged_user()?) } else { None };
    let dir = std::env::temp_dir().join(format!("reader-reactions-test-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot hand {} to uid {uid}: {e}", dir.display()))?;
    }
    let data = dir.join("data");

    let mut initdb = Command::new(bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    let initdb = as_user(&mut initdb, run_as).output().map_err(|e| format!("cannot run initdb: {e}"))?;
    if !initdb.status.success() {
        let stderr = String::from_utf8_lossy(&initdb.stderr);
        return Err(format!("initdb failed: {}", stderr.trim().replace('\n', "; ")));
    }

    let port = free_port()?;
    let log = dir.join("server.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    if let Some((uid, gid)) = run_as {
        let _ = std::os::unix::fs::chown(&log, Some(uid), Some(gid));
    }
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        // Runs the server, waits for the end of its standard input (this process has exited),
        // then stops the server and removes its directory. It ignores the signals a Ctrl-C or a
        // hang-up sends the whole process group, so that it still cleans up afterwards.
        .arg(concat!(
            r#"trap '' INT TERM HUP; dir=$1; shift; "$@" </dev/null & server=$!; "#,
            r#"cat >/dev/null; kill -INT "$server"; wait "$server"; rm -rf "$dir""#
        ))
        .arg("sh")
        .arg(&dir)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &port.to_string()])
        // Test data need not survive a crash; tests run faster without syncing it.
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log_file);
    let mut child =
        as_user(&mut watchdog, run_as).spawn().map_err(|e| format!("cannot start postgres: {e}"))?;
    let stdin = child.stdin.take().expect("stdin is piped");

    let started = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&log) {
            let _ = file.read_to_string(&mut text);
        }
        if text.contains("ready to accept connections") {
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err(format!("postgres exited: {}", last_line(&text)));
        }
        if started.elapsed() > STARTUP_LIMIT {
            return Err(format!("postgres did not start within {STARTUP_LIMIT:?}: {}", last_line(&text)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    *WATCHDOG.lock().expect("watchdog lock") = Some((child, stdin));
    Ok(PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres"))
}

/// The directory holding `initdb` and `postgres`: on PATH, else where distributions install them.
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|dir| has_both(dir)) {
        return Some(dir);
    }
    // Debian and Ubuntu, RHEL and Fedora, Homebrew, source builds: the newest version first.
    let mut candidates: Vec<PathBuf> = Vec::new();
    for (parent, suffix) in [
        ("/usr/lib/postgresql", "bin"),
        ("/usr", "bin"),
        ("/opt/homebrew/opt", "bin"),
        ("/usr/local/opt", "bin"),
    ] {
        if let Ok(entries) = std::fs::read_dir(parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if parent == "/usr/lib/postgresql"
                    || name.starts_with("pgsql-")
                    || name.starts_with("postgresql")
                {
                    candidates.push(entry.path().join(suffix));
                }
            }
        }
    }
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.retain(|dir| has_both(dir));
    candidates.sort_by_key(|dir| version_of(dir));
    candidates.pop()
}

/// The major version in a path such as `/usr/lib/postgresql/17/bin`, for picking the newest.
fn version_of(dir: &Path) -> u32 {
    let digits: String = dir
        .to_string_lossy()
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())
        .unwrap_or_default()
        .to_owned();
    digits.parse().unwrap_or(0)
}

fn current_uid() -> Result<u32, String> {
    id(&["-u"])
}

/// A user other than root to run the server as: `postgres` if it exists, else `nobody`.
fn unprivileged_user() -> Result<(u32, u32), String> {
    for user in ["postgres", "nobody"] {
        if let (Ok(uid), Ok(gid)) = (id(&["-u", user]), id(&["-g", user])) {
            return Ok((uid, gid));
        }
    }
    Err("running as root, and neither a postgres nor a nobody user exists to run the server as".into())
}

fn id(args: &[&str]) -> Result<u32, String> {
    let output = Command::new("id").args(args).output().map_err(|e| format!("cannot run id: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("`id {}` failed", args.join(" ")))
}

fn as_user(command: &mut Command, run_as: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid).env_remove("HOME");
    }
    command
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("cannot find a free port: {e}"))
}

fn last_line(log: &str) -> &str {
    log.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("(no output)")
}
