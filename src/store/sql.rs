//! SQL both backends build their statements from, generated from [`Reaction::ALL`], so that a
//! reaction is named in one place (`domain::reaction`) and in the migration that adds it: the
//! per-reaction columns, sums, filters and lists here are written once for all of them.
//!
//! The statements are built once, on first use (`LazyLock<String>` in each backend), and are
//! then as static as literals: the database prepares and caches them the same way.

use crate::domain::Reaction;

/// Reactions a count row holds, in display order: the length of every per-reaction list.
pub(super) const REACTIONS: usize = Reaction::ALL.len();

/// The rollup column of a reaction: `like_count`, …
pub(super) fn count_column(reaction: Reaction) -> String {
    format!("{}_count", reaction.key())
}

/// `f` of every reaction, in display order, joined by `separator`.
pub(super) fn each_reaction(separator: &str, f: impl Fn(usize, Reaction) -> String) -> String {
    Reaction::ALL.iter().enumerate().map(|(i, r)| f(i, *r)).collect::<Vec<_>>().join(separator)
}

/// `like_count, dislike_count, …`: the count columns of the rollups and of window rows.
pub(super) fn count_columns() -> String {
    each_reaction(", ", |_, r| count_column(r))
}

/// `'like', 'dislike', …`: the reaction keys as SQL string literals.
pub(super) fn reaction_keys() -> String {
    each_reaction(", ", |_, r| format!("'{}'", r.key()))
}

/// The six consecutive parameters holding a window's instants (`WindowParts::instants`), from
/// `$first`: since, hours from, days from, days until, hours until, until.
pub(super) fn window_params(first: usize) -> [String; 6] {
    std::array::from_fn(|i| format!("${}", first + i))
}

/// A piece of a stats window read from a rollup table (`reaction_counts_hourly` or
/// `reaction_counts_daily`): its rows' counts, at their bucket's start, as
/// `(article_id, at, like_count, …)`.
fn rollup_piece(table: &str, filter: &str, from: &str, to: &str) -> String {
    format!(
        "select article_id, bucket_start as at, {columns}
         from {table} where {filter} and bucket_start >= {from} and bucket_start < {to}",
        columns = count_columns()
    )
}

/// The five pieces of a stats window (`WindowParts`) as one `union all` of rows
/// `(article_id, at, like_count, …)`: its partial first and last hour from `reactions`, read by
/// the backend's own `reactions_piece(from, to)`, and its whole hours and days from the
/// rollups, restricted by `rollups_filter`. `first` is the first of the six parameters holding
/// the window's instants ([`window_params`]).
///
/// With a [`RecentTail`], a last partial hour that ends near the present is read as its hour's
/// rollup row minus the reactions of that hour at or after the window's end (few, or none, when
/// the window ends now), instead of as every reaction of the hour so far: a dashboard asking
/// for "the last 24 hours" reads the current hour's rollup rows rather than the hour's
/// reactions. Both forms are exact; the backend's condition only picks the cheaper one.
pub(super) fn window_union(
    reactions_piece: impl Fn(&str, &str) -> String,
    rollups_filter: &str,
    first: usize,
    recent_tail: Option<RecentTail>,
) -> String {
    let [since, hours_from, days_from, days_until, hours_until, until] = window_params(first);
    let tail = match recent_tail {
        None => reactions_piece(&hours_until, &until),
        Some(RecentTail { hour_end, is_recent }) => {
            let hour_end = hour_end(&hours_until);
            // `hours_until < until`: the window has whole hours, so `hours_until` is the start of
            // the last one's hour (otherwise it equals `until` and the tail is empty).
            let recent = format!("{hours_until} < {until} and {}", is_recent(&until));
            let negated = each_reaction(", ", |_, r| format!("-{c} as {c}", c = count_column(r)));
            format!(
                "select * from ({raw}) as tail where not ({recent})
                 union all
                 select * from ({rolled}) as tail_hour where {recent}
                 union all
                 select article_id, at, {negated} from ({later}) as after_until where {recent}",
                raw = reactions_piece(&hours_until, &until),
                rolled = rollup_piece("reaction_counts_hourly", rollups_filter, &hours_until, &hour_end),
                later = reactions_piece(&until, &hour_end),
            )
        }
    };
    [
        reactions_piece(&since, &hours_from),
        tail,
        rollup_piece("reaction_counts_hourly", rollups_filter, &hours_from, &days_from),
        rollup_piece("reaction_counts_hourly", rollups_filter, &days_until, &hours_until),
        rollup_piece("reaction_counts_daily", rollups_filter, &days_from, &days_until),
    ]
    .join(" union all ")
}

/// How a backend reads a window's last partial hour from the rollups ([`window_union`]).
#[derive(Clone, Copy)]
pub(super) struct RecentTail {
    /// SQL for the end of the hour that starts at the given instant.
    pub hour_end: fn(&str) -> String,
    /// SQL that holds when a window ending at the given instant ends near the present, so that
    /// few reactions of its hour come after it.
    pub is_recent: fn(&str) -> String,
}

/// One weight per reaction in display order: 1 for those counted, all when `reactions` is
/// empty. The stats statements multiply each count column by its weight.
pub(super) fn reaction_weights(reactions: &[Reaction]) -> [i32; REACTIONS] {
    Reaction::ALL.map(|r| i32::from(reactions.is_empty() || reactions.contains(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_follow_the_display_order() {
        assert_eq!(
            count_columns(),
            "like_count, dislike_count, love_count, funny_count, angry_count, sad_count, wow_count"
        );
        assert_eq!(reaction_keys(), "'like', 'dislike', 'love', 'funny', 'angry', 'sad', 'wow'");
        assert_eq!(window_params(3), ["$3", "$4", "$5", "$6", "$7", "$8"]);
        assert_eq!(reaction_weights(&[]), [1; REACTIONS]);
        assert_eq!(reaction_weights(&[Reaction::Love]), [0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_window_is_five_pieces_over_its_six_instants() {
        let union = window_union(|from, to| format!("raw {from} {to}"), "true", 2, None);
        let pieces: Vec<&str> = union.split(" union all ").collect();
        assert_eq!(pieces.len(), 5);
        assert_eq!(pieces[0], "raw $2 $3");
        assert_eq!(pieces[1], "raw $6 $7");
        assert!(
            pieces[2].contains(
                "from reaction_counts_hourly where true and bucket_start >= $3 and bucket_start < $4"
            )
        );
        assert!(
            pieces[3].contains(
                "from reaction_counts_hourly where true and bucket_start >= $5 and bucket_start < $6"
            )
        );
        assert!(
            pieces[4].contains(
                "from reaction_counts_daily where true and bucket_start >= $4 and bucket_start < $5"
            )
        );
    }
}
