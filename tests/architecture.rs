//! The module rule of DEVELOPERS.md: dependencies point one way, `http → app → store → domain`,
//! and the web framework stays at the HTTP edge. These tests read the sources: nothing outside
//! `src/http/`, `src/serve.rs`, `src/startup.rs` and `src/main.rs` may name axum, hyper or tower,
//! and no module names one of a layer above its own.

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

/// A line of code in `src/`: its file (relative to the repository, `/`-separated), its
/// number, and the line, whole and without its comment.
struct CodeLine {
    file: String,
    number: usize,
    line: String,
    code: String,
}

impl CodeLine {
    fn cited(&self) -> String {
        format!("{}:{}: {}", self.file, self.number, self.line.trim())
    }
}

/// Every line of every source file under `src/`.
fn code_lines() -> Vec<CodeLine> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "the sources were found ({} files)", files.len());
    let mut lines = Vec::new();
    for path in &files {
        let file = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        for (n, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("").to_owned();
            lines.push(CodeLine { file: file.clone(), number: n + 1, line: line.to_owned(), code });
        }
    }
    lines
}

#[test]
fn the_web_framework_is_used_only_at_the_http_edge() {
    let offenders: Vec<String> = code_lines()
        .into_iter()
        .filter(|l| !EDGE.iter().any(|edge| l.file.starts_with(edge)))
        .filter(|l| FRAMEWORK.iter().any(|name| l.code.contains(name)))
        .map(|l| l.cited())
        .collect();
    assert!(offenders.is_empty(), "the web framework below the HTTP edge:\n{}", offenders.join("\n"));
}

/// The layer of a source file, from the bottom: `domain` 0, `store` 1, the use cases and what
/// they share (`app`, `config`, `telemetry`, `healthcheck`) 2, `http` 3, the wiring (`startup`,
/// `serve`, `main`, `lib`) 4.
fn layer_of_path(relative: &str) -> u8 {
    let module = relative.trim_start_matches("src/").split(['/', '.']).next().unwrap();
    layer_of_module(module).unwrap_or_else(|| panic!("{relative}: a module the layer rule does not know"))
}

fn layer_of_module(module: &str) -> Option<u8> {
    Some(match module {
        "domain" => 0,
        "store" => 1,
        "app" | "config" | "telemetry" | "healthcheck" => 2,
        "http" => 3,
        "startup" | "serve" | "main" | "lib" => 4,
        _ => return None,
    })
}

/// The crate's top-level modules a line of code names (`crate::store::…`, `use crate::{a, b}`
/// is not used in this crate).
fn named_modules(code: &str) -> Vec<&str> {
    code.match_indices("crate::")
        .map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn no_module_names_a_layer_above_its_own_and_config_names_only_the_domain() {
    let offenders: Vec<String> = code_lines()
        .into_iter()
        .filter(|l| {
            let layer = layer_of_path(&l.file);
            named_modules(&l.code).into_iter().any(|module| {
                let above = layer_of_module(module).is_some_and(|named| named > layer);
                let config_rule = l.file == "src/config.rs" && !matches!(module, "domain" | "config");
                above || (config_rule && layer_of_module(module).is_some())
            })
        })
        .map(|l| l.cited())
        .collect();
    assert!(offenders.is_empty(), "names of a layer above:\n{}", offenders.join("\n"));
}
