//! The HTTP edge: routes, extractors, the error shape and the cross-cutting layers.
//!
//! Routes and the OpenAPI document come from one registration (utoipa-axum), so the served
//! document cannot drift from the handlers.

mod caching;
mod error;
mod extract;
mod layers;
pub mod middleware;
mod openapi;
mod problem;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::middleware as axum_middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, PROBLEM_JSON, Problem};
pub use extract::AppJson;
pub use openapi::openapi_document;
pub use routes::admin::BearerToken;
pub use routes::reactions::public_cache_control;

use self::middleware::article_cap::ArticleCap;
use self::middleware::client_ip::TrustedProxies;
use self::middleware::identity::IdentityResolver;
use self::middleware::rate_limit::{ClassOf, RateLimits, rate_limit};
use crate::app::reactions::Reactions;

/// Largest request body we read; larger ones get a 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Largest request head (header names and values) we accept; larger ones get a 431. hyper
/// refuses heads over about 400 KB itself; this keeps a far smaller bound on what reaches us.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Header carrying the request id, generated when the client sends none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What every handler can reach. Cloned for every request, so all of it sits behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    pub reactions: Reactions,
    /// The live counts (`/events`).
    pub live: crate::app::live::LiveCounts,
    /// The dashboards' reads and the instance's health.
    pub stats: crate::app::Stats,
    /// Guards the CSV export and the editorial controls; `None` switches them off.
    pub admin_token: Option<BearerToken>,
    /// Guards the stats reads (not the export); `None` leaves them public.
    pub stats_token: Option<BearerToken>,
    /// `Cache-Control` of anonymous reads ([`public_cache_control`]).
    pub public_cache_control: HeaderValue,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Settings for the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// After this long a request is answered with 503 whatever it was waiting for.
    pub request_timeout: Duration,
    /// Origins allowed to call the API from a browser; `["*"]` for any.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `/metrics` is served on a listener of its own (`METRICS_ADDR`), so it is a 404 here.
    pub metrics_elsewhere: bool,
}

/// The per-request middleware state: who the client is, and how much it may do.
#[derive(Clone)]
pub struct EdgeLayers {
    pub identity: Arc<IdentityResolver>,
    pub rate_limits: Arc<RateLimits>,
    /// The ballot-stuffing cap: writes per (client network, article).
    pub article_writes: Arc<ArticleCap>,
}

/// All routes with their OpenAPI descriptions, before state and the outer layers are attached.
/// The document is built without the layers (`edge` is `None`), but describes them all the same.
pub(crate) fn api_routes(edge: Option<EdgeLayers>) -> OpenApiRouter<AppState> {
    let layer_docs = openapi::LayerDocs::new();
    // The editorial controls are admin routes like the export: the same quota, no identity.
    let stats_routes =
        behind_stats_limit(routes::stats::router().merge(routes::editorial::router()), &edge, &layer_docs);
    let visitor_routes =
        behind_visitor_edge(routes::reactions::router().merge(routes::live::router()), edge, &layer_docs);
    OpenApiRouter::with_openapi(openapi::ApiDoc::build())
        .merge(visitor_routes)
        .merge(routes::health::router())
        .merge(routes::widget::router())
        .merge(routes::dashboard::router())
        .merge(stats_routes)
}

/// Mounts `routes` under the `stats` quota, and says so in their document. Dashboard reads are
/// heavier and not per visitor: their own quota, no identity layer.
fn behind_stats_limit(
    mut routes: OpenApiRouter<AppState>,
    edge: &Option<EdgeLayers>,
    docs: &openapi::LayerDocs,
) -> OpenApiRouter<AppState> {
    docs.rate_limit(routes.get_openapi_mut(), ClassOf::Stats, false);
    if let Some(edge) = edge {
        routes = routes.route_layer(axum_middleware::from_fn_with_state(
            (edge.rate_limits.clone(), ClassOf::Stats),
            rate_limit,
        ));
    }
    routes
}

/// Mounts `routes` under [`visitor_edge`] (the article cap, the client's quota by method, the
/// visitor's identity), and says so in their document.
fn behind_visitor_edge(
    mut routes: OpenApiRouter<AppState>,
    edge: Option<EdgeLayers>,
    docs: &openapi::LayerDocs,
) -> OpenApiRouter<AppState> {
    docs.rate_limit(routes.get_openapi_mut(), ClassOf::Method, true);
    docs.identity(routes.get_openapi_mut());
    if let Some(edge) = edge {
        // A look at the article cap first (so a write it refuses does not spend the IP's quota),
        // then the rate limiter, then identity, then the handler, which spends the cap.
        // Behind one `Arc`: the layer's state is cloned for every request.
        routes = routes.route_layer(layers::VisitorEdgeLayer::new(Arc::new(edge)));
    }
    routes
}

