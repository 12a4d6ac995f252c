//! `/dashboard`, the editors' page over the stats reads, and its script and style sheet.
//!
//! Plain files compiled into the binary (no build step) that load nothing from another host, so
//! the page works on an intranet. The charts are SVG drawn by the page's own script.

use super::responses;
use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::routes::widget::Asset;

/// The page. Its `<meta name="stats-token">` says whether the stats reads need a token, so that
/// the page asks for it before its first read rather than after a 401.
pub const DASHBOARD_HTML: &str = include_str!("../../../assets/dashboard/dashboard.html");

/// The page's script: fetches the stats, draws the charts and tables, keeps the URL current.
pub const DASHBOARD_JS: &str = include_str!("../../../assets/dashboard/dashboard.js");

/// The page's style sheet, light and dark.
pub const DASHBOARD_CSS: &str = include_str!("../../../assets/dashboard/dashboard.css");

/// What the page says when the server has no `STATS_TOKEN`, and what it says instead when it has.
const TOKEN_NOT_NEEDED: &str = r#"<meta name="stats-token" content="none">"#;
const TOKEN_NEEDED: &str = r#"<meta name="stats-token" content="required">"#;

/// The page changes with the configuration (the meta tag above) and with releases: browsers
/// revalidate it every time, which the ETag makes a cheap 304.
const PAGE_CACHE_CONTROL: &str = "no-cache";

/// The script and style sheet change with releases only.
const ASSET_CACHE_CONTROL: &str = "public, max-age=300";

/// Nothing but this origin: its script, its style sheet and its API. The favicon is an empty
/// `data:` URL, so that the browser asks for no `/favicon.ico`.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A variant of the page, with its own validator, answered with the page's policies.
fn page(body: &'static str) -> Asset {
    Asset::new(body, "text/html; charset=utf-8", PAGE_CACHE_CONTROL)
        .with_header(header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP)
        .with_header(header::REFERRER_POLICY, "no-referrer")
}

static PAGE_PUBLIC: LazyLock<Asset> = LazyLock::new(|| page(DASHBOARD_HTML));
static PAGE_WITH_TOKEN: LazyLock<Asset> = LazyLock::new(|| {
    assert!(DASHBOARD_HTML.contains(TOKEN_NOT_NEEDED), "the page carries the stats-token meta tag");
    // Made once per process; the asset lives as long as the process anyway.
    page(DASHBOARD_HTML.replacen(TOKEN_NOT_NEEDED, TOKEN_NEEDED, 1).leak())
});
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(DASHBOARD_JS, "text/javascript; charset=utf-8", ASSET_CACHE_CONTROL));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(DASHBOARD_CSS, "text/css; charset=utf-8", ASSET_CACHE_CONTROL));

#[derive(OpenApi)]
#[openapi(tags((name = "dashboard", description = "The editors' page over the stats reads")))]
struct DashboardDoc;

/// The dashboard routes. Like the widget's they bypass identity and rate limiting: they serve
/// fixed files and touch no database. The stats reads the page makes are limited (and, with
/// `STATS_TOKEN`, guarded) as any other.
pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(DashboardDoc::openapi())
        .routes(routes!(dashboard))
        .routes(routes!(dashboard_js))
        .routes(routes!(dashboard_css))
}

/// The editors' dashboard: site totals, top and trending articles, one article's time series.
///
/// An HTML page over the `stats` reads, refreshed every 30 seconds; the window and the selection
/// are in its URL (`?window=7d&reaction=love&article=…`), so a view can be shared. When the server
/// has a `STATS_TOKEN` the page asks for it once and keeps it for the browser session; the CSV
/// export asks for the `ADMIN_TOKEN` when used.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    responses(responses::Page, responses::AssetNotModified)
)]
async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let page = if state.stats_token.is_some() { &*PAGE_WITH_TOKEN } else { &*PAGE_PUBLIC };
    page.respond(&headers)
}

/// The dashboard's script.
#[utoipa::path(
    get,
    path = "/dashboard.js",
    tag = "dashboard",
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
        responses::AssetNotModified,
    )
)]
async fn dashboard_js(headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers)
}

/// The dashboard's style sheet.
#[utoipa::path(
    get,
    path = "/dashboard.css",
    tag = "dashboard",
    responses(
        (status = 200, description = "The style sheet", content_type = "text/css", body = String),
        responses::AssetNotModified,
    )
)]
async fn dashboard_css(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_whether_the_stats_need_a_token() {
        assert!(PAGE_PUBLIC.body.contains(TOKEN_NOT_NEEDED));
        assert!(PAGE_WITH_TOKEN.body.contains(TOKEN_NEEDED));
        assert!(!PAGE_WITH_TOKEN.body.contains(TOKEN_NOT_NEEDED));
        assert_ne!(PAGE_PUBLIC.etag, PAGE_WITH_TOKEN.etag, "each variant its own validator");
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        for (name, text) in [("html", DASHBOARD_HTML), ("js", DASHBOARD_JS), ("css", DASHBOARD_CSS)] {
            // The SVG namespace is a name, not an address anything is fetched from.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for remote in ["http://", "https://", "//cdn", "url(//"] {
                assert!(!text.contains(remote), "dashboard.{name} names another host ({remote})");
            }
        }
    }
}
