//! Projection version 1 also stored intents by seq (`i`) and the
//! destination-id index (`d`); version 2 reads both from the events and the
//! record states. A ledger with those keys opens, loses them once, and its
//! projections equal a replay. And the open intents the ledger keeps across
//! commits (projection.rs) follow stored commits only.

use std::path::{Path, PathBuf};

use crate::event::{Compensation, Digest, EventBody, FailureClass, RunKind, WriteOp};
use crate::ledger::Ledger;
use crate::projection::{keys, IntentOutcome, TargetStatus};
use crate::store::{Commit, SledStore, Store};
use crate::tamper_tests::copy_dir;
use crate::LedgerError;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-layout-1")
}

/// The store itself, under the ledger (sled releases its lock shortly after a close).
fn open_store(ledger_dir: &Path) -> SledStore {
    let mut attempts = 0;
    loop {
        match SledStore::open(&ledger_dir.join("store"), &ledger_dir.join("packs")) {
            Ok(store) => return store,
            Err(_) if attempts < 40 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    }
}

fn keys_under(store: &SledStore, prefix: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .scan_projections(&[prefix], &mut |k, _| {
            out.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
    out
}

/// (projection version, applied seq).
fn marker(store: &SledStore) -> (u32, u64) {
    let bytes = store.projection(b"#applied").unwrap().expect("a marker");
    assert_eq!(bytes.len(), 12);
    (
        u32::from_be_bytes(bytes[..4].try_into().unwrap()),
        u64::from_be_bytes(bytes[4..].try_into().unwrap()),
    )
}

fn version_1_marker(applied: u64) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend_from_slice(&applied.to_be_bytes());
    out
}

fn assert_no_old_keys(ledger: &Ledger) {
    let snapshot = ledger.projection_snapshot().unwrap();
    let old: Vec<_> = snapshot
        .0
        .keys()
        .filter(|k| k[0] == keys::OLD_INTENT || k[0] == keys::OLD_DEST)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(old.is_empty(), "keys projection version 1 kept: {old:?}");
}

/// `tests/fixtures/store-layout-1` was written by a build with projection
/// version 1: three confirmed creates, so three intents and three index entries.
#[test]
fn the_version_1_fixture_loses_its_intent_and_index_keys_once_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    copy_dir(&fixture(), &path);
    {
        let store = open_store(&path);
        assert_eq!(marker(&store), (1, 15));
        assert_eq!(keys_under(&store, keys::OLD_INTENT).len(), 3);
        assert_eq!(keys_under(&store, keys::OLD_DEST).len(), 3);
    }

    let ledger = Ledger::open(&path).unwrap();
    assert_no_old_keys(&ledger);
    let replayed = ledger.replay_projections().unwrap();
    assert_eq!(ledger.projection_snapshot().unwrap(), replayed);

    // What the dropped keys answered is still answered.
    let mut intents = Vec::new();
    ledger
        .intents(|seq, intent| {
            intents.push((seq, intent));
            Ok(true)
        })
        .unwrap();
    assert_eq!(intents.len(), 3);
    for (i, (seq, intent)) in intents.iter().enumerate() {
        let key = format!("{}", 1000 + i);
        assert_eq!(intent.key, key);
        assert_eq!(intent.op, WriteOp::Create);
        assert_eq!(intent.dest_id.as_deref(), Some(&*format!("dest-{key}")));
        assert!(
            matches!(intent.outcome, IntentOutcome::Confirmed { seq: at, .. } if at == seq + 1),
            "{:?}",
            intent.outcome
        );
        assert_eq!(ledger.intent(*seq).unwrap().as_ref(), Some(intent));
        assert_eq!(
            ledger.source_of("person", &format!("dest-{key}")).unwrap(),
            Some(crate::DestRef {
                entity: "Patient".into(),
                key
            })
        );
    }
    let stats = ledger.stats().unwrap();
    assert_eq!(stats.events_by_kind["write_confirmed"], 3);
    drop(ledger);

    {
        let store = open_store(&path);
        assert_eq!(
            marker(&store),
            (2, 15),
            "marked version 2, applied as before"
        );
        assert!(keys_under(&store, keys::OLD_INTENT).is_empty());
        assert!(keys_under(&store, keys::OLD_DEST).is_empty());
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.projection_snapshot().unwrap(), replayed);
}

fn intended(op: WriteOp, key: &str, dest_id: Option<&str>) -> EventBody {
    EventBody::WriteIntended {
        op,
        object: "person".into(),
        entity: "Patient".into(),
        key: key.into(),
        idempotency_key: format!("person:Patient:{key}"),
        payload_hash: Digest::of(key.as_bytes()),
        before_image: (op != WriteOp::Create).then(|| Digest::of(b"before")),
        dest_id: dest_id.map(str::to_string),
    }
}

fn confirmed(intent: u64, dest_id: &str) -> EventBody {
    EventBody::WriteConfirmed {
        intent,
        dest_id: dest_id.into(),
        response_hash: Digest::ZERO,
    }
}

/// A version-1 ledger whose projections lag its events (a crash between the
/// two batches of a commit) and carry stale intent and index keys: the keys go,
/// then the gap is replayed, its answers reading their intents from the log.
#[test]
fn a_version_1_ledger_behind_its_events_drops_the_old_keys_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, path, run) = ledger_with_full_run(dir.path());
    let create = ledger.head().seq + 1;
    ledger
        .append(
            run,
            [
                intended(WriteOp::Create, "1", None),
                intended(WriteOp::Update, "2", Some("p-2")),
            ],
        )
        .unwrap();
    let update = create + 1;
    let applied = ledger.head().seq;
    let behind = ledger.projection_snapshot().unwrap();
    ledger
        .append(
            run,
            [
                confirmed(create, "p-1"),
                EventBody::WriteFailed {
                    intent: update,
                    class: FailureClass::Terminal,
                    status: Some(422),
                    message: "no".into(),
                },
            ],
        )
        .unwrap();
    ledger
        .append(
            run,
            [EventBody::Compensated {
                intent: create,
                outcome: Compensation::Deleted,
                detail: String::new(),
            }],
        )
        .unwrap();
    drop(ledger);

    {
        let store = open_store(&path);
        store.clear_projections().unwrap();
        let mut projections: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            behind.0.into_iter().map(|(k, v)| (k, Some(v))).collect();
        // More stale keys than one removal batch holds.
        for seq in [create, update].into_iter().chain(1_000..3_500) {
            let mut k = vec![keys::OLD_INTENT];
            k.extend_from_slice(&seq.to_be_bytes());
            projections.push((k, Some(b"stale".to_vec())));
        }
        projections.push((b"dperson\0p-1".to_vec(), Some(b"stale".to_vec())));
        projections.push((b"#applied".to_vec(), Some(version_1_marker(applied))));
        store
            .commit(Commit {
                projections,
                ..Commit::default()
            })
            .unwrap();
        store.flush().unwrap();
    }

    let ledger = Ledger::open(&path).unwrap();
    assert_no_old_keys(&ledger);
    assert_eq!(
        ledger.projection_snapshot().unwrap(),
        ledger.replay_projections().unwrap()
    );
    let target = &ledger
        .record_state("Patient", "1")
        .unwrap()
        .unwrap()
        .targets["person"];
    assert_eq!(target.status, TargetStatus::Compensated);
    assert_eq!(target.dest_id.as_deref(), Some("p-1"));
    assert_eq!(ledger.source_of("person", "p-1").unwrap(), None);
    assert!(matches!(
        ledger.intent(create).unwrap().unwrap().outcome,
        IntentOutcome::Compensated {
            outcome: Compensation::Deleted,
            ..
        }
    ));
    assert!(matches!(
        ledger.intent(update).unwrap().unwrap().outcome,
        IntentOutcome::Failed {
            class: FailureClass::Terminal,
            ..
        }
    ));
    drop(ledger);
    let store = open_store(&path);
    assert_eq!(marker(&store).0, 2);
}

