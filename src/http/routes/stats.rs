//! The dashboard reads: top articles, totals, an article's time series, trending articles and
//! the CSV export. All of them count the reactions currently held whose last change falls in a
//! half-open window `[since, until)`, and all are rate limited in the `stats` class.

use super::responses;
use std::fmt::Write as _;
use std::marker::PhantomData;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use futures_util::stream::{self, StreamExt as _};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{ArticleCount, ArticleId, Bucket, Reaction, ReactionCounts, TimeWindow, TrendingArticle};
use crate::http::extract::{AppJson, ArticleParam, ArticlePath, query_pairs};
use crate::http::routes::admin::{Admin, StatsReader};
use crate::http::{ApiError, AppState, Problem};
use crate::store::ExportRow;

/// Most articles `top` and `trending` answer.
pub const MAX_LIMIT: u32 = 100;
/// Articles `top` and `trending` answer when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 10;
/// Most buckets one time series answers.
pub const MAX_BUCKETS: i64 = 1000;
/// The window when `since` is not given: this long before `until`.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);
/// The first line of the CSV export.
pub const CSV_HEADER: &str = "article_id,reaction,count\r\n";

pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(StatsDoc::openapi())
        .routes(routes!(top))
        .routes(routes!(totals))
        .routes(routes!(timeseries))
        .routes(routes!(trending))
        .routes(routes!(export))
}

/// The `stats` tag and the bearer schemes (the export's, and the reads' when `STATS_TOKEN` is
/// set), merged into the service's document.
#[derive(OpenApi)]
#[openapi(
    tags((name = "stats", description = "Dashboard reads over time windows. Every window is \
half-open, `[since, until)`, over the time of each reaction's last change (set or switch); a \
reaction removed since is not counted. Rate limited per client IP in the `stats` class \
(`RATE_LIMIT_STATS_PER_MINUTE`, `RATE_LIMIT_STATS_BURST`). When the server has a `STATS_TOKEN`, \
every read but the export (which needs `ADMIN_TOKEN`) needs it as a bearer token.")),
    modifiers(&BearerSchemes)
)]
struct StatsDoc;

/// Declares the security schemes: `admin_token`, which the export requires, and `stats_token`,
/// which the other reads require when the server has one.
struct BearerSchemes;

impl utoipa::Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("admin_token", "The server's `ADMIN_TOKEN`, as `Authorization: Bearer <token>`."),
            (
                "stats_token",
                "The server's `STATS_TOKEN`, as `Authorization: Bearer <token>`; not needed when the \
                 server has none.",
            ),
        ] {
            let scheme =
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// Answer of `GET /v1/stats/top`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TopArticles {
    /// The window's first instant (inclusive), in UTC.
    #[schema(value_type = String, format = DateTime)]
    since: DateTime<Utc>,
    /// The instant after the window (exclusive), in UTC.
    #[schema(value_type = String, format = DateTime)]
    until: DateTime<Utc>,
    /// The reaction counted, or `null` when all seven are.
    #[schema(required = true)]
    reaction: Option<Reaction>,
    /// Most reactions first, ties by article id (byte order); at most `limit`. Articles without
    /// reactions in the window are absent.
    articles: Vec<ArticleCount>,
}

/// Answer of `GET /v1/stats/totals`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WindowTotals {
    #[schema(value_type = String, format = DateTime)]
    since: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    until: DateTime<Utc>,
    /// Site-wide reactions per kind in the window; all seven keys, zeros included.
    counts: ReactionCounts,
    /// The sum of the seven counts.
    total: i64,
}

/// One bucket of a time series.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TimeSeriesBucket {
    /// The bucket's start: on the hour, or midnight UTC. The bucket runs until the next start;
    /// only the part inside the window is counted.
    #[schema(value_type = String, format = DateTime)]
    start: DateTime<Utc>,
    /// All seven keys, zeros included.
    counts: ReactionCounts,
    total: i64,
}

/// Answer of `GET /v1/articles/{article_id}/timeseries`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TimeSeries {
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    article_id: ArticleId,
    bucket: Bucket,
    #[schema(value_type = String, format = DateTime)]
    since: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    until: DateTime<Utc>,
    /// Every bucket overlapping the window, oldest first, empty ones included (all zeros).
    buckets: Vec<TimeSeriesBucket>,
}

