//! Fault injection: what `POST /_sandbox/faults` sets. Faults hit only the
//! emulated API, never the admin endpoints. A fault is applied either before
//! the handler runs (nothing happened) or after it committed (the write
//! happened but the caller does not learn it) — the case that makes clients
//! look up before re-sending. Generic: nothing here knows HighLevel.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;

/// The faults in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of requests answered 500.
    pub error_rate: f64,
    /// Fraction of requests whose connection is dropped mid-response.
    pub drop_rate: f64,
    /// Of the faulted requests, the fraction faulted *after* the write committed.
    pub after_commit: f64,
    /// Added to every request.
    pub latency_ms: u64,
    /// The next N requests are answered 429.
    pub force_429: u32,
    /// `Retry-After` seconds on the forced 429s (HighLevel documents none; off by default).
    pub retry_after_s: Option<u64>,
    /// The next N requests are committed and then answered with `error_status`
    /// (deterministic "it landed but you were told it failed").
    pub fail_next_after_commit: u32,
    /// Status of the injected errors: 500 (default), or 422 to reproduce "422 yet created" (#64).
    pub error_status: Option<u16>,
    /// Contact fields silently not stored (a 2xx that does not carry what was sent).
    pub drop_fields: Vec<String>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("after_commit", self.after_commit),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} must be between 0 and 1, got {value}"));
            }
        }
        if let Some(status) = self.error_status {
            if !(400..=599).contains(&status) {
                return Err(format!("error_status must be a 4xx or 5xx, got {status}"));
            }
        }
        if self.error_rate + self.drop_rate > 1.0 {
            return Err("error_rate + drop_rate must not exceed 1".into());
        }
        Ok(())
    }
}

enum Fault {
    Error,
    Drop,
}

/// A response whose headers go out and whose body then breaks: the client sees a dropped connection.
fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection dropped",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("static response")
}

fn injected_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if status == 422 {
        json!({ "statusCode": 422, "message": ["sandbox fault"], "error": "Unprocessable Entity" })
    } else {
        json!({ "statusCode": code.as_u16(), "message": "Internal server error (sandbox fault)" })
    };
    (code, axum::Json(body)).into_response()
}

pub async fn middleware(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (latency, forced, fault, after, retry_after, error_status) = {
        let mut faults = shared.faults.lock().expect("faults lock");
        let forced = if faults.force_429 > 0 {
            faults.force_429 -= 1;
            true
        } else {
            false
        };
        let mut rng = rand::thread_rng();
        let roll: f64 = rng.gen();
        let fail_next = faults.fail_next_after_commit > 0 && !forced;
        if fail_next {
            faults.fail_next_after_commit -= 1;
        }
        let fault = if fail_next || roll < faults.error_rate {
            Some(Fault::Error)
        } else if roll < faults.error_rate + faults.drop_rate {
            Some(Fault::Drop)
        } else {
            None
        };
        (
            faults.latency_ms,
            forced,
            fault,
            fail_next || rng.gen::<f64>() < faults.after_commit,
            faults.retry_after_s,
            faults.error_status.unwrap_or(500),
        )
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if forced {
        let mut response = super::limits::too_many(&shared);
        if let Some(seconds) = retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        return response;
    }
    let render = |fault: &Fault| match fault {
        Fault::Error => injected_error(error_status),
        Fault::Drop => dropped(),
    };
    match fault {
        Some(f) if !after => render(&f),
        Some(f) => {
            let _committed = next.run(request).await;
            render(&f)
        }
        None => next.run(request).await,
    }
}
