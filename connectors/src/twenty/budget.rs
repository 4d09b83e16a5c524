//! The request budget: at most N requests per window leave the client, evenly
//! paced (GCRA via `governor`). A 429 pauses every caller and lowers the pace
//! (multiplicative decrease); a window's worth of accepted requests raises it
//! again towards the configured budget (additive increase). So a budget set higher
//! than the server really allows costs a few 429s, not a third of all requests.
//! Generic over the window so the same type serves any destination's limit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Counters of what went through the budget (for benchmarks and reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    pub requests: u64,
    pub rate_limited: u64,
    /// The pace in force now (requests per window), ≤ the configured budget.
    pub current_per_window: u32,
}

/// A shared pacing gate for every request a client sends.
pub struct RequestBudget {
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
    requests_per_window: u32,
    current: AtomicU32,
    window: Duration,
    paused_until: Mutex<Option<Instant>>,
    last_cut: Mutex<Option<Instant>>,
    accepted_since_change: AtomicU32,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

impl std::fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBudget")
            .field("requests_per_window", &self.requests_per_window)
            .field("current", &self.current.load(Ordering::Relaxed))
            .field("window", &self.window)
            .finish()
    }
}

/// Even pacing with a small burst, so a server-side token bucket of the same size never runs dry.
fn limiter(requests: u32, window: Duration) -> DefaultDirectRateLimiter {
    let requests = requests.max(1);
    let period = (window / requests).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new((requests / 20).clamp(1, 5)).expect("clamped to ≥ 1");
    let quota = Quota::with_period(period)
        .expect("period is non-zero")
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

impl RequestBudget {
    /// `requests` per `window`.
    pub fn new(requests: u32, window: Duration) -> Self {
        let requests = requests.max(1);
        RequestBudget {
            limiter: RwLock::new(Arc::new(limiter(requests, window))),
            requests_per_window: requests,
            current: AtomicU32::new(requests),
            window,
            paused_until: Mutex::new(None),
            last_cut: Mutex::new(None),
            accepted_since_change: AtomicU32::new(0),
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
        let limiter = self.limiter.read().expect("budget lock").clone();
        limiter.until_ready().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn set_pace(&self, per_window: u32) {
        self.current.store(per_window, Ordering::Relaxed);
        self.accepted_since_change.store(0, Ordering::Relaxed);
        *self.limiter.write().expect("budget lock") = Arc::new(limiter(per_window, self.window));
    }

    /// The server accepted a request (anything but a 429): after a full window's
    /// worth of them, creep back towards the configured budget.
    pub fn accepted(&self) {
        let current = self.current.load(Ordering::Relaxed);
        if current >= self.requests_per_window {
            return;
        }
        if self.accepted_since_change.fetch_add(1, Ordering::Relaxed) + 1 >= current {
            let step = (self.requests_per_window / 20).max(1);
            self.set_pace((current + step).min(self.requests_per_window));
        }
    }

    /// A 429 arrived: hold every caller for `wait` (extending, never shortening, a
    /// pause) and slow the pace to ¾ — once per burst of 429s, not once per caller.
    pub fn rate_limited(&self, wait: Duration) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        {
            let mut paused = self.paused_until.lock().expect("budget lock");
            if paused.is_none_or(|current| current < now + wait) {
                *paused = Some(now + wait);
            }
        }
        let mut last_cut = self.last_cut.lock().expect("budget lock");
        let spacing = self.window / self.current.load(Ordering::Relaxed).max(1) * 2;
        if last_cut.is_none_or(|at| now.duration_since(at) >= wait.max(spacing)) {
            *last_cut = Some(now);
            let current = self.current.load(Ordering::Relaxed);
            self.set_pace((current * 3 / 4).max(1));
        }
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            current_per_window: self.current.load(Ordering::Relaxed),
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

    #[test]
    fn slows_on_429_once_per_burst_and_recovers_after_a_window_of_successes() {
        let budget = RequestBudget::new(100, Duration::from_secs(60));
        budget.rate_limited(Duration::from_millis(600));
        budget.rate_limited(Duration::from_millis(600)); // same burst: no second cut
        assert_eq!(budget.stats().current_per_window, 75);
        for _ in 0..75 {
            budget.accepted();
        }
        assert_eq!(budget.stats().current_per_window, 80);
        for _ in 0..10_000 {
            budget.accepted();
        }
        assert_eq!(
            budget.stats().current_per_window,
            100,
            "never above the configured budget"
        );
    }
}