/// The length of the trending windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum TrendingWindow {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
}

impl TrendingWindow {
    fn length(self) -> TimeDelta {
        match self {
            TrendingWindow::Hour => TimeDelta::hours(1),
            TrendingWindow::Day => TimeDelta::hours(24),
        }
    }
}

/// Answer of `GET /v1/stats/trending`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TrendingArticles {
    window: TrendingWindow,
    /// Start of the recent window (inclusive); the previous window ends here.
    #[schema(value_type = String, format = DateTime)]
    since: DateTime<Utc>,
    /// End of the recent window (exclusive).
    #[schema(value_type = String, format = DateTime)]
    until: DateTime<Utc>,
    /// Highest score first; ties by more recent reactions, then article id. Only articles
    /// gathering reactions faster than before (score above zero) from at least
    /// `TRENDING_MIN_NETWORKS` networks; at most `limit`.
    articles: Vec<TrendingArticle>,
}

/// Articles ranked by reactions in a window, of one kind or all.
///
/// Counts the reactions currently held whose last change (set or switch) falls in the half-open
/// window `[since, until)`; a reaction removed since is not counted. Without `since` and `until`
/// the window is the last 24 hours.
#[utoipa::path(
    get,
    path = "/v1/stats/top",
    tag = "stats",
    params(TopParams),
    security((), ("stats_token" = [])),
    responses(
        (status = 200, description = "The top articles of the window", body = TopArticles),
        (status = 400, description = "A malformed, repeated or unknown parameter, an unknown reaction, a limit outside 1–100, or since not before until", body = Problem, content_type = "application/problem+json"),
        responses::StatsLongReadRejected,
    )
)]
async fn top(
    _reader: StatsReader,
    State(state): State<AppState>,
    QueryOf(query, _): QueryOf<TopParams>,
) -> Result<AppJson<TopArticles>, ApiError> {
    let reaction = query.reaction()?;
    let window = query.default_window()?;
    let limit = query.limit()?;
    let articles = state.stats.top(&window, reaction, limit).await?;
    Ok(AppJson(TopArticles { since: window.since(), until: window.until(), reaction, articles }))
}

/// Site-wide counts per reaction in a window.
///
/// Counts the reactions currently held whose last change falls in `[since, until)`. Without
/// `since` and `until` the window is the last 24 hours; for all time, pass an early `since`
/// such as `1970-01-01T00:00:00Z`.
#[utoipa::path(
    get,
    path = "/v1/stats/totals",
    tag = "stats",
    params(WindowParams),
    security((), ("stats_token" = [])),
    responses(
        (status = 200, description = "Counts per reaction in the window", body = WindowTotals),
        responses::WindowParamsRejected,
        responses::StatsLongReadRejected,
    )
)]
async fn totals(
    _reader: StatsReader,
    State(state): State<AppState>,
    DefaultWindow(window): DefaultWindow,
) -> Result<AppJson<WindowTotals>, ApiError> {
    let counts = state.stats.totals(&window).await?;
    Ok(AppJson(WindowTotals { since: window.since(), until: window.until(), total: counts.total(), counts }))
}

