//! Golden files: a trail written by format version 1 must read, verify and
//! mean the same thing in every later build. `golden/v1/trail.jsonl` was
//! written once (with `UPDATE_GOLDEN=1`) and is never regenerated for v1: if
//! the encoding has to change, add a version, keep the v1 decoder, and keep
//! this file passing.

use std::path::PathBuf;

use base64::Engine as _;
use cutover_ledger::{
    decode_event, encode_event, Compensation, Digest, EventBody, EventRecord, FailureClass, Ledger,
    Micros, Reason, RunKind, RunOutcome, WriteOp,
};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1/trail.jsonl")
}

/// One event of every kind, with fixed times, in the order they are appended.
fn expected_records() -> Vec<EventRecord> {
    let at = |s: i64| Micros(1_763_000_000_000_000 + s * 1_000_123);
    let bodies = vec![
        EventBody::RunStarted {
            kind: RunKind::Full,
            source: "export:/data/panda".into(),
            destination: "twenty:https://crm.example".into(),
            map_hash: Some(Digest::of(b"map")),
            tool_version: "0.1.0".into(),
        },
        EventBody::MapConfirmed {
            map_hash: Digest::of(b"map"),
        },
        EventBody::SchemaChanged {
            element: "object".into(),
            name: "perioExam".into(),
            dest_id: "0b8e4a4c-1b22-4a4f-9a0e-3c5b7a1d2e3f".into(),
            created: true,
        },
        EventBody::Extracted {
            entity: "Patient".into(),
            key: "1001".into(),
            content_hash: Digest::of(b"row 1001"),
            modified_at: Some(at(-86_400)),
        },
        EventBody::Transformed {
            entity: "Patient".into(),
            key: "1001".into(),
            object: "person".into(),
            payload_hash: Digest::of(b"person 1001"),
            map_hash: Digest::of(b"map"),
        },
        EventBody::Quarantined {
            entity: "Patient".into(),
            key: "1002".into(),
            reasons: vec![
                Reason {
                    code: "email_invalid".into(),
                    detail: "Patient.csv line 3 column Email".into(),
                },
                Reason {
                    code: "future_birth_date".into(),
                    detail: "DateOfBirth".into(),
                },
            ],
        },
        EventBody::WriteIntended {
            op: WriteOp::Create,
            object: "person".into(),
            entity: "Patient".into(),
            key: "1001".into(),
            idempotency_key: "person:Patient:1001".into(),
            payload_hash: Digest::of(b"person 1001"),
            before_image: None,
            dest_id: None,
        },
        EventBody::WriteConfirmed {
            intent: 7,
            dest_id: "6f1c2a9e-0000-4000-8000-000000001001".into(),
            response_hash: Digest::of(b"response"),
        },
        EventBody::WriteIntended {
            op: WriteOp::Update,
            object: "person".into(),
            entity: "Patient".into(),
            key: "1001".into(),
            idempotency_key: "person:Patient:1001".into(),
            payload_hash: Digest::of(b"person 1001 v2"),
            before_image: Some(Digest::of(b"before")),
            dest_id: Some("6f1c2a9e-0000-4000-8000-000000001001".into()),
        },
        EventBody::WriteFailed {
            intent: 9,
            class: FailureClass::Transient,
            status: Some(429),
            message: "rate limited".into(),
        },
        EventBody::Checkpoint {
            label: "cutover".into(),
            watermarks: vec![("Patient".into(), at(-60)), ("PerioExam".into(), at(-30))],
        },
        EventBody::Compensated {
            intent: 7,
            outcome: Compensation::Deleted,
            detail: "rollback of run 1".into(),
        },
        EventBody::RunFinished {
            outcome: RunOutcome::CompletedWithFailures,
            detail: "1 quarantined".into(),
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| EventRecord {
            at: at(i as i64),
            run: 1,
            body,
        })
        .collect()
}

fn build_export() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path().join("l")).unwrap();
    for record in expected_records() {
        ledger
            .append_at(record.at, record.run, [record.body])
            .unwrap();
    }
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).unwrap();
    out
}

#[test]
fn v1_golden_trail_still_reads_verifies_and_round_trips() {
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !path.exists() {
        std::fs::write(&path, build_export()).unwrap();
    }
    let golden = std::fs::read(&path).expect("golden/v1/trail.jsonl is committed");

    // It verifies as a chain.
    let head = cutover_ledger::verify_jsonl(&mut golden.as_slice()).unwrap();
    assert_eq!(head.seq, expected_records().len() as u64);

    // Its records decode to exactly the events they were written from, and
    // today's encoder still writes the same bytes for them.
    let lines: Vec<serde_json::Value> = golden
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let events = &lines[1..lines.len() - 1];
    for (line, expected) in events.iter().zip(expected_records()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line["record"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            decode_event(&bytes).unwrap(),
            expected,
            "seq {}",
            line["seq"]
        );
        assert_eq!(
            encode_event(&expected),
            bytes,
            "the v1 encoding of seq {} changed",
            line["seq"]
        );
    }

    // Import rebuilds a store whose export is byte-identical, and whose projections are sound.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::import_jsonl(&mut golden.as_slice(), dir.path().join("imported")).unwrap();
    assert_eq!(ledger.verify().unwrap(), head.seq);
    let mut again = Vec::new();
    ledger.export_jsonl(&mut again).unwrap();
    assert!(
        again == golden,
        "export after import differs from the golden trail"
    );
    assert_eq!(
        ledger.replay_projections().unwrap(),
        ledger.projection_snapshot().unwrap()
    );

    // Building the same history today gives the same trail.
    assert!(
        build_export() == golden,
        "the same events no longer export to the golden bytes"
    );
}
