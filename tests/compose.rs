//! `docker-compose.yml` and the `Dockerfile` it builds: a valid Compose file, with the production
//! shape the README promises. No Docker engine is needed: the file is checked against the Compose
//! Specification's JSON schema, and by `docker compose config` (or the older `docker-compose
//! config`) when a Compose client is installed.
//!
//! `compose-spec/compose-spec.json` is the schema of the Compose Specification
//! (compose-spec/compose-spec, Apache-2.0, licence beside it) as vendored by check-jsonschema
//! 0.39.0.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // This binary uses a few of the helpers.
mod helpers;

use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose_file() -> Value {
    let text =
        std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).expect("docker-compose.yml exists");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("docker-compose.yml is not YAML: {e}"))
}

#[test]
fn the_compose_file_satisfies_the_compose_specification_schema() {
    let schema: Value = serde_json::from_str(include_str!("compose-spec/compose-spec.json")).unwrap();
    let url = "https://compose-spec.io/compose-spec.json";
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(url, schema).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile(url, &mut schemas).unwrap_or_else(|e| panic!("the schema compiles: {e}"));

    if let Err(error) = schemas.validate(&compose_file(), index) {
        panic!("docker-compose.yml breaks the Compose schema: {error:#}");
    }
}

#[test]
fn a_compose_client_accepts_the_compose_file() {
    let clients: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    let Some(client) = clients.into_iter().find(|client| {
        Command::new(client[0]).args(&client[1..]).arg("version").output().is_ok_and(|o| o.status.success())
    }) else {
        // CI installs one (see .ci/run); elsewhere the schema test above still runs.
        assert!(std::env::var_os("CI").is_none(), "CI needs `docker compose` or `docker-compose`");
        eprintln!("no Compose client installed: docker-compose.yml was checked against the schema only");
        return;
    };

    let output = Command::new(client[0])
        .args(&client[1..])
        .args(["--file", &format!("{ROOT}/docker-compose.yml"), "config", "--quiet"])
        // As on a machine with no settings: every variable must have a working default.
        .env_remove("POSTGRES_PASSWORD")
        .env_remove("VISITOR_SECRET")
        .env_remove("ADMIN_TOKEN")
        .output()
        .expect("the Compose client runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "`{} config` refuses docker-compose.yml: {stderr}", client.join(" "));
    assert!(!stderr.contains("WARN"), "`{} config` warns: {stderr}", client.join(" "));
}

#[test]
fn the_service_starts_after_postgres_is_healthy_and_the_migrations_have_run() {
    let compose = compose_file();
    let services = &compose["services"];

    let postgres = &services["postgres"];
    assert!(postgres["image"].as_str().unwrap().starts_with("postgres:"), "{postgres}");
    assert!(postgres["healthcheck"]["test"].to_string().contains("pg_isready"), "{postgres}");
    let data = postgres["volumes"][0].as_str().unwrap();
    let volume = data.split(':').next().unwrap();
    assert!(compose["volumes"][volume].is_object(), "PostgreSQL keeps its data in a named volume: {data}");

    let migrate = &services["migrate"];
    assert_eq!(migrate["depends_on"]["postgres"]["condition"], "service_healthy");
    assert_eq!(migrate["restart"], "no", "a one-shot step");

    let service = &services["reader-reactions"];
    assert_eq!(service["depends_on"]["postgres"]["condition"], "service_healthy");
    assert_eq!(service["depends_on"]["migrate"]["condition"], "service_completed_successfully");
    let environment = &service["environment"];
    assert_eq!(environment["MIGRATE_ON_START"], "false", "the migrate step applies them");
    assert_eq!(environment["LISTEN_ADDR"], "0.0.0.0:8080");
    assert!(environment["DATABASE_URL"].as_str().unwrap().starts_with("postgres://"));
    assert_eq!(migrate["environment"]["DATABASE_URL"], environment["DATABASE_URL"]);
    assert!(
        environment.as_object().unwrap().contains_key("VISITOR_SECRET"),
        "VISITOR_SECRET is passed through when set"
    );
}

#[test]
fn the_images_are_built_from_dockerfile_stages_and_the_service_runs_unprivileged_with_a_health_check() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("Dockerfile exists");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| line.split(" AS ").nth(1))
        .map(str::trim)
        .collect();
    let compose = compose_file();
    for (name, service) in compose["services"].as_object().unwrap() {
        if let Some(target) = service["build"]["target"].as_str() {
            assert!(
                stages.contains(&target),
                "{name} builds stage {target:?}, which the Dockerfile lacks: {stages:?}"
            );
        }
    }

    // The runtime stage is the last, so that a plain `docker build .` gives the service image.
    assert_eq!(stages.last(), Some(&"runtime"), "{stages:?}");
    let runtime = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    let user =
        runtime.lines().find_map(|line| line.strip_prefix("USER ")).expect("the runtime stage sets USER");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "the service does not run as root: {user}");
    assert!(runtime.contains("HEALTHCHECK"), "the runtime image has a health check");
    assert!(runtime.contains("--healthcheck"), "which asks the binary itself (no curl in the image)");
}

