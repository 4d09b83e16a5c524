//! Crash safety, sled-style: a child process appends to a ledger and reports
//! each durable head on stdout; the parent SIGKILLs it at a random moment,
//! reopens the ledger and checks the invariants — the chain verifies, seqs
//! have no gap, no event is torn, every event reported durable is present
//! with the reported hash, every event's blob is there, and the projections
//! equal a full replay. Many
//! rounds on the same ledger, so each round also recovers from the last kill.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cutover_ledger::{Digest, EventBody, Ledger, Micros, RunKind, WriteOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0xC4A5_2026;
const ROUNDS: usize = 40;
const CHILD_ENV: &str = "CUTOVER_LEDGER_CRASH_CHILD";

/// The child: appends forever (until killed), printing `durable <seq> <hash>` after each flushed append.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var("CUTOVER_CRASH_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ledger = Ledger::open_or_create(&dir).expect("child opens the ledger");
    let run = ledger
        .start_run(RunKind::Full, "export:crash", "sandbox:twenty", None)
        .unwrap();
    println!("durable {} {}", ledger.head().seq, ledger.head().hash);
    let mut next_key = ledger.head().seq * 10;
    loop {
        let mut batch = Vec::new();
        for _ in 0..rng.gen_range(1..40) {
            next_key += 1;
            let key = next_key.to_string();
            let row: Vec<u8> = (0..rng.gen_range(50..600)).map(|_| rng.gen()).collect();
            let content_hash = ledger.put_blob(&row).unwrap();
            batch.push(EventBody::Extracted {
                entity: "Patient".into(),
                key: key.clone(),
                content_hash,
                modified_at: Some(Micros::now()),
            });
            batch.push(EventBody::Transformed {
                entity: "Patient".into(),
                key: key.clone(),
                object: "person".into(),
                payload_hash: content_hash,
                map_hash: Digest::ZERO,
            });
        }
        if rng.gen_bool(0.2) {
            // Buffered appends are not reported durable; they may or may not survive.
            ledger.append_buffered(run, batch).unwrap();
            continue;
        }
        let first = ledger.append(run, batch).unwrap();
        let intent = ledger.head().seq + 1;
        ledger
            .append(
                run,
                [
                    EventBody::WriteIntended {
                        op: WriteOp::Create,
                        object: "person".into(),
                        entity: "Patient".into(),
                        key: next_key.to_string(),
                        idempotency_key: format!("person:{next_key}"),
                        payload_hash: Digest::of(&first.to_le_bytes()),
                        before_image: None,
                        dest_id: None,
                    },
                    EventBody::WriteConfirmed {
                        intent,
                        dest_id: format!("dest-{next_key}"),
                        response_hash: Digest::ZERO,
                    },
                ],
            )
            .unwrap();
        println!("durable {} {}", ledger.head().seq, ledger.head().hash);
    }
}

#[test]
fn sigkill_at_random_points_loses_nothing_reported_durable() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let exe = std::env::current_exe().unwrap();
    let mut total_kills = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &ledger_dir)
            .env("CUTOVER_CRASH_SEED", (SEED + round as u64).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last: Option<(u64, String)> = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("durable ") {
                    let mut parts = rest.split(' ');
                    let seq: u64 = parts.next().unwrap().parse().unwrap();
                    let hash = parts.next().unwrap().to_string();
                    last = Some((seq, hash));
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        if !status.success() {
            total_kills += 1;
        }
        let reported = reader.join().unwrap();

        let ledger = Ledger::open(&ledger_dir)
            .unwrap_or_else(|e| panic!("seed {SEED:#x} round {round}: reopen failed: {e}"));
        let verified = ledger
            .verify()
            .unwrap_or_else(|e| panic!("seed {SEED:#x} round {round}: verify failed: {e}"));
        assert_eq!(verified, ledger.head().seq);
        if let Some((seq, hash)) = reported {
            assert!(
                ledger.head().seq >= seq,
                "round {round}: seq {seq} was reported durable but the ledger ends at {}",
                ledger.head().seq
            );
            let event = ledger.event(seq).unwrap().expect("reported event present");
            assert_eq!(
                event.hash.to_hex(),
                hash,
                "round {round}: event {seq} differs from the one reported durable"
            );
        }
        assert_eq!(
            ledger.replay_projections().unwrap(),
            ledger.projection_snapshot().unwrap(),
            "round {round}: projections differ from replay"
        );
        // An event never lacks its blob: blobs are committed before the events naming them.
        ledger
            .scan(1, |event| {
                if let EventBody::Extracted { content_hash, .. } = &event.record.body {
                    assert!(
                        ledger
                            .event_blob(event.seq, content_hash)
                            .unwrap_or_else(|e| panic!("round {round}: blob of {}: {e}", event.seq))
                            .is_some(),
                        "round {round}: event {} lacks its blob {content_hash}",
                        event.seq
                    );
                }
                Ok(true)
            })
            .unwrap();
    }
    assert!(
        total_kills >= ROUNDS / 2,
        "the child was killed mid-run in only {total_kills} of {ROUNDS} rounds"
    );
    let ledger = Ledger::open(&ledger_dir).unwrap();
    assert!(
        ledger.head().seq > 1000,
        "too few events written across the rounds ({}) to mean much",
        ledger.head().seq
    );
}
