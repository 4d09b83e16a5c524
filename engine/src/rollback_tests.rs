//! Rollback against an in-memory destination, with a trail written by hand:
//! children deleted before parents, an update restored to its oldest
//! before-image, a changed record left as a conflict (with the parent it
//! refers to), every request preceded by its intent *on disk* (the ledger's
//! HEAD anchor, rewritten at every flush, is read at each request), and a
//! second rollback that sends nothing. The real binary against the sandboxes,
//! with SIGKILLs, is tests/rollback_cli.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use cutover_ledger::{EventBody, Ledger, RunKind, RunOutcome, WriteOp};
use serde_json::{json, Map, Value as Json};

use super::*;
use crate::ports::{
    Capabilities, DestInventory, SchemaChange, SchemaSpec, WriteOutcome, WriteRequest,
};

/// Records by id; every mutating call logged with the ledger's durable head at that moment.
struct Memory {
    records: Mutex<BTreeMap<String, Json>>,
    calls: Mutex<Vec<(String, String, u64)>>,
    ledger_dir: PathBuf,
}

impl Memory {
    fn durable_seq(&self) -> u64 {
        let text = std::fs::read_to_string(self.ledger_dir.join("HEAD")).unwrap();
        serde_json::from_str::<Json>(&text).unwrap()["seq"]
            .as_u64()
            .unwrap()
    }
}

/// A fresh ledger in a temporary folder and an empty destination watching its head.
fn ledger_and_memory() -> (tempfile::TempDir, Ledger, Memory) {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let ledger = Ledger::create(&ledger_dir).unwrap();
    let dest = Memory {
        records: Mutex::new(BTreeMap::new()),
        calls: Mutex::new(Vec::new()),
        ledger_dir,
    };
    (dir, ledger, dest)
}

#[async_trait]
impl ReadDestination for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: 1,
            requests_per_window: 1000,
            window: std::time::Duration::from_secs(1),
            daily_limit: None,
        }
    }
    async fn inventory(&self) -> Result<DestInventory, DestError> {
        Ok(DestInventory::default())
    }
    async fn get(&self, object: &str, id: &str) -> Result<Option<DestRecord>, DestError> {
        Ok(self.records.lock().unwrap().get(id).map(|body| DestRecord {
            object: object.into(),
            id: id.into(),
            body: body.clone(),
        }))
    }
    async fn find_by_key(&self, _: &str, _: &str) -> Result<Option<DestRecord>, DestError> {
        Ok(None)
    }
}

#[async_trait]
impl Destination for Memory {
    async fn ensure_schema(&self, _: &SchemaSpec) -> Result<Vec<SchemaChange>, DestError> {
        Ok(vec![])
    }
    async fn drop_schema(&self, _: &SchemaChange) -> Result<(), DestError> {
        Ok(())
    }
    async fn create(&self, _: &WriteRequest) -> Result<WriteOutcome, DestError> {
        unreachable!("a rollback creates nothing")
    }
    async fn update(
        &self,
        _object: &str,
        id: &str,
        body: &Map<String, Json>,
    ) -> Result<WriteOutcome, DestError> {
        let seq = self.durable_seq();
        self.calls
            .lock()
            .unwrap()
            .push(("update".into(), id.into(), seq));
        self.records
            .lock()
            .unwrap()
            .insert(id.into(), Json::Object(body.clone()));
        Ok(WriteOutcome {
            dest_id: id.into(),
            stored: Json::Object(body.clone()),
        })
    }
    async fn delete(&self, _object: &str, id: &str) -> Result<(), DestError> {
        let seq = self.durable_seq();
        self.calls
            .lock()
            .unwrap()
            .push(("delete".into(), id.into(), seq));
        self.records.lock().unwrap().remove(id);
        Ok(())
    }
}

