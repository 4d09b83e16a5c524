//! Property: the projections the ledger maintains incrementally — across
//! commits of any size, buffered appends and reopenings — equal the ones a
//! full replay of the events builds from scratch.

use cutover_ledger::{
    Compensation, Digest, EventBody, FailureClass, Ledger, Micros, Reason, RunKind, RunOutcome,
    WriteOp,
};
use proptest::prelude::*;

/// One step of a generated history, resolved against what has happened so far.
#[derive(Debug, Clone)]
enum Step {
    Extract { key: u8, content: u8 },
    Transform { key: u8, object: u8, payload: u8 },
    Quarantine { key: u8 },
    Intend { key: u8, object: u8, op: u8 },
    Confirm { pick: u8, dest: u16 },
    Fail { pick: u8, terminal: bool },
    Compensate { pick: u8, how: u8 },
    Checkpoint { entity: u8, at: i64 },
    Schema { name: u8 },
    NewRun,
    FinishRun,
    Commit { flush: bool },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..30, any::<u8>()).prop_map(|(key, content)| Step::Extract { key, content }),
        4 => (0u8..30, 0u8..3, any::<u8>()).prop_map(|(key, object, payload)| Step::Transform { key, object, payload }),
        1 => (0u8..30).prop_map(|key| Step::Quarantine { key }),
        4 => (0u8..30, 0u8..3, 0u8..3).prop_map(|(key, object, op)| Step::Intend { key, object, op }),
        4 => (any::<u8>(), 0u16..50).prop_map(|(pick, dest)| Step::Confirm { pick, dest }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(pick, terminal)| Step::Fail { pick, terminal }),
        1 => (any::<u8>(), 0u8..4).prop_map(|(pick, how)| Step::Compensate { pick, how }),
        1 => (0u8..4, 0i64..1_000_000).prop_map(|(entity, at)| Step::Checkpoint { entity, at }),
        1 => (0u8..5).prop_map(|name| Step::Schema { name }),
        1 => Just(Step::NewRun),
        1 => Just(Step::FinishRun),
        3 => any::<bool>().prop_map(|flush| Step::Commit { flush }),
        1 => Just(Step::Reopen),
    ]
}

const ENTITIES: [&str; 4] = ["Patient", "PerioExam", "Appointment", "ProgressNote"];
const OBJECTS: [&str; 3] = ["person", "perioExam", "note"];