/// One article's reactions per hour or per day, empty buckets included.
///
/// Buckets are aligned to UTC (hours on the hour, days at midnight UTC); every bucket that
/// overlaps `[since, until)` is listed, oldest first, and counts only the reactions inside the
/// window, so the first and last bucket may be partial. Without `since` the series holds the
/// last 24 hourly or 30 daily buckets up to `until` (default now). At most 1,000 buckets.
#[utoipa::path(
    get,
    path = "/v1/articles/{article_id}/timeseries",
    tag = "stats",
    params(ArticleParam, TimeSeriesParams),
    security((), ("stats_token" = [])),
    responses(
        (status = 200, description = "The article's reactions per bucket", body = TimeSeries),
        (status = 400, description = "A malformed article id; a malformed, repeated or unknown parameter; since not before until; or more than 1,000 buckets", body = Problem, content_type = "application/problem+json"),
        responses::StatsReadRejected,
    )
)]
async fn timeseries(
    _reader: StatsReader,
    State(state): State<AppState>,
    ArticlePath(article_id): ArticlePath,
    QueryOf(query, _): QueryOf<TimeSeriesParams>,
) -> Result<AppJson<TimeSeries>, ApiError> {
    let bucket = match query.get("bucket") {
        None => Bucket::Hour,
        Some(raw) => raw.parse().map_err(ApiError::invalid_query)?,
    };
    let default_buckets = match bucket {
        Bucket::Hour => 24,
        Bucket::Day => 30,
    };
    let window = query.window(|until| bucket.last(default_buckets, until))?;
    let buckets = bucket.count(&window);
    if buckets > MAX_BUCKETS {
        return Err(ApiError::invalid_query(format!(
            "the window spans {buckets} buckets of one {bucket}; at most {MAX_BUCKETS} are answered: \
             shorten the window{}",
            if bucket == Bucket::Hour { " or ask for bucket=day" } else { "" }
        )));
    }
    let buckets = (state.stats.timeseries(&article_id, &window, bucket).await?.into_iter())
        .map(|(start, counts)| TimeSeriesBucket { start, total: counts.total(), counts })
        .collect();
    Ok(AppJson(TimeSeries { article_id, bucket, since: window.since(), until: window.until(), buckets }))
}

/// Articles gathering reactions faster now than just before.
///
/// Compares two consecutive windows of the chosen length ending at `until` (default now): the
/// recent one, `[until - window, until)`, and the one before, `[until - 2 × window, until -
/// window)`. With `recent` and `previous` the reactions whose last change falls in each, the
/// score is
///
/// `score = (recent - previous) / sqrt(previous + 1)`
///
/// the number of standard deviations by which the recent count exceeds what the previous pace
/// predicts (for counts that behave like a Poisson process). It is 0 at a steady pace and grows
/// with acceleration; the square root lets a small article that triples rank beside a large one
/// that grows by a few percent, and the `+ 1` keeps new articles finite (0 → 4 reactions scores
/// 4, 100 → 150 scores about 5, 1000 → 1100 about 3). Only articles with a score above zero are
/// listed.
///
/// **Brigading resistance.** An article is listed only when its reactions in the recent window
/// come from at least `TRENDING_MIN_NETWORKS` (default 5) distinct client networks (IPv4 /24,
/// IPv6 /48; an IPv4-mapped IPv6 address counts as IPv4), reported as `networks`, so one network
/// inventing visitor ids cannot make a story trend. The filter applies before `limit`: articles
/// from too few networks are skipped, never counted against the limit. The count is exact. It is
/// taken from a keyed hash of each reaction's network under the day's fingerprint salt, so a
/// network counts once per UTC day: a window that spans midnight UTC (every `24h` window not
/// ending at midnight) can count one network twice. Reactions stored without a network (written
/// while the salt could not be read) count towards none.
#[utoipa::path(
    get,
    path = "/v1/stats/trending",
    tag = "stats",
    params(TrendingParams),
    security((), ("stats_token" = [])),
    responses(
        (status = 200, description = "Trending articles, highest score first", body = TrendingArticles),
        (status = 400, description = "A malformed, repeated or unknown parameter, a window other than 1h or 24h, or a limit outside 1–100", body = Problem, content_type = "application/problem+json"),
        responses::StatsReadRejected,
    )
)]
async fn trending(
    _reader: StatsReader,
    State(state): State<AppState>,
    QueryOf(query, _): QueryOf<TrendingParams>,
) -> Result<AppJson<TrendingArticles>, ApiError> {
    let window = match query.get("window") {
        None | Some("1h") => TrendingWindow::Hour,
        Some("24h") => TrendingWindow::Day,
        Some(other) => {
            return Err(ApiError::invalid_query(format!("unknown window {other:?}; expected 1h or 24h")));
        }
    };
    let limit = query.limit()?;
    let until = query.timestamp("until")?.unwrap_or_else(now);
    let recent = TimeWindow::new(until - window.length(), until).map_err(ApiError::invalid_query)?;
    let articles = state.stats.trending(&recent, limit).await?;
    Ok(AppJson(TrendingArticles { window, since: recent.since(), until: recent.until(), articles }))
}

