//! The ballot-stuffing guard: a cap on the writes one client network makes on one article.
//!
//! The per-IP `writes` quota bounds what one client writes across all articles, but a client
//! that invents a fresh `X-Visitor-Id` for every write can spend all of it on one article:
//! 20 at once and 60 a minute, about 3,600 count increments an hour under the defaults. This
//! cap allows each client network (an IPv4 address or an IPv6 /64, as for the other limits)
//! at most `RATE_LIMIT_ARTICLE_WRITES_PER_HOUR` writes on any one article in any hour, and
//! leaves its writes on every other article alone. Readers behind one NAT, each with their own
//! visitor id, share the cap only on the same article; see the README for the default.
//!
//! One governor GCRA limiter, keyed by a keyed hash of (network, article): half the cap is
//! available at once and the other half refills evenly over the hour, so no one-hour window
//! holds more than the cap. Idle keys are purged like the per-IP limiters', so memory is bounded
//! by the (network, article) pairs written in the last hour.
//!
//! The cap is spent only by writes that are valid and admitted: the middleware only *looks* at
//! the allowance before the per-IP limiter (a refused look answers 429 and spends nothing, not
//! even the per-IP quota), and the handler spends it once the write has passed every check
//! ([`WriteAllowance::spend`]). So malformed writes, unknown reactions and writes the per-IP
//! limiter refused cannot lock an article for everyone behind one address.

use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::domain::ArticleId;
use crate::http::middleware::rate_limit::{
    Decision, Purge, decide, fields, limiter_key, purge_idle, refusal,
};

/// The policy name in the `RateLimit` fields and in metrics.
pub const POLICY: &str = "article-writes";

/// The window the cap is stated over, and its policy's `w`.
pub const HOUR: Duration = Duration::from_secs(3600);

type Limiter<S, C> = RateLimiter<u64, S, C, StateInformationMiddleware>;

/// Writes per (client network, article) in any hour.
pub struct ArticleCap<C: Clock = DefaultClock> {
    per_hour: NonZeroU32,
    /// Spends allowance.
    limiter: Limiter<Spend, C>,
    /// The same state, looked at without spending (governor has no read-only check).
    looker: Limiter<Look, C>,
    /// A per-process random key: a client cannot choose article ids that share a bucket.
    hasher: RandomState,
    policy: HeaderValue,
}

/// The cap's state as the spending limiter sees it: governor's own store, shared.
struct Spend(Arc<DashMapStateStore<u64>>);

/// The cap's state as the looking limiter sees it: governor's decision on the current state,
/// never stored.
struct Look(Arc<DashMapStateStore<u64>>);

impl StateStore for Spend {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for Spend {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

impl StateStore for Look {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let Some(state) = self.0.get(key) else {
            return f(None).map(|(outcome, _)| outcome); // a key never spent: nothing to store
        };
        // The decision leaves as the "error", so the state is never replaced.
        let looked: Result<Infallible, Result<T, E>> =
            state.measure_and_replace(&NotKeyed::NonKey, |prev| Err(f(prev).map(|(outcome, _)| outcome)));
        match looked {
            Ok(never) => match never {},
            Err(outcome) => outcome,
        }
    }
}

impl ArticleCap<DefaultClock> {
    pub fn new(per_hour: NonZeroU32) -> Self {
        Self::with_clock(per_hour, DefaultClock::default())
    }
}

impl<C: Clock + Clone> ArticleCap<C> {
    /// A cap on a given clock (tests use a fake one).
    pub fn with_clock(per_hour: NonZeroU32, clock: C) -> Self {
        // A burst of b and r refills spread over the hour admit at most b + r - 1 writes in any
        // half-open hour, and b + r = the cap.
        let burst = per_hour.get().div_ceil(2);
        let refills = (per_hour.get() - burst).max(1);
        let quota = Quota::with_period(HOUR / refills)
            .expect("an hour over at most u32::MAX refills is not zero")
            .allow_burst(NonZeroU32::new(burst).expect("half of a non-zero cap, rounded up"));
        let state = Arc::new(DashMapStateStore::default());
        // Both limiters measure from (almost) the same start; a few microseconds apart at most,
        // which only matters to a look, and the spend decides.
        let limiter: Limiter<Spend, C> = RateLimiter::new(quota, Spend(state.clone()), clock.clone());
        let looker: Limiter<Look, C> = RateLimiter::new(quota, Look(state), clock);
        let policy =
            HeaderValue::try_from(format!("\"{POLICY}\";q={per_hour};w={}", HOUR.as_secs())).expect("ASCII");
        Self { per_hour, limiter, looker, hasher: RandomState::new(), policy }
    }

