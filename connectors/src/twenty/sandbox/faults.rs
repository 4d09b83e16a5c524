//! Fault injection and the rate-limit window of the emulator, set at start or
//! through `POST /_sandbox/faults`. Generic: nothing here knows about Twenty.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What to break. Counters are consumed by the next API requests, in order:
/// `fail_before` first (nothing happens, 5xx), then `fail_after` (writes commit, 5xx).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// The next N API requests answer `status` without any effect.
    pub fail_before: u32,
    /// The next N writes are committed, then answered `status` (the answer is "lost").
    pub fail_after: u32,
    /// The next N API requests answer 429 whatever the budget.
    pub force_429: u32,
    /// Probability per request of a fault before any effect (seeded, reproducible).
    pub before_rate: f64,
    /// Probability per write of committing and then answering `status`.
    pub after_rate: f64,
    /// Status of injected failures (default 503).
    pub status: Option<u16>,
    /// Added latency per API request.
    pub latency_ms: u64,
    /// Seed for the rates above.
    pub seed: Option<u64>,
    /// Replaces the rate-limit window: `requests` per `window_ms` (token bucket).
    pub rate_limit: Option<RateLimitSettings>,
    /// Adds `Retry-After: N` (seconds) to 429 answers (Twenty itself sends none).
    pub retry_after_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub requests: u32,
    pub window_ms: u64,
}

/// A token bucket like Twenty's throttler: `capacity` tokens, refilled continuously.
#[derive(Debug)]
pub struct TokenBucket {
    pub settings: RateLimitSettings,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(settings: RateLimitSettings) -> Self {
        TokenBucket {
            settings,
            tokens: settings.requests as f64,
            last: Instant::now(),
        }
    }

    /// Takes a token; `false` when the window is spent.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let per_ms = self.settings.requests as f64 / self.settings.window_ms.max(1) as f64;
        let elapsed = now.duration_since(self.last).as_secs_f64() * 1000.0;
        self.tokens = (self.tokens + elapsed * per_ms).min(self.settings.requests as f64);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the fault plan decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    None,
    RateLimited,
    FailBefore(u16),
    FailAfter(u16),
}

/// Fault settings plus their running state.
#[derive(Debug)]
pub struct FaultPlan {
    pub settings: FaultSettings,
    rng: ChaCha8Rng,
    pub bucket: Option<TokenBucket>,
}

impl FaultPlan {
    pub fn new(settings: FaultSettings, default_limit: Option<RateLimitSettings>) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(settings.seed.unwrap_or(0));
        let bucket = settings.rate_limit.or(default_limit).map(TokenBucket::new);
        FaultPlan {
            settings,
            rng,
            bucket,
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.settings.latency_ms)
    }

    /// Decides the fate of one API request (`write` when it changes state).
    pub fn decide(&mut self, write: bool) -> Injected {
        let status = self.settings.status.unwrap_or(503);
        if self.settings.force_429 > 0 {
            self.settings.force_429 -= 1;
            return Injected::RateLimited;
        }
        if let Some(bucket) = &mut self.bucket {
            if !bucket.take() {
                return Injected::RateLimited;
            }
        }
        if self.settings.fail_before > 0 {
            self.settings.fail_before -= 1;
            return Injected::FailBefore(status);
        }
        if write && self.settings.fail_after > 0 {
            self.settings.fail_after -= 1;
            return Injected::FailAfter(status);
        }
        if self.settings.before_rate > 0.0
            && self.rng.gen_bool(self.settings.before_rate.clamp(0.0, 1.0))
        {
            return Injected::FailBefore(status);
        }
        if write
            && self.settings.after_rate > 0.0
            && self.rng.gen_bool(self.settings.after_rate.clamp(0.0, 1.0))
        {
            return Injected::FailAfter(status);
        }
        Injected::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_consumed_in_order() {
        let settings = FaultSettings {
            fail_before: 1,
            fail_after: 1,
            force_429: 1,
            ..Default::default()
        };
        let mut plan = FaultPlan::new(settings, None);
        assert_eq!(plan.decide(true), Injected::RateLimited);
        assert_eq!(plan.decide(true), Injected::FailBefore(503));
        assert_eq!(
            plan.decide(false),
            Injected::None,
            "fail_after touches writes only"
        );
        assert_eq!(plan.decide(true), Injected::FailAfter(503));
        assert_eq!(plan.decide(true), Injected::None);
    }

    #[test]
    fn bucket_refuses_past_capacity_and_refills() {
        let mut bucket = TokenBucket::new(RateLimitSettings {
            requests: 3,
            window_ms: 300,
        });
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take());
        std::thread::sleep(Duration::from_millis(120));
        assert!(bucket.take());
    }
}
