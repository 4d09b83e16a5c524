//! The request budget every CRM client sends through: at most N requests per
//! window leave, evenly paced by a GCRA limiter (`governor`), and a 429 pauses
//! every caller until the server's wait has passed. Three parts are optional,
//! because the destinations' limits differ:
//!
//! - a daily cap (HighLevel: 200,000 per location per UTC day), refusing once spent;
//! - server feedback (HighLevel's `X-RateLimit-*` headers): an empty window pauses
//!   everyone, and the server's daily count wins over ours;
//! - an adaptive pace (Twenty): a 429 lowers the pace to ¾ (multiplicative decrease),
//!   a window's worth of accepted requests raises it again towards the configured
//!   budget (additive increase), so a budget set higher than the server allows costs
//!   a few 429s, not a third of all requests.
//!
//! Nothing in here knows a destination: header names and limits come from the caller.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How the configured limit becomes an even pace and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Pace at `safety_margin` × the limit (so clock skew and requests in flight never
    /// push the server's count over), with a burst of at most `max_burst` that also
    /// fits in the headroom the margin leaves. For servers counting a rolling window.
    UnderLimit { safety_margin: f64, max_burst: u32 },
    /// Pace at the limit itself, with a burst of a twentieth of it (between 1 and
    /// `max_burst`), so a server-side token bucket of the same size never runs dry.
    AtLimit { max_burst: u32 },
}

impl Pacing {
    fn limiter(self, per_window: u32, window: Duration) -> DefaultDirectRateLimiter {
        let (period, burst) = match self {
            Pacing::UnderLimit {
                safety_margin,
                max_burst,
            } => {
                let allowed = ((per_window as f64) * safety_margin)
                    .floor()
                    .clamp(1.0, per_window.max(1) as f64) as u32;
                let period = (window / allowed).max(Duration::from_micros(1));
                let headroom = per_window.saturating_sub(allowed);
                (period, max_burst.min(headroom).max(1))
            }
            Pacing::AtLimit { max_burst } => {
                let per_window = per_window.max(1);
                let period = (window / per_window).max(Duration::from_nanos(1));
                (period, (per_window / 20).clamp(1, max_burst.max(1)))
            }
        };
        let quota = Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least one"));
        RateLimiter::direct(quota)
    }
}

/// The shape of one destination's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Requests the server allows per `window` (the pace may stay under it, see [`Pacing`]).
    pub per_window: u32,
    pub window: Duration,
    pub pacing: Pacing,
    /// Requests per UTC day, when the server caps them.
    pub daily_cap: Option<u64>,
    /// Slow down after 429s and creep back after successes.
    pub adaptive: bool,
}

/// What a response said about the server's own count (already read from its headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerFeedback {
    /// Requests left today by the server's count (it counts other clients of the same app too).
    pub daily_remaining: Option<u64>,
    /// Set when the current window is spent: the window's length. The window is rolling,
    /// so a tenth of it frees the oldest requests; everyone pauses that long.
    pub window_spent: Option<Duration>,
}

/// Why the budget refuses to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// The daily cap is spent; it resets at the next UTC midnight.
    DailyExhausted { retry_after: Duration },
}

/// Counters of what went through the budget (for benchmarks and reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Requests let through.
    pub requests: u64,
    /// 429s reported to the budget.
    pub rate_limited: u64,
    /// The pace in force now (requests per window), ≤ the configured budget.
    pub current_per_window: u32,
}

#[derive(Debug)]
struct DayCount {
    day: NaiveDate,
    used: u64,
    /// The server's own view, when it told us.
    server_remaining: Option<u64>,
}

impl DayCount {
    fn today() -> Self {
        DayCount {
            day: Utc::now().date_naive(),
            used: 0,
            server_remaining: None,
        }
    }
}

