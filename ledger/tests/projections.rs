//! Property: the projections the ledger maintains incrementally — across
//! commits of any size, buffered appends and reopenings — equal the ones a
//! full replay of the events builds from scratch.

use std::collections::BTreeMap;

use cutover_ledger::{
    Compensation, Digest, EventBody, FailureClass, IntentOutcome, IntentRecord, Ledger, Micros,
    Reason, RunKind, RunOutcome, TargetStatus, WriteOp,
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
    // Every intent with its latest answer, as `Ledger::intents` must report it.
    let mut model: BTreeMap<u64, IntentRecord> = BTreeMap::new();
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
                let intent = IntentRecord {
                    run,
                    op,
                    object: OBJECTS[*object as usize].into(),
                    entity: entity(*key),
                    key: key.to_string(),
                    idempotency_key: format!("{object}:{key}"),
                    payload_hash: Digest::of(&[*key, *object]),
                    before_image: (op != WriteOp::Create).then(|| Digest::of(b"before")),
                    dest_id: (op != WriteOp::Create).then(|| format!("d{key}")),
                    outcome: IntentOutcome::Pending,
                };
                pending.push(EventBody::WriteIntended {
                    op,
                    object: intent.object.clone(),
                    entity: intent.entity.clone(),
                    key: intent.key.clone(),
                    idempotency_key: intent.idempotency_key.clone(),
                    payload_hash: intent.payload_hash,
                    before_image: intent.before_image,
                    dest_id: intent.dest_id.clone(),
                });
                intents.push(next_seq);
                model.insert(next_seq, intent);
            }
            Step::Confirm { pick, dest } if !intents.is_empty() => {
                let intent = intents[*pick as usize % intents.len()];
                let response_hash = Digest::of(&dest.to_le_bytes());
                let write = model.get_mut(&intent).unwrap();
                write.outcome = IntentOutcome::Confirmed {
                    seq: next_seq,
                    response_hash,
                };
                write.dest_id.get_or_insert_with(|| format!("d{dest}"));
                pending.push(EventBody::WriteConfirmed {
                    intent,
                    dest_id: format!("d{dest}"),
                    response_hash,
                })
            }
            Step::Fail { pick, terminal } if !intents.is_empty() => {
                let intent = intents[*pick as usize % intents.len()];
                let class = if *terminal {
                    FailureClass::Terminal
                } else {
                    FailureClass::Transient
                };
                model.get_mut(&intent).unwrap().outcome = IntentOutcome::Failed {
                    seq: next_seq,
                    class,
                };
                pending.push(EventBody::WriteFailed {
                    intent,
                    class,
                    status: Some(500),
                    message: "x".into(),
                })
            }
            Step::Compensate { pick, how } if !intents.is_empty() => {
                let intent = intents[*pick as usize % intents.len()];
                let outcome = [
                    Compensation::Deleted,
                    Compensation::Restored,
                    Compensation::Conflict,
                    Compensation::AlreadyGone,
                ][*how as usize];
                model.get_mut(&intent).unwrap().outcome = IntentOutcome::Compensated {
                    seq: next_seq,
                    outcome,
                };
                pending.push(EventBody::Compensated {
                    intent,
                    outcome,
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
    // The intents, read from the events: all at once, and one by one.
    let mut listed = BTreeMap::new();
    ledger
        .intents(|seq, intent| {
            listed.insert(seq, intent);
            Ok(true)
        })
        .unwrap();
    prop_assert_eq!(&listed, &model);
    for (seq, expected) in &model {
        let one = ledger.intent(*seq).unwrap().unwrap();
        let state = ledger
            .record_state(&expected.entity, &expected.key)
            .unwrap()
            .unwrap();
        if state.targets[&expected.object].pending_intent == Some(*seq) {
            // Still awaited: `intent` reads it as pending without looking for
            // answers; only a compensation (which rollback never writes for an
            // unanswered write) could have come.
            let unanswered = matches!(
                expected.outcome,
                IntentOutcome::Pending | IntentOutcome::Compensated { .. }
            );
            prop_assert!(unanswered, "{:?}", expected.outcome);
            prop_assert_eq!(one.outcome, IntentOutcome::Pending);
        } else {
            prop_assert_eq!(&one, expected);
        }
    }
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

fn extracted_and_transformed(key: &str) -> [EventBody; 2] {
    [
        EventBody::Extracted {
            entity: "Patient".into(),
            key: key.into(),
            content_hash: Digest::of(key.as_bytes()),
            modified_at: None,
        },
        EventBody::Transformed {
            entity: "Patient".into(),
            key: key.into(),
            object: "contact".into(),
            payload_hash: Digest::of(format!("body {key}").as_bytes()),
            map_hash: Digest::ZERO,
        },
    ]
}

fn intended(op: WriteOp, key: &str, dest_id: Option<&str>) -> EventBody {
    EventBody::WriteIntended {
        op,
        object: "contact".into(),
        entity: "Patient".into(),
        key: key.into(),
        idempotency_key: format!("contact:Patient:{key}"),
        payload_hash: Digest::of(format!("body {key}").as_bytes()),
        before_image: (op != WriteOp::Create).then(|| Digest::of(b"before")),
        dest_id: dest_id.map(str::to_string),
    }
}

fn confirmed(intent: u64, dest_id: &str) -> EventBody {
    EventBody::WriteConfirmed {
        intent,
        dest_id: dest_id.into(),
        response_hash: Digest::of(dest_id.as_bytes()),
    }
}

fn compensated(intent: u64, outcome: Compensation) -> EventBody {
    EventBody::Compensated {
        intent,
        outcome,
        detail: String::new(),
    }
}

fn target(ledger: &Ledger, key: &str) -> cutover_ledger::TargetState {
    ledger
        .record_state("Patient", key)
        .unwrap()
        .unwrap()
        .targets["contact"]
        .clone()
}

/// Confirmations, failures and compensations of intents written in an earlier
/// commit, with the ledger reopened in between: nothing holds the intent in
/// memory, so the projector reads its `write_intended` event from the log.
#[test]
fn answers_to_intents_of_earlier_commits_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, path, run) = ledger_with_full_run(dir.path());
    let mut bodies = Vec::new();
    for key in ["1", "2", "3"] {
        bodies.extend(extracted_and_transformed(key));
    }
    let first = ledger.head().seq + bodies.len() as u64 + 1;
    bodies.push(intended(WriteOp::Create, "1", None));
    bodies.push(intended(WriteOp::Create, "2", None));
    bodies.push(intended(WriteOp::Create, "3", None));
    ledger.append(run, bodies).unwrap();
    let (create1, create2, create3) = (first, first + 1, first + 2);

    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    ledger
        .append(
            run,
            [
                confirmed(create1, "c-1"),
                EventBody::WriteFailed {
                    intent: create2,
                    class: FailureClass::Terminal,
                    status: Some(422),
                    message: "rejected".into(),
                },
                confirmed(create3, "c-3"),
            ],
        )
        .unwrap();
    let t1 = target(&ledger, "1");
    assert_eq!(t1.status, TargetStatus::Confirmed);
    assert_eq!(t1.dest_id.as_deref(), Some("c-1"));
    assert_eq!(t1.confirmed_hash, Some(Digest::of(b"body 1")));
    assert_eq!(t1.pending_intent, None);
    let t2 = target(&ledger, "2");
    assert_eq!(t2.status, TargetStatus::Failed);
    assert_eq!(t2.last_failure, Some(FailureClass::Terminal));
    assert_eq!(t2.pending_intent, None);

    // An update of record 3, confirmed; then, after a reopen, its restore and
    // the deletion of record 1: compensations of old, long-confirmed intents.
    let update3 = ledger.head().seq + 1;
    ledger
        .append(run, [intended(WriteOp::Update, "3", Some("c-3"))])
        .unwrap();
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.append(run, [confirmed(update3, "c-3")]).unwrap();
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    ledger
        .append(
            run,
            [
                compensated(update3, Compensation::Restored),
                compensated(create1, Compensation::Deleted),
            ],
        )
        .unwrap();
    let t1 = target(&ledger, "1");
    assert_eq!(t1.status, TargetStatus::Compensated);
    assert_eq!(t1.confirmed_hash, None);
    let t3 = target(&ledger, "3");
    assert_eq!(t3.status, TargetStatus::Confirmed);
    assert_eq!(t3.confirmed_hash, Some(Digest::of(b"before")));
    assert_eq!(ledger.source_of("contact", "c-1").unwrap(), None);
    assert_eq!(
        ledger.source_of("contact", "c-3").unwrap().map(|s| s.key),
        Some("3".to_string())
    );

    // An answer naming a seq that is not an intent, or one not yet written, is refused.
    let head = ledger.head();
    for intent in [run, head.seq + 1, head.seq + 10] {
        let err = ledger.append(run, [confirmed(intent, "c-x")]).unwrap_err();
        assert!(
            matches!(&err, cutover_ledger::LedgerError::Chain { detail, .. } if detail.contains("not a write_intended")),
            "{err}"
        );
        assert_eq!(ledger.head(), head);
    }

    assert_eq!(
        ledger.projection_snapshot().unwrap(),
        ledger.replay_projections().unwrap()
    );
    drop(ledger);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger.projection_snapshot().unwrap(),
        ledger.replay_projections().unwrap()
    );
}

