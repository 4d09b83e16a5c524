//! Benchmark of the source half: how fast the generator writes a practice and
//! how fast the export-folder source checks and streams it, with peak memory.
//!
//! ```text
//! cargo run --release -p cutover-connectors --example bench_sources -- generate 10000 /tmp/bench [--no-sqlite]
//! cargo run --release -p cutover-connectors --example bench_sources -- stream /tmp/bench/export
//! ```
//! Each mode is its own process so its peak RSS (VmHWM) is its own.

use std::path::Path;
use std::time::Instant;

use cutover_connectors::panda::export::ExportSource;
use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_engine::{Source, SourceItem};
use futures::StreamExt;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("generate") => {
            let patients: u32 = args
                .get(1)
                .and_then(|p| p.parse().ok())
                .expect("generate PATIENTS DIR");
            let out = Path::new(args.get(2).expect("generate PATIENTS DIR"));
            let sqlite = !args.iter().any(|a| a == "--no-sqlite");
            let started = Instant::now();
            let summary = generate(
                out,
                &GenerateOptions {
                    patients,
                    seed: 1,
                    sqlite,
                },
            )
            .expect("generation");
            let seconds = started.elapsed().as_secs_f64();
            let rows: u64 = summary.manifest.tables.values().map(|t| t.rows).sum();
            println!(
                "generate patients={patients} sqlite={sqlite} rows={rows} seconds={seconds:.2} rows_per_s={:.0} peak_rss_mib={:.1}",
                rows as f64 / seconds,
                peak_rss_mib()
            );
        }
        Some("stream") => {
            let dir = Path::new(args.get(1).expect("stream EXPORT_DIR"));
            let started = Instant::now();
            let source = ExportSource::open(dir).expect("open");
            println!(
                "open (manifest check of every file) seconds={:.2}",
                started.elapsed().as_secs_f64()
            );
            let inventory = source.discover().await.unwrap();
            let mut total = 0u64;
            let all = Instant::now();
            for table in &inventory.tables {
                let started = Instant::now();
                let mut stream = source.stream(&table.name, None).await.unwrap();
                let mut rows = 0u64;
                while let Some(item) = stream.next().await {
                    match item.expect("no stream error") {
                        SourceItem::Record(_) => rows += 1,
                        SourceItem::Unreadable { place, reason, .. } => panic!("{place}: {reason}"),
                    }
                }
                assert_eq!(rows, table.row_count, "{}", table.name);
                total += rows;
                if table.name == "PerioExamSite" {
                    let seconds = started.elapsed().as_secs_f64();
                    println!(
                        "stream PerioExamSite rows={rows} seconds={seconds:.2} rows_per_s={:.0}",
                        rows as f64 / seconds
                    );
                }
            }
            let seconds = all.elapsed().as_secs_f64();
            println!("stream all tables rows={total} seconds={seconds:.2} rows_per_s={:.0} peak_rss_mib={:.1}", total as f64 / seconds, peak_rss_mib());
        }
        _ => eprintln!(
            "usage: bench_sources generate PATIENTS DIR [--no-sqlite] | stream EXPORT_DIR"
        ),
    }
}
