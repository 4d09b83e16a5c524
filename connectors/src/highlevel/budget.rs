//! HighLevel's request budget: 100 requests per 10 s per location and
//! 200,000 per UTC day, paced under the limit by the shared
//! [`RequestBudget`](crate::http::budget::RequestBudget) with a daily cap and
//! corrected from the `X-RateLimit-*` headers the server returns. This module
//! holds only what is HighLevel's: the margin, the header names and what they mean.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::http::budget::{BudgetConfig, Pacing, ServerFeedback};
pub use crate::http::budget::{BudgetRefusal, BudgetStats, RequestBudget};

/// Pace at 96 % of the documented window limit, so clock skew and requests in
/// flight never push the server's count over its limit; after a stall (a slow
/// response, a busy CPU) up to 3 requests may go back to back, so lost time is
/// made up. Rate × window + burst stays under the limit.
pub const PACING: Pacing = Pacing::UnderLimit {
    safety_margin: 0.96,
    max_burst: 3,
};

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

    /// What the budget should learn: the server's daily count, and — when the
    /// interval's count is spent — its length (10 s when not said, 60 s at most).
    pub fn feedback(&self) -> ServerFeedback {
        ServerFeedback {
            daily_remaining: self.daily_remaining,
            window_spent: (self.remaining == Some(0))
                .then(|| Duration::from_millis(self.interval_ms.unwrap_or(10_000).min(60_000))),
        }
    }
}

/// A location's budget: `per_window` requests per `window` (evenly spaced, after
/// the safety margin) and `daily_limit` per UTC day.
pub fn location_budget(per_window: u32, window: Duration, daily_limit: u64) -> RequestBudget {
    RequestBudget::new(BudgetConfig {
        per_window,
        window,
        pacing: PACING,
        daily_cap: Some(daily_limit),
        adaptive: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Instant;

    #[tokio::test]
    async fn spaces_requests_to_stay_under_the_window_limit() {
        // 20 per 1 s with the margin → 19 per second, evenly spaced (~52 ms apart).
        let budget = location_budget(20, Duration::from_secs(1), 1_000);
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
        let budget = location_budget(1000, Duration::from_secs(1), 3);
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
        let budget = location_budget(1000, Duration::from_secs(1), 200_000);
        budget.observe(
            &RateLimitHeaders {
                daily_remaining: Some(0),
                ..Default::default()
            }
            .feedback(),
        );
        assert!(matches!(
            budget.acquire().await,
            Err(BudgetRefusal::DailyExhausted { .. })
        ));
    }

    #[tokio::test]
    async fn a_429_pauses_every_caller() {
        let budget = location_budget(1000, Duration::from_secs(1), 1_000);
        budget.rate_limited(Duration::from_millis(200));
        let start = Instant::now();
        budget.acquire().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(190));
        assert_eq!(budget.stats().rate_limited, 1);
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
