//! The vocabulary of the service: articles, reactions and what a reader sees.
//!
//! Everything here is plain data with parsing constructors, so that invalid values cannot reach
//! the store or the HTTP answers.

mod article_id;
mod reaction;
mod settings;
mod stats;
mod summary;
mod visitor;
mod window;

pub use article_id::{ArticleId, ArticleIdError};
pub use reaction::{Reaction, ReactionCounts, UnknownReaction};
pub use settings::{ArticleSettings, ReactionSet, SettingsError};
pub use stats::{ArticleCount, TrendingArticle};
pub use summary::ReactionSummary;
pub use visitor::{
    ClientNetwork, IdentityToken, MIN_SECRET_BYTES, NetworkKey, SecretError, VisitorId, VisitorIdError,
    VisitorKey, VisitorSecret,
};
pub use window::{Bucket, EmptyWindow, TimeWindow, UnknownBucket, WindowParts, rfc3339};
