//! What both CRM clients share about retrying: the [`ClassifyResponse`] trait
//! each destination implements to say what a response means (vector's
//! `RetryLogic` style: the component classifies, the plumbing acts on the
//! class), the attempt count ([`RetryPolicy`]), `Retry-After` parsing, and exponential back-off with full jitter
//! (AWS architecture blog, "Exponential Backoff and Jitter").
//!
//! What a response *means* stays with each destination: HighLevel answers some
//! bad ids with a 500 and needs to know whether a failed create may have
//! landed; Twenty reports rate limits inside a GraphQL 200 and tells duplicates
//! apart. Only the retry-relevant class ([`RetryClass`]) is common.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// What the retry loop may do after a response, whatever the destination's own verdict says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Done: hand the body back.
    Success,
    /// 429 or its equivalent: not processed, send again after the server's wait.
    RateLimited,
    /// Worth another attempt after a back-off (5xx, timeouts, broken answers).
    Transient,
    /// Retrying will not change the answer (bad input, auth, not found).
    Final,
}

impl RetryClass {
    /// Rate-limited and transient failures may be sent again.
    pub fn is_retryable(self) -> bool {
        matches!(self, RetryClass::RateLimited | RetryClass::Transient)
    }
}

/// A destination's reading of its server's answers.
pub trait ClassifyResponse {
    /// The body as the destination reads it (raw bytes, parsed JSON, …).
    type Body: ?Sized;
    /// The destination's own verdict, with whatever detail its client needs.
    type Verdict;

    /// Judges one complete response by status, headers *and* body.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &Self::Body)
        -> Self::Verdict;

    /// The part of a verdict the retry loop acts on.
    fn retry_class(&self, verdict: &Self::Verdict) -> RetryClass;
}

/// How many attempts one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on failures, the first included.
    pub max_attempts: u32,
    /// Attempts on rate limits when they are counted apart from failures (a 429
    /// says "not processed", so it may earn more tries than a failure whose effect
    /// is unknown); `None` counts them with the failures.
    pub max_rate_limited_attempts: Option<u32>,
}

impl RetryPolicy {
    /// A fresh count for one request.
    pub fn attempts(self) -> Attempts {
        Attempts {
            policy: self,
            failures: 0,
            rate_limited: 0,
        }
    }
}

/// The failed attempts of one request so far, by [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: RetryPolicy,
    failures: u32,
    rate_limited: u32,
}

/// Where a request stands after one more failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// How many attempts of this kind have failed (1 after the first), to size the back-off.
    pub attempt: u32,
    /// Stop here: the failure is final, or its kind has used up its attempts.
    pub give_up: bool,
}

impl Attempts {
    /// Counts a failed attempt of class `class`.
    pub fn record(&mut self, class: RetryClass) -> Tally {
        let (count, max) = match (class, self.policy.max_rate_limited_attempts) {
            (RetryClass::RateLimited, Some(max)) => (&mut self.rate_limited, max),
            _ => (&mut self.failures, self.policy.max_attempts),
        };
        *count += 1;
        Tally {
            attempt: *count,
            give_up: !class.is_retryable() || *count >= max,
        }
    }
}

/// How strictly a destination reads `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterRules {
    /// Accept `1.5` as well as `1` (RFC 9110 says whole seconds; some servers send fractions).
    pub fractional_seconds: bool,
    /// The longest wait believed; a larger one is cut to this.
    pub cap: Option<Duration>,
}

