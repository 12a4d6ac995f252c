//! The hand-written global layers of [`super::app`], between tower-http's.
//!
//! Hand-written tower services rather than `axum::middleware::from_fn` / `map_response`: every
//! `from_fn` layer clones the boxed service below it, boxes it again for `Next` and boxes its own
//! future, on every request, and axum runs the whole global stack once per request per route.
//! Six such layers were a measurable share of a request's CPU time (allocation and moves of large
//! futures). These are plain services whose futures are the inner future or a small
//! `pin_project_lite` wrapper around it, and they group what may run together:
//!
//! - [`RequestMetricsLayer`]: counts and times every answer (outside CORS, so preflights count).
//! - [`ProblemLayer`]: the head-size and path checks and the problem+json normaliser, outside
//!   the panic and timeout layers so that their answers get the problem body.
//! - [`RequestContextLayer`]: the body deadline and the client address, for the route's
//!   middleware, extractors and handlers.
//!
//! And one route layer, [`VisitorEdgeLayer`], the visitor routes' middleware
//! ([`super::visitor_edge`]): its future is boxed (it is an `async fn`), but it neither boxes
//! the route again nor the route's future.
//!
//! The logic itself lives with its subject (`problem`, `extract`, `client_ip`,
//! `request_metrics`); these are only the glue.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Bytes, HttpBody};
use axum::http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::extract::BodyDeadline;
use super::middleware::client_ip::{ClientIp, TrustedProxies};
use super::middleware::request_metrics;

/// Counts and times every request by method, route template and status
/// ([`request_metrics`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

/// The service of [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let (method, route) = request_metrics::labels(&request);
        RequestMetricsFuture { inner: self.inner.call(request), started, method, route }
    }
}

pin_project! {
    /// The future of [`RequestMetrics`]: records the answer once it is made.
    pub struct RequestMetricsFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        route: &'static str,
    }
}

impl<F, ResBody, E> Future for RequestMetricsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            request_metrics::record(this.method, this.route, response.status(), *this.started);
        }
        Poll::Ready(result)
    }
}

/// Refuses request heads over [`super::MAX_HEADER_BYTES`] (431) and paths with a malformed
/// percent-escape (400), in that order, and gives every answer that passes it, its own
/// included, the problem+json body when it is an error without one
/// ([`super::problem::ensure_problem_body`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemLayer;

impl<S> Layer<S> for ProblemLayer {
    type Service = ProblemService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemService { inner }
    }
}

/// The service of [`ProblemLayer`].
#[derive(Debug, Clone)]
pub struct ProblemService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProblemService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = ProblemFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The refusals are problems already, so the normaliser would pass them unchanged.
        let refusal = super::large_head_refusal(request.headers())
            .or_else(|| super::extract::malformed_path_refusal(request.uri()));
        match refusal {
            Some(response) => ProblemFuture::Refused { response: Some(response) },
            None => ProblemFuture::Inner { inner: self.inner.call(request) },
        }
    }
}

pin_project! {
    /// The future of [`ProblemService`].
    #[project = ProblemFutureProj]
    pub enum ProblemFuture<F> {
        Refused { response: Option<axum::response::Response> },
        Inner { #[pin] inner: F },
    }
}

impl<F, ResBody, E> Future for ProblemFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<axum::response::Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ProblemFutureProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("ProblemFuture polled after completion")))
            }
            ProblemFutureProj::Inner { inner } => {
                Poll::Ready(ready!(inner.poll(cx)).map(super::problem::ensure_problem_body))
            }
        }
    }
}

/// Puts in every request what the routes' middleware, extractors and handlers read from it:
/// its [`BodyDeadline`] (`budget` from now; a slow body gets its 408 before the request
/// timeout's 503) and its [`ClientIp`] (resolved by the trusted-proxy walk).
#[derive(Debug, Clone)]
pub struct RequestContextLayer {
    body_budget: Duration,
    trusted: Arc<TrustedProxies>,
}

impl RequestContextLayer {
    pub fn new(body_budget: Duration, trusted: TrustedProxies) -> Self {
        Self { body_budget, trusted: Arc::new(trusted) }
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { body_budget: self.body_budget, trusted: self.trusted.clone(), inner }
    }
}

/// The service of [`RequestContextLayer`].
#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    body_budget: Duration,
    trusted: Arc<TrustedProxies>,
    inner: S,
}

impl<S, ReqBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let deadline = BodyDeadline::from_now(self.body_budget);
        let client = ClientIp(self.trusted.resolve(&request));
        let extensions = request.extensions_mut();
        extensions.insert(deadline);
        extensions.insert(client);
        self.inner.call(request)
    }
}

/// The middleware of the visitor routes ([`super::visitor_edge`]), as a route layer.
#[derive(Clone)]
pub struct VisitorEdgeLayer {
    edge: Arc<super::EdgeLayers>,
}

impl VisitorEdgeLayer {
    pub fn new(edge: Arc<super::EdgeLayers>) -> Self {
        Self { edge }
    }
}

impl<S> Layer<S> for VisitorEdgeLayer {
    type Service = VisitorEdge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VisitorEdge { edge: self.edge.clone(), inner }
    }
}

/// The service of [`VisitorEdgeLayer`].
#[derive(Clone)]
pub struct VisitorEdge<S> {
    edge: Arc<super::EdgeLayers>,
    inner: S,
}

impl<S> Service<axum::extract::Request> for VisitorEdge<S>
where
    S: Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        // tower's usual pattern: the service made ready goes with the request, a clone stays.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let edge = self.edge.clone();
        Box::pin(async move { Ok(super::visitor_edge(edge, request, ready).await) })
    }
}