/// A confirmed write by hand: payload blob, intent, confirmation.
#[allow(clippy::too_many_arguments)]
fn write(
    ledger: &mut Ledger,
    run: u64,
    op: WriteOp,
    object: &str,
    key: &str,
    id: &str,
    body: Json,
    before: Option<Json>,
) -> u64 {
    let payload_hash = ledger.put_blob(&canonical_json(&body)).unwrap();
    let before_image = before.map(|b| ledger.put_blob(&canonical_json(&b)).unwrap());
    let intent = ledger
        .append(
            run,
            [EventBody::WriteIntended {
                op,
                object: object.into(),
                entity: "E".into(),
                key: key.into(),
                idempotency_key: format!("{object}:E:{key}"),
                payload_hash,
                before_image,
                dest_id: (op == WriteOp::Update).then(|| id.to_string()),
            }],
        )
        .unwrap();
    let response_hash = ledger.put_blob(&canonical_json(&body)).unwrap();
    ledger
        .append(
            run,
            [EventBody::WriteConfirmed {
                intent,
                dest_id: id.into(),
                response_hash,
            }],
        )
        .unwrap();
    intent
}

fn options(selection: Selection) -> RollbackOptions {
    RollbackOptions {
        selection,
        force: false,
        schema: false,
        batch: 2,
    }
}

#[tokio::test]
async fn children_first_oldest_image_conflicts_kept_and_intents_on_disk_first() {
    let (_dir, mut ledger, dest) = ledger_and_memory();
    let put = |id: &str, body: Json| {
        dest.records.lock().unwrap().insert(id.into(), body);
    };
    // Before the migration: a record of someone else's that the delta updates twice.
    put("pre", json!({"name": "Original"}));

    let full = ledger
        .start_run(RunKind::Full, "m", "memory", None)
        .unwrap();
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "company",
        "c1",
        "co1",
        json!({"name": "Co"}),
        None,
    );
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "company",
        "c2",
        "co2",
        json!({"name": "Co2"}),
        None,
    );
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "person",
        "p1",
        "pe1",
        json!({"name": "Ann", "companyId": "co1"}),
        None,
    );
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "person",
        "p2",
        "pe2",
        json!({"name": "Bob", "companyId": "co2"}),
        None,
    );
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "note",
        "n1",
        "no1",
        json!({"body": "hi", "personId": "pe2"}),
        None,
    );
    ledger.finish_run(full, RunOutcome::Completed, "").unwrap();
    let delta = ledger
        .start_run(RunKind::Delta, "m", "memory", None)
        .unwrap();
    write(
        &mut ledger,
        delta,
        WriteOp::Update,
        "person",
        "x",
        "pre",
        json!({"name": "First"}),
        Some(json!({"name": "Original"})),
    );
    write(
        &mut ledger,
        delta,
        WriteOp::Update,
        "person",
        "x",
        "pre",
        json!({"name": "Second"}),
        Some(json!({"name": "First"})),
    );
    ledger.finish_run(delta, RunOutcome::Completed, "").unwrap();
    put("co1", json!({"name": "Co"}));
    put("co2", json!({"name": "Co2"}));
    put("pe1", json!({"name": "Ann", "companyId": "co1"}));
    put("pe2", json!({"name": "Bob", "companyId": "co2"}));
    put("no1", json!({"body": "hi", "personId": "pe2"}));
    put("pre", json!({"name": "Second"}));
    // Someone else renames Ann after we wrote her.
    put("pe1", json!({"name": "Annie", "companyId": "co1"}));

    // The dry run plans and sends nothing.
    let plan = plan_rollback(&ledger, &dest, &options(Selection::All), &Silent)
        .await
        .unwrap();
    assert!(dest.calls.lock().unwrap().is_empty());
    assert_eq!(plan.counts.would_delete, 3, "{:?}", plan.items);
    assert_eq!(plan.counts.would_restore, 1);
    assert_eq!(plan.counts.conflicts, 1);
    assert_eq!(plan.counts.kept, 1);

    let report = run_rollback(
        &mut ledger,
        &dest,
        &options(Selection::All),
        "memory",
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, RunOutcome::CompletedWithFailures);
    let calls = dest.calls.lock().unwrap().clone();
    let order: Vec<&str> = calls.iter().map(|(_, id, _)| id.as_str()).collect();
    // The restore first, then children before parents; Ann (conflict) and her company (kept) stay.
    assert_eq!(order, vec!["pre", "no1", "pe2", "co2"]);
    assert_eq!(
        dest.records.lock().unwrap()["pre"],
        json!({"name": "Original"})
    );
    let left: Vec<String> = dest.records.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, vec!["co1", "pe1", "pre"]);
    let conflict = report
        .items
        .iter()
        .find(|i| i.outcome == ItemOutcome::Conflict)
        .unwrap();
    assert_eq!(conflict.dest_id, "pe1");
    assert_eq!(conflict.changed_fields, vec!["name"]);
    assert!(report
        .items
        .iter()
        .any(|i| i.outcome == ItemOutcome::Kept && i.dest_id == "co1"));

    // Every request left after its intent was durable.
    let mut intents: BTreeMap<String, u64> = BTreeMap::new();
    ledger
        .intents(|seq, intent| {
            if intent.idempotency_key.starts_with("rollback:") {
                intents.insert(intent.dest_id.clone().unwrap(), seq);
            }
            Ok(true)
        })
        .unwrap();
    for (_, id, durable) in &calls {
        assert!(
            intents[id] <= *durable,
            "{id}: the request left before its intent (seq {}) was flushed (durable {durable})",
            intents[id]
        );
    }

    // Again: nothing sent, the conflict listed again.
    let again = run_rollback(
        &mut ledger,
        &dest,
        &options(Selection::All),
        "memory",
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(dest.calls.lock().unwrap().len(), calls.len());
    assert_eq!(again.counts.conflicts, 1);
    assert_eq!(again.counts.kept, 1);
    assert!(again.counts.done_before >= 5, "{:?}", again.counts);

    // --force undoes the rest, children first.
    let mut forced = options(Selection::All);
    forced.force = true;
    let done = run_rollback(&mut ledger, &dest, &forced, "memory", &Silent)
        .await
        .unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed);
    let left: Vec<String> = dest.records.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, vec!["pre"]);
    let calls = dest.calls.lock().unwrap().clone();
    let tail: Vec<&str> = calls[4..].iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(tail, vec!["pe1", "co1"]);
    assert_eq!(ledger.verify().unwrap(), ledger.head().seq);
}

