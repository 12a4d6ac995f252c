//! The answers several routes document alike, written once for their `#[utoipa::path]`
//! `responses(...)` lists. The types only describe answers in the OpenAPI document: handlers
//! answer through [`ApiError`](crate::http::ApiError) and the caching helpers, never build these.
#![allow(dead_code)] // never constructed: utoipa reads their attributes

use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::IntoResponses;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;

use crate::domain::ReactionSummary;
use crate::http::Problem;

/// The answers of `A` and those of `B` as one entry of a `responses(...)` list, for pairs that
/// several routes list together.
pub(super) struct Both<A, B>(PhantomData<(A, B)>);

impl<A: IntoResponses, B: IntoResponses> IntoResponses for Both<A, B> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = A::responses();
        responses.extend(B::responses());
        responses
    }
}

/// 400 of the routes whose only input is the article id in their path.
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Malformed article id", content_type = "application/problem+json")]
pub(super) struct MalformedArticleId(Problem);

/// 400 of the reactions routes whose inputs are the article id and the visitor header.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "Malformed article id or visitor header",
    content_type = "application/problem+json"
)]
pub(super) struct MalformedArticleOrVisitor(Problem);

/// 400 of the stats reads that take only `since` and `until`: `totals` and the export.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "A malformed, repeated or unknown parameter, or since not before until",
    content_type = "application/problem+json"
)]
pub(super) struct WindowParamsRejected(Problem);

/// 200 of the reaction writes.
#[derive(utoipa::IntoResponses)]
#[response(status = 200, description = "The summary after the change")]
pub(super) struct ReactionChanged(ReactionSummary);

/// 503 of every route that reads or writes the database.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "Database unavailable; see Retry-After",
    content_type = "application/problem+json"
)]
pub(super) struct Unavailable(Problem);

/// 503 of the stats windows, whose queries can also outlast the statement timeout.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "Database unavailable, or the query outlasted the statement timeout (a window of weeks on a large table); see Retry-After",
    content_type = "application/problem+json"
)]
pub(super) struct StatsUnavailable(Problem);

/// 401 of the stats routes when `STATS_TOKEN` is set.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "The server has a STATS_TOKEN and the request does not carry it",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"reader-reactions\"`"))
)]
pub(super) struct StatsUnauthorized(Problem);

/// 401 and 503 of the stats reads whose windows may span weeks: `top` and `totals`.
pub(super) type StatsLongReadRejected = Both<StatsUnauthorized, StatsUnavailable>;

/// 401 and 503 of the stats reads over shorter windows: `timeseries` and `trending`.
pub(super) type StatsReadRejected = Both<StatsUnauthorized, Unavailable>;

/// 401 of the admin routes.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "No bearer token, or not the admin token",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"reader-reactions\"`"))
)]
pub(super) struct AdminUnauthorized(Problem);

/// 200 of the HTML pages (the demo and the dashboard).
#[derive(utoipa::IntoResponses)]
#[response(status = 200, description = "The page", content_type = "text/html")]
pub(super) struct Page(String);

/// 304 of the static assets and the dashboard's pages.
#[derive(utoipa::IntoResponses)]
#[response(status = 304, description = "The client's copy (`If-None-Match`) is current")]
pub(super) struct AssetNotModified;

/// 304 of the counts reads, whose anonymous answers carry an `ETag`.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 304,
    description = "Not modified: `If-None-Match` matched the `ETag` (anonymous answers only)"
)]
pub(super) struct CountsNotModified;

/// 413 and 415 of the routes that take a JSON body.
#[derive(utoipa::IntoResponses)]
pub(super) enum JsonBodyRejected {
    #[response(status = 413, description = "Body over 4 KiB", content_type = "application/problem+json")]
    TooLarge(Problem),
    #[response(status = 415, description = "Body is not JSON", content_type = "application/problem+json")]
    NotJson(Problem),
}

/// 404 of the editorial routes when the server has no `ADMIN_TOKEN`.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "Editorial controls are off: the server has no ADMIN_TOKEN",
    content_type = "application/problem+json"
)]
pub(super) struct EditorialOff(Problem);

/// 401 and 404 of the editorial routes: not the admin token, or none configured.
pub(super) type EditorialRejected = Both<AdminUnauthorized, EditorialOff>;
