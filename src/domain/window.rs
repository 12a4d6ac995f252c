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

    #[test]
    fn bucket_names_round_trip() {
        for bucket in [Bucket::Hour, Bucket::Day] {
            assert_eq!(bucket.to_string().parse::<Bucket>(), Ok(bucket));
        }
        assert!("week".parse::<Bucket>().is_err());
        assert!("Hour".parse::<Bucket>().is_err(), "names are case-sensitive");
    }
}