#[tokio::test]
async fn one_run_only_and_usage_errors() {
    let (_dir, mut ledger, dest) = ledger_and_memory();
    let full = ledger
        .start_run(RunKind::Full, "m", "memory", None)
        .unwrap();
    write(
        &mut ledger,
        full,
        WriteOp::Create,
        "person",
        "p1",
        "a",
        json!({"name": "A"}),
        None,
    );
    ledger.finish_run(full, RunOutcome::Completed, "").unwrap();
    let delta = ledger
        .start_run(RunKind::Delta, "m", "memory", None)
        .unwrap();
    write(
        &mut ledger,
        delta,
        WriteOp::Create,
        "person",
        "p2",
        "b",
        json!({"name": "B"}),
        None,
    );
    ledger.finish_run(delta, RunOutcome::Completed, "").unwrap();
    dest.records
        .lock()
        .unwrap()
        .insert("a".into(), json!({"name": "A"}));
    dest.records
        .lock()
        .unwrap()
        .insert("b".into(), json!({"name": "B"}));
    // Gone already: nothing sent for it.
    let report = run_rollback(
        &mut ledger,
        &dest,
        &options(Selection::Run(delta)),
        "memory",
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(report.counts.deleted, 1);
    assert_eq!(
        dest.records.lock().unwrap().keys().collect::<Vec<_>>(),
        vec!["a"]
    );
    dest.records.lock().unwrap().clear();
    let report = run_rollback(
        &mut ledger,
        &dest,
        &options(Selection::All),
        "memory",
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(report.counts.already_gone, 1);
    assert_eq!(report.counts.done_before, 1);
    assert_eq!(dest.calls.lock().unwrap().len(), 1);
    let rollback_run = report.run.unwrap();
    assert!(matches!(
        plan_rollback(
            &ledger,
            &dest,
            &options(Selection::Run(rollback_run)),
            &Silent
        )
        .await,
        Err(RollbackError::NotAMigrationRun { .. })
    ));
    assert!(matches!(
        plan_rollback(&ledger, &dest, &options(Selection::Run(9999)), &Silent).await,
        Err(RollbackError::UnknownRun(9999))
    ));
}

/// A rollback intent left without its answer (the process died after flushing it).
fn pending_rollback_intent(
    ledger: &mut Ledger,
    op: WriteOp,
    object: &str,
    id: &str,
    payload: &Json,
) {
    let run = ledger
        .start_run(RunKind::Rollback, "", "memory", None)
        .unwrap();
    let payload_hash = ledger.put_blob(&canonical_json(payload)).unwrap();
    ledger
        .append(
            run,
            [EventBody::WriteIntended {
                op,
                object: object.into(),
                entity: "E".into(),
                key: "k".into(),
                idempotency_key: format!("rollback:{object}:{id}"),
                payload_hash,
                before_image: None,
                dest_id: Some(id.into()),
            }],
        )
        .unwrap();
}

#[tokio::test]
async fn interrupted_compensations_are_resolved_by_reading_not_by_sending_again() {
    let (_dir, mut ledger, dest) = ledger_and_memory();
    let full = ledger
        .start_run(RunKind::Full, "m", "memory", None)
        .unwrap();
    for (key, id) in [("a", "ida"), ("b", "idb")] {
        let body = json!({"name": key});
        write(
            &mut ledger,
            full,
            WriteOp::Create,
            "person",
            key,
            id,
            body,
            None,
        );
    }
    ledger.finish_run(full, RunOutcome::Completed, "").unwrap();
    let delta = ledger
        .start_run(RunKind::Delta, "m", "memory", None)
        .unwrap();
    for id in ["pre1", "pre2"] {
        let (now, before) = (
            json!({"name": "New"}),
            json!({"name": "Old", "id": id, "updatedAt": "t0"}),
        );
        write(
            &mut ledger,
            delta,
            WriteOp::Update,
            "person",
            id,
            id,
            now,
            Some(before),
        );
    }
    ledger.finish_run(delta, RunOutcome::Completed, "").unwrap();
    // The state after a killed rollback: the delete of `ida` and the restore of `pre1`
    // landed, `idb` and `pre2` were never sent; all four intents are on disk, unanswered.
    dest.records.lock().unwrap().extend([
        ("idb".to_string(), json!({"name": "b"})),
        (
            "pre1".to_string(),
            json!({"name": "Old", "id": "pre1", "updatedAt": "t1"}),
        ),
        (
            "pre2".to_string(),
            json!({"name": "New", "id": "pre2", "updatedAt": "t0"}),
        ),
    ]);
    pending_rollback_intent(
        &mut ledger,
        WriteOp::Delete,
        "person",
        "ida",
        &json!({"name": "a"}),
    );
    pending_rollback_intent(
        &mut ledger,
        WriteOp::Delete,
        "person",
        "idb",
        &json!({"name": "b"}),
    );
    let old = json!({"name": "Old", "id": "pre1", "updatedAt": "t0"});
    pending_rollback_intent(&mut ledger, WriteOp::Update, "person", "pre1", &old);
    let old = json!({"name": "Old", "id": "pre2", "updatedAt": "t0"});
    pending_rollback_intent(&mut ledger, WriteOp::Update, "person", "pre2", &old);

    let report = run_rollback(
        &mut ledger,
        &dest,
        &options(Selection::All),
        "memory",
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, RunOutcome::Completed, "{:?}", report.items);
    let calls: Vec<(String, String)> = dest
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(op, id, _)| (op.clone(), id.clone()))
        .collect();
    // Only what had not landed is sent: nothing twice.
    assert_eq!(
        calls,
        vec![
            ("update".to_string(), "pre2".to_string()),
            ("delete".to_string(), "idb".to_string())
        ]
    );
    let outcome = |id: &str| {
        report
            .items
            .iter()
            .find(|i| i.dest_id == id)
            .map(|i| (i.outcome, i.detail.clone()))
            .unwrap()
    };
    assert_eq!(outcome("ida").0, ItemOutcome::AlreadyGone);
    assert!(outcome("ida").1.contains("interrupted rollback"));
    assert_eq!(outcome("pre1").0, ItemOutcome::Restored);
    assert!(outcome("pre1").1.contains("interrupted rollback"));
    assert_eq!(outcome("pre2").0, ItemOutcome::Restored);
    assert_eq!(outcome("idb").0, ItemOutcome::Deleted);
    // Every rollback intent got its answer: nothing is in doubt any more.
    let mut unanswered = 0;
    ledger
        .intents(|_, intent| {
            if intent.outcome == cutover_ledger::IntentOutcome::Pending {
                unanswered += 1;
            }
            Ok(true)
        })
        .unwrap();
    assert_eq!(unanswered, 0);
    assert_eq!(ledger.verify().unwrap(), ledger.head().seq);
}
