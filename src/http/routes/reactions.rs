//! `/v1/articles/{article_id}/reaction(s)`, the batch read for list pages, and erase-me.

use super::responses;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::cache::{Rendered, etag, tag_of};
use crate::app::identity::WriteNetwork;
use crate::domain::NetworkKey;
use crate::domain::{ArticleId, Reaction, ReactionSummary};
use crate::http::extract::{AppJson, ArticleParam, ArticlePath, query_pairs};
use crate::http::middleware::article_cap::{SpentCap, WriteAllowance};
use crate::http::middleware::identity::Visitor;
use crate::http::{ApiError, AppState, Problem};

/// Most articles one batch read may ask for.
pub const MAX_BATCH_ARTICLES: usize = 100;

pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_article_reactions))
        .routes(routes!(put_reaction, delete_reaction))
        .routes(routes!(get_batch_reactions))
        .routes(routes!(erase_me))
}

/// Body of `PUT /v1/articles/{article_id}/reaction`: a JSON object with exactly one field.
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"reaction": "love"}))]
pub struct SetReaction {
    /// One of the seven reaction keys. A well-formed body with any other key is a 422.
    #[schema(value_type = Reaction)]
    reaction: String,
}

impl<'de> serde::Deserialize<'de> for SetReaction {
    /// Only a JSON object: serde's derive would also accept the array form `["love"]`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            reaction: String,
        }
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = SetReaction;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a JSON object such as {"reaction":"love"}"#)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SetReaction, A::Error> {
                let fields = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SetReaction { reaction: fields.reaction })
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// Answer of the batch read.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BatchSummaries {
    /// One summary per `article_id` asked, in request order; a duplicate is answered each time.
    articles: Vec<ReactionSummary>,
}

/// Answer of `DELETE /v1/visitors/me`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// How many reactions were removed.
    removed: u64,
}

/// Counts for one article, and the caller's reaction when the caller is identified.
///
/// An article nobody reacted to answers all zeros, never 404.
#[utoipa::path(
    get,
    path = "/v1/articles/{article_id}/reactions",
    tag = "reactions",
    params(ArticleParam, VisitorHeader),
    responses(
        (status = 200, description = "Counts and the caller's reaction. Anonymous answers are \
`Cache-Control: public` for the read-cache TTL with an `ETag`; identified ones are `private`.", body = ReactionSummary,
            headers(("ETag" = String, description = "Anonymous answers only"), ("Cache-Control" = String))),
        responses::CountsNotModified,
        responses::MalformedArticleOrVisitor,
        responses::Unavailable,
    )
)]
async fn get_article_reactions(
    State(state): State<AppState>,
    visitor: Visitor,
    ArticlePath(article_id): ArticlePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(viewer) = visitor.personal_key() else {
        let Rendered { json, etag, .. } = state.reactions.anonymous_one(&article_id).await?;
        return Ok(public_answer(&headers, &state.public_cache_control, json, etag));
    };
    let summary = state.reactions.summary(&article_id, Some(viewer)).await?;
    Ok(private_answer(&summary))
}

