//! What a Twenty answer means and how long to wait before asking again.
//!
//! Classification looks at the body as well as the status: a REST 429 carries
//! `{"statusCode":429,"messages":["Limit reached (…)"]}`, GraphQL reports the same limit
//! as HTTP 200 with an `errors[]` entry, and 400s name a duplicate in text.
//! [`TwentyResponses`] plugs this into the shared retry plumbing
//! (`crate::http::retry`): exponential back-off with full jitter (AWS architecture
//! blog) that honours `Retry-After`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

pub use crate::http::retry::Backoff;
use crate::http::retry::{ClassifyResponse, RetryAfterRules, RetryClass};

/// Twenty's `Retry-After`: fractions of a second accepted, never more than an hour believed.
pub const RETRY_AFTER: RetryAfterRules = RetryAfterRules {
    fractional_seconds: true,
    cap: Some(Duration::from_secs(3600)),
};

/// `Retry-After` read by [`RETRY_AFTER`]'s rules.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    crate::http::retry::retry_after(headers, RETRY_AFTER)
}

/// How the Twenty client reads a response: the parsed body (`Null` when not JSON) in,
/// [`Verdict`] out.
#[derive(Debug, Clone, Copy, Default)]
pub struct TwentyResponses;

impl ClassifyResponse for TwentyResponses {
    type Body = Value;
    type Verdict = Verdict;

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &Value) -> Verdict {
        classify(status.as_u16(), headers, body)
    }

    fn retry_class(&self, verdict: &Verdict) -> RetryClass {
        match verdict {
            Verdict::Success => RetryClass::Success,
            Verdict::RateLimited { .. } => RetryClass::RateLimited,
            Verdict::Transient { .. } => RetryClass::Transient,
            Verdict::NotFound { .. } | Verdict::Unauthorized { .. } | Verdict::Rejected { .. } => {
                RetryClass::Final
            }
        }
    }
}

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
                let d = backoff.delay_with_floor(attempt, None);
                assert!(d <= Duration::from_secs(2));
                assert!(d <= Duration::from_millis(100 << attempt));
                distinct.insert(d.as_millis());
            }
        }
        assert!(distinct.len() > 20, "jitter should spread waits");
        let floored = backoff.delay_with_floor(3, Some(Duration::from_secs(5)));
        assert!(floored >= Duration::from_secs(5));
    }
}