/// Counts per article and reaction in a window, as CSV, for analysts.
///
/// Needs `Authorization: Bearer <ADMIN_TOKEN>`; answers 404 when the server has no
/// `ADMIN_TOKEN` (the export is off). The body is RFC 4180 CSV (CRLF line ends) with the
/// header row `article_id,reaction,count`, then one row per article and reaction with at least
/// one reaction whose last change falls in `[since, until)`, ordered by article id (byte order)
/// and reaction (display order). Without `since` and `until` the window is the last 24 hours;
/// for all time, pass an early `since` such as `1970-01-01T00:00:00Z`.
///
/// An article id holding a comma, a quote or a space at either end is quoted. One that starts
/// with `=`, `+`, `-` or `@` is quoted and prefixed with `'`, so that a spreadsheet shows it
/// rather than evaluating it as a formula.
///
/// The rows are streamed from the database as they are read, so exports of any size use
/// constant memory. A failure after the first bytes cannot change the status any more: the
/// connection is then closed before the end of the body, and a client must treat a body that
/// does not end cleanly as incomplete.
#[utoipa::path(
    get,
    path = "/v1/stats/export.csv",
    tag = "stats",
    params(WindowParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "CSV rows, streamed", content_type = "text/csv; charset=utf-8; header=present", body = String,
            headers(("Content-Disposition" = String, description = "`attachment` with a file name naming the window")),
            example = json!("article_id,reaction,count\r\n2025/11/27/leaked-witkoff-call,love,3\r\n2025/11/27/leaked-witkoff-call,angry,12\r\n")),
        responses::WindowParamsRejected,
        responses::AdminUnauthorized,
        (status = 404, description = "The export is off: the server has no ADMIN_TOKEN", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn export(
    _admin: Admin,
    State(state): State<AppState>,
    DefaultWindow(window): DefaultWindow,
) -> Result<Response, ApiError> {
    let batches = state.stats.export(&window).await?;
    let rows = batches.map(|batch| {
        batch.map(|rows| Bytes::from(csv_rows(&rows))).inspect_err(|error| {
            tracing::warn!(error = format!("{error:#}"), "the CSV export failed after it started");
        })
    });
    let body =
        Body::from_stream(stream::once(async { Ok(Bytes::from_static(CSV_HEADER.as_bytes())) }).chain(rows));
    let file_name = format!(
        "attachment; filename=\"reactions-{}-{}.csv\"",
        window.since().format("%Y%m%dT%H%M%SZ"),
        window.until().format("%Y%m%dT%H%M%SZ")
    );
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8; header=present")),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::try_from(file_name).map_err(|e| ApiError::Internal(e.into()))?,
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, body).into_response())
}

/// The CSV lines of one batch.
fn csv_rows(rows: &[ExportRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 48);
    for row in rows {
        write_csv_field(&mut out, row.article_id.as_str());
        let _ = write!(out, ",{},{}\r\n", row.reaction.key(), row.count);
    }
    out
}