/// The middleware of the visitor routes, in this order: a look at the per-article write cap
/// (spent later by the handler, once the write is valid), the client's rate limit, the
/// visitor's identity. Each refuses with its own answer; the answer gets the limit's rate-limit
/// fields (the handler adds the cap's), and the identity cookie after a successful write by
/// fingerprint. One layer rather than three (as the stats routes have one, `rate_limit`),
/// and a hand-written service rather than a `from_fn` one ([`layers::VisitorEdgeLayer`]): in
/// CPU profiles, the route service each such layer clones and boxes again, and the futures it
/// boxes, were among the largest costs of a request.
async fn visitor_edge<S>(
    edge: Arc<EdgeLayers>,
    request: axum::extract::Request,
    mut next: S,
) -> axum::response::Response
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
{
    let client = match middleware::client_ip::ClientIp::of(request.extensions()) {
        Ok(client) => client,
        Err(error) => return axum::response::IntoResponse::into_response(error),
    };
    let mut request = match edge.article_writes.look_at(client.0, request).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    match edge.rate_limits.class(ClassOf::Method, request.method()).admit(client.0) {
        Err(refusal) => refusal,
        Ok(limit_fields) => {
            let mut response = match edge.identity.admit(client, &mut request).await {
                Err(refusal) => refusal,
                Ok(cookie) => {
                    // `next` was made ready by the layer's `poll_ready`.
                    let Ok(mut response) = next.call(request).await;
                    edge.identity.finish(cookie, &mut response);
                    response
                }
            };
            response.headers_mut().extend(limit_fields);
            if let Some(middleware::article_cap::SpentCap(cap_fields)) = response.extensions_mut().remove() {
                response.headers_mut().extend(cap_fields);
            }
            response
        }
    }
}

/// The complete application: routes, identity, and the layers every request passes through.
pub fn app(state: AppState, edge: EdgeLayers, options: &HttpOptions) -> Router {
    let (routes, document) = api_routes(Some(edge)).split_for_parts();
    let mut routes =
        routes.merge(openapi::router(openapi::render(&document))).fallback(unknown_route).with_state(state);
    if options.metrics_elsewhere {
        routes = routes.route_layer(axum_middleware::from_fn(routes::health::hide_metrics));
    }

    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    // Listed outermost first: the request id exists before the trace span opens, and every
    // response, whichever layer produced it, passes the problem+json normaliser.
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!(
                            "request",
                            request_id,
                            method = %request.method(),
                            path = %request.uri().path(),
                        )
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            // The request metrics (layers.rs): every answer, the preflights CORS answers too.
            .layer(layers::RequestMetricsLayer)
            // Outside the timeout and panic layers, so that their answers are readable
            // cross-origin too.
            .layer(cors(&options.allowed_origins))
            // The head-size and malformed-path checks, then the problem+json normaliser of every
            // answer, these checks', the timeout's and the panic layer's included (layers.rs).
            .layer(layers::ProblemLayer)
            .layer(CatchPanicLayer::new())
            .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, options.request_timeout))
            // The body deadline (a slow body gets its 408 in half the request timeout, before
            // the timeout's 503), then the client IP, for the route's middleware (layers.rs).
            .layer(layers::RequestContextLayer::new(
                options.request_timeout / 2,
                options.trusted_proxies.clone(),
            ))
            // A declared Content-Length over the limit is refused before anything is read; a
            // chunked body is cut off by the extractor limit while it is read.
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// The router of the `METRICS_ADDR` listener: `/metrics` and nothing else.
pub fn metrics_app(state: AppState) -> Router {
    routes::health::metrics_router()
        .fallback(|| async { ApiError::not_found("only /metrics is served on this address") })
        .with_state(state)
}

/// The 431 answer to a request whose header fields add up to more than [`MAX_HEADER_BYTES`],
/// if it is one (run by `layers::ProblemLayer`).
fn large_head_refusal(headers: &axum::http::HeaderMap) -> Option<axum::response::Response> {
    let size: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if size <= MAX_HEADER_BYTES {
        return None;
    }
    let problem = Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
        "Request header fields too large",
        format!(
            "the request's header fields add up to {size} bytes; at most {MAX_HEADER_BYTES} are accepted"
        ),
    );
    Some(axum::response::IntoResponse::into_response(problem))
}

/// Unknown routes are 404s, except the common mistake of an article id that is empty or has an
/// unencoded `/`, which gets a 400 that says how to fix it.
async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    let looks_like_article_route = uri.path().strip_prefix("/v1/articles/").is_some_and(|rest| {
        rest.ends_with("/reactions") || rest.ends_with("/reaction") || rest.ends_with("/timeseries")
    });
    if looks_like_article_route {
        ApiError::invalid_article_id(
            "an article id is one non-empty path segment; percent-encode '/' in it as %2F",
        )
    } else {
        ApiError::not_found("no such route; see /openapi.json for the API")
    }
}

/// CORS for browser callers: the widget sends `X-Visitor-Id` with GET, PUT and DELETE, so every
/// call is preflighted; the preflight is answered here, before rate limiting and identity.
///
/// Browsers refuse credentials (cookies) with a literal `Access-Control-Allow-Origin: *`, so:
/// - `*` (the default) allows any origin **without** credentials. The widget identifies readers
///   by its header, which needs no cookie. Echoing any origin with credentials instead would let
///   every website read a reader's reactions with the reader's cookie.
/// - An explicit list echoes the listed origin and allows credentials, so a site's own scripts
///   can use the `rr_vid` cookie cross-site (with `COOKIE_SECURE=true`, which makes it
///   `SameSite=None; Secure`). Entries are compared as browsers send `Origin`: lower case,
///   without a trailing `/`.
fn cors(allowed_origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(crate::app::identity::VISITOR_ID_HEADER),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .max_age(Duration::from_secs(600));
    if allowed_origins.iter().any(|o| o.trim() == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let origins: Vec<HeaderValue> = allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .filter_map(|o| HeaderValue::from_str(&o).ok())
            .collect();
        layer.allow_origin(origins).allow_credentials(true)
    }
}
