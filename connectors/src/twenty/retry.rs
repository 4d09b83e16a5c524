//! What a Twenty answer means and how long to wait before asking again.
//!
//! Classification looks at the body as well as the status: a REST 429 carries
//! `{"statusCode":429,"messages":["Limit reached (…)"]}`, GraphQL reports the same limit
//! as HTTP 200 with an `errors[]` entry, and 400s name a duplicate in text. Back-off is
//! exponential with full jitter (AWS architecture blog) and honours `Retry-After`.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The meaning of one response, decided before any retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx with no error inside.
    Success,
    /// Over the budget; wait (at least `retry_after` when the server said so).
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, 408, or a body that says the server timed out: try again.
    Transient { message: String },
    /// 404: the record is not there.
    NotFound { message: String },
    /// 401 / 403.
    Unauthorized { message: String },
    /// A 4xx the server will give again: bad field, duplicate, too many records.
    Rejected { message: String, duplicate: bool },
}

/// Reads the server's message from a Twenty error body: `messages` (array, what the
/// server sends), `message` (string, what the spec's example shows) or GraphQL `errors`.
pub fn error_message(body: &Value) -> Option<String> {
    if let Some(items) = body.get("messages").and_then(Value::as_array) {
        let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
        if !texts.is_empty() {
            return Some(texts.join("; "));
        }
    }
    if let Some(text) = body.get("message").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        let texts: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect();
        if !texts.is_empty() {
            return Some(texts.join("; "));
        }
    }
    None
}

fn mentions_rate_limit(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("limit reached") || lower.contains("too many requests")
}

fn mentions_duplicate(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("duplicate entry")
        || lower.contains("unique constraint")
        || lower.contains("duplicate key")
}

/// Classifies a response from its status, headers and (parsed, possibly `Null`) body.
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> Verdict {
    let message = error_message(body).unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        200..=299 => {
            // GraphQL answers errors with 200.
            if let Some(errors) = body
                .get("errors")
                .and_then(Value::as_array)
                .filter(|e| !e.is_empty())
            {
                if mentions_rate_limit(&message) {
                    return Verdict::RateLimited {
                        retry_after: retry_after(headers),
                    };
                }
                let code = errors[0]
                    .pointer("/extensions/code")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return match code {
                    "UNAUTHENTICATED" | "FORBIDDEN" => Verdict::Unauthorized { message },
                    "NOT_FOUND" => Verdict::NotFound { message },
                    "TIMEOUT" | "INTERNAL_SERVER_ERROR" => Verdict::Transient { message },
                    _ => Verdict::Rejected {
                        duplicate: mentions_duplicate(&message),
                        message,
                    },
                };
            }
            Verdict::Success
        }
        429 => Verdict::RateLimited {
            retry_after: retry_after(headers),
        },
        401 | 403 => Verdict::Unauthorized { message },
        404 => Verdict::NotFound { message },
        408 | 500..=599 => Verdict::Transient { message },
        _ if mentions_rate_limit(&message) => Verdict::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => Verdict::Rejected {
            duplicate: mentions_duplicate(&message),
            message,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = raw.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds.min(3600.0)));
        }
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(
        wait.to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// Exponential back-off with full jitter: a uniform wait in `[0, min(cap, base·2^attempt)]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0 = first retry). A server-given
    /// `Retry-After` is a floor; jitter is added on top so clients do not stampede.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let jitter = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
        match retry_after {
            Some(floor) => floor + Duration::from_millis(jitter / 4),
            None => Duration::from_millis(jitter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use serde_json::json;

    #[test]
    fn rest_429_body_and_header() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let body = json!({"statusCode": 429, "error": "HttpException", "messages": ["Limit reached (100 tokens per 60000 ms)"]});
        assert_eq!(
            classify(429, &headers, &body),
            Verdict::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(429, &HeaderMap::new(), &body),
            Verdict::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn graphql_rate_limit_inside_a_200() {
        let body = json!({"errors": [{"message": "Limit reached (100 tokens per 60000 ms)", "extensions": {"code": "BAD_USER_INPUT"}}]});
        assert!(matches!(
            classify(200, &HeaderMap::new(), &body),
            Verdict::RateLimited { .. }
        ));
        let body = json!({"errors": [{"message": "Field x missing", "extensions": {"code": "BAD_USER_INPUT"}}]});
        assert!(matches!(
            classify(200, &HeaderMap::new(), &body),
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn duplicates_and_message_shapes() {
        let body = json!({"statusCode": 400, "error": "BadRequestException", "messages": ["duplicate entry for emails.primaryEmail"]});
        assert_eq!(
            classify(400, &HeaderMap::new(), &body),
            Verdict::Rejected {
                message: "duplicate entry for emails.primaryEmail".into(),
                duplicate: true
            }
        );
        let body =
            json!({"statusCode": 400, "message": "Object person doesn't have any \"foo\" field."});
        assert!(matches!(
            classify(400, &HeaderMap::new(), &body),
            Verdict::Rejected {
                duplicate: false,
                ..
            }
        ));
        assert!(matches!(
            classify(503, &HeaderMap::new(), &Value::Null),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            classify(404, &HeaderMap::new(), &Value::Null),
            Verdict::NotFound { .. }
        ));
        assert!(matches!(
            classify(401, &HeaderMap::new(), &Value::Null),
            Verdict::Unauthorized { .. }
        ));
    }

    #[test]
    fn full_jitter_stays_within_bounds_and_honours_floor() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        let mut distinct = std::collections::BTreeSet::new();
        for attempt in 0..10 {
            for _ in 0..50 {
                let d = backoff.delay(attempt, None);
                assert!(d <= Duration::from_secs(2));
                assert!(d <= Duration::from_millis(100 << attempt));
                distinct.insert(d.as_millis());
            }
        }
        assert!(distinct.len() > 20, "jitter should spread waits");
        let floored = backoff.delay(3, Some(Duration::from_secs(5)));
        assert!(floored >= Duration::from_secs(5));
    }
}
