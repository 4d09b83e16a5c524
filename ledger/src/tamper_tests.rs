//! Tamper detection: many random alterations, deletions, insertions,
//! reorderings and tail truncations of the stored chain and of its JSONL
//! export; every one must be caught. Seeds are named so a failure can be replayed.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{chain_hash, Digest, EventBody, Micros, Reason, RunKind, WriteOp};
use crate::ledger::{Head, Ledger};

const STORE_SEED: u64 = 0x5EED_2026_0001;
const JSONL_SEED: u64 = 0x5EED_2026_0002;

fn sample_ledger(dir: &std::path::Path, events: usize) -> Ledger {
    let mut ledger = Ledger::create(dir).unwrap();
    let run = ledger
        .start_run(RunKind::Full, "export:/x", "sandbox:twenty", None)
        .unwrap();
    let mut n = 1;
    while n < events {
        let key = n.to_string();
        let mut batch = vec![EventBody::Extracted {
            entity: "Patient".into(),
            key: key.clone(),
            content_hash: Digest::of(key.as_bytes()),
            modified_at: Some(Micros(n as i64)),
        }];
        if n % 7 == 0 {
            batch.push(EventBody::Quarantined {
                entity: "Patient".into(),
                key: key.clone(),
                reasons: vec![Reason {
                    code: "email_invalid".into(),
                    detail: "Email".into(),
                }],
            });
        } else {
            batch.push(EventBody::WriteIntended {
                op: WriteOp::Create,
                object: "person".into(),
                entity: "Patient".into(),
                key: key.clone(),
                idempotency_key: format!("person:{key}"),
                payload_hash: Digest::of(b"p"),
                before_image: None,
                dest_id: None,
            });
        }
        n += batch.len();
        // Small commits so events spread over many chunks.
        ledger.append(run, batch).unwrap();
    }
    ledger
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What was done, for the failure message (read through Debug).
#[derive(Debug)]
#[allow(dead_code)]
enum Mutation {
    AlterByte { seq: usize, offset: usize },
    Delete { seq: usize },
    InsertForged { at: usize },
    Swap { a: usize, b: usize },
    TruncateTail { removed: usize, head_fixed: bool },
    RewriteHistory { from: usize },
}

fn mutate(rng: &mut ChaCha8Rng, entries: &mut Vec<(Digest, Vec<u8>)>) -> (Mutation, Option<Head>) {
    let n = entries.len();
    let head_of = |entries: &Vec<(Digest, Vec<u8>)>| {
        entries.last().map(|(h, _)| Head {
            seq: entries.len() as u64,
            hash: *h,
        })
    };
    match rng.gen_range(0..6) {
        0 => {
            let i = rng.gen_range(0..n);
            let (hash, encoded) = &mut entries[i];
            let offset = rng.gen_range(0..32 + encoded.len());
            let bit = 1u8 << rng.gen_range(0..8);
            if offset < 32 {
                hash.0[offset] ^= bit;
            } else {
                encoded[offset - 32] ^= bit;
            }
            let head = head_of(entries);
            (Mutation::AlterByte { seq: i + 1, offset }, head)
        }
        1 => {
            let i = rng.gen_range(0..n - 1);
            entries.remove(i);
            (Mutation::Delete { seq: i + 1 }, head_of(entries))
        }
        2 => {
            // A forged event, correctly chained to its predecessor.
            let at = rng.gen_range(1..n);
            let prev = entries[at - 1].0;
            let encoded = crate::codec::encode_event(&crate::event::EventRecord {
                at: Micros(1),
                run: 1,
                body: EventBody::Extracted {
                    entity: "Patient".into(),
                    key: "forged".into(),
                    content_hash: Digest::ZERO,
                    modified_at: None,
                },
            });
            let hash = chain_hash(&prev, at as u64 + 1, &encoded);
            entries.insert(at, (hash, encoded));
            (Mutation::InsertForged { at: at + 1 }, head_of(entries))
        }
        3 => {
            let a = rng.gen_range(0..n - 1);
            let b = rng.gen_range(a + 1..n);
            entries.swap(a, b);
            (Mutation::Swap { a: a + 1, b: b + 1 }, head_of(entries))
        }
        4 => {
            let removed = rng.gen_range(1..=n.min(20));
            entries.truncate(n - removed);
            let head_fixed = rng.gen_bool(0.5);
            let head = if head_fixed {
                head_of(entries)
            } else {
                Some(Head {
                    seq: n as u64,
                    hash: Digest::ZERO,
                })
            };
            (
                Mutation::TruncateTail {
                    removed,
                    head_fixed,
                },
                head,
            )
        }
        _ => {
            // Alter one event and re-chain everything after it, head record included:
            // only the HEAD anchor outside the store can tell.
            let from = rng.gen_range(0..n);
            let last = entries[from].1.len() - 1;
            entries[from].1[last] ^= 1;
            let mut prev = if from == 0 {
                Digest::ZERO
            } else {
                entries[from - 1].0
            };
            for (i, entry) in entries.iter_mut().enumerate().skip(from) {
                entry.0 = chain_hash(&prev, i as u64 + 1, &entry.1);
                prev = entry.0;
            }
            (
                Mutation::RewriteHistory { from: from + 1 },
                head_of(entries),
            )
        }
    }
}

#[test]
fn every_store_mutation_is_detected() {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    let entries = {
        let ledger = sample_ledger(&original, 120);
        assert_eq!(ledger.verify().unwrap(), ledger.head().seq);
        ledger.raw_entries()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(STORE_SEED);
    for round in 0..150 {
        let dir = base.path().join(format!("m{round}"));
        copy_dir(&original, &dir);
        let mut mutated = entries.clone();
        let (mutation, head) = mutate(&mut rng, &mut mutated);
        {
            let ledger = Ledger::open(&dir).unwrap();
            ledger.tamper(&mutated, head);
        }
        let outcome = Ledger::open(&dir).and_then(|l| l.verify());
        assert!(
            outcome.is_err(),
            "seed {STORE_SEED:#x} round {round}: {mutation:?} went undetected"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_jsonl_mutation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sample_ledger(&dir.path().join("l"), 60);
    let mut export = Vec::new();
    ledger.export_jsonl(&mut export).unwrap();
    assert!(crate::verify_jsonl(&mut export.as_slice()).is_ok());
    let text = String::from_utf8(export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(JSONL_SEED);
    for round in 0..2000 {
        let mut mutated: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let what = match rng.gen_range(0..5) {
            0 => {
                // Change one byte of one line to another printable character.
                let i = rng.gen_range(0..mutated.len());
                let mut bytes = mutated[i].clone().into_bytes();
                let at = rng.gen_range(0..bytes.len());
                let old = bytes[at];
                let mut new = old;
                while new == old {
                    new = rng.gen_range(0x20u8..0x7f);
                }
                bytes[at] = new;
                mutated[i] = String::from_utf8(bytes).unwrap();
                format!(
                    "byte {at} of line {} {:?}->{:?}",
                    i + 1,
                    old as char,
                    new as char
                )
            }
            1 => {
                let i = rng.gen_range(1..mutated.len() - 1);
                mutated.remove(i);
                format!("line {} deleted", i + 1)
            }
            2 => {
                let from = rng.gen_range(0..mutated.len());
                let to = rng.gen_range(1..mutated.len());
                let line = mutated[from].clone();
                mutated.insert(to, line);
                format!("line {} inserted again at {}", from + 1, to + 1)
            }
            3 => {
                let mut order: Vec<usize> = (1..mutated.len() - 1).collect();
                order.shuffle(&mut rng);
                let (a, b) = (order[0], order[1]);
                mutated.swap(a, b);
                format!("lines {} and {} swapped", a + 1, b + 1)
            }
            _ => {
                let cut = rng.gen_range(1..=mutated.len().min(10));
                mutated.truncate(mutated.len() - cut);
                format!("last {cut} lines cut")
            }
        };
        let joined = mutated.join("\n") + "\n";
        let result = crate::verify_jsonl(&mut joined.as_bytes());
        assert!(
            result.is_err(),
            "seed {JSONL_SEED:#x} round {round}: {what} went undetected"
        );
    }
}
