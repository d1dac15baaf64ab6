//! Request-rate limit toward the control plane: a token bucket on tokio time, so paused-time tests
//! and the real daemon behave alike.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Token bucket with reservations: a caller that finds the bucket empty takes a token "on credit"
/// (the level goes negative) and sleeps until that token would have been refilled. Callers are thus
/// served in arrival order at exactly `rate` per second, and nobody spins on the lock.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// `None`: unlimited.
    inner: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `per_second` ≤ 0, NaN or infinite disables the limit (the config validator rejects the
    /// first two). Bursts up to one second's worth, at least one request.
    pub(crate) fn new(per_second: f64) -> Self {
        if !per_second.is_finite() || per_second <= 0.0 {
            return Self { inner: None };
        }
        let capacity = per_second.max(1.0);
        Self {
            inner: Some(Mutex::new(Bucket {
                rate: per_second,
                capacity,
                tokens: capacity,
                last: Instant::now(),
            })),
        }
    }

    /// Waits until the caller may send one request.
    pub(crate) async fn acquire(&self) {
        let Some(inner) = &self.inner else { return };
        let wait = {
            // A poisoned lock only means another task panicked mid-update; the numbers are
            // still usable.
            let mut b = inner.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.last = now;
            b.tokens = (b.tokens + elapsed * b.rate).min(b.capacity);
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_after_the_burst() {
        let limiter = RateLimiter::new(50.0);
        let start = Instant::now();
        for _ in 0..75 {
            limiter.acquire().await;
        }
        // 50 from the initial burst, then 25 at 50/s: about half a second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn unlimited_does_not_wait() {
        let limiter = RateLimiter::new(f64::INFINITY);
        let start = Instant::now();
        for _ in 0..10_000 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(200));
    }
}
