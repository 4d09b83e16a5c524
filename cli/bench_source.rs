//! `cutover bench source --source SRC --table T`: how fast a source streams
//! one table, and how much memory it takes doing it. Reads the whole table
//! the way a run does (typed records, each content-hashed), then reports
//! rows, seconds, rows per second and the process's peak resident memory
//! (Linux `VmHWM`). Run it at several table sizes to see that the peak stays
//! flat; `scripts/bench-sources` does that against the TDS test server.

use std::time::Instant;

use cutover_connectors::panda::open_source;
use cutover_engine::{SourceError, SourceItem};
use futures::StreamExt;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `export:DIR` or `sqlserver:<ADO connection string>` (the password comes from CUTOVER_SQL_PASSWORD).
    #[arg(long)]
    pub source: String,
    /// The table to stream.
    #[arg(long, default_value = "PerioExamSite")]
    pub table: String,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let source = open_source(&args.source).await.map_err(source_failure)?;
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let mut stream = source
        .stream(&args.table, None)
        .await
        .map_err(source_failure)?;
    let (mut records, mut unreadable) = (0u64, 0u64);
    let mut digest = 0u8;
    while let Some(item) = stream.next().await {
        match item.map_err(source_failure)? {
            SourceItem::Record(record) => {
                // Hash as the engine does, so the figure is for a usable extract.
                digest ^= record.content_hash()[0];
                records += 1;
            }
            SourceItem::Unreadable { .. } => unreadable += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let rows = records + unreadable;
    let rate = rows as f64 / seconds.max(1e-9);
    let peak = peak_rss_kib();
    out.event(
        "bench",
        &serde_json::json!({
            "source": source.describe(), "table": args.table, "rows": rows, "unreadable": unreadable,
            "seconds": seconds, "rows_per_second": rate.round(), "peak_rss_kib": peak, "rss_before_kib": rss_before,
            "digest": digest,
        }),
    );
    out.human(format!("source:  {}", source.describe()));
    out.human(format!(
        "table:   {} ({rows} rows, {unreadable} unreadable)",
        args.table
    ));
    out.human(format!("time:    {seconds:.3} s  →  {rate:.0} rows/s"));
    match (rss_before, peak) {
        (Some(before), Some(peak)) => out.human(format!(
            "memory:  peak RSS {:.1} MiB (before streaming {:.1} MiB)",
            peak as f64 / 1024.0,
            before as f64 / 1024.0
        )),
        _ => out.human("memory:  peak RSS unavailable (needs Linux /proc)"),
    }
    Ok(Exit::Clean)
}

/// Peak resident set size so far, in KiB (Linux `/proc/self/status` VmHWM).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn source_failure(error: SourceError) -> anyhow::Error {
    match error {
        SourceError::Config(message) => {
            fail(Exit::Config, format!("source configuration: {message}"))
        }
        other => anyhow::Error::new(other).context("cannot read the source"),
    }
}
