//! Request budgets: every authenticated request counts against its principal's (the API key's or
//! the account's), and one over budget answers `429 rate-limited` with `Retry-After` and the IETF
//! `RateLimit` fields, without running.
//!
//! A budget is a number of requests per minute, spent as GCRA spends it: the whole minute's
//! budget may come at once, and it refills evenly (a budget of 3,000 lets one request more through
//! every 20 ms). Which budget: the key's own `rate_limit` if it has one, else its role's default,
//! `ALLOT_CHECK_RATE_LIMIT` for `check` principals (mail workers ask the check tens of thousands
//! of times a second) and `ALLOT_RATE_LIMIT` for everyone else. The principal is the credential,
//! never the client address: one key used from many machines is one budget, and many keys behind
//! one proxy are many.
//!
//! Counted in each instance's memory (governor's keyed limiter: one GCRA state per principal in a
//! sharded map, updated with a compare-and-swap), so the check's path takes no lock that all its
//! requests share and touches no database. Several instances behind a load balancer therefore
//! each grant the whole budget: the installation's limit is the budget times the instances. That
//! is enough for what budgets are for (one tenant's runaway script must not take an instance from
//! the others); unlike the login throttle, nothing is guessed here. Principals with the same
//! budget share one limiter; keys with a budget of their own get one limiter per distinct budget
//! (an operator sets them one by one, so there are few).
//!
//! The fields follow draft-ietf-httpapi-ratelimit-headers-11 (May 2026): `RateLimit-Policy:
//! "default";q=3000;w=60` names the budget (quota `q` per window `w` seconds), and `RateLimit:
//! "default";r=2999;t=1` what is left of it: `r` requests now, and in `t` seconds the whole quota
//! again (so `r` requests within `t` seconds are always let through). A refusal says `r=0` and
//! `t` = `Retry-After`. Every answer to an authenticated request carries both fields, except the
//! check's: those carry them only when less than a tenth of the budget is left (the draft's
//! section 6.2 lets a server send them only near exhaustion; the check's answers stay as small
//! and cheap as they were).

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::store::audit::Actor;

/// The largest budget a key may be given, in requests per minute (about 1.7 million a second).
pub const MAX_PER_MINUTE: u32 = 100_000_000;
/// The window every budget is stated over, in seconds.
pub const WINDOW_SECONDS: u64 = 60;
/// How often idle principals' states are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);

pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The headers a rate-limited answer carries, for the OpenAPI document: name and description.
pub(crate) const HEADER_DOCS: [(&str, &str); 3] = [
    (
        "Retry-After",
        "Seconds to wait before retrying (for `rate-limited`: until the budget lets a request through again).",
    ),
    (
        "RateLimit-Policy",
        "The budget (draft-ietf-httpapi-ratelimit-headers): `\"<policy>\";q=<requests>;w=60`, where the policy is `default`, `check` (the default of `check` principals) or `key` (the key's own `rate_limit`).",
    ),
    (
        "RateLimit",
        "What is left of it: `\"<policy>\";r=<requests>;t=<seconds>`, `r=0` and `t` = `Retry-After` when refused.",
    ),
];

type Limiter = RateLimiter<
    Uuid,
    DashMapStateStore<Uuid, foldhash::fast::RandomState>,
    DefaultClock,
    StateInformationMiddleware,
>;

fn limiter(per_minute: NonZeroU32, clock: &DefaultClock) -> Limiter {
    RateLimiter::dashmap_with_clock_and_hasher(
        Quota::per_minute(per_minute),
        clock.clone(),
        foldhash::fast::RandomState::default(),
    )
    .with_middleware::<StateInformationMiddleware>()
}

/// Which budget a principal's requests count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `ALLOT_RATE_LIMIT`: accounts, and keys without a budget of their own.
    Default,
    /// `ALLOT_CHECK_RATE_LIMIT`: `check` principals without a budget of their own.
    Check,
    /// A key's own `rate_limit`, per minute.
    Own(NonZeroU32),
}

