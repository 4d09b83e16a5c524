//! The request budget: stays within a per-window limit (HighLevel: 100
//! requests per 10 s per location) and a daily cap (200,000), spacing
//! requests evenly with a GCRA limiter (`governor`) and correcting itself
//! from the `X-RateLimit-*` headers the server returns. Generic: nothing in
//! here knows HighLevel beyond the header names it reads.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::HeaderMap;

/// Fraction of the documented window limit we allow ourselves, so clock skew
/// and requests in flight never push the server's count over its limit.
const SAFETY_MARGIN: f64 = 0.96;
/// Requests that may go out back to back after a stall (a slow response, a
/// busy CPU), so lost time is made up. Rate × window + burst stays under the limit.
const BURST: u32 = 3;

/// What the server said about its limits on one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `X-RateLimit-Max`: requests per interval.
    pub max: Option<u64>,
    /// `X-RateLimit-Remaining`: requests left in the current interval.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Interval-Milliseconds`: the interval's length.
    pub interval_ms: Option<u64>,
    /// `X-RateLimit-Limit-Daily`.
    pub daily_limit: Option<u64>,
    /// `X-RateLimit-Daily-Remaining`.
    pub daily_remaining: Option<u64>,
}

impl RateLimitHeaders {
    pub fn parse(headers: &HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        RateLimitHeaders {
            max: number("x-ratelimit-max"),
            remaining: number("x-ratelimit-remaining"),
            interval_ms: number("x-ratelimit-interval-milliseconds"),
            daily_limit: number("x-ratelimit-limit-daily"),
            daily_remaining: number("x-ratelimit-daily-remaining"),
        }
    }
}

/// Why the budget refuses to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// The daily cap is spent; it resets at the next UTC midnight.
    DailyExhausted { retry_after: Duration },
}

#[derive(Debug)]
struct DayCount {
    day: NaiveDate,
    used: u64,
    /// The server's own view, when it told us (it counts other clients of the same app too).
    server_remaining: Option<u64>,
}

/// Counters for benchmarks and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    pub granted: u64,
    pub throttled: u64,
}

/// A per-location request budget, shared by every request of one client.
pub struct RequestBudget {
    limiter: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    daily_limit: u64,
    day: Mutex<DayCount>,
    paused_until: Mutex<Option<Instant>>,
    granted: AtomicU64,
    throttled: AtomicU64,
}

