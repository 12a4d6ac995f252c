//! Per-client rate limiting with governor, in three classes: `writes`, `reads` and `stats`.
//!
//! Each class is a keyed GCRA limiter (a token bucket: `burst` requests at once, refilled at
//! `per_minute`). Keys are client IPs, IPv6 ones cut to their /64 so that one host cannot rotate
//! through its own addresses. Every answer carries the IETF `RateLimit` and `RateLimit-Policy`
//! fields; a refusal is a 429 problem with `Retry-After`.
//!
//! A small middleware instead of tower_governor because we need our own client-IP rules, our
//! problem+json 429, and the IETF fields on successful answers too.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

use crate::config::RateLimitSettings;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::{ApiError, Problem};

/// The IETF draft's field names (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The window a class's sustained rate is stated over, and its policies' `w`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The limiter of one class, keyed by client network.
pub struct ClassLimiter<C: Clock = DefaultClock> {
    name: &'static str,
    limit: Limit,
    limiter: RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, StateInformationMiddleware>,
    policy: HeaderValue,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with `remaining` requests left in the burst and `reset` until it is full again.
    Allow { remaining: u32, reset: Duration },
    /// Refused; the next request is allowed after `retry_after`.
    Deny { retry_after: Duration },
}

impl ClassLimiter<DefaultClock> {
    pub fn new(name: &'static str, limit: Limit) -> Self {
        Self::with_clock(name, limit, DefaultClock::default())
    }
}

impl<C: Clock> ClassLimiter<C> {
    /// A limiter on a given clock (tests and benchmarks use a fake one).
    pub fn with_clock(name: &'static str, limit: Limit, clock: C) -> Self {
        let period = WINDOW / limit.per_minute.get();
        let quota = Quota::with_period(period)
            .expect("a per-minute rate gives a non-zero period")
            .allow_burst(limit.burst);
        let limiter =
            RateLimiter::dashmap_with_clock(quota, clock).with_middleware::<StateInformationMiddleware>();
        // `q` is the burst and `w` the minute the sustained rate is stated over (the contract's
        // `"writes";q=20;w=60` for the defaults).
        let policy = HeaderValue::try_from(format!("\"{name}\";q={};w={}", limit.burst, WINDOW.as_secs()))
            .expect("policy names are ASCII");
        Self { name, limit, limiter, policy }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The rate and burst it was built with.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The `RateLimit-Policy` field of every answer of this class.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// Spends one request of `client`'s quota, if there is one.
    pub fn check(&self, client: IpAddr) -> Decision {
        decide(&self.limiter, &limiter_key(client))
    }

    /// Forgets clients whose bucket is full again (they are indistinguishable from new ones),
    /// so memory stays bounded however many clients come and go.
    pub fn purge(&self) {
        purge_idle(&self.limiter);
    }

    /// Number of clients currently tracked.
    pub fn tracked_clients(&self) -> usize {
        self.limiter.len()
    }

    /// The `RateLimit` and `RateLimit-Policy` fields for a decision.
    fn headers(&self, remaining: u32, reset: Duration) -> [(HeaderName, HeaderValue); 2] {
        fields(self.name, &self.policy, remaining, reset)
    }
}

/// Spends one unit of `key`'s allowance on a keyed governor limiter, as a [`Decision`]; the one
/// place that reads governor's answer, for the per-IP classes and the article cap alike.
pub(crate) fn decide<K, S, C>(limiter: &RateLimiter<K, S, C, StateInformationMiddleware>, key: &K) -> Decision
where
    K: Hash + Eq + Clone,
    S: governor::state::keyed::KeyedStateStore<K>,
    C: Clock,
{
    match limiter.check_key(key) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let burst = snapshot.quota().burst_size().get();
            let reset = snapshot.quota().replenish_interval() * (burst - remaining);
            Decision::Allow { remaining, reset }
        }
        Err(not_until) => Decision::Deny { retry_after: not_until.wait_time_from(limiter.clock().now()) },
    }
}

/// Forgets the keys of a keyed limiter whose allowance is full again (they are
/// indistinguishable from new ones), so memory stays bounded however many come and go.
pub(crate) fn purge_idle<K, S, C, MW>(limiter: &RateLimiter<K, S, C, MW>)
where
    K: Hash + Eq + Clone,
    S: ShrinkableKeyedStateStore<K>,
    C: Clock,
    MW: governor::middleware::RateLimitingMiddleware<C::Instant>,
{
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

/// Limiters whose idle keys a background task forgets ([`spawn_purger`]).
pub trait Purge: Send + Sync + 'static {
    fn purge(&self);
}

/// Purges `limiter` every `every`, for as long as it lives elsewhere (the task then ends at its
/// next tick).
pub fn spawn_purger<L: Purge>(limiter: Weak<L>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(limiter) = limiter.upgrade() else { return };
            limiter.purge();
        }
    })
}

/// The `RateLimit` and `RateLimit-Policy` fields of the policy `name` for a decision.
pub(crate) fn fields(
    name: &str,
    policy: &HeaderValue,
    remaining: u32,
    reset: Duration,
) -> [(HeaderName, HeaderValue); 2] {
    let value = format!("\"{name}\";r={remaining};t={}", ceil_secs(reset));
    [(RATELIMIT, HeaderValue::try_from(value).expect("ASCII")), (RATELIMIT_POLICY, policy.clone())]
}