/// The open intents follow stored commits: an intent joins when its commit is
/// stored and leaves when confirmed or failed; a commit that fails changes
/// nothing (its seqs go to other events, which must not pass for intents).
#[test]
fn open_intents_follow_stored_commits_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, path, run) = ledger_with_full_run(dir.path());
    let a = ledger.head().seq + 1;
    ledger
        .append(
            run,
            [
                intended(WriteOp::Create, "1", None),
                intended(WriteOp::Create, "2", None),
                intended(WriteOp::Create, "3", None),
                confirmed(a + 2, "p-3"),
            ],
        )
        .unwrap();
    assert_eq!(ledger.open_intent_seqs(), vec![a, a + 1]);
    ledger.append(run, [confirmed(a, "p-1")]).unwrap();
    assert_eq!(ledger.open_intent_seqs(), vec![a + 1]);

    // A commit refused for a dangling answer: its intent never became open.
    let refused = ledger.head().seq + 1;
    let err = ledger
        .append(
            run,
            [intended(WriteOp::Create, "4", None), confirmed(run, "p-x")],
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Chain { .. }), "{err}");
    assert_eq!(ledger.head().seq, refused - 1);
    assert_eq!(ledger.open_intent_seqs(), vec![a + 1]);
    // That seq now holds something else; an answer naming it dangles.
    ledger
        .append(
            run,
            [EventBody::Extracted {
                entity: "Patient".into(),
                key: "4".into(),
                content_hash: Digest::of(b"4"),
                modified_at: None,
            }],
        )
        .unwrap();
    let err = ledger.append(run, [confirmed(refused, "p-4")]).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Chain { detail, .. } if detail.contains("not a write_intended")),
        "{err}"
    );

    // After a reopen nothing is open in memory; the answer reads its intent from the log.
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    assert!(ledger.open_intent_seqs().is_empty());
    ledger
        .append(
            run,
            [EventBody::WriteFailed {
                intent: a + 1,
                class: FailureClass::Transient,
                status: None,
                message: "timeout".into(),
            }],
        )
        .unwrap();
    assert_eq!(
        ledger
            .record_state("Patient", "2")
            .unwrap()
            .unwrap()
            .targets["person"]
            .status,
        TargetStatus::Failed
    );
    assert_eq!(
        ledger.projection_snapshot().unwrap(),
        ledger.replay_projections().unwrap()
    );
}

/// A new ledger at `dir/ledger` with a full run started: (ledger, its path, the run).
fn ledger_with_full_run(
    dir: &std::path::Path,
) -> (Ledger, std::path::PathBuf, crate::event::RunId) {
    let path = dir.join("ledger");
    let mut ledger = Ledger::create(&path).unwrap();
    let run = ledger
        .start_run(RunKind::Full, "export:x", "sandbox:twenty", None)
        .unwrap();
    (ledger, path, run)
}
