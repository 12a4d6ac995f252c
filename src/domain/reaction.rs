use std::fmt;
use std::str::FromStr;

/// One of the seven reactions a reader can give, by stable key.
///
/// The keys are names, never positions: storage and JSON both use the lower-case key, so adding
/// an eighth reaction later cannot move any count.
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
    Like,
    Dislike,
    Love,
    Funny,
    Angry,
    Sad,
    Wow,
}

/// A string that is not one of the seven reaction keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reaction {0:?}; expected one of like, dislike, love, funny, angry, sad, wow")]
pub struct UnknownReaction(pub String);

impl Reaction {
    /// Every reaction, in display order.
    pub const ALL: [Reaction; 7] = [
        Reaction::Like,
        Reaction::Dislike,
        Reaction::Love,
        Reaction::Funny,
        Reaction::Angry,
        Reaction::Sad,
        Reaction::Wow,
    ];

    /// The reaction's position in [`Reaction::ALL`] (display order), for per-reaction arrays.
    pub fn index(self) -> usize {
        Reaction::ALL.iter().position(|r| *r == self).expect("every reaction is in ALL")
    }

    /// The stable lower-case key used in JSON, SQL and metrics.
    pub const fn key(self) -> &'static str {
        match self {
            Reaction::Like => "like",
            Reaction::Dislike => "dislike",
            Reaction::Love => "love",
            Reaction::Funny => "funny",
            Reaction::Angry => "angry",
            Reaction::Sad => "sad",
            Reaction::Wow => "wow",
        }
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

/// How many visitors currently hold each reaction. All seven keys are always present.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct ReactionCounts {
    pub like: i64,
    pub dislike: i64,
    pub love: i64,
    pub funny: i64,
    pub angry: i64,
    pub sad: i64,
    pub wow: i64,
}

impl ReactionCounts {
    pub fn get(&self, reaction: Reaction) -> i64 {
        *self.slot(reaction)
    }

    pub fn add(&mut self, reaction: Reaction, n: i64) {
        *self.slot_mut(reaction) += n;
    }

    /// The sum over all seven reactions.
    pub fn total(&self) -> i64 {
        Reaction::ALL.iter().map(|r| self.get(*r)).sum()
    }

    fn slot(&self, reaction: Reaction) -> &i64 {
        match reaction {
            Reaction::Like => &self.like,
            Reaction::Dislike => &self.dislike,
            Reaction::Love => &self.love,
            Reaction::Funny => &self.funny,
            Reaction::Angry => &self.angry,
            Reaction::Sad => &self.sad,
            Reaction::Wow => &self.wow,
        }
    }

    fn slot_mut(&mut self, reaction: Reaction) -> &mut i64 {
        match reaction {
            Reaction::Like => &mut self.like,
            Reaction::Dislike => &mut self.dislike,
            Reaction::Love => &mut self.love,
            Reaction::Funny => &mut self.funny,
            Reaction::Angry => &mut self.angry,
            Reaction::Sad => &mut self.sad,
            Reaction::Wow => &mut self.wow,
        }
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
