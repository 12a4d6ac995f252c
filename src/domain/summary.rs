use super::{ArticleId, Reaction, ReactionCounts};

/// The one shape every per-article answer uses: counts, their total and the caller's reaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "article_id": "2025/11/27/leaked-witkoff-call",
    "counts": { "like": 0, "dislike": 0, "love": 3, "funny": 0, "angry": 12, "sad": 1, "wow": 4 },
    "total": 20,
    "viewer_reaction": "angry"
}))]
pub struct ReactionSummary {
    /// The article id exactly as the site sent it (after percent-decoding).
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    pub article_id: ArticleId,
    pub counts: ReactionCounts,
    /// The sum of all seven counts.
    pub total: i64,
    /// The caller's reaction, or `null` when the caller holds none or is not identified.
    #[schema(required = true)]
    pub viewer_reaction: Option<Reaction>,
}

impl ReactionSummary {
    pub fn new(article_id: ArticleId, counts: ReactionCounts, viewer_reaction: Option<Reaction>) -> Self {
        Self { article_id, total: counts.total(), counts, viewer_reaction }
    }

    /// All zeros: an article nobody reacted to.
    pub fn empty(article_id: ArticleId) -> Self {
        Self::new(article_id, ReactionCounts::default(), None)
    }
}
