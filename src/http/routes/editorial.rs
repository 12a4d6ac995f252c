//! Editorial controls: `/v1/admin/articles/{article_id}/settings`, behind `ADMIN_TOKEN`.

use super::responses;
use axum::extract::State;
use serde::Deserialize as _;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{ArticleSettings, SettingsError};
use crate::http::extract::{AppJson, ArticleParam, ArticlePath};
use crate::http::routes::admin::Admin;
use crate::http::{ApiError, AppState, Problem};

pub(in crate::http) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(EditorialDoc::openapi()).routes(routes!(get_settings, put_settings))
}

/// The `admin` tag, merged into the service's document.
#[derive(OpenApi)]
#[openapi(tags((name = "admin", description = "Editorial controls, for newsrooms: close an article to \
new reactions, or choose the reactions it offers. Every route needs the server's `ADMIN_TOKEN` as a \
bearer token and answers 404 when the server has none. Changes reach every instance within \
`CACHE_TTL_MS`. Rate limited per client IP in the `stats` class.")))]
struct EditorialDoc;

/// Body of `PUT /v1/admin/articles/{article_id}/settings`, before validation: exactly the two
/// members of [`ArticleSettings`], `reactions` present even when `null`.
#[derive(Debug)]
struct SettingsBody {
    closed: bool,
    reactions: Option<Vec<String>>,
}

impl<'de> serde::Deserialize<'de> for SettingsBody {
    /// Only a JSON object with both members: serde's derive would also accept the array form
    /// and take a missing `reactions` for `null` (which would lift a restriction by omission).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            closed: bool,
            // `deserialize_with` makes the member required although it may be null.
            #[serde(deserialize_with = "Option::deserialize")]
            reactions: Option<Vec<String>>,
        }
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = SettingsBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a JSON object such as {"closed":false,"reactions":["like","love","sad"]}"#)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SettingsBody, A::Error> {
                let Fields { closed, reactions } =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SettingsBody { closed, reactions })
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// An article's settings: whether it is closed to new reactions, and which it offers.
///
/// An article never configured answers `{"closed": false, "reactions": null}`.
#[utoipa::path(
    get,
    path = "/v1/admin/articles/{article_id}/settings",
    tag = "admin",
    params(ArticleParam),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The article's settings", body = ArticleSettings),
        responses::MalformedArticleId,
        responses::EditorialRejected,
        responses::Unavailable,
    )
)]
async fn get_settings(
    _admin: Admin,
    State(state): State<AppState>,
    ArticlePath(article_id): ArticlePath,
) -> Result<AppJson<ArticleSettings>, ApiError> {
    Ok(AppJson(state.reactions.article_settings(&article_id).await?))
}

/// Replaces an article's settings; idempotent. Answers them as stored: `reactions` in display
/// order whatever order was sent.
///
/// Closed: setting or removing a reaction answers 409 (`article-closed`); reads go on and
/// `DELETE /v1/visitors/me` still erases. Restricted: setting a reaction not offered answers 422
/// (`reaction-not-offered`); reactions already held stay counted until their visitors change
/// them. Every answer's `ReactionSummary` shows `closed` and `reactions`. Other instances apply
/// the change within `CACHE_TTL_MS`.
#[utoipa::path(
    put,
    path = "/v1/admin/articles/{article_id}/settings",
    tag = "admin",
    params(ArticleParam),
    security(("admin_token" = [])),
    request_body(content = ArticleSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings as stored", body = ArticleSettings),
        (status = 400, description = "Malformed article id or JSON: not an object, a member missing or unknown, `closed` not a boolean, `reactions` not a list of strings or null; nothing changed", body = Problem, content_type = "application/problem+json"),
        responses::EditorialRejected,
        responses::JsonBodyRejected,
        (status = 422, description = "An unknown reaction key (`unknown-reaction`), an empty list or a reaction listed twice (`invalid-settings`); nothing changed", body = Problem, content_type = "application/problem+json"),
        responses::Unavailable,
    )
)]
async fn put_settings(
    _admin: Admin,
    State(state): State<AppState>,
    ArticlePath(article_id): ArticlePath,
    AppJson(body): AppJson<SettingsBody>,
) -> Result<AppJson<ArticleSettings>, ApiError> {
    let settings = ArticleSettings::new(body.closed, body.reactions.as_deref()).map_err(|e| match e {
        SettingsError::Unknown(_) => ApiError::unknown_reaction(e),
        SettingsError::NoReactions | SettingsError::Duplicate(_) => ApiError::invalid_settings(e),
    })?;
    Ok(AppJson(state.reactions.replace_settings(article_id, settings).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_with_both_members_parses() {
        for ok in [r#"{"closed":true,"reactions":null}"#, r#"{"reactions":["sad"],"closed":false}"#] {
            assert!(serde_json::from_str::<SettingsBody>(ok).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"closed":true}"#,
            r#"{"reactions":null}"#,
            r#"{"closed":"true","reactions":null}"#,
            r#"{"closed":1,"reactions":null}"#,
            r#"{"closed":false,"reactions":null,"note":"x"}"#,
            r#"{"closed":false,"reactions":"love"}"#,
            r#"{"closed":false,"reactions":[1]}"#,
            r#"[false,null]"#,
            "null",
        ] {
            assert!(serde_json::from_str::<SettingsBody>(bad).is_err(), "{bad}");
        }
    }
}