impl Policy {
    /// The budget of a principal with `role` and, for a key, its own `rate_limit` (a stored value
    /// out of range counts as none).
    pub fn of(role: Role, own: Option<i64>) -> Self {
        match own
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
        {
            Some(n) if n.get() <= MAX_PER_MINUTE => Self::Own(n),
            _ if role == Role::Check => Self::Check,
            _ => Self::Default,
        }
    }

    /// The name the `RateLimit` fields give it.
    fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Check => "check",
            Self::Own(_) => "key",
        }
    }
}

/// What a request's count left of its budget: what the `RateLimit` fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    policy: &'static str,
    /// The budget, per minute.
    quota: u32,
    /// Requests left now.
    remaining: u32,
    /// Seconds until the whole budget is back (refused: until one request is let through).
    reset: u64,
}

impl Allowance {
    /// Less than a tenth of the budget is left.
    pub fn running_low(&self) -> bool {
        u64::from(self.remaining) * 10 < u64::from(self.quota)
    }

    /// The seconds a refusal asks to wait.
    pub fn retry_after(&self) -> u64 {
        self.reset
    }

    pub fn policy(&self) -> &'static str {
        self.policy
    }

    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// Sets `RateLimit-Policy` and `RateLimit` on `headers`.
    pub fn write(&self, headers: &mut HeaderMap) {
        let policy = format!("\"{}\";q={};w={WINDOW_SECONDS}", self.policy, self.quota);
        let current = format!("\"{}\";r={};t={}", self.policy, self.remaining, self.reset);
        for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, current)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

/// Every principal's budget in this instance.
pub(crate) struct RateLimits {
    default_quota: NonZeroU32,
    check_quota: NonZeroU32,
    default: Limiter,
    check: Limiter,
    /// The keys with a budget of their own, one limiter per budget.
    own: dashmap::DashMap<NonZeroU32, Limiter, foldhash::fast::RandomState>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Budgets of `default` requests a minute, and `check` for `check` principals.
    pub fn new(default: NonZeroU32, check: NonZeroU32) -> Self {
        let clock = DefaultClock::default();
        Self {
            default_quota: default,
            check_quota: check,
            default: limiter(default, &clock),
            check: limiter(check, &clock),
            own: dashmap::DashMap::default(),
            clock,
        }
    }

    /// Counts one request of `actor` against `policy`: what is left, or `RateLimited` when
    /// nothing is. The service itself (`Actor::System`) has no budget.
    pub fn admit(&self, actor: &Actor, policy: Policy) -> Result<Option<Allowance>, ApiError> {
        let principal = match actor {
            Actor::Account(id) => id.0,
            Actor::ApiKey(id) => id.0,
            Actor::System => return Ok(None),
        };
        let (quota, outcome) = match policy {
            Policy::Default => (self.default_quota, self.default.check_key(&principal)),
            Policy::Check => (self.check_quota, self.check.check_key(&principal)),
            Policy::Own(quota) => {
                let outcome = match self.own.get(&quota) {
                    Some(limiter) => limiter.check_key(&principal),
                    None => self
                        .own
                        .entry(quota)
                        .or_insert_with(|| limiter(quota, &self.clock))
                        .check_key(&principal),
                };
                (quota, outcome)
            }
        };
        let interval = Duration::from_secs(WINDOW_SECONDS) / quota.get();
        match outcome {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let until_full = interval * quota.get().saturating_sub(remaining);
                Ok(Some(Allowance {
                    policy: policy.name(),
                    quota: quota.get(),
                    remaining,
                    reset: until_full.as_secs_f64().ceil() as u64,
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::RateLimited(Allowance {
                    policy: policy.name(),
                    quota: quota.get(),
                    remaining: 0,
                    reset: (wait.as_secs_f64().ceil() as u64).max(1),
                }))
            }
        }
    }

    /// Drops the states of principals idle long enough to have their whole budget back (they
    /// would start afresh anyway), so the maps hold only the recently active.
    fn forget_idle(&self) {
        for limiter in [&self.default, &self.check] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in self.own.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Forgets idle principals every [`FORGET_EVERY`], on the runtime it is spawned on.
    pub fn spawn_forgetting(limits: std::sync::Arc<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FORGET_EVERY).await;
                limits.forget_idle();
            }
        });
    }
}

