//! Sustained-rate benchmark of the HighLevel client against the sandbox:
//! concurrent workers create contacts (one request each) for a fixed time
//! through one client, whose budget must hold ≥ 95 % of HighLevel's
//! 100 requests / 10 s with ≤ 1 % of requests answered 429.
//!
//! `cargo run -p cutover-connectors --example highlevel_bench -- [seconds=300] [workers=8]`
//! Figures go in docs/benchmarks/highlevel.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use cutover_connectors::highlevel::HighLevelDestination;
use cutover_engine::ports::{Destination, SchemaSpec, WriteRequest};
use cutover_engine::SourceKey;
use serde_json::json;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);

    // The documented limits: 100 requests per rolling 10 s, 200,000 per day.
    let (handle, config) = sandbox::in_process(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let window = config.window;
    let limit = config.requests_per_window as f64;
    let destination = Arc::new(HighLevelDestination::new(config).expect("client"));
    destination
        .ensure_schema(&SchemaSpec::default())
        .await
        .expect("schema");
    let (setup_requests, _) = destination.client().stats();
    // Let the setup requests leave the rolling window before measuring.
    tokio::time::sleep(window).await;

    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (destination, stop, created, failed, next) = (
            destination.clone(),
            stop.clone(),
            created.clone(),
            failed.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let key = format!("bench:{i}");
                let request = WriteRequest {
                    object: "contact".into(),
                    idempotency_key: key.clone(),
                    entity: "Patient".into(),
                    source_key: SourceKey::new(key),
                    client_id: None,
                    body: json!({ "firstName": "Bench", "lastName": format!("P{i}"), "email": format!("bench{i}@example.com") }).as_object().cloned().unwrap(),
                };
                match destination.create(&request).await {
                    Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        eprintln!("create failed: {error}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut per_window = Vec::new();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(window).await;
        let (sent, _) = destination.client().stats();
        let sent = sent - setup_requests;
        per_window.push(sent - last);
        last = sent;
        eprintln!(
            "{:>4} s: {} requests in the last window",
            started.elapsed().as_secs(),
            per_window.last().unwrap()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (sent, rate_limited) = destination.client().stats();
    let sent = sent - setup_requests;
    let windows = elapsed / window.as_secs_f64();
    let throughput = sent as f64 / windows;
    let stats: serde_json::Value = reqwest::get(format!("{}/_sandbox/stats", handle.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = handle.shared.store.lock().unwrap().contacts.len();
    println!("duration_s={elapsed:.1} workers={workers}");
    println!(
        "requests_sent={sent} contacts_created={} failed={}",
        created.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "throughput_per_window={throughput:.2} of {limit} ({:.1} %)",
        100.0 * throughput / limit
    );
    println!(
        "min_window={} max_window={}",
        per_window.iter().min().unwrap_or(&0),
        per_window.iter().max().unwrap_or(&0)
    );
    println!(
        "answered_429={rate_limited} ({:.3} %)",
        100.0 * rate_limited as f64 / sent.max(1) as f64
    );
    println!(
        "sandbox_served={} sandbox_throttled={} contacts_stored={stored}",
        stats["served"], stats["throttled"]
    );
    handle.stop().await;
}
