//! Twenty's request budget: the shared
//! [`RequestBudget`](crate::http::budget::RequestBudget) paced at the
//! workspace's limit (100 requests per minute by default) with an adaptive pace.
//! A 429 pauses every caller and lowers the pace (multiplicative decrease); a
//! window's worth of accepted requests raises it again towards the configured
//! budget (additive increase). So a budget set higher than the server really
//! allows costs a few 429s, not a third of all requests. No daily cap, and
//! Twenty sends no rate-limit headers to learn from.

use std::time::Duration;

use crate::http::budget::{BudgetConfig, Pacing};
pub use crate::http::budget::{BudgetStats, RequestBudget};

/// Even pacing at the limit with a burst of up to 5, so Twenty's token bucket of
/// the same size never runs dry.
pub const PACING: Pacing = Pacing::AtLimit { max_burst: 5 };

/// A workspace's budget: `requests` per `window`, adaptive.
pub fn workspace_budget(requests: u32, window: Duration) -> RequestBudget {
    RequestBudget::new(BudgetConfig {
        per_window: requests,
        window,
        pacing: PACING,
        daily_cap: None,
        adaptive: true,
    })
}

/// [`workspace_budget`] per minute, the window Twenty documents.
pub fn per_minute(requests: u32) -> RequestBudget {
    workspace_budget(requests, Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn paces_to_the_window() {
        // 20 per 200 ms: 30 requests need at least ~ (30 - burst) × 10 ms.
        let budget = workspace_budget(20, Duration::from_millis(200));
        let start = Instant::now();
        for _ in 0..30 {
            budget.acquire().await.unwrap();
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
        let budget = workspace_budget(1000, Duration::from_secs(1));
        budget.rate_limited(Duration::from_millis(150));
        let start = Instant::now();
        budget.acquire().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(140));
        assert_eq!(budget.stats().rate_limited, 1);
    }

    #[test]
    fn slows_on_429_once_per_burst_and_recovers_after_a_window_of_successes() {
        let budget = workspace_budget(100, Duration::from_secs(60));
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
