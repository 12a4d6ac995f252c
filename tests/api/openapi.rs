//! The committed OpenAPI document is exactly what the code generates, and what is served.

use crate::helpers::{Backend, spawn_app_on};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

/// Fails when the handlers' annotations and `openapi/openapi.json` disagree. To accept a change,
/// run `UPDATE_OPENAPI=1 cargo test openapi` and review the diff.
#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = reader_reactions::http::openapi_document();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(std::path::Path::new(COMMITTED).parent().unwrap()).unwrap();
        std::fs::write(COMMITTED, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test openapi` and commit the diff"
    );
}

#[test]
fn document_is_openapi_3_1_and_describes_every_v1_route() {
    let document: serde_json::Value =
        serde_json::from_str(&reader_reactions::http::openapi_document()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/articles/{article_id}/reactions", "get"),
        ("/v1/articles/{article_id}/reaction", "put"),
        ("/v1/articles/{article_id}/reaction", "delete"),
        ("/v1/reactions", "get"),
        ("/v1/visitors/me", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    let summary = &document["components"]["schemas"]["ReactionSummary"];
    assert!(summary["required"].as_array().unwrap().len() >= 4, "{summary}");
}

#[tokio::test]
async fn served_document_is_the_committed_file() {
    // The document does not depend on the backend: the one that needs no server will do.
    let app = spawn_app_on(Backend::Sqlite).await;

    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();

    assert_eq!(served, reader_reactions::http::openapi_document());
}
