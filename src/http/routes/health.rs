//! Liveness and readiness probes, and the Prometheus metrics.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, AppJson, AppState, Problem};

/// Answer of the probes.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` for liveness, `ready` for readiness.
    status: &'static str,
}

/// The probe routes. They bypass identity and rate limiting: orchestrators call them.
pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// `/metrics` alone, for the `METRICS_ADDR` listener.
pub(in crate::http) fn metrics_router() -> axum::Router<AppState> {
    axum::Router::new().route("/metrics", axum::routing::get(metrics))
}

/// Route middleware of the main listener when `METRICS_ADDR` is set: `/metrics` is a 404 there,
/// as an unknown route is.
pub(in crate::http) async fn hide_metrics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.uri().path() == "/metrics" {
        let error = ApiError::not_found("no such route; see /openapi.json for the API");
        return axum::response::IntoResponse::into_response(error);
    }
    next.run(request).await
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up: `{\"status\":\"ok\"}`", body = Health))
)]
async fn healthz() -> AppJson<Health> {
    AppJson(Health { status: "ok" })
}

/// The database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers: `{\"status\":\"ready\"}`", body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<AppJson<Health>, ApiError> {
    state.stats.ready().await?;
    Ok(AppJson(Health { status: "ready" }))
}

/// Prometheus metrics of this instance: requests by route and status with latency histograms,
/// reactions written by kind, rate-limited requests by class, write batch sizes and commit
/// latency, write queue depth, database pool use and read-cache size.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let pool = state.stats.pool_status();
    let text = crate::telemetry::metrics::render(crate::telemetry::metrics::Snapshot {
        queued_writes: state.reactions.queued_writes(),
        pool_size: pool.size,
        pool_idle: pool.idle,
        pool_max: pool.max,
        cached_articles: state.reactions.cached_articles(),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
}
