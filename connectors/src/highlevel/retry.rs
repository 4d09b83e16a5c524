//! Classifying responses and backing off. A response is judged by its
//! status *and* its body and headers: a 500 that says "not found" is a bad id
//! (terminal), a 2xx that is not JSON came from a proxy (transient), a 429
//! carries its own wait. [`HighLevelResponses`] plugs this reading into the
//! shared retry plumbing (`crate::http::retry`: `Retry-After`, full-jitter
//! back-off), where a `Retry-After` (whole seconds or HTTP date) always wins.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use super::budget::RateLimitHeaders;
pub use crate::http::retry::Backoff;
use crate::http::retry::{retry_after, ClassifyResponse, RetryAfterRules, RetryClass};

/// HighLevel's `Retry-After`: whole seconds or an HTTP date, believed as given.
pub const RETRY_AFTER: RetryAfterRules = RetryAfterRules::STRICT;

/// The back-off between attempts unless a client is given another.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    cap: Duration::from_secs(30),
};

/// What to do with one response.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success,
    /// 429: not processed; wait and send again.
    RateLimited {
        wait: Option<Duration>,
    },
    /// Worth retrying. `may_have_landed`: the server may have acted on it
    /// (5xx, a broken response), so a create must be looked up before it is re-sent.
    Transient {
        may_have_landed: bool,
    },
    /// 401/403: the token or its scopes.
    Unauthorized,
    /// Any other rejection: retrying will not help.
    Terminal,
}

/// How the HighLevel client reads a response: raw bytes in, [`Verdict`] out.
#[derive(Debug, Clone, Copy, Default)]
pub struct HighLevelResponses;

impl ClassifyResponse for HighLevelResponses {
    type Body = [u8];
    type Verdict = Verdict;

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
        classify(status, headers, body)
    }

    fn retry_class(&self, verdict: &Verdict) -> RetryClass {
        match verdict {
            Verdict::Success => RetryClass::Success,
            Verdict::RateLimited { .. } => RetryClass::RateLimited,
            Verdict::Transient { .. } => RetryClass::Transient,
            Verdict::Unauthorized | Verdict::Terminal => RetryClass::Final,
        }
    }
}

/// Judges a response that arrived completely.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status.is_success() {
        let empty = body.iter().all(|b| b.is_ascii_whitespace());
        return if json.is_some() || empty {
            Verdict::Success
        } else {
            Verdict::Transient {
                may_have_landed: true,
            }
        };
    }
    match status.as_u16() {
        429 => Verdict::RateLimited {
            wait: retry_after(headers, RETRY_AFTER).or_else(|| interval_wait(headers)),
        },
        401 | 403 => Verdict::Unauthorized,
        408 => Verdict::Transient {
            may_have_landed: true,
        },
        500..=599 => {
            // HighLevel answers some bad ids with 500 "… not found" (#39); retrying cannot fix an id.
            let says_not_found = json
                .as_ref()
                .map(|b| message_text(b).to_ascii_lowercase())
                .is_some_and(|m| m.contains("not found"));
            if status.as_u16() == 500 && says_not_found {
                Verdict::Terminal
            } else {
                Verdict::Transient {
                    may_have_landed: !matches!(status.as_u16(), 502 | 503) || json.is_some(),
                }
            }
        }
        _ => Verdict::Terminal,
    }
}

/// The server's message, whether a string or (422) an array of strings, joined.
pub fn message_text(body: &Value) -> String {
    match body.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
        None => body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

/// Without `Retry-After`, an exhausted interval tells how long the window is:
/// wait a tenth of it (rolling window) — the SDK's strategy, less conservative.
fn interval_wait(headers: &HeaderMap) -> Option<Duration> {
    let limits = RateLimitHeaders::parse(headers);
    limits
        .interval_ms
        .map(|ms| Duration::from_millis((ms / 10).clamp(100, 10_000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn classifies_by_body_not_only_status() {
        let none = HeaderMap::new();
        assert_eq!(
            classify(StatusCode::OK, &none, br#"{"contact":{}}"#),
            Verdict::Success
        );
        assert_eq!(
            classify(StatusCode::OK, &none, b"<html>gateway</html>"),
            Verdict::Transient {
                may_have_landed: true
            }
        );
        assert_eq!(
            classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &none,
                br#"{"statusCode":500,"message":"Contact not found"}"#
            ),
            Verdict::Terminal
        );
        assert_eq!(
            classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &none,
                br#"{"statusCode":500,"message":"boom"}"#
            ),
            Verdict::Transient {
                may_have_landed: true
            }
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &none, b"upstream"),
            Verdict::Transient {
                may_have_landed: false
            }
        );
        assert_eq!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                &none,
                br#"{"message":["property x should not exist"]}"#
            ),
            Verdict::Terminal
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, &none, b"{}"),
            Verdict::Unauthorized
        );
    }

    #[test]
    fn retry_after_wins_over_the_interval() {
        let h = headers(&[
            ("retry-after", "3"),
            ("x-ratelimit-interval-milliseconds", "10000"),
        ]);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, b"{}"),
            Verdict::RateLimited {
                wait: Some(Duration::from_secs(3))
            }
        );
        let h = headers(&[("x-ratelimit-interval-milliseconds", "10000")]);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, b"{}"),
            Verdict::RateLimited {
                wait: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"{}"),
            Verdict::RateLimited { wait: None }
        );
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let future = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc2822();
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(&future).unwrap());
        let wait = retry_after(&h, RETRY_AFTER).unwrap();
        assert!(
            wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3),
            "{wait:?}"
        );
    }

    #[test]
    fn full_jitter_stays_within_the_exponential_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut seen_below_half = false;
        for _ in 0..200 {
            let d = backoff.delay(2);
            assert!(d <= Duration::from_millis(400));
            seen_below_half |= d < Duration::from_millis(200);
        }
        assert!(seen_below_half, "full jitter must spread down to zero");
        for _ in 0..50 {
            assert!(backoff.delay(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn message_text_joins_422_arrays() {
        let body: Value = serde_json::json!({"statusCode":422,"message":["property a should not exist","property b should not exist"]});
        assert_eq!(
            message_text(&body),
            "property a should not exist; property b should not exist"
        );
    }
}
