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
    fn display_and_as_ref_give_the_id_unchanged() {
        let id = ArticleId::parse("2025/11/27/élection").unwrap();
        assert_eq!(id.to_string(), "2025/11/27/élection");
        assert_eq!(AsRef::<str>::as_ref(&id), "2025/11/27/élection");
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Characters weighted towards the interesting ones: ASCII, controls (C0, DEL, C1) and
    /// multi-byte characters, so that lengths cross 256 bytes in every width.
    fn character() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => proptest::char::range(' ', '~'),
            2 => any::<char>(),
            1 => prop::sample::select(vec!['\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}']),
            1 => prop::sample::select(vec!['é', '€', '𝄞', '\u{200b}', '\u{feff}', '\u{2028}']),
        ]
    }

    fn raw_id() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(character(), 0..40).prop_map(String::from_iter),
            // Around the 256-byte limit.
            prop::collection::vec(character(), 60..300).prop_map(String::from_iter),
            (250usize..=260, prop::sample::select(vec!["", "é", "€", "𝄞"]))
                .prop_map(|(n, tail)| format!("{}{tail}", "x".repeat(n))),
        ]
    }

    /// The contract's language, stated independently of the implementation: 1–256 bytes of
    /// UTF-8, and no character in Unicode's control category (C0, DEL and C1).
    fn in_language(raw: &str) -> bool {
        let controls = |c: char| matches!(c as u32, 0..=0x1f | 0x7f..=0x9f);
        (1..=256).contains(&raw.len()) && !raw.chars().any(controls)
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_contract_language_and_keeps_the_id(raw in raw_id()) {
            match ArticleId::parse(raw.clone()) {
                Ok(id) => {
                    prop_assert!(in_language(&raw), "accepted {raw:?}");
                    prop_assert_eq!(id.as_str(), raw.as_str());
                }
                Err(ArticleIdError::Empty) => prop_assert!(raw.is_empty()),
                Err(ArticleIdError::TooLong(n)) => prop_assert!(n == raw.len() && n > 256),
                Err(ArticleIdError::ControlCharacter(at)) => {
                    prop_assert!(!in_language(&raw));
                    prop_assert!(raw[at..].chars().next().is_some_and(char::is_control), "{raw:?} at {at}");
                }
            }
        }

    }
}
