//! `cutover bench …`: measured throughput, not timed tests. Figures go in
//! BENCHMARKS.md with the machine noted.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use cutover_ledger::{
    Digest, EventBody, FailureClass, Ledger, Micros, Reason, RunKind, RunOutcome, WriteOp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Append N realistic migration events (with payload blobs), then verify and replay.
    Ledger(LedgerBench),
    /// Stream one table of a source and report rows/s and peak memory.
    Source(crate::bench_source::Args),
}

#[derive(Debug, Args)]
struct LedgerBench {
    /// How many events to append.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// A directory for the benchmark ledger (must not hold one).
    #[arg(long)]
    ledger: PathBuf,
    /// Events per atomic commit (one flush each).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, Serialize)]
struct LedgerBenchReport {
    events: u64,
    batch: usize,
    flushes: u64,
    append_seconds: f64,
    events_per_sec: f64,
    open_seconds: f64,
    verify_seconds: f64,
    verify_events_per_sec: f64,
    replay_seconds: f64,
    replay_events_per_sec: f64,
    blobs: u64,
    blob_bytes: u64,
    event_log_bytes: u64,
    disk_bytes: u64,
    /// Event log bytes (encoded events with their hashes and framing) per event.
    bytes_per_event: f64,
    /// Everything on disk except blob payloads (event log, projections, storage-engine overhead) per event.
    disk_bytes_per_event: f64,
    projections_equal_replay: bool,
}

pub async fn run(args: BenchArgs, out: Output) -> anyhow::Result<Exit> {
    match args.command {
        BenchCommand::Ledger(bench) => ledger_bench(bench, out),
        BenchCommand::Source(bench) => crate::bench_source::run(bench, out).await,
    }
}

fn ledger_bench(args: LedgerBench, out: Output) -> anyhow::Result<Exit> {
    if args.batch == 0 {
        return Err(fail(Exit::Usage, "--batch must be at least 1"));
    }
    let mut ledger = Ledger::create(&args.ledger)
        .with_context(|| format!("creating the benchmark ledger at {}", args.ledger.display()))?;
    let mut workload = Workload::new(args.seed);
    let started = Instant::now();
    let run = ledger.start_run(
        RunKind::Benchmark,
        "export:synthetic",
        "sandbox:highlevel",
        Some(Digest::of(b"benchmark map")),
    )?;
    let mut flushes = 1u64;
    let mut batch = Vec::with_capacity(args.batch);
    while ledger.head().seq + (batch.len() as u64) < args.events.saturating_sub(1) {
        workload.next_events(&mut ledger, &mut batch)?;
        if batch.len() >= args.batch {
            ledger.append(run, batch.drain(..))?;
            flushes += 1;
        }
    }
    batch.truncate(args.events.saturating_sub(1 + ledger.head().seq) as usize);
    ledger.append(
        run,
        batch.drain(..).chain([EventBody::RunFinished {
            outcome: RunOutcome::Completed,
            detail: "benchmark".into(),
        }]),
    )?;
    flushes += 1;
    let append_seconds = started.elapsed().as_secs_f64();
    let events = ledger.head().seq;
    drop(ledger);

    let t = Instant::now();
    let ledger = Ledger::open(&args.ledger)?;
    let open_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let verified = ledger.verify()?;
    let verify_seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        verified == events,
        "verify saw {verified} events, expected {events}"
    );

    let t = Instant::now();
    let replayed = ledger.replay_projections()?;
    let replay_seconds = t.elapsed().as_secs_f64();
    let projections_equal_replay = replayed == ledger.projection_snapshot()?;

