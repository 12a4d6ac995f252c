//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use utoipa::OpenApi;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reader-reactions",
        description = "Reaction buttons under news articles (like, dislike, love, funny, angry, sad, \
wow) with per-article counts for sites and dashboards.\n\n\
Visitors are identified by the `X-Visitor-Id` header; only a keyed hash of it is stored. \
Every error is `application/problem+json` (RFC 9457).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "reactions", description = "Read and change reactions on articles"),
        (name = "visitors", description = "A visitor's own data"),
        (name = "operations", description = "Probes and the API description"),
    ),
    components(schemas(super::Problem))
)]
pub(super) struct ApiDoc;

impl ApiDoc {
    pub(super) fn build() -> utoipa::openapi::OpenApi {
        let mut doc = Self::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    }
}

/// The document as committed in `openapi/openapi.json`: pretty JSON with a final newline.
pub fn openapi_document() -> String {
    let (_, document) = super::api_routes(None).split_for_parts();
    render(&document)
}

pub(super) fn render(document: &utoipa::openapi::OpenApi) -> String {
    let mut json = document
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// `GET /openapi.json`, serving the document rendered once at start-up.
pub(super) fn router(document: String) -> Router<AppState> {
    let document = axum::body::Bytes::from(document);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(super::extract::JSON_UTF8),
                    )],
                    document,
                )
            }
        }),
    )
}
