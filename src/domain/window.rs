use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

/// A half-open interval of time, `[since, until)`: it holds `since` and not `until`, so that
/// consecutive windows (yesterday, today) never count a reaction twice.
///
/// Can only be built by [`TimeWindow::new`], which refuses an empty or inverted window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// Why two instants do not make a [`TimeWindow`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("since ({since}) must be earlier than until ({until})")]
pub struct EmptyWindow {
    pub since: String,
    pub until: String,
}

impl TimeWindow {
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Self, EmptyWindow> {
        if since < until {
            Ok(Self { since, until })
        } else {
            Err(EmptyWindow { since: rfc3339(since), until: rfc3339(until) })
        }
    }

    /// The first instant inside the window.
    pub fn since(&self) -> DateTime<Utc> {
        self.since
    }

    /// The first instant after the window.
    pub fn until(&self) -> DateTime<Utc> {
        self.until
    }

    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.since <= instant && instant < self.until
    }

    /// The window of the same length that ends where this one starts (trending compares the
    /// two).
    pub fn preceding(&self) -> Self {
        Self { since: self.since - (self.until - self.since), until: self.since }
    }
}

/// A window cut into the pieces the stats queries read it from: whole UTC days from the daily
/// rollup, whole UTC hours from the hourly rollup, and the partial hours at its two ends from the
/// reactions themselves.
///
/// The six instants never decrease, `since <= hours_from <= days_from <= days_until <=
/// hours_until <= until`, and the pieces tile the window exactly, each instant in one piece:
///
/// | piece | read from |
/// |---|---|
/// | `[since, hours_from)` and `[hours_until, until)` | `reactions.updated_at` |
/// | `[hours_from, days_from)` and `[days_until, hours_until)` | the hourly rollup |
/// | `[days_from, days_until)` | the daily rollup |
///
/// So a query reads at most two partial hours of reactions and, per article, one daily row per
/// day and at most 46 hourly rows (one per hour when `coarsest` is an hour), whatever the
/// window's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowParts {
    pub since: DateTime<Utc>,
    pub hours_from: DateTime<Utc>,
    pub days_from: DateTime<Utc>,
    pub days_until: DateTime<Utc>,
    pub hours_until: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl WindowParts {
    /// The six instants in order, as the stats statements take them.
    pub fn instants(&self) -> [DateTime<Utc>; 6] {
        [self.since, self.hours_from, self.days_from, self.days_until, self.hours_until, self.until]
    }

    /// Cuts `window` into rollup pieces no coarser than `coarsest`: a time series by the hour
    /// must not read daily rows, which cannot be split into hours.
    pub fn new(window: &TimeWindow, coarsest: Bucket) -> Self {
        let (since, until) = (window.since(), window.until());
        let whole = |hours_from, days_from, days_until, hours_until| Self {
            since,
            hours_from,
            days_from,
            days_until,
            hours_until,
            until,
        };
        let (Some(hours_from), hours_until) = (Bucket::Hour.ceil(since), Bucket::Hour.floor(until)) else {
            return whole(until, until, until, until);
        };
        if hours_from >= hours_until {
            // No whole hour inside: the window is read from the reactions alone.
            return whole(until, until, until, until);
        }
        let days = match (coarsest, Bucket::Day.ceil(hours_from)) {
            (Bucket::Day, Some(days_from)) => Some((days_from, Bucket::Day.floor(hours_until))),
            _ => None,
        };
        match days {
            Some((days_from, days_until)) if days_from < days_until => {
                whole(hours_from, days_from, days_until, hours_until)
            }
            _ => whole(hours_from, hours_until, hours_until, hours_until),
        }
    }
}

/// The width of one time-series bucket. Buckets are aligned to UTC: hours start on the hour,
/// days at midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

/// A string that is not a bucket width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bucket {0:?}; expected hour or day")]
pub struct UnknownBucket(pub String);

impl Bucket {
    pub fn width(self) -> TimeDelta {
        match self {
            Bucket::Hour => TimeDelta::hours(1),
            Bucket::Day => TimeDelta::days(1),
        }
    }

    /// The start of the bucket holding `instant`.
    pub fn floor(self, instant: DateTime<Utc>) -> DateTime<Utc> {
        // Whole seconds since the epoch, rounded down, so instants before 1970 work too.
        let width = self.width().num_seconds();
        let start = instant.timestamp().div_euclid(width) * width;
        DateTime::from_timestamp(start, 0).expect("a bucket start is no earlier than its instant's range")
    }

    /// The first bucket start at or after `instant`; `None` past the last representable time.
    pub fn ceil(self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let floor = self.floor(instant);
        if floor == instant { Some(floor) } else { floor.checked_add_signed(self.width()) }
    }

    /// How many buckets overlap `window`.
    pub fn count(self, window: &TimeWindow) -> i64 {
        let span = window.until() - self.floor(window.since());
        let width = self.width();
        // Ceiling division on microseconds: a partial last bucket still counts.
        let (span, width) = (span.num_microseconds(), width.num_microseconds());
        match (span, width) {
            (Some(span), Some(width)) => (span + width - 1) / width,
            _ => i64::MAX,
        }
    }

