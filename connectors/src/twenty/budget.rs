//! The request budget: at most N requests per window leave the client, evenly
//! paced (GCRA via `governor`), and a 429 pauses every caller until the server's
//! window has room again. Generic over the window so the same type serves any
//! destination's documented limit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Counters of what went through the budget (for benchmarks and reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    pub requests: u64,
    pub rate_limited: u64,
}

/// A shared pacing gate for every request a client sends.
pub struct RequestBudget {
    limiter: DefaultDirectRateLimiter,
    requests_per_window: u32,
    window: Duration,
    paused_until: Mutex<Option<Instant>>,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

impl std::fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBudget")
            .field("requests_per_window", &self.requests_per_window)
            .field("window", &self.window)
            .finish()
    }
}

impl RequestBudget {
    /// `requests` per `window`, paced evenly with a small burst so a server-side
    /// token bucket of the same size never runs dry.
    pub fn new(requests: u32, window: Duration) -> Self {
        let requests = requests.max(1);
        let period = window / requests;
        let burst = NonZeroU32::new((requests / 20).clamp(1, 5)).expect("clamped to ≥ 1");
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("period is non-zero")
            .allow_burst(burst);
        RequestBudget {
            limiter: RateLimiter::direct(quota),
            requests_per_window: requests,
            window,
            paused_until: Mutex::new(None),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    pub fn per_minute(requests: u32) -> Self {
        RequestBudget::new(requests, Duration::from_secs(60))
    }

    pub fn requests_per_window(&self) -> u32 {
        self.requests_per_window
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits until one more request may leave, then counts it.
    pub async fn acquire(&self) {
        loop {
            let pause = *self.paused_until.lock().expect("budget lock");
            match pause {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await
                }
                _ => break,
            }
        }
        self.limiter.until_ready().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A 429 arrived: hold every caller for `wait` (extending, never shortening, a pause).
    pub fn rate_limited(&self, wait: Duration) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("budget lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_to_the_window() {
        // 20 per 200 ms: 30 requests need at least ~ (30 - burst) × 10 ms.
        let budget = RequestBudget::new(20, Duration::from_millis(200));
        let start = Instant::now();
        for _ in 0..30 {
            budget.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250),
            "too fast: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(900),
            "too slow: {elapsed:?}"
        );
        assert_eq!(budget.stats().requests, 30);
    }

    #[tokio::test]
    async fn a_429_pauses_everyone() {
        let budget = RequestBudget::new(1000, Duration::from_secs(1));
        budget.rate_limited(Duration::from_millis(150));
        let start = Instant::now();
        budget.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(140));
        assert_eq!(budget.stats().rate_limited, 1);
    }
}