impl RetryAfterRules {
    /// RFC 9110 as written: whole seconds or an HTTP date, no cap.
    pub const STRICT: RetryAfterRules = RetryAfterRules {
        fractional_seconds: false,
        cap: None,
    };
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is a zero wait).
/// `None` when the header is missing or unreadable.
pub fn retry_after(headers: &HeaderMap, rules: RetryAfterRules) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let capped = |wait: Duration| match rules.cap {
        Some(cap) => wait.min(cap),
        None => wait,
    };
    if rules.fractional_seconds {
        if let Ok(seconds) = raw.parse::<f64>() {
            if seconds.is_finite() && seconds >= 0.0 {
                let seconds = match rules.cap {
                    Some(cap) => seconds.min(cap.as_secs_f64()),
                    None => seconds,
                };
                return Some(Duration::from_secs_f64(seconds));
            }
        }
    } else if let Ok(seconds) = raw.parse::<u64>() {
        return Some(capped(Duration::from_secs(seconds)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(capped(wait.to_std().unwrap_or(Duration::ZERO)))
}

/// Exponential back-off with full jitter: retry `attempt` (0-based) waits a
/// uniform random time in `[0, min(cap, base · 2^attempt)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The exponential ceiling for `attempt` (the exponent stops at 16).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap)
    }

    /// A full-jitter wait in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let millis = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// With a server-given `floor` (its `Retry-After`): the floor plus a quarter of
    /// the full jitter, so clients told the same wait do not stampede together.
    /// Without one: [`Backoff::delay`].
    pub fn delay_with_floor(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let jitter = self.delay(attempt);
        match floor {
            Some(floor) => floor + Duration::from_millis(jitter.as_millis() as u64 / 4),
            None => jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    const LENIENT: RetryAfterRules = RetryAfterRules {
        fractional_seconds: true,
        cap: Some(Duration::from_secs(3600)),
    };

    #[test]
    fn retry_after_in_seconds() {
        let h = with_retry_after(" 7 ");
        assert_eq!(
            retry_after(&h, RetryAfterRules::STRICT),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(&h, LENIENT), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&HeaderMap::new(), RetryAfterRules::STRICT),
            None
        );
    }

    #[test]
    fn fractions_only_when_allowed_and_the_cap_applies() {
        let h = with_retry_after("1.5");
        assert_eq!(retry_after(&h, RetryAfterRules::STRICT), None);
        assert_eq!(retry_after(&h, LENIENT), Some(Duration::from_millis(1500)));
        let h = with_retry_after("86400");
        assert_eq!(
            retry_after(&h, RetryAfterRules::STRICT),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(retry_after(&h, LENIENT), Some(Duration::from_secs(3600)));
        assert_eq!(retry_after(&with_retry_after("-3"), LENIENT), None);
        assert_eq!(retry_after(&with_retry_after("soon"), LENIENT), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let future = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc2822();
        let wait = retry_after(&with_retry_after(&future), RetryAfterRules::STRICT).unwrap();
        assert!(
            wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3),
            "{wait:?}"
        );
        let past = (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc2822();
        assert_eq!(
            retry_after(&with_retry_after(&past), LENIENT),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn full_jitter_spreads_below_the_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(40), Duration::from_secs(1));
        let mut seen_below_half = false;
        for _ in 0..200 {
            let d = backoff.delay(2);
            assert!(d <= Duration::from_millis(400));
            seen_below_half |= d < Duration::from_millis(200);
        }
        assert!(seen_below_half, "full jitter must spread down to zero");
    }

    #[test]
    fn a_floor_is_never_undercut_and_gets_a_quarter_jitter() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for _ in 0..100 {
            let d = backoff.delay_with_floor(3, Some(Duration::from_secs(5)));
            assert!(d >= Duration::from_secs(5), "{d:?}");
            assert!(d <= Duration::from_millis(5200), "{d:?}");
        }
        assert!(backoff.delay_with_floor(0, None) <= Duration::from_millis(100));
    }

    #[test]
    fn rate_limits_count_with_failures_unless_given_their_own_allowance() {
        let shared = RetryPolicy {
            max_attempts: 3,
            max_rate_limited_attempts: None,
        };
        let mut attempts = shared.attempts();
        assert_eq!(
            attempts.record(RetryClass::RateLimited),
            Tally {
                attempt: 1,
                give_up: false
            }
        );
        assert!(!attempts.record(RetryClass::Transient).give_up);
        assert_eq!(
            attempts.record(RetryClass::RateLimited),
            Tally {
                attempt: 3,
                give_up: true
            }
        );

        let apart = RetryPolicy {
            max_attempts: 2,
            max_rate_limited_attempts: Some(4),
        };
        let mut attempts = apart.attempts();
        for n in 1..=3 {
            assert_eq!(
                attempts.record(RetryClass::RateLimited),
                Tally {
                    attempt: n,
                    give_up: false
                }
            );
        }
        assert_eq!(attempts.record(RetryClass::Transient).attempt, 1);
        assert!(attempts.record(RetryClass::Transient).give_up);
        assert!(attempts.record(RetryClass::RateLimited).give_up);
    }

    #[test]
    fn a_final_failure_gives_up_at_once() {
        let policy = RetryPolicy {
            max_attempts: 6,
            max_rate_limited_attempts: None,
        };
        assert!(policy.attempts().record(RetryClass::Final).give_up);
    }

    #[test]
    fn only_rate_limits_and_transient_failures_are_retried() {
        assert!(RetryClass::RateLimited.is_retryable());
        assert!(RetryClass::Transient.is_retryable());
        assert!(!RetryClass::Success.is_retryable());
        assert!(!RetryClass::Final.is_retryable());
    }
}