    let stats = ledger.stats()?;
    let report = LedgerBenchReport {
        events,
        batch: args.batch,
        flushes,
        append_seconds,
        events_per_sec: events as f64 / append_seconds,
        open_seconds,
        verify_seconds,
        verify_events_per_sec: events as f64 / verify_seconds,
        replay_seconds,
        replay_events_per_sec: events as f64 / replay_seconds,
        blobs: stats.blobs,
        blob_bytes: stats.blob_bytes,
        disk_bytes: stats.disk_bytes,
        event_log_bytes: stats.event_log_bytes,
        bytes_per_event: stats.event_log_bytes as f64 / events as f64,
        disk_bytes_per_event: stats.disk_bytes.saturating_sub(stats.blob_bytes) as f64
            / events as f64,
        projections_equal_replay,
    };
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        out.human(format!("events           {}", report.events));
        out.human(format!(
            "append           {:>12.0} events/s  ({} commits of {}, one flush each; {:.2} s)",
            report.events_per_sec, report.flushes, report.batch, report.append_seconds
        ));
        out.human(format!("open             {:>12.3} s", report.open_seconds));
        out.human(format!(
            "verify           {:>12.0} events/s  ({:.2} s)",
            report.verify_events_per_sec, report.verify_seconds
        ));
        out.human(format!(
            "replay           {:>12.0} events/s  ({:.2} s)",
            report.replay_events_per_sec, report.replay_seconds
        ));
        out.human(format!(
            "bytes per event  {:>12.1}  (event log {} bytes)",
            report.bytes_per_event, report.event_log_bytes
        ));
        out.human(format!("disk per event   {:>12.1}  (disk {} bytes less {} bytes of blobs: log + projections + sled overhead)", report.disk_bytes_per_event, report.disk_bytes, report.blob_bytes));
        out.human(format!(
            "replay = incremental projections: {}",
            report.projections_equal_replay
        ));
    }
    if !projections_equal_replay {
        return Err(fail(
            Exit::Failed,
            "replayed projections differ from the incrementally maintained ones",
        ));
    }
    Ok(Exit::Clean)
}

/// A synthetic migration: records of several entities extracted (row blob),
/// transformed (payload blob), written (intent, then confirmation), with a
/// few quarantines and failed-then-retried writes, like a real run.
struct Workload {
    rng: ChaCha8Rng,
    next_key: u64,
}

const ENTITIES: [(&str, &str, usize); 6] = [
    ("Patient", "contact", 420),
    ("PerioExam", "perioExam", 260),
    ("PerioExamSite", "perioExam", 90),
    ("Appointment", "task", 220),
    ("ProgressNote", "note", 900),
    ("TreatmentPlan", "opportunity", 240),
];

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_key: 1,
        }
    }

    fn payload(&mut self, size: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; size];
        self.rng.fill(bytes.as_mut_slice());
        bytes
    }

    /// Pushes the events of one record's migration.
    fn next_events(&mut self, ledger: &mut Ledger, out: &mut Vec<EventBody>) -> anyhow::Result<()> {
        let (entity, object, size) = ENTITIES[self.rng.gen_range(0..ENTITIES.len())];
        let key = self.next_key.to_string();
        self.next_key += 1;
        let row = self.payload(size);
        let content_hash = ledger.put_blob(&row)?;
        out.push(EventBody::Extracted {
            entity: entity.into(),
            key: key.clone(),
            content_hash,
            modified_at: Some(Micros::now()),
        });
        if self.rng.gen_ratio(1, 100) {
            out.push(EventBody::Quarantined {
                entity: entity.into(),
                key,
                reasons: vec![Reason {
                    code: "email_invalid".into(),
                    detail: "Email: no @".into(),
                }],
            });
            return Ok(());
        }
        let body = self.payload(size + 40);
        let payload_hash = ledger.put_blob(&body)?;
        out.push(EventBody::Transformed {
            entity: entity.into(),
            key: key.clone(),
            object: object.into(),
            payload_hash,
            map_hash: Digest::of(b"benchmark map"),
        });
        let intent_seq = ledger.head().seq + out.len() as u64 + 1;
        out.push(EventBody::WriteIntended {
            op: WriteOp::Create,
            object: object.into(),
            entity: entity.into(),
            key: key.clone(),
            idempotency_key: format!("{object}:{entity}:{key}"),
            payload_hash,
            before_image: None,
            dest_id: None,
        });
        if self.rng.gen_ratio(1, 200) {
            out.push(EventBody::WriteFailed {
                intent: intent_seq,
                class: FailureClass::Transient,
                status: Some(503),
                message: "service unavailable".into(),
            });
            return Ok(());
        }
        let dest_id = format!("{:024x}", self.rng.gen::<u128>() >> 32);
        out.push(EventBody::WriteConfirmed {
            intent: intent_seq,
            dest_id,
            response_hash: Digest::of(&body[..16]),
        });
        Ok(())
    }
}
