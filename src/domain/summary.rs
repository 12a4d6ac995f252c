use super::{ArticleId, ArticleSettings, Reaction, ReactionCounts, ReactionSet};

/// The one shape every per-article answer uses: counts, their total, the caller's reaction, and
/// what the article's settings allow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "article_id": "2025/11/27/leaked-witkoff-call",
    "counts": { "like": 0, "dislike": 0, "love": 3, "funny": 0, "angry": 12, "sad": 1, "wow": 4 },
    "total": 20,
    "viewer_reaction": "angry",
    "closed": false,
    "reactions": ["like", "dislike", "love", "funny", "angry", "sad", "wow"]
}))]
pub struct ReactionSummary {
    /// The article id exactly as the site sent it (after percent-decoding).
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    pub article_id: ArticleId,
    /// All seven counts, whatever the article offers: reactions held before a restriction stay
    /// counted.
    pub counts: ReactionCounts,
    /// The sum of all seven counts.
    pub total: i64,
    /// The caller's reaction, or `null` when the caller holds none or is not identified. Reads
    /// show it to an `X-Visitor-Id` only: the `rr_vid` cookie is minted from a fingerprint that
    /// others behind the same address and browser build share, so it reads as anonymous. A write's
    /// answer shows the reaction it just set, however the writer was identified.
    #[schema(required = true)]
    pub viewer_reaction: Option<Reaction>,
    /// The article is closed to new reactions (an editor's choice): writes answer 409.
    pub closed: bool,
    /// The reactions the article offers, in display order (all seven unless an editor chose
    /// fewer): setting another answers 422.
    #[schema(value_type = BTreeSet<Reaction>, min_items = 1, max_items = 7)]
    pub reactions: ReactionSet,
}

impl ReactionSummary {
    pub fn new(
        article_id: ArticleId,
        counts: ReactionCounts,
        viewer_reaction: Option<Reaction>,
        settings: ArticleSettings,
    ) -> Self {
        Self {
            article_id,
            total: counts.total(),
            counts,
            viewer_reaction,
            closed: settings.closed(),
            reactions: settings.offered(),
        }
    }

    /// All zeros: an article nobody reacted to, open and offering everything.
    pub fn empty(article_id: ArticleId) -> Self {
        Self::new(article_id, ReactionCounts::default(), None, ArticleSettings::default())
    }
}