impl std::fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBudget")
            .field("daily_limit", &self.daily_limit)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RequestBudget {
    /// `per_window` requests per `window` (evenly spaced, after the safety margin) and `daily_limit` per UTC day.
    pub fn new(per_window: u32, window: Duration, daily_limit: u64) -> Self {
        let allowed = ((per_window as f64) * SAFETY_MARGIN)
            .floor()
            .clamp(1.0, per_window.max(1) as f64) as u32;
        let period = window / allowed;
        let quota = Quota::with_period(period.max(Duration::from_micros(1)))
            .expect("period is positive")
            .allow_burst(
                NonZeroU32::new(BURST.min(per_window - allowed).max(1)).expect("at least one"),
            );
        RequestBudget {
            limiter: RateLimiter::direct_with_clock(quota, DefaultClock::default()),
            daily_limit,
            day: Mutex::new(DayCount {
                day: Utc::now().date_naive(),
                used: 0,
                server_remaining: None,
            }),
            paused_until: Mutex::new(None),
            granted: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Waits until one request may be sent, or refuses when the day's cap is spent.
    pub async fn acquire(&self) -> Result<(), BudgetRefusal> {
        loop {
            let pause = *self.paused_until.lock().expect("budget lock");
            match pause {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await
                }
                _ => break,
            }
        }
        self.take_daily()?;
        self.limiter.until_ready().await;
        self.granted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn take_daily(&self) -> Result<(), BudgetRefusal> {
        let mut day = self.day.lock().expect("budget lock");
        let today = Utc::now().date_naive();
        if day.day != today {
            *day = DayCount {
                day: today,
                used: 0,
                server_remaining: None,
            };
        }
        let spent_locally = day.used >= self.daily_limit;
        let spent_at_server = day.server_remaining == Some(0);
        if spent_locally || spent_at_server {
            return Err(BudgetRefusal::DailyExhausted {
                retry_after: until_next_utc_midnight(),
            });
        }
        day.used += 1;
        if let Some(remaining) = day.server_remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
        }
        Ok(())
    }

    /// Corrects the budget from a response's headers: an empty interval pauses
    /// everyone until the interval has passed; the server's daily count wins over ours.
    pub fn observe(&self, headers: &RateLimitHeaders) {
        if let Some(remaining) = headers.daily_remaining {
            self.day.lock().expect("budget lock").server_remaining = Some(remaining);
        }
        if headers.remaining == Some(0) {
            let interval = Duration::from_millis(headers.interval_ms.unwrap_or(10_000).min(60_000));
            // The window is rolling: a tenth of it frees the oldest requests.
            self.pause_for(interval / 10);
        }
    }

    /// After a 429: nobody sends until `wait` has passed.
    pub fn throttled(&self, wait: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.pause_for(wait);
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("budget lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            granted: self.granted.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// Requests counted against today's cap by this process.
    pub fn used_today(&self) -> u64 {
        self.day.lock().expect("budget lock").used
    }
}

fn until_next_utc_midnight() -> Duration {
    let now = Utc::now();
    let tomorrow = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    (tomorrow.and_utc() - now)
        .to_std()
        .unwrap_or(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test]
    async fn spaces_requests_to_stay_under_the_window_limit() {
        // 20 per 1 s with the margin → 19 per second, evenly spaced (~52 ms apart).
        let budget = RequestBudget::new(20, Duration::from_secs(1), 1_000);
        let start = Instant::now();
        for _ in 0..20 {
            budget.acquire().await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(950),
            "20 requests granted in {elapsed:?}, faster than 19/s"
        );
        assert!(
            elapsed < Duration::from_millis(1500),
            "budget too slow: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn refuses_when_the_daily_cap_is_spent() {
        let budget = RequestBudget::new(1000, Duration::from_secs(1), 3);
        for _ in 0..3 {
            budget.acquire().await.unwrap();
        }
        assert!(matches!(
            budget.acquire().await,
            Err(BudgetRefusal::DailyExhausted { .. })
        ));
    }

    #[tokio::test]
    async fn server_daily_remaining_zero_stops_sending() {
        let budget = RequestBudget::new(1000, Duration::from_secs(1), 200_000);
        budget.observe(&RateLimitHeaders {
            daily_remaining: Some(0),
            ..Default::default()
        });
        assert!(matches!(
            budget.acquire().await,
            Err(BudgetRefusal::DailyExhausted { .. })
        ));
    }

    #[tokio::test]
    async fn a_429_pauses_every_caller() {
        let budget = RequestBudget::new(1000, Duration::from_secs(1), 1_000);
        budget.throttled(Duration::from_millis(200));
        let start = Instant::now();
        budget.acquire().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(190));
        assert_eq!(budget.stats().throttled, 1);
    }

    #[test]
    fn parses_the_documented_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("X-RateLimit-Max", HeaderValue::from_static("100"));
        headers.insert("X-RateLimit-Remaining", HeaderValue::from_static("7"));
        headers.insert(
            "X-RateLimit-Interval-Milliseconds",
            HeaderValue::from_static("10000"),
        );
        headers.insert(
            "X-RateLimit-Limit-Daily",
            HeaderValue::from_static("200000"),
        );
        headers.insert(
            "X-RateLimit-Daily-Remaining",
            HeaderValue::from_static("199000"),
        );
        let parsed = RateLimitHeaders::parse(&headers);
        assert_eq!(
            parsed,
            RateLimitHeaders {
                max: Some(100),
                remaining: Some(7),
                interval_ms: Some(10_000),
                daily_limit: Some(200_000),
                daily_remaining: Some(199_000)
            }
        );
    }
}
