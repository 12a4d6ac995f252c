//! SQL fragments both backends' stats statements are built from (macros, so that the statements
//! stay `&'static str` made at compile time). Declared first in `store`, so every backend module
//! sees them.

/// A piece of a stats window read from a rollup table (`reaction_counts_hourly` or
/// `reaction_counts_daily`): its rows' counts, at their bucket's start. The same SQL on both
/// backends; `postgres::stats` and `sqlite::stats` assemble windows from it.
macro_rules! rollup_piece {
    ($table:literal, $filter:literal, $from:literal, $to:literal) => {
        concat!(
            "select article_id, bucket_start as at, like_count, dislike_count, love_count,
                    funny_count, angry_count, sad_count, wow_count
             from ",
            $table,
            " where ",
            $filter,
            " and bucket_start >= ",
            $from,
            " and bucket_start < ",
            $to
        )
    };
}

/// The five pieces of a stats window (`WindowParts`) as one `union all`: its partial first and
/// last hour from `reactions` through the calling module's own `reactions_piece!` (`$raw` are its
/// leading arguments), whole hours and days through [`rollup_piece`] restricted by `$rollups`.
/// The last six arguments are the parameters holding the window's instants in order.
macro_rules! window_union {
    ([$($raw:literal),*], $rollups:literal, $since:literal, $hours_from:literal, $days_from:literal,
     $days_until:literal, $hours_until:literal, $until:literal) => {
        concat!(
            reactions_piece!($($raw,)* $since, $hours_from),
            " union all ",
            reactions_piece!($($raw,)* $hours_until, $until),
            " union all ",
            rollup_piece!("reaction_counts_hourly", $rollups, $hours_from, $days_from),
            " union all ",
            rollup_piece!("reaction_counts_hourly", $rollups, $days_until, $hours_until),
            " union all ",
            rollup_piece!("reaction_counts_daily", $rollups, $days_from, $days_until)
        )
    };
}
