//! Authentication, the `Version` header, and the rate-limit windows:
//! a rolling window (100 requests / 10 s) and a daily count per location,
//! `X-RateLimit-*` headers on every answer, 429 past the limit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde_json::json;

use super::Shared;

/// The request log of the rolling window and the day.
#[derive(Debug)]
pub struct Windows {
    recent: VecDeque<Instant>,
    day: NaiveDate,
    today: u64,
    pub served: u64,
    pub throttled: u64,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            recent: VecDeque::new(),
            day: Utc::now().date_naive(),
            today: 0,
            served: 0,
            throttled: 0,
        }
    }
}

fn put_headers(response: &mut Response, shared: &Shared, remaining: u64, daily_remaining: u64) {
    let config = &shared.config;
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: u64| {
        headers.insert(
            name,
            HeaderValue::from_str(&value.to_string()).expect("digits"),
        );
    };
    set("x-ratelimit-max", config.requests_per_window as u64);
    set("x-ratelimit-remaining", remaining);
    set(
        "x-ratelimit-interval-milliseconds",
        config.window.as_millis() as u64,
    );
    set("x-ratelimit-limit-daily", config.daily_limit);
    set("x-ratelimit-daily-remaining", daily_remaining);
}

/// A 429 with the headers (HighLevel documents no body and no `Retry-After`).
pub fn too_many(shared: &Shared) -> Response {
    let daily_remaining = {
        let mut windows = shared.limits.lock().expect("limits lock");
        windows.throttled += 1;
        shared.config.daily_limit.saturating_sub(windows.today)
    };
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({ "statusCode": 429, "message": "Too many requests" })),
    )
        .into_response();
    put_headers(&mut response, shared, 0, daily_remaining);
    response
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// Checks the token and the `Version` header, then counts the request against the windows.
pub async fn middleware(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let token_ok = !token.is_empty()
        && shared
            .config
            .token
            .as_deref()
            .is_none_or(|expected| expected == token);
    if !token_ok {
        return error(
            StatusCode::UNAUTHORIZED,
            json!({ "statusCode": 401, "message": "Invalid token: access token is invalid", "error": "Unauthorized" }),
        );
    }
    let expected_version = if request.uri().path().starts_with("/calendars") {
        "2021-04-15"
    } else {
        "2021-07-28"
    };
    let version = request
        .headers()
        .get("version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if version != expected_version {
        return error(
            StatusCode::BAD_REQUEST,
            json!({ "statusCode": 400, "message": format!("Version header must be {expected_version} for this endpoint, got `{version}`") }),
        );
    }
    let now = Instant::now();
    let counted = {
        let mut windows = shared.limits.lock().expect("limits lock");
        let today = Utc::now().date_naive();
        if windows.day != today {
            windows.day = today;
            windows.today = 0;
        }
        while windows
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= shared.config.window)
        {
            windows.recent.pop_front();
        }
        if windows.today >= shared.config.daily_limit
            || windows.recent.len() as u64 >= shared.config.requests_per_window as u64
        {
            None
        } else {
            windows.recent.push_back(now);
            windows.today += 1;
            windows.served += 1;
            Some((
                shared.config.requests_per_window as u64 - windows.recent.len() as u64,
                shared.config.daily_limit - windows.today,
            ))
        }
    };
    let Some((remaining, daily_remaining)) = counted else {
        return too_many(&shared);
    };
    let mut response = next.run(request).await;
    put_headers(&mut response, &shared, remaining, daily_remaining);
    response
}

/// Clears the windows (admin reset).
pub fn reset(shared: &Shared) {
    *shared.limits.lock().expect("limits lock") = Windows::default();
}
