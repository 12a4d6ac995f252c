//! What the dashboards read: articles ranked in a window, and trending articles. One definition
//! each, from the store's rows to the JSON answers (and the OpenAPI schemas).

use super::ArticleId;

/// One article and its reactions in the window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = TopArticle)]
pub struct ArticleCount {
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    pub article_id: ArticleId,
    /// Reactions (of the kind asked for, or all) whose last change falls in the window.
    pub count: i64,
}

/// One trending article: its reactions in the recent window and in the one before, its score,
/// and the distinct client networks its recent reactions come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TrendingArticle {
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    pub article_id: ArticleId,
    /// `(recent - previous) / sqrt(previous + 1)`; always above zero.
    pub score: f64,
    /// Reactions whose last change falls in the recent window, `[since, until)`.
    pub recent: i64,
    /// Reactions whose last change falls in the window before, `[since - window, since)`.
    pub previous: i64,
    /// Distinct client networks (IPv4 /24, IPv6 /48) the reactions of `recent` come from; at
    /// least `TRENDING_MIN_NETWORKS`. Exact. A network that reacted on both sides of midnight
    /// UTC within the window counts twice (its keyed hash changes with the daily salt).
    #[schema(minimum = 0)]
    pub networks: i64,
}
