//! `/widget.js`, the `<reader-reactions>` custom element news sites embed, and `/demo`, an
//! article page that shows it.
//!
//! Both files are compiled into the binary, so the widget always matches the API it calls.

use super::responses;
use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;

/// The custom element: plain JavaScript, no build step.
pub const WIDGET_JS: &str = include_str!("../../../assets/widget.js");

/// The demo article page.
pub const DEMO_HTML: &str = include_str!("../../../assets/demo.html");

/// Sites paste the unversioned `/widget.js` once, so a year-long `immutable` lifetime would
/// pin a broken release on readers for a year. Instead browsers and CDNs keep it a day, may
/// serve it a further week while they revalidate in the background, and revalidation is a
/// cheap 304 thanks to the ETag.
const WIDGET_CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";

/// The demo page changes with releases too; a short lifetime keeps it current.
const DEMO_CACHE_CONTROL: &str = "public, max-age=300";

/// The demo needs nothing but its own origin; the widget's constructed style sheet is not
/// inline style, the page's own `<style>` is.
const DEMO_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// A static asset with its strong validator.
pub(in crate::http) struct Asset {
    pub(in crate::http) body: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    pub(in crate::http) etag: HeaderValue,
    /// Headers added to every answer, 200 or 304 (a page's `Content-Security-Policy`).
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Asset {
    pub(in crate::http) fn new(
        body: &'static str,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value");
        Self { body, content_type, cache_control, etag, extra_headers: Vec::new() }
    }

    /// The same asset, answered with `name: value` as well (after its own headers), 200 or 304.
    pub(in crate::http) fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.extra_headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// 200 with the body, or 304 when the client's copy is current; either with the extra headers.
    pub(in crate::http) fn respond(&self, request_headers: &HeaderMap) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(self.cache_control));
        headers.insert(header::ETAG, self.etag.clone());
        headers.extend(self.extra_headers.iter().map(|(name, value)| (Some(name.clone()), value.clone())));
        if crate::http::caching::if_none_match(request_headers, self.etag.as_bytes()) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        (headers, self.body).into_response()
    }
}

static WIDGET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(WIDGET_JS, "text/javascript; charset=utf-8", WIDGET_CACHE_CONTROL));
static DEMO: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(DEMO_HTML, "text/html; charset=utf-8", DEMO_CACHE_CONTROL)
        .with_header(header::CONTENT_SECURITY_POLICY, DEMO_CSP)
});

#[derive(OpenApi)]
#[openapi(tags((name = "widget", description = "The embeddable `<reader-reactions>` element and its demo page")))]
struct WidgetDoc;

/// The widget routes. Like the probes they bypass identity and rate limiting: they serve
/// fixed files and touch no database.
pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(WidgetDoc::openapi()).routes(routes!(widget_js)).routes(routes!(demo))
}

/// The `<reader-reactions>` custom element, as a JavaScript module.
///
/// Embed with `<script type="module" src="…/widget.js"></script>` and
/// `<reader-reactions article="…"></reader-reactions>`. Cached for a day (then revalidated with
/// `If-None-Match`); the browser loads it with CORS, so `ALLOWED_ORIGINS` applies.
#[utoipa::path(
    get,
    path = "/widget.js",
    tag = "widget",
    responses(
        (status = 200, description = "The module", content_type = "text/javascript", body = String,
            headers(("ETag" = String, description = "Strong validator of this release"),
                    ("Cache-Control" = String, description = "One day, then stale-while-revalidate for a week"))),
        responses::AssetNotModified,
    )
)]
async fn widget_js(headers: HeaderMap) -> Response {
    WIDGET.respond(&headers)
}

/// An article page with the widget under it, to try the service in a browser.
///
/// A fictional news site's article with the full widget, and a list of further stories with
/// smaller widgets that share one batch read.
#[utoipa::path(get, path = "/demo", tag = "widget", responses(responses::Page, responses::AssetNotModified))]
async fn demo(headers: HeaderMap) -> Response {
    DEMO.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asset_answers_304_to_its_own_tag_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(WIDGET.respond(&headers).status(), StatusCode::OK);
        headers.insert(header::IF_NONE_MATCH, WIDGET.etag.clone());
        assert_eq!(WIDGET.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(DEMO.respond(&headers).status(), StatusCode::OK, "another asset's tag");
    }
}