/// One RFC 4180 field, quoted when it must be, and defused when a spreadsheet would run it.
fn write_csv_field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@']);
    let quoted = formula
        || value.contains([',', '"', '\r', '\n'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if !quoted {
        out.push_str(value);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    out.push_str(&value.replace('"', "\"\""));
    out.push('"');
}

/// The service's clock, to the microsecond (what PostgreSQL keeps).
fn now() -> DateTime<Utc> {
    microseconds(Utc::now())
}

fn microseconds(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.with_nanosecond(instant.nanosecond() / 1_000 * 1_000).unwrap_or(instant)
}

/// The query string of a stats request: known names only, each at most once.
struct StatsQuery {
    pairs: Vec<(String, String)>,
}

impl StatsQuery {
    fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = query_pairs(raw)?
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        for (i, (name, value)) in pairs.iter().enumerate() {
            if !accepted.contains(&name.as_str()) {
                return Err(ApiError::invalid_query(format!(
                    "unknown query parameter {name:?}; this endpoint accepts {}",
                    accepted.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::invalid_query(format!("{name} is given more than once")));
            }
            if value.is_empty() {
                return Err(ApiError::invalid_query(format!(
                    "{name} is empty; leave it out for the default"
                )));
            }
        }
        Ok(Self { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    /// An RFC 3339 timestamp, kept to the microsecond.
    fn timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        match DateTime::parse_from_rfc3339(raw) {
            Ok(instant) => Ok(Some(microseconds(instant.with_timezone(&Utc)))),
            // A '+' in a query string is a space: the usual way a UTC offset gets mangled.
            Err(_) if raw.contains(' ') => Err(ApiError::invalid_query(format!(
                "{name} {raw:?} is not an RFC 3339 timestamp; percent-encode the '+' of an offset as %2B"
            ))),
            Err(e) => Err(ApiError::invalid_query(format!(
                "{name} {raw:?} is not an RFC 3339 timestamp such as 2025-11-27T00:00:00Z ({e})"
            ))),
        }
    }

    /// `[since, until)`: `until` defaults to now, `since` to `default_since(until)`.
    fn window(
        &self,
        default_since: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>,
    ) -> Result<TimeWindow, ApiError> {
        let until = self.timestamp("until")?.unwrap_or_else(now);
        let since = match self.timestamp("since")? {
            Some(since) => since,
            None => default_since(until),
        };
        TimeWindow::new(since, until).map_err(ApiError::invalid_query)
    }

    /// [`StatsQuery::window`] with the default of `top`, `totals` and the export: `since`
    /// [`DEFAULT_WINDOW`] before `until`.
    fn default_window(&self) -> Result<TimeWindow, ApiError> {
        self.window(|until| until - DEFAULT_WINDOW)
    }

    fn limit(&self) -> Result<u32, ApiError> {
        let Some(raw) = self.get("limit") else { return Ok(DEFAULT_LIMIT) };
        match raw.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid_query(format!(
                "limit {raw:?} is not a whole number from 1 to {MAX_LIMIT}"
            ))),
        }
    }

    fn reaction(&self) -> Result<Option<Reaction>, ApiError> {
        self.get("reaction").map(|raw| raw.parse().map_err(ApiError::invalid_query)).transpose()
    }
}

/// The query parameters a stats read accepts: the names of the `IntoParams` struct that documents
/// them, in its order (which the 400 for an unknown name lists).
trait Accepts {
    const NAMES: &'static [&'static str];
}

/// Extracts the query string of a stats read as a [`StatsQuery`] of the parameters `P`
/// documents; rejects a malformed, unknown, repeated or empty one with a 400 problem.
struct QueryOf<P>(StatsQuery, PhantomData<P>);

impl<P: Accepts, S: Sync> FromRequestParts<S> for QueryOf<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(StatsQuery::parse(parts.uri.query(), P::NAMES)?, PhantomData))
    }
}

/// Extracts the window of a read that takes only `since` and `until` ([`WindowParams`]), with
/// [`StatsQuery::default_window`]'s default.
struct DefaultWindow(TimeWindow);

impl<S: Sync> FromRequestParts<S> for DefaultWindow {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let QueryOf(query, _) = QueryOf::<WindowParams>::from_request_parts(parts, state).await?;
        query.default_window().map(Self)
    }
}

impl Accepts for WindowParams {
    const NAMES: &'static [&'static str] = &["since", "until"];
}

impl Accepts for TopParams {
    const NAMES: &'static [&'static str] = &["reaction", "since", "until", "limit"];
}

impl Accepts for TimeSeriesParams {
    const NAMES: &'static [&'static str] = &["bucket", "since", "until"];
}

impl Accepts for TrendingParams {
    const NAMES: &'static [&'static str] = &["window", "limit", "until"];
}

/// `since` and `until` with the 24-hour default.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct WindowParams {
    /// First instant of the window (inclusive), RFC 3339 with an offset, e.g.
    /// `2025-11-27T00:00:00Z` (percent-encode a `+` offset as `%2B`). Default: 24 hours before
    /// `until`.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-27T00:00:00Z")]
    since: Option<String>,
    /// First instant after the window (exclusive), RFC 3339. Default: now.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-28T00:00:00Z")]
    until: Option<String>,
}

/// The parameters of `top`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct TopParams {
    /// Count only this reaction. Default: all seven.
    #[param(value_type = Option<Reaction>)]
    reaction: Option<String>,
    /// First instant of the window (inclusive), RFC 3339 with an offset, e.g.
    /// `2025-11-27T00:00:00Z` (percent-encode a `+` offset as `%2B`). Default: 24 hours before
    /// `until`.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-27T00:00:00Z")]
    since: Option<String>,
    /// First instant after the window (exclusive), RFC 3339. Default: now.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-28T00:00:00Z")]
    until: Option<String>,
    /// How many articles to answer, 1–100.
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<u32>,
}

