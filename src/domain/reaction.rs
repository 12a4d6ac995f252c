use std::fmt;
use std::str::FromStr;

/// Declares the reactions, in display order, from one list of `Variant => key` lines: the
/// [`Reaction`] enum, [`Reaction::ALL`], the keys, and the fields of [`ReactionCounts`]. The
/// storage statements are generated from [`Reaction::ALL`] (`store::sql`), so an eighth
/// reaction is one more line here plus a migration for each backend that adds it to the
/// database (the PostgreSQL enum value, and a count column in both rollup tables; on SQLite the
/// rollup triggers are rewritten to count it).
macro_rules! reactions {
    ($($variant:ident => $key:ident),+ $(,)?) => {
        /// A reaction a reader can give, by stable key.
        ///
        /// The keys are names, never positions: storage and JSON both use the lower-case key, so
        /// adding a reaction later cannot move any count.
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum Reaction {
            $($variant),+
        }

        impl Reaction {
            /// Every reaction, in display order.
            pub const ALL: [Reaction; [$(stringify!($key)),+].len()] = [$(Reaction::$variant),+];

            /// The stable lower-case key used in JSON, SQL and metrics.
            pub const fn key(self) -> &'static str {
                match self {
                    $(Reaction::$variant => stringify!($key)),+
                }
            }
        }

        /// How many visitors currently hold each reaction. Every key is always present.
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
        )]
        pub struct ReactionCounts {
            $(pub $key: i64),+
        }

        impl ReactionCounts {
            fn slot(&self, reaction: Reaction) -> &i64 {
                match reaction {
                    $(Reaction::$variant => &self.$key),+
                }
            }

            fn slot_mut(&mut self, reaction: Reaction) -> &mut i64 {
                match reaction {
                    $(Reaction::$variant => &mut self.$key),+
                }
            }
        }
    };
}

reactions! {
    Like => like,
    Dislike => dislike,
    Love => love,
    Funny => funny,
    Angry => angry,
    Sad => sad,
    Wow => wow,
}

/// A string that is not one of the reaction keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownReaction(pub String);

impl fmt::Display for UnknownReaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown reaction {:?}; expected one of ", self.0)?;
        for (i, reaction) in Reaction::ALL.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { ", " })?;
            f.write_str(reaction.key())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownReaction {}

impl Reaction {
    /// The reaction's position in [`Reaction::ALL`] (display order), for per-reaction arrays.
    pub fn index(self) -> usize {
        Reaction::ALL.iter().position(|r| *r == self).expect("every reaction is in ALL")
    }
}

impl FromStr for Reaction {
    type Err = UnknownReaction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reaction::ALL.into_iter().find(|r| r.key() == s).ok_or_else(|| UnknownReaction(s.to_owned()))
    }
}

impl fmt::Display for Reaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl ReactionCounts {
    pub fn get(&self, reaction: Reaction) -> i64 {
        *self.slot(reaction)
    }

    pub fn add(&mut self, reaction: Reaction, n: i64) {
        *self.slot_mut(reaction) += n;
    }

    /// The sum over every reaction.
    pub fn total(&self) -> i64 {
        Reaction::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_display_order() {
        let keys: Vec<_> = Reaction::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(keys, ["like", "dislike", "love", "funny", "angry", "sad", "wow"]);
        for r in Reaction::ALL {
            assert_eq!(r.key().parse::<Reaction>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.key()));
            assert_eq!(r.to_string(), r.key(), "Display is the key");
        }
        assert!("Love".parse::<Reaction>().is_err(), "keys are case-sensitive");
        for (i, r) in Reaction::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
        assert!("".parse::<Reaction>().is_err());
        assert_eq!(
            UnknownReaction("meh".into()).to_string(),
            r#"unknown reaction "meh"; expected one of like, dislike, love, funny, angry, sad, wow"#
        );
    }

    #[test]
    fn counts_serialize_all_seven_keys_in_order() {
        let mut counts = ReactionCounts::default();
        counts.add(Reaction::Angry, 12);
        counts.add(Reaction::Love, 3);
        assert_eq!(counts.total(), 15);
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            r#"{"like":0,"dislike":0,"love":3,"funny":0,"angry":12,"sad":0,"wow":0}"#
        );
    }
}