/// The `Dockerfile` stage named `name`: from its `FROM` line to the next.
fn dockerfile_stage(name: &str) -> String {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("Dockerfile exists");
    let start = dockerfile
        .find(&format!(" AS {name}\n"))
        .and_then(|at| dockerfile[..at].rfind("FROM "))
        .unwrap_or_else(|| panic!("the Dockerfile has a stage {name}"));
    let rest = &dockerfile[start + 5..];
    rest[..rest.find("\nFROM ").unwrap_or(rest.len())].to_owned()
}

/// The JSON array of an exec-form instruction (`ENTRYPOINT [...]`, `CMD [...]`) in `stage`.
fn exec_form(stage: &str, instruction: &str) -> Vec<String> {
    let start = stage.find(instruction).unwrap_or_else(|| panic!("{instruction} in {stage}"));
    let rest = &stage[start + instruction.len()..];
    let array = &rest[rest.find('[').unwrap()..=rest.find(']').unwrap()];
    serde_json::from_str(array).unwrap_or_else(|e| panic!("{instruction} is a JSON array ({e}): {array}"))
}

/// The migrate image's command, run as that image runs it (the `COPY`ed migrations in a folder
/// of their own, the same sqlx-cli version), against a fresh PostgreSQL database: it applies
/// every migration, and the service then starts on the result with `MIGRATE_ON_START=false`, as
/// the Compose file starts it.
#[tokio::test]
async fn the_migrate_image_command_migrates_a_real_database_the_service_then_accepts() {
    let builder = dockerfile_stage("sqlx-cli");
    let version = builder.split("--version ").nth(1).and_then(|v| v.split_whitespace().next()).unwrap();
    // CI installs it (see .ci/run); elsewhere this test needs it on PATH, or is skipped.
    let installed = Command::new("sqlx").arg("--version").output();
    let installed = installed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    if !installed.split_whitespace().any(|word| word == version) {
        assert!(std::env::var_os("CI").is_none(), "CI runs sqlx-cli {version}, found {installed}");
        eprintln!("sqlx-cli {version} is not installed ({installed}): skipped");
        return;
    }

    let stage = dockerfile_stage("migrate");
    let copy = stage.lines().find_map(|l| l.strip_prefix("COPY migrations/")).expect("COPY migrations/");
    let (pattern, target) = copy.split_once(' ').unwrap();
    assert_eq!(pattern, "*.sql", "the image copies the PostgreSQL migrations");
    // The image's file system in a temporary root: the migrations where COPY puts them, and the
    // root as the working directory (distroless images start in `/`).
    let target = target.trim().trim_end_matches('/');
    let root = std::env::temp_dir().join(format!("rr-migrate-image-{}", std::process::id()));
    let folder = root.join(target.trim_start_matches('/'));
    std::fs::create_dir_all(&folder).unwrap();
    let mut expected = Vec::new();
    for entry in std::fs::read_dir(format!("{ROOT}/migrations")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            expected.push(name.split('_').next().unwrap().parse::<i64>().unwrap());
        }
    }
    expected.sort();
    let entrypoint = exec_form(&stage, "ENTRYPOINT");
    assert!(entrypoint[0].ends_with("/sqlx"), "{entrypoint:?}");
    let args: Vec<String> = entrypoint[1..]
        .iter()
        .map(|arg| if arg == target { folder.display().to_string() } else { arg.clone() })
        .collect();

    let db = helpers::TestDatabase::create(helpers::Backend::Postgres).await;
    // In the image's root, not the repository, whose own migrations/ must not stand in.
    let output =
        Command::new("sqlx").args(&args).current_dir(&root).env("DATABASE_URL", &db.url).output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));

    let mut conn = db.connect().await;
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, expected, "every migration of the folder, and nothing else");
    let mut config = helpers::test_config(&db.url);
    config.migrate_on_start = false;
    let app = helpers::spawn_with(db, config).await;
    let summary = helpers::json_ok(app.put_reaction("compose", "compose-visitor-1", "wow").await).await;
    assert_eq!(summary["counts"]["wow"], 1, "the service works on the migrated database");
    app.assert_counts_match_rows().await;
}

