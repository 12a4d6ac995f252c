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

/// Adds what the middleware layers do to every `/v1/` operation, in one place rather than on
/// each handler: the `rr_vid` cookie, the rate-limit fields on every answer, the 429, and the
/// cookie a fingerprinted write receives.
pub(super) fn describe_layers(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, Object, Ref, RefOr, Required, ResponseBuilder, Type,
    };

    let string_header = |description: &str, example: &str| {
        HeaderBuilder::new()
            .schema(Some(Object::with_type(Type::String)))
            .description(Some(description))
            .example(Some(serde_json::json!(example)))
            .build()
    };
    let ratelimit = string_header(
        "Quota left in this policy: `r` requests now, `t` seconds until the quota is full again \
         (on a 429: until the next request is allowed). IETF draft-ietf-httpapi-ratelimit-headers.",
        "\"writes\";r=19;t=1",
    );
    let policy_text = "The policy of this route's class (`writes`, `reads` or `stats`): `q` requests \
         of burst; the sustained rate is set per minute (`w=60`).";
    let policy = string_header(policy_text, "\"writes\";q=20;w=60");
    // Writes on an article carry a second policy, the ballot-stuffing cap (see article_cap.rs).
    let write_policy = string_header(
        &format!(
            "{policy_text} A write on an article also carries the `article-writes` policy: at most \
             `q` writes by this client network on this article in any `w=3600` seconds \
             (RATE_LIMIT_ARTICLE_WRITES_PER_HOUR)."
        ),
        "\"writes\";q=20;w=60, \"article-writes\";q=120;w=3600",
    );
    let too_many = |description: &str, policy: &utoipa::openapi::Header| {
        ResponseBuilder::new()
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
            .header("RateLimit", ratelimit.clone())
            .header("RateLimit-Policy", policy.clone())
            .build()
    };
    let too_many_reads =
        too_many("Over the rate limit of this client IP; retry after `Retry-After` seconds", &policy);
    let too_many_writes = too_many(
        "Over the rate limit of this client IP, or (for a write on an article) over this client \
         network's writes on that article (`article-writes`); retry after `Retry-After` seconds. \
         The `RateLimit` fields name the policy that refused.",
        &write_policy,
    );
    let cookie = ParameterBuilder::new()
        .name(crate::identity::cookie::COOKIE_NAME)
        .parameter_in(ParameterIn::Cookie)
        .required(Required::False)
        .description(Some(
            "The service's signed visitor cookie, used when no X-Visitor-Id header is sent. \
             A cookie that fails verification is ignored. Without either, a write's visitor is an \
             anonymous fingerprint (a keyed hash of a daily salt, the client IP and User-Agent). \
             The cookie is minted from that fingerprint, which others behind the same address and \
             browser build share: it keeps the browser's writes deduplicated, but a read with it \
             is anonymous and it never erases (only X-Visitor-Id does).",
        ))
        .schema(Some(Object::with_type(Type::String)))
        .build();
    let set_cookie = string_header(
        "Sent after a write identified by fingerprint: the signed `rr_vid` cookie (HttpOnly, one \
         year; `Secure; SameSite=None` when COOKIE_SECURE is on) so the browser keeps its identity.",
        "rr_vid=v1.…; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
    );

    for (path, item) in document.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let writes = [&mut item.put, &mut item.delete].into_iter().flatten().map(|op| (op, true));
        let reads = [&mut item.get].into_iter().flatten().map(|op| (op, false));
        for (operation, is_write) in writes.chain(reads) {
            // The dashboard reads and the admin routes do not depend on who asks: no visitor
            // cookie there, and their writes are in the `stats` class.
            let per_visitor = !operation.tags.iter().flatten().any(|tag| tag == "stats" || tag == "admin");
            let is_write = is_write && per_visitor;
            if per_visitor {
                operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(cookie.clone()));
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert("RateLimit".into(), RefOr::T(ratelimit.clone()));
                    let policy = if is_write { &write_policy } else { &policy };
                    response.headers.insert("RateLimit-Policy".into(), RefOr::T(policy.clone()));
                    if is_write && status == "200" {
                        response.headers.insert("Set-Cookie".into(), RefOr::T(set_cookie.clone()));
                    }
                }
            }
            let too_many = if is_write { &too_many_writes } else { &too_many_reads };
            operation.responses.responses.insert("429".into(), RefOr::T(too_many.clone()));
        }
    }
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
    describe_layers(&mut document);
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