/// A shared pacing gate for every request one client sends.
pub struct RequestBudget {
    config: BudgetConfig,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
    current: AtomicU32,
    day: Mutex<DayCount>,
    paused_until: Mutex<Option<Instant>>,
    last_cut: Mutex<Option<Instant>>,
    accepted_since_change: AtomicU32,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

impl std::fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBudget")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RequestBudget {
    pub fn new(config: BudgetConfig) -> Self {
        let config = BudgetConfig {
            per_window: config.per_window.max(1),
            ..config
        };
        RequestBudget {
            limiter: RwLock::new(Arc::new(
                config.pacing.limiter(config.per_window, config.window),
            )),
            current: AtomicU32::new(config.per_window),
            config,
            day: Mutex::new(DayCount::today()),
            paused_until: Mutex::new(None),
            last_cut: Mutex::new(None),
            accepted_since_change: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    pub fn requests_per_window(&self) -> u32 {
        self.config.per_window
    }

    pub fn window(&self) -> Duration {
        self.config.window
    }

    /// Waits until one more request may leave, then counts it; refuses when the
    /// day's cap is spent (never, without a cap).
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
        if let Some(cap) = self.config.daily_cap {
            self.take_daily(cap)?;
        }
        let limiter = self.limiter.read().expect("budget lock").clone();
        limiter.until_ready().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn take_daily(&self, cap: u64) -> Result<(), BudgetRefusal> {
        let mut day = self.day.lock().expect("budget lock");
        if day.day != Utc::now().date_naive() {
            *day = DayCount::today();
        }
        let spent_locally = day.used >= cap;
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

    /// Corrects the budget from what the server said about its count.
    pub fn observe(&self, feedback: &ServerFeedback) {
        if let Some(remaining) = feedback.daily_remaining {
            self.day.lock().expect("budget lock").server_remaining = Some(remaining);
        }
        if let Some(window) = feedback.window_spent {
            self.pause_for(window / 10);
        }
    }

    /// The server accepted a request (anything but a 429). With an adaptive pace,
    /// after a full window's worth of them, creep back towards the configured budget.
    pub fn accepted(&self) {
        if !self.config.adaptive {
            return;
        }
        let current = self.current.load(Ordering::Relaxed);
        if current >= self.config.per_window {
            return;
        }
        if self.accepted_since_change.fetch_add(1, Ordering::Relaxed) + 1 >= current {
            let step = (self.config.per_window / 20).max(1);
            self.set_pace((current + step).min(self.config.per_window));
        }
    }

    /// A 429 arrived: hold every caller for `wait` (extending, never shortening, a
    /// pause). With an adaptive pace, also slow to ¾ — once per burst of 429s, not
    /// once per caller.
    pub fn rate_limited(&self, wait: Duration) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.pause_for(wait);
        if !self.config.adaptive {
            return;
        }
        let mut last_cut = self.last_cut.lock().expect("budget lock");
        let spacing = self.config.window / self.current.load(Ordering::Relaxed).max(1) * 2;
        if last_cut.is_none_or(|at| now.duration_since(at) >= wait.max(spacing)) {
            *last_cut = Some(now);
            let current = self.current.load(Ordering::Relaxed);
            self.set_pace((current * 3 / 4).max(1));
        }
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("budget lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    fn set_pace(&self, per_window: u32) {
        self.current.store(per_window, Ordering::Relaxed);
        self.accepted_since_change.store(0, Ordering::Relaxed);
        *self.limiter.write().expect("budget lock") =
            Arc::new(self.config.pacing.limiter(per_window, self.config.window));
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            current_per_window: self.current.load(Ordering::Relaxed),
        }
    }

    /// Requests counted against today's cap by this process (0 without a cap).
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

    fn plain(per_window: u32, window: Duration) -> BudgetConfig {
        BudgetConfig {
            per_window,
            window,
            pacing: Pacing::AtLimit { max_burst: 5 },
            daily_cap: None,
            adaptive: false,
        }
    }

    #[tokio::test]
    async fn paces_evenly_at_the_limit() {
        // 10 per 200 ms, burst 1: 11 requests need at least 10 × 20 ms.
        let budget = RequestBudget::new(plain(10, Duration::from_millis(200)));
        let start = Instant::now();
        for _ in 0..11 {
            budget.acquire().await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
        assert_eq!(budget.stats().requests, 11);
    }

    #[tokio::test]
    async fn under_limit_pacing_keeps_the_margin() {
        // 10 per 100 ms at 80 %: 8 per 100 ms, 12.5 ms apart, burst ≤ 2.
        let budget = RequestBudget::new(BudgetConfig {
            pacing: Pacing::UnderLimit {
                safety_margin: 0.8,
                max_burst: 2,
            },
            ..plain(10, Duration::from_millis(100))
        });
        let start = Instant::now();
        for _ in 0..18 {
            budget.acquire().await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
    }

    #[tokio::test]
    async fn without_a_cap_the_day_is_unlimited() {
        let budget = RequestBudget::new(plain(100_000, Duration::from_secs(1)));
        budget.observe(&ServerFeedback {
            daily_remaining: Some(0),
            window_spent: None,
        });
        for _ in 0..5 {
            budget.acquire().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_daily_cap_refuses_once_spent_until_midnight() {
        let budget = RequestBudget::new(BudgetConfig {
            daily_cap: Some(2),
            ..plain(100_000, Duration::from_secs(1))
        });
        budget.acquire().await.unwrap();
        budget.acquire().await.unwrap();
        assert_eq!(budget.used_today(), 2);
        let Err(BudgetRefusal::DailyExhausted { retry_after }) = budget.acquire().await else {
            panic!("the third request must be refused");
        };
        assert!(retry_after <= Duration::from_secs(86_400));
        assert_eq!(budget.stats().requests, 2, "a refusal is not a request");
    }

    #[tokio::test]
    async fn the_servers_daily_count_wins_and_counts_down() {
        let budget = RequestBudget::new(BudgetConfig {
            daily_cap: Some(1_000),
            ..plain(100_000, Duration::from_secs(1))
        });
        budget.observe(&ServerFeedback {
            daily_remaining: Some(1),
            window_spent: None,
        });
        budget.acquire().await.unwrap();
        assert!(budget.acquire().await.is_err());
    }

    #[tokio::test]
    async fn a_spent_window_pauses_a_tenth_of_it() {
        let budget = RequestBudget::new(plain(100_000, Duration::from_secs(1)));
        budget.observe(&ServerFeedback {
            daily_remaining: None,
            window_spent: Some(Duration::from_millis(1_500)),
        });
        let start = Instant::now();
        budget.acquire().await.unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_429_pauses_every_caller_and_never_shortens_a_pause() {
        let budget = RequestBudget::new(plain(1000, Duration::from_secs(1)));
        budget.rate_limited(Duration::from_millis(200));
        budget.rate_limited(Duration::from_millis(10));
        let start = Instant::now();
        budget.acquire().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(180));
        assert_eq!(budget.stats().rate_limited, 2);
    }

    #[test]
    fn a_fixed_pace_ignores_429s_and_successes() {
        let budget = RequestBudget::new(plain(100, Duration::from_secs(60)));
        budget.rate_limited(Duration::ZERO);
        budget.accepted();
        assert_eq!(budget.stats().current_per_window, 100);
    }

    #[test]
    fn an_adaptive_pace_cuts_once_per_burst_and_recovers() {
        let budget = RequestBudget::new(BudgetConfig {
            adaptive: true,
            ..plain(40, Duration::from_secs(60))
        });
        budget.rate_limited(Duration::from_millis(600));
        budget.rate_limited(Duration::from_millis(600));
        assert_eq!(budget.stats().current_per_window, 30);
        for _ in 0..29 {
            budget.accepted();
        }
        assert_eq!(budget.stats().current_per_window, 30);
        budget.accepted();
        assert_eq!(budget.stats().current_per_window, 32);
        for _ in 0..1_000 {
            budget.accepted();
        }
        assert_eq!(budget.stats().current_per_window, 40);
    }
}