fn run_history(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let mut ledger = Ledger::create(&path).unwrap();
    let mut run = ledger
        .start_run(RunKind::Full, "export:p", "sandbox:twenty", None)
        .unwrap();
    let mut pending: Vec<EventBody> = Vec::new();
    let mut intents: Vec<u64> = Vec::new();
    for step in steps {
        let entity = |key: u8| ENTITIES[key as usize % ENTITIES.len()].to_string();
        // Seq the next pending event will get.
        let next_seq = ledger.head().seq + pending.len() as u64 + 1;
        match step {
            Step::Extract { key, content } => pending.push(EventBody::Extracted {
                entity: entity(*key),
                key: key.to_string(),
                content_hash: Digest::of(&[*content]),
                modified_at: Some(Micros(*content as i64)),
            }),
            Step::Transform {
                key,
                object,
                payload,
            } => pending.push(EventBody::Transformed {
                entity: entity(*key),
                key: key.to_string(),
                object: OBJECTS[*object as usize].into(),
                payload_hash: Digest::of(&[*payload]),
                map_hash: Digest::ZERO,
            }),
            Step::Quarantine { key } => pending.push(EventBody::Quarantined {
                entity: entity(*key),
                key: key.to_string(),
                reasons: vec![Reason {
                    code: "phone_invalid".into(),
                    detail: "MobilePhone".into(),
                }],
            }),
            Step::Intend { key, object, op } => {
                let op = [WriteOp::Create, WriteOp::Update, WriteOp::Delete][*op as usize];
                pending.push(EventBody::WriteIntended {
                    op,
                    object: OBJECTS[*object as usize].into(),
                    entity: entity(*key),
                    key: key.to_string(),
                    idempotency_key: format!("{object}:{key}"),
                    payload_hash: Digest::of(&[*key, *object]),
                    before_image: (op != WriteOp::Create).then(|| Digest::of(b"before")),
                    dest_id: (op != WriteOp::Create).then(|| format!("d{key}")),
                });
                intents.push(next_seq);
            }
            Step::Confirm { pick, dest } if !intents.is_empty() => {
                pending.push(EventBody::WriteConfirmed {
                    intent: intents[*pick as usize % intents.len()],
                    dest_id: format!("d{dest}"),
                    response_hash: Digest::of(&dest.to_le_bytes()),
                })
            }
            Step::Fail { pick, terminal } if !intents.is_empty() => {
                pending.push(EventBody::WriteFailed {
                    intent: intents[*pick as usize % intents.len()],
                    class: if *terminal {
                        FailureClass::Terminal
                    } else {
                        FailureClass::Transient
                    },
                    status: Some(500),
                    message: "x".into(),
                })
            }
            Step::Compensate { pick, how } if !intents.is_empty() => {
                pending.push(EventBody::Compensated {
                    intent: intents[*pick as usize % intents.len()],
                    outcome: [
                        Compensation::Deleted,
                        Compensation::Restored,
                        Compensation::Conflict,
                        Compensation::AlreadyGone,
                    ][*how as usize],
                    detail: String::new(),
                })
            }
            Step::Confirm { .. } | Step::Fail { .. } | Step::Compensate { .. } => {}
            Step::Checkpoint { entity, at } => pending.push(EventBody::Checkpoint {
                label: "cp".into(),
                watermarks: vec![(ENTITIES[*entity as usize].into(), Micros(*at))],
            }),
            Step::Schema { name } => pending.push(EventBody::SchemaChanged {
                element: "field".into(),
                name: format!("f{name}"),
                dest_id: format!("id{name}"),
                created: name % 2 == 0,
            }),
            Step::NewRun => {
                ledger.append(run, pending.drain(..)).unwrap();
                run = ledger
                    .start_run(RunKind::Delta, "export:p", "sandbox:twenty", None)
                    .unwrap();
            }
            Step::FinishRun => pending.push(EventBody::RunFinished {
                outcome: RunOutcome::Completed,
                detail: String::new(),
            }),
            Step::Commit { flush } => {
                if *flush {
                    ledger.append(run, pending.drain(..)).unwrap();
                } else {
                    ledger.append_buffered(run, pending.drain(..)).unwrap();
                }
            }
            Step::Reopen => {
                ledger.append(run, pending.drain(..)).unwrap();
                drop(ledger);
                ledger = Ledger::open(&path).unwrap();
            }
        }
    }
    ledger.append(run, pending.drain(..)).unwrap();
    let incremental = ledger.projection_snapshot().unwrap();
    let replayed = ledger.replay_projections().unwrap();
    prop_assert_eq!(&incremental, &replayed);
    // And after a reopen (projections read back from disk).
    drop(ledger);
    let ledger = Ledger::open(&path).unwrap();
    prop_assert_eq!(ledger.projection_snapshot().unwrap(), replayed);
    prop_assert!(ledger.verify().is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_projections_equal_full_replay(steps in prop::collection::vec(step(), 1..160)) {
        run_history(&steps)?;
    }
}

/// The projections answer what the engine asks, after a known history.
#[test]
fn projections_answer_state_questions() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path().join("l")).unwrap();
    let run = ledger
        .start_run(RunKind::Full, "export:p", "sandbox:highlevel", None)
        .unwrap();
    let intent = ledger.head().seq + 3;
    ledger
        .append(
            run,
            [
                EventBody::Extracted {
                    entity: "Patient".into(),
                    key: "7".into(),
                    content_hash: Digest::of(b"row"),
                    modified_at: None,
                },
                EventBody::Transformed {
                    entity: "Patient".into(),
                    key: "7".into(),
                    object: "contact".into(),
                    payload_hash: Digest::of(b"body"),
                    map_hash: Digest::ZERO,
                },
                EventBody::WriteIntended {
                    op: WriteOp::Create,
                    object: "contact".into(),
                    entity: "Patient".into(),
                    key: "7".into(),
                    idempotency_key: "contact:Patient:7".into(),
                    payload_hash: Digest::of(b"body"),
                    before_image: None,
                    dest_id: None,
                },
            ],
        )
        .unwrap();
    let state = ledger.record_state("Patient", "7").unwrap().unwrap();
    assert_eq!(
        state.targets["contact"].pending_intent,
        Some(intent),
        "an unconfirmed intent is visible for resume"
    );
    ledger
        .append(
            run,
            [EventBody::WriteConfirmed {
                intent,
                dest_id: "c-1".into(),
                response_hash: Digest::ZERO,
            }],
        )
        .unwrap();
    assert_eq!(
        ledger
            .dest_id("Patient", "7", "contact")
            .unwrap()
            .as_deref(),
        Some("c-1")
    );
    assert_eq!(
        ledger.source_of("contact", "c-1").unwrap().unwrap().key,
        "7"
    );
    let state = ledger.record_state("Patient", "7").unwrap().unwrap();
    assert_eq!(
        state.targets["contact"].confirmed_hash,
        Some(Digest::of(b"body"))
    );
    assert_eq!(state.targets["contact"].pending_intent, None);
    ledger
        .append(
            run,
            [EventBody::Compensated {
                intent,
                outcome: Compensation::Deleted,
                detail: String::new(),
            }],
        )
        .unwrap();
    assert_eq!(
        ledger.source_of("contact", "c-1").unwrap(),
        None,
        "a deleted record leaves the destination index"
    );
    ledger
        .append(
            run,
            [EventBody::Checkpoint {
                label: "cutover".into(),
                watermarks: vec![("Patient".into(), Micros(42))],
            }],
        )
        .unwrap();
    assert_eq!(ledger.watermarks().unwrap()["Patient"], Micros(42));
    ledger.finish_run(run, RunOutcome::Completed, "").unwrap();
    let summary = ledger.run_summary(run).unwrap().unwrap();
    assert_eq!(summary.kind, Some(RunKind::Full));
    assert_eq!(summary.outcome, Some(RunOutcome::Completed));
    assert_eq!(summary.counts["write_intended"], 1);
    assert_eq!(summary.last_seq, ledger.head().seq);
}