    /// The configured cap.
    pub fn per_hour(&self) -> NonZeroU32 {
        self.per_hour
    }

    /// The `RateLimit-Policy` field of the answers it counts.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    fn key(&self, client: IpAddr, article: &ArticleId) -> u64 {
        self.hasher.hash_one((limiter_key(client), article.as_str()))
    }

    /// Spends one write of `client`'s allowance on `article`, if there is one.
    pub fn check(&self, client: IpAddr, article: &ArticleId) -> Decision {
        decide(&self.limiter, &self.key(client, article))
    }

    /// Whether [`ArticleCap::check`] would allow a write now, without spending anything.
    pub fn look(&self, client: IpAddr, article: &ArticleId) -> Decision {
        decide(&self.looker, &self.key(client, article))
    }

    /// Forgets (network, article) pairs whose allowance is full again.
    pub fn purge(&self) {
        purge_idle(&self.limiter);
    }

    /// Number of (network, article) pairs currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

impl Purge for ArticleCap {
    fn purge(&self) {
        ArticleCap::purge(self);
    }
}

/// A write's claim on the cap, put in the request by [`ArticleCap::look`] and spent by the
/// handler once the write is valid ([`WriteAllowance::spend`]).
#[derive(Clone)]
struct ArticleWrite {
    cap: Arc<ArticleCap>,
    client: IpAddr,
    article: ArticleId,
}

/// The `RateLimit` fields of the cap for a write's answer.
pub type CapFields = [(HeaderName, HeaderValue); 2];

/// The cap's fields, left by the handler in its answer's extensions for the visitor middleware,
/// which adds them after the per-IP limiter's (the order clients see: `writes`, then
/// `article-writes`).
#[derive(Clone)]
pub struct SpentCap(pub CapFields);

impl ArticleCap {
    /// Looks at the cap for a write by `client` on the request's article: the request back, with
    /// the claim its handler spends ([`WriteAllowance`]), or the 429 answer when the cap is
    /// reached. Spends nothing. A write is any method but GET, HEAD and OPTIONS on a route with a
    /// valid `{article_id}`; everything else passes untouched (malformed ids get their 400 from
    /// the handler).
    ///
    /// The visitor routes' middleware asks this before the per-IP limiter: a write refused here
    /// does not spend the client's `writes` quota, so one stuffed article does not lock a shared
    /// address out of the others.
    pub async fn look_at(self: &Arc<Self>, client: IpAddr, request: Request) -> Result<Request, Response> {
        if !is_counted(request.method()) {
            return Ok(request);
        }
        let (mut parts, body) = request.into_parts();
        let article = match RawPathParams::from_request_parts(&mut parts, &()).await {
            // Percent-decoded, so every spelling of one id is the same article.
            Ok(params) => params
                .iter()
                .find(|(name, _)| *name == "article_id")
                .and_then(|(_, value)| ArticleId::parse(value).ok()),
            Err(_) => None,
        };
        let Some(article) = article else {
            return Ok(Request::from_parts(parts, body));
        };
        match self.look(client, &article) {
            Decision::Allow { .. } => {
                parts.extensions.insert(ArticleWrite { cap: self.clone(), client, article });
                Ok(Request::from_parts(parts, body))
            }
            Decision::Deny { retry_after } => Err(self.refusal(retry_after)),
        }
    }