/// The 429 answer of the policy `name`: a problem whose detail `why` writes from the seconds to
/// wait, the policy's fields at zero, and `Retry-After`. Counted in the metrics.
pub(crate) fn refusal(
    name: &'static str,
    policy: &HeaderValue,
    retry_after: Duration,
    why: impl FnOnce(u64) -> String,
) -> Response {
    tracing::debug!(policy = name, "rate limited");
    crate::telemetry::metrics::rate_limited(name);
    let seconds = ceil_secs(retry_after).max(1);
    let problem =
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests", why(seconds));
    let mut response = ApiError::Client(problem).into_response();
    let headers = response.headers_mut();
    headers.extend(fields(name, policy, 0, Duration::from_secs(seconds)));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// IPv4 addresses as they are; IPv6 addresses cut to their /64 network.
pub fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let masked = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The limiters of all classes.
pub struct RateLimits {
    pub writes: ClassLimiter,
    pub reads: ClassLimiter,
    pub stats: ClassLimiter,
}

impl RateLimits {
    /// The limiters of the three classes as `settings` set them.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limit = |per_minute, burst| Limit { per_minute, burst };
        Self {
            writes: ClassLimiter::new("writes", limit(settings.writes_per_minute, settings.write_burst)),
            reads: ClassLimiter::new("reads", limit(settings.reads_per_minute, settings.read_burst)),
            stats: ClassLimiter::new("stats", limit(settings.stats_per_minute, settings.stats_burst)),
        }
    }

    pub fn all(&self) -> [&ClassLimiter; 3] {
        [&self.writes, &self.reads, &self.stats]
    }
}

impl Purge for RateLimits {
    fn purge(&self) {
        for class in self.all() {
            class.purge();
        }
    }
}

/// Which class a route belongs to.
#[derive(Debug, Clone, Copy)]
pub enum ClassOf {
    /// GET and HEAD are reads, everything else writes.
    Method,
    /// Everything is `stats`.
    Stats,
}

impl RateLimits {
    /// The limiter of a request of `method` on a route limited by `class_of`.
    pub fn class(&self, class_of: ClassOf, method: &Method) -> &ClassLimiter {
        match class_of {
            ClassOf::Stats => &self.stats,
            ClassOf::Method if matches!(*method, Method::GET | Method::HEAD) => &self.reads,
            ClassOf::Method => &self.writes,
        }
    }
}

impl ClassLimiter {
    /// Spends one unit of `client`'s quota: the rate-limit fields for the answer, or the 429
    /// answer when the quota is used up.
    // The refusal is the answer itself, returned at once by the caller, never propagated.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, client: IpAddr) -> Result<[(HeaderName, HeaderValue); 2], Response> {
        match self.check(client) {
            Decision::Allow { remaining, reset } => Ok(self.headers(remaining, reset)),
            Decision::Deny { retry_after } => Err(refusal(self.name, &self.policy, retry_after, |seconds| {
                format!("the {} quota of this client is used up; retry in {seconds} s", self.name)
            })),
        }
    }
}

/// Middleware: spends the client's quota of the route's class, or answers 429.
pub async fn rate_limit(
    State((limits, class_of)): State<(Arc<RateLimits>, ClassOf)>,
    client: ClientIp,
    request: Request,
    next: Next,
) -> Response {
    match limits.class(class_of, request.method()).admit(client.0) {
        Ok(fields) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(fields);
            response
        }
        Err(refusal) => refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limit(per_minute: u32, burst: u32) -> Limit {
        Limit { per_minute: NonZeroU32::new(per_minute).unwrap(), burst: NonZeroU32::new(burst).unwrap() }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled_at_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = ClassLimiter::with_clock("writes", limit(60, 3), clock.clone());
        let client: IpAddr = "198.51.100.7".parse().unwrap();

        let remaining: Vec<_> = (0..3)
            .map(|_| match limiter.check(client) {
                Decision::Allow { remaining, .. } => remaining,
                other => panic!("burst should pass: {other:?}"),
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert_eq!(limiter.check(client), Decision::Deny { retry_after: Duration::from_secs(1) });

        clock.advance(Duration::from_secs(1)); // 60/min = one per second
        assert!(matches!(limiter.check(client), Decision::Allow { remaining: 0, .. }));
        assert!(matches!(
            limiter.check("198.51.100.8".parse().unwrap()),
            Decision::Allow { remaining: 2, .. }
        ));
    }

    #[test]
    fn ipv6_clients_share_a_quota_per_64_and_ipv4_clients_do_not_share() {
        let limiter = ClassLimiter::with_clock("reads", limit(60, 1), FakeRelativeClock::default());
        let check = |ip: &str| matches!(limiter.check(ip.parse().unwrap()), Decision::Allow { .. });

        assert!(check("2001:db8:1:2::1"));
        assert!(!check("2001:db8:1:2:ffff:ffff:ffff:ffff"), "same /64, same bucket");
        assert!(check("2001:db8:1:3::1"), "another /64");
        assert!(check("192.0.2.1"));
        assert!(check("192.0.2.2"), "IPv4 addresses are keyed one by one");
    }

    #[test]
    fn purging_forgets_idle_clients() {
        let clock = FakeRelativeClock::default();
        let limiter = ClassLimiter::with_clock("reads", limit(60, 5), clock.clone());
        for i in 0..10_000u32 {
            limiter.check(IpAddr::V4(i.into()));
        }
        assert_eq!(limiter.tracked_clients(), 10_000);

        limiter.purge();
        assert_eq!(limiter.tracked_clients(), 10_000, "buckets that are not full yet are kept");
        clock.advance(Duration::from_secs(2));
        limiter.purge();
        assert_eq!(limiter.tracked_clients(), 0, "full buckets are forgotten");
    }
}
