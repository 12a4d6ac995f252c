//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use std::net::Ipv4Addr;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::{
    ContentBuilder, Header, HeaderBuilder, Object, OpenApi, Ref, RefOr, Required, ResponseBuilder, Type,
};

use super::AppState;
use super::middleware::article_cap::{self, ArticleCap};
use super::middleware::rate_limit::{self, ClassLimiter, ClassOf, RateLimits};
use crate::config::RateLimitSettings;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "reader-reactions",
        description = "Reaction buttons under news articles (like, dislike, love, funny, angry, sad, \
wow) with per-article counts for sites and dashboards.\n\n\
Visitors are identified by the `X-Visitor-Id` header (else, for writes, by the `rr_vid` cookie \
or an anonymous fingerprint); only keyed hashes are stored. \
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

/// What the edge layers add to the operations mounted under them: `super::api_routes` calls
/// these where it mounts each layer, so that the document follows the registrations. The
/// rate-limit fields are those of limiters built like the service's, with the default settings
/// (the document is the same whatever an instance is configured with, and follows a changed
/// default).
pub(super) struct LayerDocs {
    limits: RateLimits,
    article_cap: ArticleCap,
}

impl LayerDocs {
    pub(super) fn new() -> Self {
        let settings = RateLimitSettings::DEFAULT;
        Self {
            limits: RateLimits::new(&settings),
            article_cap: ArticleCap::new(settings.article_writes_per_hour),
        }
    }

    /// The client's rate limit of the class `class_of` picks (and, with `article_cap`, the
    /// ballot-stuffing cap on writes on an article): the `RateLimit` fields on every answer and
    /// the 429.
    pub(super) fn rate_limit(&self, document: &mut OpenApi, class_of: ClassOf, article_cap: bool) {
        let policy_text = format!(
            "The policy of this route's class (`writes`, `reads` or `stats`): `q` requests of burst; \
             the sustained rate is set per minute (`w={}`).",
            rate_limit::WINDOW.as_secs()
        );
        for (path, method, operation) in operations(document) {
            let class = self.limits.class(class_of, &method);
            let capped = article_cap && path.contains("{article_id}") && article_cap::is_counted(&method);
            // The fields of a client's first request, as a limiter of this class writes them.
            let [(_, first_answer), _] = ClassLimiter::new(class.name(), class.limit())
                .admit(Ipv4Addr::new(192, 0, 2, 1).into())
                .expect("a new limiter admits a request");
            let ratelimit = header(
                "Quota left in this policy: `r` requests now, `t` seconds until the quota is full \
                 again (on a 429: until the next request is allowed). IETF \
                 draft-ietf-httpapi-ratelimit-headers.",
                field_text(&first_answer),
            );
            let policy = if capped {
                header(
                    &format!(
                        "{policy_text} A write on an article also carries the `{}` policy: at most `q` \
                         writes by this client network on this article in any `w={}` seconds \
                         (RATE_LIMIT_ARTICLE_WRITES_PER_HOUR).",
                        article_cap::POLICY,
                        article_cap::HOUR.as_secs()
                    ),
                    format!("{}, {}", field_text(class.policy()), field_text(self.article_cap.policy())),
                )
            } else {
                header(&policy_text, field_text(class.policy()))
            };
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert("RateLimit".into(), RefOr::T(ratelimit.clone()));
                    response.headers.insert("RateLimit-Policy".into(), RefOr::T(policy.clone()));
                }
            }
            let description = if capped {
                format!(
                    "Over the rate limit of this client IP, or (for a write on an article) over this \
                     client network's writes on that article (`{}`); retry after `Retry-After` \
                     seconds. The `RateLimit` fields name the policy that refused.",
                    article_cap::POLICY
                )
            } else {
                "Over the rate limit of this client IP; retry after `Retry-After` seconds".to_owned()
            };
            let too_many = ResponseBuilder::new()
                .description(description)
                .content(
                    super::PROBLEM_JSON,
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::Integer)))
                        .description(Some("Seconds until the next request is allowed"))
                        .build(),
                )
                .header("RateLimit", ratelimit)
                .header("RateLimit-Policy", policy)
                .build();
            operation.responses.responses.insert("429".into(), RefOr::T(too_many));
        }
    }

    /// The visitor identity layer: the `rr_vid` cookie on every operation, and the cookie a
    /// successful write by fingerprint receives.
    pub(super) fn identity(&self, document: &mut OpenApi) {
        let cookie = ParameterBuilder::new()
            .name(crate::app::identity::cookie::COOKIE_NAME)
            .parameter_in(ParameterIn::Cookie)
            .required(Required::False)
            .description(Some(
                "The service's signed visitor cookie, used when no X-Visitor-Id header is sent. \
                 A cookie that fails verification is ignored. Without either, a write's visitor is \
                 an anonymous fingerprint (a keyed hash of a daily salt, the client IP and \
                 User-Agent). The cookie is minted from that fingerprint, which others behind the \
                 same address and browser build share: it keeps the browser's writes \
                 deduplicated, but a read with it is anonymous and it never erases (only \
                 X-Visitor-Id does).",
            ))
            .schema(Some(Object::with_type(Type::String)))
            .build();
        let set_cookie = header(
            "Sent after a write identified by fingerprint: the signed `rr_vid` cookie (HttpOnly, one \
             year; `Secure; SameSite=None` when COOKIE_SECURE is on) so the browser keeps its identity.",
            "rr_vid=v1.…; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
        );
        for (_, method, operation) in operations(document) {
            operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(cookie.clone()));
            if !super::middleware::identity::is_write(&method) {
                continue;
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && status.starts_with('2')
                {
                    response.headers.insert("Set-Cookie".into(), RefOr::T(set_cookie.clone()));
                }
            }
        }
    }
}

/// Every operation of `document`, with its path and method.
fn operations(document: &mut OpenApi) -> impl Iterator<Item = (&str, Method, &mut Operation)> {
    document.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::OPTIONS, &mut item.options),
            (Method::HEAD, &mut item.head),
            (Method::PATCH, &mut item.patch),
            (Method::TRACE, &mut item.trace),
        ]
        .into_iter()
        .filter_map(move |(method, operation)| Some((path.as_str(), method, operation.as_mut()?)))
    })
}

/// A string header field's description, with an example.
fn header(description: &str, example: impl Into<String>) -> Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(description))
        .example(Some(serde_json::Value::String(example.into())))
        .build()
}

fn field_text(value: &HeaderValue) -> &str {
    value.to_str().expect("the limiters write ASCII fields")
}

/// The PUT bodies take no members besides theirs (others are a 400). Set here because
/// `SetReaction` and the settings body deserialize by hand, without the serde attribute utoipa
/// reads this from.
fn close_request_body(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(schemas) = document.components.as_mut().map(|c| &mut c.schemas) else { return };
    for name in ["SetReaction", "ArticleSettings"] {
        if let Some(RefOr::T(Schema::Object(body))) = schemas.get_mut(name) {
            body.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

pub(super) fn render(document: &utoipa::openapi::OpenApi) -> String {
    let mut document = document.clone();
    close_request_body(&mut document);
    let mut json = document.to_pretty_json().expect("the OpenAPI document serializes");
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
                ([(header::CONTENT_TYPE, HeaderValue::from_static(super::extract::JSON_UTF8))], document)
            }
        }),
    )
}
