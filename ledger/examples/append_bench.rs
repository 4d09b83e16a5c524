//! Append-only micro benchmark of the ledger (the workload of `cutover bench ledger`),
//! for profiling the append path without building the CLI:
//! `cargo run --release -p cutover-ledger --example append_bench -- DIR EVENTS [BATCH]`.

use std::time::Instant;

use cutover_ledger::{
    Digest, EventBody, FailureClass, Ledger, Micros, Reason, RunKind, RunOutcome, WriteOp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let events: u64 = args[2].parse()?;
    let batch_size: usize = args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(2000);
    let mut ledger = Ledger::create(&dir)?;
    let mut workload = Workload::new(7);
    let started = Instant::now();
    let run = ledger.start_run(
        RunKind::Benchmark,
        "export:synthetic",
        "sandbox:highlevel",
        Some(Digest::of(b"benchmark map")),
    )?;
    let mut batch = Vec::with_capacity(batch_size);
    while ledger.head().seq + (batch.len() as u64) < events.saturating_sub(1) {
        workload.next_events(&mut ledger, &mut batch)?;
        if batch.len() >= batch_size {
            ledger.append(run, batch.drain(..))?;
        }
    }
    batch.truncate(events.saturating_sub(1 + ledger.head().seq) as usize);
    ledger.append(
        run,
        batch.drain(..).chain([EventBody::RunFinished {
            outcome: RunOutcome::Completed,
            detail: "benchmark".into(),
        }]),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let n = ledger.head().seq;
    println!(
        "append {n} events in {secs:.2} s: {:.0} events/s",
        n as f64 / secs
    );
    drop(ledger);
    if std::env::var("VERIFY").is_ok() {
        let t = Instant::now();
        let ledger = Ledger::open(&dir)?;
        println!("open {:.2} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        ledger.verify()?;
        println!("verify {:.2} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let r = ledger.replay_projections()?;
        println!("replay {:.2} s", t.elapsed().as_secs_f64());
        println!("equal {}", r == ledger.projection_snapshot()?);
    }
    Ok(())
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
