use std::fmt;

/// Longest article id we accept, in bytes of UTF-8.
pub const MAX_ARTICLE_ID_BYTES: usize = 256;

/// An opaque article identifier chosen by the news site (slug, number, UUID or URL path).
///
/// Can only be built by [`ArticleId::parse`]: 1–256 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ArticleId(String);

/// Why a string is not an [`ArticleId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArticleIdError {
    #[error("the article id is empty")]
    Empty,
    #[error("the article id is {0} bytes long; at most {MAX_ARTICLE_ID_BYTES} bytes are allowed")]
    TooLong(usize),
    #[error("the article id contains a control character at byte {0}")]
    ControlCharacter(usize),
}

impl ArticleId {
    /// Validates an already percent-decoded article id.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ArticleIdError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(ArticleIdError::Empty);
        }
        if raw.len() > MAX_ARTICLE_ID_BYTES {
            return Err(ArticleIdError::TooLong(raw.len()));
        }
        if let Some((at, _)) = raw.char_indices().find(|(_, c)| c.is_control()) {
            return Err(ArticleIdError::ControlCharacter(at));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ArticleId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArticleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_paths_unicode_and_exactly_256_bytes() {
        for ok in ["a", "2025/11/27/leaked-witkoff-call", "élection-présidentielle", "42"] {
            assert_eq!(ArticleId::parse(ok).unwrap().as_str(), ok, "{ok:?} should parse");
        }
        let max = "é".repeat(128); // 2 bytes each
        assert_eq!(max.len(), 256);
        assert!(ArticleId::parse(max).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        let cases = [
            ("", ArticleIdError::Empty, "empty"),
            (&"x".repeat(257), ArticleIdError::TooLong(257), "257 bytes"),
            ("a\nb", ArticleIdError::ControlCharacter(1), "newline"),
            ("\u{7f}", ArticleIdError::ControlCharacter(0), "DEL"),
            ("a\u{85}", ArticleIdError::ControlCharacter(1), "C1 control"),
        ];
        for (raw, expected, why) in cases {
            assert_eq!(ArticleId::parse(raw), Err(expected), "{why}");
        }
    }
}