/// Sets or switches the caller's reaction. Idempotent: setting the same reaction again changes
/// nothing.
#[utoipa::path(
    put,
    path = "/v1/articles/{article_id}/reaction",
    tag = "reactions",
    params(ArticleParam, VisitorHeader),
    request_body(content = SetReaction, content_type = "application/json"),
    responses(
        responses::ReactionChanged,
        (status = 400, description = "Malformed article id, visitor header or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within half the request timeout (REQUEST_TIMEOUT_MS); the connection is closed", body = Problem, content_type = "application/problem+json"),
        responses::JsonBodyRejected,
        (status = 409, description = "The article is closed to new reactions (`urn:reader-reactions:problem:article-closed`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown reaction key (`unknown-reaction`), or one the article does not offer (`urn:reader-reactions:problem:reaction-not-offered`); nothing changed", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn put_reaction(
    State(state): State<AppState>,
    visitor: Visitor,
    WriteNetwork(network): WriteNetwork,
    ArticlePath(article_id): ArticlePath,
    allowance: WriteAllowance,
    AppJson(body): AppJson<SetReaction>,
) -> Result<Response, Response> {
    let visitor = *visitor.require().map_err(IntoResponse::into_response)?;
    let reaction: Reaction =
        body.reaction.parse().map_err(|e| ApiError::unknown_reaction(e).into_response())?;
    change(&state, allowance, article_id, visitor, network, Some(reaction)).await
}

/// Removes the caller's reaction. Idempotent: removing a reaction not held changes nothing.
#[utoipa::path(
    delete,
    path = "/v1/articles/{article_id}/reaction",
    tag = "reactions",
    params(ArticleParam, VisitorHeader),
    responses(
        responses::ReactionChanged,
        responses::MalformedArticleOrVisitor,
        (status = 409, description = "The article is closed to new reactions (`urn:reader-reactions:problem:article-closed`); the reaction stays. `DELETE /v1/visitors/me` still erases it.", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn delete_reaction(
    State(state): State<AppState>,
    visitor: Visitor,
    ArticlePath(article_id): ArticlePath,
    allowance: WriteAllowance,
) -> Result<Response, Response> {
    let visitor = *visitor.require().map_err(IntoResponse::into_response)?;
    // A removed reaction keeps no network.
    change(&state, allowance, article_id, visitor, None, None).await
}

/// A valid write: checked against the article's settings, then spends the article cap (only
/// now, so invalid or refused writes never do), then makes the change. The answer carries the
/// cap's rate-limit fields.
async fn change(
    state: &AppState,
    allowance: WriteAllowance,
    article_id: ArticleId,
    visitor: crate::domain::VisitorKey,
    network: Option<NetworkKey>,
    reaction: Option<Reaction>,
) -> Result<Response, Response> {
    let allowed = state
        .reactions
        .allow(article_id, visitor, network, reaction)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let cap_fields = allowance.spend()?;
    let changed = state.reactions.change(allowed).await;
    let mut response = changed.map(AppJson).map_err(ApiError::from).into_response();
    if let Some(fields) = cap_fields {
        response.extensions_mut().insert(SpentCap(fields));
    }
    Ok(response)
}

/// Counts for 1–100 articles at once, for list pages.
///
/// Repeat `article_id` once per article. Answers in request order; a duplicate is answered
/// each time it is asked.
#[utoipa::path(
    get,
    path = "/v1/reactions",
    tag = "reactions",
    params(
        ("article_id" = inline(Vec<QueryArticleId>), Query, explode = true, style = Form, min_items = 1, max_items = 100,
            description = "1–100 article ids, one parameter each; each 1–256 bytes of UTF-8 without control characters"),
        VisitorHeader,
    ),
    responses(
        (status = 200, description = "One summary per id asked, in order; cached like the single read", body = BatchSummaries,
            headers(("ETag" = String, description = "Anonymous answers only"), ("Cache-Control" = String))),
        responses::CountsNotModified,
        (status = 400, description = "No ids, more than 100, a malformed id or an unknown parameter", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn get_batch_reactions(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut articles = Vec::new();
    for (name, value) in query_pairs(query.as_deref())? {
        if name != "article_id" {
            return Err(ApiError::invalid_query(format!(
                "unknown query parameter {name:?}; only article_id is accepted"
            )));
        }
        if articles.len() == MAX_BATCH_ARTICLES {
            return Err(ApiError::invalid_query(format!(
                "at most {MAX_BATCH_ARTICLES} article_id parameters are accepted"
            )));
        }
        let article_id = ArticleId::parse(value)
            .map_err(|e| ApiError::invalid_article_id(format!("article_id #{}: {e}", articles.len() + 1)))?;
        articles.push(article_id);
    }
    if articles.is_empty() {
        return Err(ApiError::invalid_query("give at least one article_id parameter"));
    }
    let Some(viewer) = visitor.personal_key() else {
        let (json, tag) = join_batch(&state.reactions.anonymous(&articles).await?);
        return Ok(public_answer(&headers, &state.public_cache_control, json, etag(tag)));
    };
    let articles = state.reactions.summaries(&articles, Some(viewer)).await?;
    Ok(private_answer(&BatchSummaries { articles }))
}

/// An identified read: it carries the viewer's reaction, so it is `private`.
fn private_answer<T: serde::Serialize>(body: &T) -> Response {
    let mut buffer = Vec::with_capacity(256);
    if let Err(e) = serde_json::to_writer(&mut buffer, body) {
        return ApiError::Internal(anyhow::Error::new(e)).into_response();
    }
    let cache_control = (header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    ([content_type_json(), cache_control, vary()], buffer).into_response()
}

/// An anonymous read: the same for everyone, so `public` for as long as our own cache may serve
/// it, with an `ETag` that `If-None-Match` can revalidate (304).
fn public_answer(
    request: &HeaderMap,
    public_cache_control: &HeaderValue,
    body: Bytes,
    etag: Bytes,
) -> Response {
    let fresh = crate::http::caching::if_none_match(request, &etag);
    // Made from the rendered answer's bytes without copying them.
    let etag = HeaderValue::from_maybe_shared(etag).expect("a quoted hex tag is a header value");
    let headers = [(header::ETAG, etag), (header::CACHE_CONTROL, public_cache_control.clone()), vary()];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, [content_type_json()], body).into_response()
    }
}

/// The anonymous answer of a batch read from its articles' rendered answers: the JSON that
/// serialising [`BatchSummaries`] gives, and a tag derived from the articles' tags.
fn join_batch(answers: &[Rendered]) -> (Bytes, u64) {
    const OPEN: &[u8] = br#"{"articles":["#;
    const CLOSE: &[u8] = b"]}";
    let length = OPEN.len() + CLOSE.len() + answers.iter().map(|a| a.json.len() + 1).sum::<usize>();
    let mut json = Vec::with_capacity(length);
    let mut tags = Vec::with_capacity(answers.len() * 8);
    json.extend_from_slice(OPEN);
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(&answer.json);
        tags.extend_from_slice(&answer.tag.to_le_bytes());
    }
    json.extend_from_slice(CLOSE);
    (Bytes::from(json), tag_of(&tags))
}

fn vary() -> (header::HeaderName, HeaderValue) {
    (header::VARY, HeaderValue::from_static("X-Visitor-Id, Cookie"))
}

/// `Cache-Control` of an anonymous read: public for as long as our own cache may serve it (at
/// least a second when caching is on). Made once, at start-up.
pub fn public_cache_control(ttl: std::time::Duration) -> HeaderValue {
    let max_age = ttl.as_secs().max(u64::from(!ttl.is_zero()));
    HeaderValue::try_from(format!("public, max-age={max_age}")).expect("ASCII")
}

fn content_type_json() -> (header::HeaderName, HeaderValue) {
    (header::CONTENT_TYPE, HeaderValue::from_static(crate::http::extract::JSON_UTF8))
}

/// Erases every reaction of the caller, on every article (privacy).
///
/// The caller must name itself with `X-Visitor-Id`. A request without it is a 400 that erases
/// nothing and sets no cookie: the anonymous fingerprint (address and User-Agent) is shared by
/// everyone behind one address with the same browser build, and so is the `rr_vid` cookie a
/// fingerprinted write mints from it (a neighbour's write is handed the same one), so neither
/// erases.
#[utoipa::path(
    delete,
    path = "/v1/visitors/me",
    tag = "visitors",
    params(VisitorHeader),
    responses(
        (status = 200, description = "How many reactions were removed", body = Erased),
        (status = 400, description = "Malformed visitor header, or no `X-Visitor-Id` (nothing is erased; the `rr_vid` cookie, minted from a shared fingerprint, never erases)", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn erase_me(State(state): State<AppState>, visitor: Visitor) -> Result<AppJson<Erased>, ApiError> {
    let Some(visitor) = visitor.personal_key() else {
        return Err(ApiError::visitor_required(
            "erasing needs the X-Visitor-Id header of the visitor to erase; an address and browser, \
             and the rr_vid cookie minted from them, are shared by others and never erase",
        ));
    };
    let removed = state.reactions.erase_visitor(visitor).await?;
    Ok(AppJson(Erased { removed }))
}

/// One `article_id` of the batch read: 1–256 bytes of UTF-8 without control characters.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, min_length = 1, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct QueryArticleId(String);

/// The visitor identity header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Exists for the OpenAPI document only.
struct VisitorHeader {
    /// A random id the client keeps per visitor: 8–128 characters of `[A-Za-z0-9_-]`. Only a
    /// keyed hash of it is stored. Takes precedence over the `rr_vid` cookie and the anonymous
    /// fingerprint; a malformed value is a 400.
    #[param(rename = "X-Visitor-Id", pattern = "^[A-Za-z0-9_-]{8,128}$", nullable = false)]
    x_visitor_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReactionCounts;

    #[test]
    fn a_joined_batch_is_the_serialised_batch_and_its_tag_follows_every_article() {
        let mut counts = ReactionCounts::default();
        counts.add(Reaction::Love, 3);
        let articles: Vec<ArticleId> =
            ["a", "b \"quoted\"", "a"].into_iter().map(|id| ArticleId::parse(id).unwrap()).collect();
        let settings = crate::domain::ArticleSettings::default();
        let rendered: Vec<Rendered> = articles.iter().map(|id| Rendered::new(id, counts, settings)).collect();

        let (json, tag) = join_batch(&rendered);

        let summaries =
            articles.iter().map(|id| ReactionSummary::new(id.clone(), counts, None, settings)).collect();
        assert_eq!(json, serde_json::to_vec(&BatchSummaries { articles: summaries }).unwrap());
        assert_eq!(join_batch(&[]).0, serde_json::to_vec(&BatchSummaries { articles: vec![] }).unwrap());
        let mut more = counts;
        more.add(Reaction::Wow, 1);
        let changed = [rendered[0].clone(), Rendered::new(&articles[1], more, settings), rendered[2].clone()];
        assert_ne!(join_batch(&changed).1, tag, "one changed article changes the tag");
        let reordered = [rendered[1].clone(), rendered[0].clone(), rendered[2].clone()];
        assert_ne!(join_batch(&reordered).1, tag, "and so does another order");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![3 => Just("reaction".to_owned()), 1 => "[a-zA-Z_]{0,9}"]
    }

    /// Any JSON value, with `reaction` keys and reaction-like strings coming up often.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![Just("love".to_owned()), ".{0,12}"].prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(Map::from_iter(pairs))),
            ]
        })
    }

    /// The reaction keys, the same changed a little (case, whitespace, one character more or
    /// less), and arbitrary strings.
    fn near_keys() -> impl Strategy<Value = String> {
        let key = prop::sample::select(Reaction::ALL.iter().map(|r| r.key().to_owned()).collect::<Vec<_>>());
        prop_oneof![
            3 => key.clone(),
            1 => key.clone().prop_map(|k| k.to_uppercase()),
            1 => key.clone().prop_map(|k| format!(" {k}")),
            1 => key.clone().prop_map(|k| format!("{k}s")),
            1 => key.prop_map(|k| k[1..].to_owned()),
            2 => any::<String>(),
        ]
    }

    /// JSON values (as [`json`] makes them), the same with one byte changed, and bytes made of
    /// JSON fragments and stray bytes.
    fn json_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            4 => prop::sample::select(vec![
                "{", "}", "[", "]", ":", ",", " ", "\"reaction\"", "\"love\"", "\"wow\"", "\"other\"",
                "null", "1", "true", "\"\\u0000\"",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        let mutated = (json(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(value, at, byte)| {
            let mut bytes = value.to_string().into_bytes();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            bytes
        });
        prop_oneof![
            json().prop_map(|value| value.to_string().into_bytes()),
            mutated,
            prop::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat()),
        ]
    }

    /// The documented language: an object whose only member is a string `reaction`.
    fn accepted(value: &Value) -> Option<&str> {
        let object = value.as_object()?;
        (object.len() == 1).then(|| object.get("reaction")?.as_str()).flatten()
    }

    proptest! {
        #[test]
        fn only_an_object_with_exactly_a_string_reaction_is_accepted(value in json()) {
            let text = value.to_string();
            let parsed = serde_json::from_str::<SetReaction>(&text);
            match (accepted(&value), parsed) {
                (Some(expected), Ok(body)) => prop_assert_eq!(body.reaction.as_str(), expected),
                (None, Err(_)) => {}
                (expected, parsed) => prop_assert!(false, "{text}: expected {expected:?}, got {parsed:?}"),
            }
        }

        /// Any string, reaction key or not, survives the body's JSON encoding unchanged; which
        /// keys are reactions is decided after parsing (unknown ones are a 422), and only the
        /// exact lower-case keys are.
        #[test]
        fn the_reaction_string_round_trips(reaction in near_keys()) {
            let text = serde_json::json!({ "reaction": reaction }).to_string();
            let body: SetReaction = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&body.reaction, &reaction);
            prop_assert_eq!(body.reaction.parse::<Reaction>().is_ok(), Reaction::ALL.iter().any(|r| r.key() == reaction));
        }

        /// Arbitrary bytes never panic the body parser, and whatever it accepts is a JSON object
        /// whose only member is the string `reaction` it returns.
        #[test]
        fn arbitrary_bytes_are_accepted_only_as_the_documented_object(bytes in json_like_bytes()) {
            let parsed = serde_json::from_slice::<SetReaction>(&bytes);
            let value = serde_json::from_slice::<Value>(&bytes);
            match (parsed, value) {
                (Ok(body), Ok(value)) => prop_assert_eq!(accepted(&value), Some(body.reaction.as_str())),
                (Ok(body), Err(_)) => prop_assert!(false, "accepted non-JSON as {body:?}"),
                (Err(_), _) => {}
            }
        }
    }
}