    fn refusal(&self, retry_after: Duration) -> Response {
        refusal(POLICY, &self.policy, retry_after, |seconds| {
            format!(
                "this client has made the most writes allowed on this article ({} an hour); retry in {seconds} s",
                self.per_hour
            )
        })
    }
}

/// Whether the cap counts a request of `method` (on a route with an `{article_id}`).
pub(in crate::http) fn is_counted(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Extractor: the request's claim on the article cap, if the route has one (writes on an
/// article, behind the visitor middleware).
pub struct WriteAllowance(Option<ArticleWrite>);

impl<S: Send + Sync> FromRequestParts<S> for WriteAllowance {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self(parts.extensions.remove::<ArticleWrite>()))
    }
}

impl WriteAllowance {
    /// Spends one write of the cap: call it once the write is valid and about to be made. The
    /// cap's fields for the answer, or the 429 answer (another write of the same network got
    /// there first).
    // The refusal is the answer itself, returned at once by the caller, never propagated.
    #[allow(clippy::result_large_err)]
    pub fn spend(self) -> Result<Option<CapFields>, Response> {
        let Some(ArticleWrite { cap, client, article }) = self.0 else { return Ok(None) };
        match cap.check(client, &article) {
            Decision::Allow { remaining, reset } => Ok(Some(fields(POLICY, &cap.policy, remaining, reset))),
            Decision::Deny { retry_after } => Err(cap.refusal(retry_after)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::middleware::rate_limit::{ClassLimiter, Limit};
    use governor::clock::FakeRelativeClock;

    fn n(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    fn article(id: &str) -> ArticleId {
        ArticleId::parse(id).unwrap()
    }

    /// What the middleware stack does with one write: the article cap first, then the per-IP
    /// `writes` quota (only writes the cap lets through reach it).
    fn admitted(
        writes: &ClassLimiter<FakeRelativeClock>,
        cap: Option<&ArticleCap<FakeRelativeClock>>,
        ip: IpAddr,
        on: &ArticleId,
    ) -> bool {
        if let Some(cap) = cap
            && matches!(cap.check(ip, on), Decision::Deny { .. })
        {
            return false;
        }
        matches!(writes.check(ip), Decision::Allow { .. })
    }

    /// One client IP writes to one article for an hour, each write with a fresh visitor id (so
    /// each admitted write is one count increment), on the fastest schedule the default per-IP
    /// `writes` quota admits in full: its burst at once, then one write per refill. Answers how
    /// many writes were attempted and how many admitted, on a fake clock.
    fn increments_in_one_hour(with_cap: bool) -> (u32, u32) {
        let defaults = crate::config::Config::for_database("postgres://unused");
        let limit = Limit {
            per_minute: defaults.rate_limit_writes_per_minute,
            burst: defaults.rate_limit_write_burst,
        };
        let clock = FakeRelativeClock::default();
        let writes = ClassLimiter::with_clock("writes", limit, clock.clone());
        let cap = with_cap
            .then(|| ArticleCap::with_clock(defaults.rate_limit_article_writes_per_hour, clock.clone()));
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let target = article("2025/11/27/leaked-witkoff-call");

        let refill = Duration::from_secs(60) / limit.per_minute.get();
        let burst = std::iter::repeat_n(Duration::ZERO, limit.burst.get() as usize);
        let paced = (1..).map(|k| refill * k).take_while(|at| *at < HOUR);
        let (mut attempted, mut admitted_writes, mut now) = (0, 0, Duration::ZERO);
        for at in burst.chain(paced) {
            clock.advance(at - now);
            now = at;
            attempted += 1;
            if admitted(&writes, cap.as_ref(), ip, &target) {
                admitted_writes += 1;
            }
        }
        (attempted, admitted_writes)
    }

    /// The measurement behind the README's ballot-stuffing numbers (and RELIABILITY.md): how
    /// far one client IP can push one article's counts in an hour under the default limits,
    /// computed from the quotas on a fake clock.
    #[test]
    fn ballot_stuffing_one_client_one_article_one_hour() {
        let cap = crate::config::Config::for_database("postgres://unused").rate_limit_article_writes_per_hour;

        let (attempted, per_ip_only) = increments_in_one_hour(false);
        let (_, capped) = increments_in_one_hour(true);

        eprintln!(
            "one client IP, one article, one hour: {per_ip_only} increments with the per-IP quota \
             alone, {capped} with the article cap of {cap}"
        );
        assert_eq!(per_ip_only, attempted, "the per-IP quota alone admits its whole schedule");
        assert!(per_ip_only >= 3600, "{per_ip_only}: the default per-IP quota is about 3,600 an hour");
        assert!(capped <= cap.get(), "{capped} is within the cap");
        assert!(capped >= cap.get() - 1, "{capped}: the cap is not stricter than it says");
    }

    #[test]
    fn the_cap_holds_in_every_hour_for_small_and_odd_caps() {
        for per_hour in [1, 2, 3, 7, 120] {
            let clock = FakeRelativeClock::default();
            let cap = ArticleCap::with_clock(n(per_hour), clock.clone());
            let ip: IpAddr = "203.0.113.1".parse().unwrap();
            let a = article("a");
            // Admission times over three hours of a client trying every second.
            let mut admitted_at = Vec::new();
            for second in 0..3 * 3600u64 {
                if matches!(cap.check(ip, &a), Decision::Allow { .. }) {
                    admitted_at.push(second);
                }
                clock.advance(Duration::from_secs(1));
            }
            for (i, start) in admitted_at.iter().enumerate() {
                let in_hour = admitted_at[i..].iter().take_while(|t| **t < start + 3600).count();
                assert!(in_hour as u32 <= per_hour, "cap {per_hour}: {in_hour} in the hour from {start} s");
            }
            assert!(admitted_at.len() as u32 > per_hour, "cap {per_hour}: it refills");
        }
    }

    #[test]
    fn the_cap_is_per_network_and_article() {
        let clock = FakeRelativeClock::default();
        let cap = ArticleCap::with_clock(n(2), clock);
        let allowed = |ip: &str, id: &str| {
            matches!(cap.check(ip.parse().unwrap(), &article(id)), Decision::Allow { .. })
        };

        assert!(allowed("192.0.2.1", "a"));
        assert!(!allowed("192.0.2.1", "a"), "a cap of 2 an hour allows 1 at once");
        assert!(allowed("192.0.2.1", "b"), "another article");
        assert!(allowed("192.0.2.2", "a"), "another address");
        assert!(allowed("2001:db8:1:2::1", "a"));
        assert!(!allowed("2001:db8:1:2::ffff", "a"), "the same /64");
    }

    #[test]
    fn looking_spends_nothing_and_agrees_with_spending() {
        let clock = FakeRelativeClock::default();
        let cap = ArticleCap::with_clock(n(4), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = article("a");
        for _ in 0..10 {
            assert!(matches!(cap.look(ip, &a), Decision::Allow { remaining: 1, .. }), "a fresh pair");
        }
        assert_eq!(cap.tracked(), 0, "a look stores nothing");
        assert!(matches!(cap.check(ip, &a), Decision::Allow { remaining: 1, .. }));
        assert!(matches!(cap.look(ip, &a), Decision::Allow { remaining: 0, .. }), "one left, still");
        assert!(matches!(cap.check(ip, &a), Decision::Allow { remaining: 0, .. }));
        assert!(matches!(cap.look(ip, &a), Decision::Deny { .. }));
        assert!(matches!(cap.check(ip, &a), Decision::Deny { .. }));
        clock.advance(HOUR / 2);
        assert!(matches!(cap.look(ip, &a), Decision::Allow { .. }), "refilled");
    }

    #[test]
    fn purging_forgets_pairs_whose_allowance_is_full_again() {
        let clock = FakeRelativeClock::default();
        let cap = ArticleCap::with_clock(n(120), clock.clone());
        for i in 0..5_000u32 {
            cap.check(IpAddr::V4(i.into()), &article(&format!("article-{}", i % 7)));
        }
        assert_eq!(cap.tracked(), 5_000);

        cap.purge();
        assert_eq!(cap.tracked(), 5_000, "allowances still refilling are kept");
        // 120 an hour refills one every 60 s; governor forgets a key one refill after it is full.
        clock.advance(Duration::from_secs(121));
        cap.purge();
        assert_eq!(cap.tracked(), 0, "full allowances are forgotten");
    }
}