/// The parameters of `timeseries`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct TimeSeriesParams {
    /// Bucket width; buckets are aligned to UTC.
    #[param(value_type = Option<Bucket>, default = "hour")]
    bucket: Option<String>,
    /// First instant of the window (inclusive), RFC 3339 with an offset (percent-encode a `+`
    /// as `%2B`). Default: the start of the 24th hourly (or 30th daily) bucket back, counting
    /// the one holding the window's last instant, so that the series has 24 (or 30) buckets.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-27T00:00:00Z")]
    since: Option<String>,
    /// First instant after the window (exclusive), RFC 3339. Default: now.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-28T00:00:00Z")]
    until: Option<String>,
}

/// The parameters of `trending`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct TrendingParams {
    /// Length of the recent window and of the one before it it is compared with.
    #[param(value_type = Option<TrendingWindow>, default = "1h")]
    window: Option<String>,
    /// How many articles to answer, 1–100.
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<u32>,
    /// End of the recent window (exclusive), RFC 3339; to see what was trending at another
    /// time. Default: now.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-11-27T21:00:00Z")]
    until: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rfc3339;

    fn row(article_id: &str, reaction: Reaction, count: i64) -> ExportRow {
        ExportRow { article_id: ArticleId::parse(article_id).unwrap(), reaction, count }
    }

    #[test]
    fn csv_rows_quote_what_must_be_quoted_and_defuse_formulas() {
        let rows = [
            row("2025/11/27/plain", Reaction::Love, 3),
            row("a,b", Reaction::Like, 1),
            row("say \"hi\"", Reaction::Wow, 2),
            row("=HYPERLINK(\"x\")", Reaction::Sad, 4),
            row("-42", Reaction::Angry, 5),
            row(" padded", Reaction::Funny, 6),
            row("é/記事", Reaction::Dislike, 7),
        ];
        assert_eq!(
            csv_rows(&rows),
            "2025/11/27/plain,love,3\r\n\
             \"a,b\",like,1\r\n\
             \"say \"\"hi\"\"\",wow,2\r\n\
             \"'=HYPERLINK(\"\"x\"\")\",sad,4\r\n\
             \"'-42\",angry,5\r\n\
             \" padded\",funny,6\r\n\
             é/記事,dislike,7\r\n"
        );
    }

    #[test]
    fn query_parameters_are_known_single_and_non_empty() {
        let accepted = &["since", "until"];
        assert!(StatsQuery::parse(Some("since=2025-11-27T00:00:00Z"), accepted).is_ok());
        assert!(StatsQuery::parse(Some("limit=3"), accepted).is_err(), "unknown");
        assert!(StatsQuery::parse(Some("since=a&since=b"), accepted).is_err(), "repeated");
        assert!(StatsQuery::parse(Some("since="), accepted).is_err(), "empty");
    }

    #[test]
    fn each_read_accepts_the_parameters_it_documents() {
        fn documented<P: utoipa::IntoParams + Accepts>() {
            let names: Vec<String> = P::into_params(|| None).into_iter().map(|p| p.name).collect();
            assert_eq!(names, P::NAMES);
        }
        documented::<WindowParams>();
        documented::<TopParams>();
        documented::<TimeSeriesParams>();
        documented::<TrendingParams>();
    }

    #[test]
    fn timestamps_need_an_offset_and_keep_microseconds() {
        let query = StatsQuery::parse(Some("since=2025-11-27T10:00:00.1234567%2B01:00"), &["since"]).unwrap();
        assert_eq!(rfc3339(query.timestamp("since").unwrap().unwrap()), "2025-11-27T09:00:00.123456Z");
        for bad in ["2025-11-27", "2025-11-27T10:00:00", "yesterday", "2025-11-27T10:00:00+01:00"] {
            let raw = format!("since={bad}");
            let query = StatsQuery::parse(Some(&raw), &["since"]).unwrap();
            assert!(query.timestamp("since").is_err(), "{bad:?} is refused");
        }
    }
}