/// The runtime image's `HEALTHCHECK` command, run against the service binary: healthy while it
/// serves, unhealthy before and after. `LISTEN_ADDR` is on every interface, as in the image.
#[test]
fn the_health_check_command_tells_a_serving_binary_from_a_stopped_one() {
    let stage = dockerfile_stage("runtime");
    let command = exec_form(&stage, "HEALTHCHECK --interval");
    let binary = env!("CARGO_BIN_EXE_reader-reactions");
    assert!(command[0].ends_with("/reader-reactions"), "{command:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let healthy = || {
        Command::new(binary)
            .args(&command[1..])
            .env("LISTEN_ADDR", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!healthy(), "nothing serves yet");

    let dir = std::env::temp_dir().join(format!("rr-healthcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut service = Command::new(binary)
        .env("DATABASE_URL", format!("sqlite://{}/reactions.db", dir.display()))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut up = false;
    while !up && std::time::Instant::now() < deadline && service.try_wait().unwrap().is_none() {
        up = healthy();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    service.kill().unwrap();
    service.wait().unwrap();
    let after = healthy();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "healthy once the binary serves");
    assert!(!after, "unhealthy once it is gone");
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The bind mounts of a service, as (file in the repository, path in the container).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            (parts.next().unwrap().trim_start_matches("./").to_owned(), parts.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn the_monitoring_profile_adds_prometheus_scraping_the_service_and_grafana_with_its_dashboard() {
    let compose = compose_file();
    let services = compose["services"].as_object().unwrap();
    for name in ["postgres", "migrate", "reader-reactions"] {
        assert!(services[name]["profiles"].is_null(), "{name} starts without a profile");
    }
    for name in ["prometheus", "grafana"] {
        assert_eq!(services[name]["profiles"], serde_json::json!(["monitoring"]), "{name} is in the profile");
        let image = services[name]["image"].as_str().unwrap();
        assert!(!image.ends_with(":latest") && image.contains(':'), "{name} pins its image: {image}");
        for (source, _) in bind_mounts(&services[name]) {
            assert!(
                std::path::Path::new(ROOT).join(&source).exists(),
                "{name} mounts {source}, which exists"
            );
        }
    }

    // Prometheus scrapes the service's /metrics on the port it listens on.
    let prometheus = &services["prometheus"];
    let config_path = bind_mounts(prometheus)
        .into_iter()
        .find(|(_, target)| target == "/etc/prometheus/prometheus.yml")
        .map(|(source, _)| source)
        .expect("prometheus mounts its configuration");
    let scrape = &yaml_file(&config_path)["scrape_configs"][0];
    assert_eq!(scrape["metrics_path"], "/metrics");
    let listen_port =
        services["reader-reactions"]["environment"]["LISTEN_ADDR"].as_str().unwrap().rsplit(':').next();
    assert_eq!(
        scrape["static_configs"][0]["targets"][0].as_str(),
        Some(&*format!("reader-reactions:{}", listen_port.unwrap()))
    );

    // Grafana provisions the Prometheus data source and loads the dashboard from where it is mounted.
    let grafana = &services["grafana"];
    let mounts = bind_mounts(grafana);
    let provisioning = mounts
        .iter()
        .find(|(_, target)| target == "/etc/grafana/provisioning")
        .map(|(source, _)| source.clone())
        .expect("grafana mounts its provisioning");
    let (_, dashboard_target) = mounts
        .iter()
        .find(|(source, _)| source == "deploy/grafana/reader-reactions.json")
        .expect("grafana mounts the dashboard");
    let provider = &yaml_file(&format!("{provisioning}/dashboards/reader-reactions.yml"))["providers"][0];
    let dashboard_dir = provider["options"]["path"].as_str().unwrap();
    assert!(
        dashboard_target.starts_with(&format!("{dashboard_dir}/")),
        "{dashboard_target} is under {dashboard_dir}"
    );
    let datasource = &yaml_file(&format!("{provisioning}/datasources/prometheus.yml"))["datasources"][0];
    assert_eq!(datasource["type"], "prometheus");
    assert_eq!(datasource["url"], "http://prometheus:9090", "the prometheus service");

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/deploy/grafana/reader-reactions.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("the dashboard picks its data source by a variable");
    assert_eq!(variable["current"]["value"], datasource["uid"], "and defaults to the provisioned one");
}
