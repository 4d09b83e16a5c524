//! Sustained-rate benchmark of the Twenty client against the Twenty sandbox.
//!
//! The sandbox enforces Twenty's default budget (100 requests per 60 s, token
//! bucket, 429 body) and batch cap (60); the client runs with its defaults and
//! writes people and notes in batches for the given time. Reports requests sent,
//! share of the budget used, 429s, and records per request.
//!
//! `cargo run -p cutover-connectors --example twenty_bench -- [--minutes 5] [--rpm 100] [--batch 60] [--server-rpm N]`
//!
//! `--server-rpm` makes the server's limit differ from the client's budget (a
//! misconfigured client): then the 429 path is what is measured.

use std::time::{Duration, Instant};

use cutover_connectors::twenty::sandbox::{self, RateLimitSettings, SandboxConfig};
use cutover_connectors::twenty::{ApiToken, TwentyClient, TwentyConfig};
use cutover_engine::{Destination, SourceKey, WriteRequest};
use serde_json::json;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(object: &str, n: usize) -> WriteRequest {
    let body = if object == "person" {
        json!({"name": {"firstName": format!("Bench{n}"), "lastName": "Synthetic"},
               "emails": {"primaryEmail": format!("bench{n}@cutover.invalid"), "additionalEmails": []},
               "createdAt": "2018-03-01T09:00:00.000Z"})
    } else {
        json!({"title": format!("Synthetic note {n}"), "bodyV2": {"markdown": "bench"}})
    };
    WriteRequest {
        object: object.into(),
        idempotency_key: format!("bench:{object}:{n}"),
        entity: "Bench".into(),
        source_key: SourceKey::new(n.to_string()),
        client_id: None,
        body: serde_json::from_value(body).unwrap(),
    }
}

#[tokio::main]
async fn main() {
    let minutes = arg("--minutes", 5.0);
    let rpm = arg("--rpm", 100.0) as u32;
    let batch = arg("--batch", 60.0) as usize;
    // The server's real limit, when it differs from what the client was told.
    let server_rpm = arg("--server-rpm", rpm as f64) as u32;
    let server = sandbox::start(SandboxConfig {
        token: Some("bench-token".into()),
        rate_limit: Some(RateLimitSettings {
            requests: server_rpm,
            window_ms: 60_000,
        }),
        max_batch: batch,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let config = TwentyConfig::new(&server.base_url(), ApiToken::new("bench-token"))
        .and_then(|c| c.with_requests_per_minute(rpm))
        .and_then(|c| c.with_batch_size(batch))
        .expect("config");
    let client = TwentyClient::new(config).expect("client");
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let start = Instant::now();
    let (mut records, mut failed, mut n) = (0usize, 0usize, 0usize);
    while start.elapsed() < duration {
        for object in ["person", "note"] {
            let requests: Vec<WriteRequest> = (n..n + batch).map(|i| request(object, i)).collect();
            let results = client.create_batch(&requests).await;
            records += results.iter().filter(|r| r.is_ok()).count();
            failed += results.iter().filter(|r| r.is_err()).count();
        }
        n += batch;
    }
    let elapsed = start.elapsed();
    let stats = server.stats();
    let too_many = stats.by_status.get(&429).copied().unwrap_or(0);
    let budget = server_rpm as f64 * elapsed.as_secs_f64() / 60.0;
    let stored = server.records("people").len() + server.records("notes").len();
    println!("elapsed_s={:.1}", elapsed.as_secs_f64());
    println!(
        "requests={} budget_for_elapsed={:.1} budget_used_pct={:.1}",
        stats.requests,
        budget,
        100.0 * stats.requests as f64 / budget
    );
    println!(
        "responses_429={} pct_429={:.2}",
        too_many,
        100.0 * too_many as f64 / stats.requests.max(1) as f64
    );
    println!("records_confirmed={records} records_failed={failed} records_stored={stored}");
    println!(
        "records_per_request={:.1} records_per_minute={:.0}",
        records as f64 / stats.requests.max(1) as f64,
        records as f64 / elapsed.as_secs_f64() * 60.0
    );
    println!("by_status={:?}", stats.by_status);
    server.stop().await;
}
