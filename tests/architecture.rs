//! The module rule of DEVELOPERS.md: dependencies point one way, `http → app → store → domain`,
//! and the web framework stays at the HTTP edge. This test reads the sources: nothing outside
//! `src/http/`, `src/serve.rs`, `src/startup.rs` and `src/main.rs` may name axum, hyper or tower.

use std::path::{Path, PathBuf};

/// The HTTP edge: the only places allowed to use the web framework.
const EDGE: [&str; 4] = ["src/http/", "src/serve.rs", "src/startup.rs", "src/main.rs"];
const FRAMEWORK: [&str; 5] = ["axum::", "hyper::", "hyper_util::", "tower::", "tower_http::"];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_web_framework_is_used_only_at_the_http_edge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        if EDGE.iter().any(|edge| relative.starts_with(edge)) {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if FRAMEWORK.iter().any(|name| code.contains(name)) {
                offenders.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 20, "the sources were found ({} files)", files.len());
    assert!(offenders.is_empty(), "the web framework below the HTTP edge:\n{}", offenders.join("\n"));
}
