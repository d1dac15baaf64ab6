//! Request rate limits on the SCIM listener, checked before a request's body is read or the
//! store is touched, so that a flood never reaches the store's single writer (which the
//! reconciler also writes through) nor the control plane.
//!
//! - One bucket per configured SCIM token, indexed by the token's position in the
//!   [`crate::token::TokenSet`]: the set of buckets is fixed when the daemon starts, and nothing a
//!   client sends adds one.
//! - One shared bucket, of fixed size, for every request that does not carry a valid token.
//! - A budget of log lines for those requests: a tokenless flood writes a few lines a minute,
//!   each saying how many were left out before it, rather than one line per request.
//!
//! The buckets are `governor`'s GCRA limiters: a check is one atomic compare-and-swap, with no
//! lock and no allocation.

use crate::config::RateLimit;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests per second, shared by every client without a valid token. Not a config key: no
/// legitimate client needs more than a few of these (an IdP with a wrong token stops, or is
/// stopped by its admin, after the first few), and the budget only has to keep a flood from
/// costing more than answering it.
pub const UNAUTHENTICATED_PER_SECOND: NonZeroU32 = nonzero(20);
/// Burst of the shared bucket for requests without a valid token.
pub const UNAUTHENTICATED_BURST: NonZeroU32 = nonzero(200);
/// Log lines a minute for requests without a valid token (after a burst of this many).
pub const REFUSAL_LOG_LINES_PER_MINUTE: NonZeroU32 = nonzero(10);

const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// A request over a limit, with the wait to send back as `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Whole seconds, at least 1: `Retry-After` has no finer unit, and 0 would invite an
    /// immediate retry that is refused again.
    pub retry_after_secs: u64,
}

/// The limiters of one SCIM listener.
pub struct Limits {
    token: Option<RateLimit>,
    per_token: Vec<DefaultDirectRateLimiter>,
    throttle_warnings: Vec<DefaultDirectRateLimiter>,
    unauthenticated: DefaultDirectRateLimiter,
    refusal_lines: DefaultDirectRateLimiter,
    unlogged: AtomicU64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("token", &self.token)
            .field("tokens", &self.per_token.len())
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits for `tokens` configured tokens; `token` is `None` when the per-token limit is off.
    pub fn new(token: Option<RateLimit>, tokens: usize) -> Self {
        let (per_token, throttle_warnings) = match token {
            Some(l) => (
                (0..tokens)
                    .map(|_| RateLimiter::direct(l.quota()))
                    .collect(),
                (0..tokens)
                    // Once a minute: each 429 also has its own request line.
                    .map(|_| RateLimiter::direct(Quota::per_minute(NonZeroU32::MIN)))
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Self {
            token,
            per_token,
            throttle_warnings,
            unauthenticated: RateLimiter::direct(
                Quota::per_second(UNAUTHENTICATED_PER_SECOND).allow_burst(UNAUTHENTICATED_BURST),
            ),
            refusal_lines: RateLimiter::direct(Quota::per_minute(REFUSAL_LOG_LINES_PER_MINUTE)),
            unlogged: AtomicU64::new(0),
        }
    }

    /// The per-token limit, when on.
    pub fn token_limit(&self) -> Option<RateLimit> {
        self.token
    }

    /// Takes one request from the bucket of the token at `index` (its position in the token
    /// set). An index outside the set is not limited: it cannot come from a client.
    pub fn check_token(&self, index: usize) -> Result<(), Throttled> {
        match self.per_token.get(index) {
            Some(l) => check(l),
            None => Ok(()),
        }
    }

    /// Whether a throttled token should be reported in the log now (once a minute at most).
    pub fn report_throttled(&self, index: usize) -> bool {
        self.throttle_warnings
            .get(index)
            .is_some_and(|l| l.check().is_ok())
    }

    /// Takes one request from the bucket shared by all requests without a valid token.
    pub fn check_unauthenticated(&self) -> Result<(), Throttled> {
        check(&self.unauthenticated)
    }

    /// For a request without a valid token: `Some(n)` when it may be logged, `n` being how many
    /// such requests were not logged since the last line; `None` when it is left out.
    pub fn refusal_log(&self) -> Option<u64> {
        if self.refusal_lines.check().is_ok() {
            Some(self.unlogged.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl RateLimit {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

fn check(l: &DefaultDirectRateLimiter) -> Result<(), Throttled> {
    l.check().map_err(|not_until| Throttled {
        retry_after_secs: whole_seconds(not_until.wait_time_from(l.clock().now())),
    })
}

/// `d` rounded up to whole seconds, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let up = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    up.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(5)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(7)), 7);
    }

    #[test]
    fn each_token_has_its_own_bucket() {
        let l = Limits::new(limit(1, 3), 2);
        for _ in 0..3 {
            assert_eq!(l.check_token(0), Ok(()));
        }
        let t = l.check_token(0).unwrap_err();
        assert_eq!(t.retry_after_secs, 1);
        // The other token is untouched.
        for _ in 0..3 {
            assert_eq!(l.check_token(1), Ok(()));
        }
        // An index no token has is never limited (and adds nothing).
        for _ in 0..10 {
            assert_eq!(l.check_token(7), Ok(()));
        }
    }

    #[test]
    fn off_means_no_token_limit() {
        let l = Limits::new(None, 2);
        for _ in 0..10_000 {
            assert!(l.check_token(0).is_ok());
        }
        assert!(!l.report_throttled(0));
    }

    #[test]
    fn unauthenticated_requests_share_one_bounded_bucket() {
        let l = Limits::new(None, 1);
        let passed = (0..5_000)
            .filter(|_| l.check_unauthenticated().is_ok())
            .count();
        // The burst, plus whatever refilled while the loop ran.
        let burst = UNAUTHENTICATED_BURST.get() as usize;
        assert!(passed >= burst && passed < burst + 100, "{passed}");
        assert!(l.check_unauthenticated().unwrap_err().retry_after_secs >= 1);
    }

    #[test]
    fn refusal_lines_are_budgeted_and_count_what_they_leave_out() {
        let l = Limits::new(None, 1);
        let budget = REFUSAL_LOG_LINES_PER_MINUTE.get() as usize;
        let logged: Vec<u64> = (0..1_000).filter_map(|_| l.refusal_log()).collect();
        assert_eq!(logged.len(), budget);
        assert!(logged.iter().all(|&n| n == 0));
        assert_eq!(l.unlogged.load(Ordering::Relaxed), 1_000 - budget as u64);
    }

    #[test]
    fn throttle_reports_are_rare() {
        let l = Limits::new(limit(1, 1), 1);
        let reports = (0..1_000).filter(|_| l.report_throttled(0)).count();
        assert_eq!(reports, 1);
    }
}