/// Remembers what `req`'s count left, for [`headers`] to write on the answer.
pub(crate) fn note(req: &HttpRequest, allowance: Option<Allowance>) {
    if let Some(allowance) = allowance {
        req.extensions_mut().insert(allowance);
    }
}

/// The middleware writing the `RateLimit` fields of an admitted request on its answer, whatever
/// its status (a refused one's carry them already).
pub(crate) async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let allowance = response.request().extensions().get::<Allowance>().copied();
    if let Some(allowance) = allowance {
        allowance.write(response.headers_mut());
    }
    Ok(response)
}

/// `Retry-After` and the `RateLimit` fields of a refusal.
pub(crate) fn write_refusal(allowance: &Allowance, headers: &mut HeaderMap) {
    allowance.write(headers);
    if let Ok(value) = HeaderValue::from_str(&allowance.retry_after().to_string()) {
        headers.insert(header::RETRY_AFTER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, ApiKeyId};

    fn per_minute(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_budget_is_spent_then_refused_with_the_wait_for_one_more() {
        let limits = RateLimits::new(per_minute(3), per_minute(1000));
        let key = Actor::ApiKey(ApiKeyId::generate());
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                limits
                    .admit(&key, Policy::Default)
                    .unwrap()
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let Err(ApiError::RateLimited(refused)) = limits.admit(&key, Policy::Default) else {
            panic!("the fourth request within the minute is refused");
        };
        assert_eq!(
            (refused.policy, refused.quota, refused.remaining),
            ("default", 3, 0)
        );
        assert!((19..=20).contains(&refused.retry_after()), "{refused:?}");
        // Another principal, and the same one under another budget, are counted apart.
        let other = Actor::Account(AccountId::generate());
        assert!(limits.admit(&other, Policy::Default).is_ok());
        assert!(limits.admit(&key, Policy::Check).is_ok());
        assert!(limits.admit(&key, Policy::Own(per_minute(5))).is_ok());
        assert_eq!(limits.admit(&Actor::System, Policy::Default).unwrap(), None);
    }

    #[test]
    fn what_is_left_names_the_seconds_until_the_whole_budget_is_back() {
        let limits = RateLimits::new(per_minute(600), per_minute(1000));
        let key = Actor::ApiKey(ApiKeyId::generate());
        let first = limits.admit(&key, Policy::Default).unwrap().unwrap();
        assert_eq!(
            (first.remaining, first.reset),
            (599, 1),
            "one request, 100 ms to refill"
        );
        assert!(!first.running_low());
        for _ in 0..545 {
            limits.admit(&key, Policy::Default).unwrap();
        }
        let low = limits.admit(&key, Policy::Default).unwrap().unwrap();
        assert!(low.running_low(), "{low:?}");
        assert!((55..=56).contains(&low.reset), "{low:?}");
        let mut headers = HeaderMap::new();
        low.write(&mut headers);
        assert_eq!(
            headers.get(&RATELIMIT_POLICY).unwrap(),
            "\"default\";q=600;w=60"
        );
        assert!(
            headers
                .get(&RATELIMIT)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("\"default\";r=5")
        );
    }

    #[test]
    fn a_keys_own_budget_wins_over_its_roles() {
        assert_eq!(Policy::of(Role::Admin, None), Policy::Default);
        assert_eq!(Policy::of(Role::Check, None), Policy::Check);
        assert_eq!(
            Policy::of(Role::Check, Some(10)),
            Policy::Own(per_minute(10))
        );
        assert_eq!(Policy::of(Role::Viewer, Some(0)), Policy::Default);
        assert_eq!(
            Policy::of(Role::Viewer, Some(i64::from(MAX_PER_MINUTE) + 1)),
            Policy::Default
        );
    }
}
