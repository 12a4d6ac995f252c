use std::fmt;

use super::{Reaction, UnknownReaction};

/// A set of reactions, listed in display order ([`Reaction::ALL`]) whatever order it was built in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReactionSet(u8);

impl ReactionSet {
    /// All seven reactions.
    pub const ALL: ReactionSet = ReactionSet((1 << Reaction::ALL.len()) - 1);

    /// Adds `reaction`; answers whether it was new.
    pub fn insert(&mut self, reaction: Reaction) -> bool {
        let had = self.contains(reaction);
        self.0 |= bit(reaction);
        !had
    }

    pub fn contains(self, reaction: Reaction) -> bool {
        self.0 & bit(reaction) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reactions of the set, in display order.
    pub fn iter(self) -> impl Iterator<Item = Reaction> {
        Reaction::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

/// A reaction's bit: its place in display order.
fn bit(reaction: Reaction) -> u8 {
    1 << reaction.index()
}

impl FromIterator<Reaction> for ReactionSet {
    fn from_iter<I: IntoIterator<Item = Reaction>>(reactions: I) -> Self {
        let mut set = ReactionSet::default();
        for reaction in reactions {
            set.insert(reaction);
        }
        set
    }
}

impl fmt::Debug for ReactionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The keys in display order, separated by commas: `like, love, sad`.
impl fmt::Display for ReactionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reaction) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(reaction.key())?;
        }
        Ok(())
    }
}

/// A JSON array of keys in display order.
impl serde::Serialize for ReactionSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

// Built only by `ArticleSettings::new` (or as the default, an open article offering
// everything), so an offered list is non-empty, without duplicates, of known keys, in display
// order.
/// An article's editorial settings: whether it takes new reactions, and which it offers. An
/// article never configured is `{"closed": false, "reactions": null}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"closed": false, "reactions": ["like", "love", "sad"]}))]
pub struct ArticleSettings {
    /// Closed to new reactions: setting or removing one answers 409; reads and erasure go on.
    closed: bool,
    /// The offered reactions in display order (whatever order was sent), non-empty and without
    /// duplicates; `null` offers all seven. Setting another answers 422; reactions already
    /// held stay counted.
    #[schema(value_type = Option<BTreeSet<Reaction>>, required = true, min_items = 1, max_items = 7)]
    reactions: Option<ReactionSet>,
}

/// Why a settings body is not [`ArticleSettings`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("reactions is an empty list; list at least one reaction, or send null to offer all seven")]
    NoReactions,
    #[error("reactions lists {0} twice; list each reaction once")]
    Duplicate(Reaction),
    #[error("reactions: {0}")]
    Unknown(#[from] UnknownReaction),
}

impl ArticleSettings {
    /// Validates an editor's choice: `reactions` is `None` for all seven.
    pub fn new<S: AsRef<str>>(closed: bool, reactions: Option<&[S]>) -> Result<Self, SettingsError> {
        let Some(keys) = reactions else { return Ok(Self { closed, reactions: None }) };
        let mut offered = ReactionSet::default();
        for key in keys {
            let reaction: Reaction = key.as_ref().parse()?;
            if !offered.insert(reaction) {
                return Err(SettingsError::Duplicate(reaction));
            }
        }
        if offered.is_empty() {
            return Err(SettingsError::NoReactions);
        }
        Ok(Self { closed, reactions: Some(offered) })
    }

    /// Whether the article is closed to new reactions.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The offered reactions, when restricted (`None`: all of them).
    pub fn restriction(&self) -> Option<ReactionSet> {
        self.reactions
    }

    /// The reactions offered now.
    pub fn offered(&self) -> ReactionSet {
        self.reactions.unwrap_or(ReactionSet::ALL)
    }

    pub fn offers(&self, reaction: Reaction) -> bool {
        self.offered().contains(reaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_reactions_are_kept_in_display_order() {
        let settings = ArticleSettings::new(false, Some(&["sad", "like", "love"])).unwrap();
        assert_eq!(
            settings.offered().iter().collect::<Vec<_>>(),
            [Reaction::Like, Reaction::Love, Reaction::Sad]
        );
        assert_eq!(
            serde_json::to_string(&settings).unwrap(),
            r#"{"closed":false,"reactions":["like","love","sad"]}"#
        );
        assert!(!settings.offers(Reaction::Funny));
        let open = ArticleSettings::new::<&str>(true, None).unwrap();
        assert_eq!(serde_json::to_string(&open).unwrap(), r#"{"closed":true,"reactions":null}"#);
        assert!(Reaction::ALL.into_iter().all(|r| open.offers(r)));
        assert_eq!(ReactionSet::ALL.iter().collect::<Vec<_>>(), Reaction::ALL);
    }

    #[test]
    fn empty_duplicate_and_unknown_lists_are_refused() {
        let cases: [(&[&str], SettingsError); 3] = [
            (&[], SettingsError::NoReactions),
            (&["love", "sad", "love"], SettingsError::Duplicate(Reaction::Love)),
            (&["love", "Funny"], SettingsError::Unknown(UnknownReaction("Funny".into()))),
        ];
        for (keys, expected) in cases {
            assert_eq!(ArticleSettings::new(false, Some(keys)), Err(expected), "{keys:?}");
        }
    }
}