/// `Ledger::intent(seq)` after a reopen: its fields from its event, its outcome
/// the latest answer (pending, confirmed, failed then confirmed, compensated),
/// and the same as `Ledger::intents` reports.
#[test]
fn intent_outcomes_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, path, run) = ledger_with_full_run(dir.path());
    let mut bodies = Vec::new();
    for key in ["1", "2", "3", "4"] {
        bodies.extend(extracted_and_transformed(key));
    }
    let first = ledger.head().seq + bodies.len() as u64 + 1;
    bodies.push(intended(WriteOp::Create, "1", None));
    bodies.push(intended(WriteOp::Create, "2", None));
    bodies.push(intended(WriteOp::Create, "3", None));
    bodies.push(intended(WriteOp::Update, "4", Some("c-4")));
    ledger.append(run, bodies).unwrap();
    let (pending, confirmed_create, compensated_create, retried_update) =
        (first, first + 1, first + 2, first + 3);
    let confirmed_at = ledger.head().seq + 1;
    ledger
        .append(
            run,
            [
                confirmed(confirmed_create, "c-2"),
                confirmed(compensated_create, "c-3"),
                EventBody::WriteFailed {
                    intent: retried_update,
                    class: FailureClass::Transient,
                    status: Some(503),
                    message: "busy".into(),
                },
            ],
        )
        .unwrap();
    // Later events touching the pending intent's record do not answer it.
    ledger.append(run, extracted_and_transformed("1")).unwrap();
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    let compensated_at = ledger.head().seq + 1;
    ledger
        .append(
            run,
            [
                compensated(compensated_create, Compensation::AlreadyGone),
                confirmed(retried_update, "c-4"),
            ],
        )
        .unwrap();
    drop(ledger);
    let ledger = Ledger::open(&path).unwrap();

    let p = ledger.intent(pending).unwrap().unwrap();
    assert_eq!(p.outcome, IntentOutcome::Pending);
    assert_eq!((p.run, p.op, p.key.as_str()), (run, WriteOp::Create, "1"));
    assert_eq!(p.object, "contact");
    assert_eq!(p.idempotency_key, "contact:Patient:1");
    assert_eq!(p.payload_hash, Digest::of(b"body 1"));
    assert_eq!(p.dest_id, None);

    let c = ledger.intent(confirmed_create).unwrap().unwrap();
    assert_eq!(
        c.outcome,
        IntentOutcome::Confirmed {
            seq: confirmed_at,
            response_hash: Digest::of(b"c-2")
        }
    );
    assert_eq!(
        c.dest_id.as_deref(),
        Some("c-2"),
        "a create's id comes from its confirmation"
    );

    let k = ledger.intent(compensated_create).unwrap().unwrap();
    assert_eq!(
        k.outcome,
        IntentOutcome::Compensated {
            seq: compensated_at,
            outcome: Compensation::AlreadyGone
        }
    );
    assert_eq!(k.dest_id.as_deref(), Some("c-3"));

    let u = ledger.intent(retried_update).unwrap().unwrap();
    assert_eq!(
        u.outcome,
        IntentOutcome::Confirmed {
            seq: compensated_at + 1,
            response_hash: Digest::of(b"c-4")
        },
        "a confirmation after a failure is the outcome"
    );
    assert_eq!(u.before_image, Some(Digest::of(b"before")));
    assert_eq!(u.dest_id.as_deref(), Some("c-4"));

    assert_eq!(ledger.intent(run).unwrap(), None, "not an intent");
    assert_eq!(ledger.intent(0).unwrap(), None);
    assert_eq!(ledger.intent(ledger.head().seq + 1).unwrap(), None);

    let mut all = Vec::new();
    ledger
        .intents(|seq, intent| {
            all.push((seq, intent));
            Ok(true)
        })
        .unwrap();
    assert_eq!(
        all,
        vec![
            (pending, p),
            (confirmed_create, c),
            (compensated_create, k),
            (retried_update, u)
        ]
    );
    let mut first_two = Vec::new();
    ledger
        .intents(|seq, _| {
            first_two.push(seq);
            Ok(first_two.len() < 2)
        })
        .unwrap();
    assert_eq!(first_two, vec![pending, confirmed_create]);
}

/// A new ledger at `dir/l` with a full run started: (ledger, its path, the run).
fn ledger_with_full_run(
    dir: &std::path::Path,
) -> (Ledger, std::path::PathBuf, cutover_ledger::RunId) {
    let path = dir.join("l");
    let mut ledger = Ledger::create(&path).unwrap();
    let run = ledger
        .start_run(RunKind::Full, "export:p", "sandbox:twenty", None)
        .unwrap();
    (ledger, path, run)
}