    /// The start of every bucket that overlaps `window`, in order. The first and last bucket may
    /// reach outside the window; only the part inside it is counted.
    pub fn starts(self, window: &TimeWindow) -> impl Iterator<Item = DateTime<Utc>> {
        let width = self.width();
        let until = window.until();
        std::iter::successors(Some(self.floor(window.since())), move |start| {
            start.checked_add_signed(width).filter(|next| *next < until)
        })
    }

    /// The window of the last `n` buckets up to `until`: it starts at the beginning of the
    /// bucket `n - 1` before the one holding the window's last instant.
    pub fn last(self, n: u32, until: DateTime<Utc>) -> DateTime<Utc> {
        let last_instant = until - TimeDelta::microseconds(1);
        self.floor(last_instant) - self.width() * (n as i32 - 1)
    }
}

impl FromStr for Bucket {
    type Err = UnknownBucket;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            _ => Err(UnknownBucket(s.to_owned())),
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        })
    }
}

/// An instant as RFC 3339 in UTC, with fractions of a second only when there are any.
pub fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preceding_window_has_the_same_length_and_ends_where_this_one_starts() {
        let at = |h: i64| DateTime::UNIX_EPOCH + TimeDelta::hours(h);
        let recent = TimeWindow::new(at(30), at(54)).unwrap();
        let previous = recent.preceding();
        assert_eq!((previous.since(), previous.until()), (at(6), at(30)));
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_is_half_open_and_never_empty() {
        let window = TimeWindow::new(at("2025-11-27T10:00:00Z"), at("2025-11-27T11:00:00Z")).unwrap();
        assert!(window.contains(at("2025-11-27T10:00:00Z")), "since is inside");
        assert!(window.contains(at("2025-11-27T10:59:59.999999Z")));
        assert!(!window.contains(at("2025-11-27T11:00:00Z")), "until is outside");
        assert!(TimeWindow::new(at("2025-11-27T10:00:00Z"), at("2025-11-27T10:00:00Z")).is_err(), "empty");
        assert!(TimeWindow::new(at("2025-11-27T11:00:00Z"), at("2025-11-27T10:00:00Z")).is_err(), "inverted");
    }

    #[test]
    fn buckets_are_aligned_to_utc_and_cover_the_window() {
        let window = TimeWindow::new(at("2025-11-27T10:30:00+01:00"), at("2025-11-27T12:00:00Z")).unwrap();
        let starts: Vec<_> = Bucket::Hour.starts(&window).map(rfc3339).collect();
        assert_eq!(starts, ["2025-11-27T09:00:00Z", "2025-11-27T10:00:00Z", "2025-11-27T11:00:00Z"]);
        assert_eq!(Bucket::Hour.count(&window), 3);

        let days: Vec<_> = Bucket::Day.starts(&window).map(rfc3339).collect();
        assert_eq!(days, ["2025-11-27T00:00:00Z"]);
        assert_eq!(Bucket::Day.count(&window), 1);

        let partial_end = TimeWindow::new(at("2025-11-27T10:00:00Z"), at("2025-11-27T12:00:01Z")).unwrap();
        assert_eq!(Bucket::Hour.count(&partial_end), 3, "a partial last bucket counts");
        assert_eq!(Bucket::Hour.starts(&partial_end).count(), 3);
    }

    #[test]
    fn buckets_work_before_the_epoch() {
        assert_eq!(rfc3339(Bucket::Day.floor(at("1969-12-31T23:59:59Z"))), "1969-12-31T00:00:00Z");
        assert_eq!(rfc3339(Bucket::Hour.floor(at("0001-01-01T00:30:00Z"))), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn the_last_n_buckets_end_with_the_one_holding_until() {
        let until = at("2025-11-28T00:00:00Z");
        assert_eq!(rfc3339(Bucket::Hour.last(24, until)), "2025-11-27T00:00:00Z", "a whole day");
        let now = at("2025-11-27T10:17:00Z");
        let since = Bucket::Hour.last(24, now);
        assert_eq!(rfc3339(since), "2025-11-26T11:00:00Z");
        assert_eq!(Bucket::Hour.count(&TimeWindow::new(since, now).unwrap()), 24);
        assert_eq!(rfc3339(Bucket::Day.last(30, now)), "2025-10-29T00:00:00Z");
    }

    fn parts(since: &str, until: &str, coarsest: Bucket) -> [String; 6] {
        WindowParts::new(&TimeWindow::new(at(since), at(until)).unwrap(), coarsest).instants().map(rfc3339)
    }

    #[test]
    fn a_long_window_reads_whole_days_whole_hours_and_two_partial_hours() {
        assert_eq!(
            parts("2025-11-01T10:30:00Z", "2025-11-27T12:15:00Z", Bucket::Day),
            [
                "2025-11-01T10:30:00Z", // reactions
                "2025-11-01T11:00:00Z", // hours
                "2025-11-02T00:00:00Z", // days
                "2025-11-27T00:00:00Z", // hours
                "2025-11-27T12:00:00Z", // reactions
                "2025-11-27T12:15:00Z",
            ]
        );
        assert_eq!(
            parts("2025-11-01T10:30:00Z", "2025-11-27T12:15:00Z", Bucket::Hour),
            [
                "2025-11-01T10:30:00Z",
                "2025-11-01T11:00:00Z",
                "2025-11-27T12:00:00Z",
                "2025-11-27T12:00:00Z",
                "2025-11-27T12:00:00Z",
                "2025-11-27T12:15:00Z",
            ],
            "hourly pieces only when days are too coarse"
        );
    }

    #[test]
    fn aligned_windows_read_no_reactions_and_short_ones_read_only_reactions() {
        let aligned = parts("2025-11-26T00:00:00Z", "2025-11-28T00:00:00Z", Bucket::Day);
        assert_eq!(aligned[0], aligned[1], "no partial first hour");
        assert_eq!(aligned[1], aligned[2], "no partial first day");
        assert_eq!(aligned[3], aligned[5], "no partial last day or hour");

        let within_an_hour = parts("2025-11-27T10:05:00Z", "2025-11-27T10:55:00Z", Bucket::Day);
        assert!(within_an_hour[1..].iter().all(|p| p == "2025-11-27T10:55:00Z"), "{within_an_hour:?}");
        let across_an_hour = parts("2025-11-27T10:05:00Z", "2025-11-27T11:55:00Z", Bucket::Day);
        assert!(across_an_hour[1..].iter().all(|p| p == "2025-11-27T11:55:00Z"), "{across_an_hour:?}");
        let one_day_of_hours = parts("2025-11-27T10:05:00Z", "2025-11-28T09:55:00Z", Bucket::Day);
        assert_eq!(one_day_of_hours[1], "2025-11-27T11:00:00Z");
        assert_eq!(one_day_of_hours[2], "2025-11-28T09:00:00Z", "no whole day: hours up to the last one");
    }

    #[test]
    fn a_window_at_the_end_of_time_is_read_from_reactions() {
        let end = DateTime::<Utc>::MAX_UTC;
        let window = TimeWindow::new(end - TimeDelta::minutes(90), end).unwrap();
        let p = WindowParts::new(&window, Bucket::Day);
        assert_eq!(p.hours_from, p.until);
    }

    proptest::proptest! {
        /// The pieces never go backwards and tile the window: an instant is in exactly one.
        #[test]
        fn window_pieces_tile_the_window(
            since in -10_000_000_000_000i64..10_000_000_000_000,
            length in 1i64..100_000_000_000,
            probe in 0.0f64..1.0,
            by_day in proptest::bool::ANY,
        ) {
            let since = DateTime::from_timestamp_micros(since).unwrap();
            let until = since + TimeDelta::microseconds(length);
            let window = TimeWindow::new(since, until).unwrap();
            let coarsest = if by_day { Bucket::Day } else { Bucket::Hour };
            let p = WindowParts::new(&window, coarsest);
            let cuts = p.instants();
            proptest::prop_assert!(cuts.windows(2).all(|w| w[0] <= w[1]), "{:?}", cuts);
            proptest::prop_assert_eq!((p.since, p.until), (since, until));
            for (from, to, bucket) in [(p.hours_from, p.days_from, Bucket::Hour), (p.days_until, p.hours_until, Bucket::Hour), (p.days_from, p.days_until, Bucket::Day)] {
                if from < to {
                    proptest::prop_assert!(coarsest == Bucket::Day || bucket == Bucket::Hour);
                    proptest::prop_assert_eq!(bucket.floor(from), from, "rollup pieces start on a bucket");
                    proptest::prop_assert_eq!(bucket.floor(to), to, "and end on one");
                }
            }
            if p.hours_from == until {
                proptest::prop_assert!(until - since < TimeDelta::hours(2), "only a short window is all reactions");
            } else {
                proptest::prop_assert!(p.hours_from - p.since < TimeDelta::hours(1), "a partial first hour at most");
                proptest::prop_assert!(p.until - p.hours_until < TimeDelta::hours(1), "a partial last hour at most");
            }
            let instant = since + TimeDelta::microseconds((length as f64 * probe) as i64);
            let inside = cuts.windows(2).filter(|w| w[0] <= instant && instant < w[1]).count();
            proptest::prop_assert_eq!(inside, 1, "{} is in one piece", instant);
        }
    }

    #[test]
    fn bucket_names_round_trip() {
        for bucket in [Bucket::Hour, Bucket::Day] {
            assert_eq!(bucket.to_string().parse::<Bucket>(), Ok(bucket));
        }
        assert!("week".parse::<Bucket>().is_err());
        assert!("Hour".parse::<Bucket>().is_err(), "names are case-sensitive");
    }
}
