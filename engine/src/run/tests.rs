//! The run's decisions, against an in-memory source and a destination that is
//! deliberately *not* idempotent (every create makes a new record), so that
//! exactly-once rests on the engine alone: skip unchanged, resolve intents in
//! doubt by asking the destination, adopt a failed create that landed, update
//! with a before-image. The protocol-level tests (real binary, real HTTP
//! sandboxes, SIGKILL) are in tests/run_cli.rs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cutover_ledger::{IntentOutcome, Ledger, RunKind, WriteOp};
use futures::stream;
use serde_json::{json, Map, Value as Json};

use super::*;
use crate::map::ledgered::confirm_map;
use crate::ports::{Capabilities, DestInventory, SchemaChange, SchemaSpec};
use crate::record::{Inventory, SourceKey, Value, Watermark};

const MAP: &str = r#"
format = 1
destination = "highlevel"

[[object]]
source = "Patient"
target = "contact"
field = [
  { to = "firstName", from = "FirstName", required = true },
  { to = "customFields.PANDA_Patient_ID", from = "PatientID" },
]
"#;

struct Rows(Mutex<Vec<SourceRecord>>);

fn patient(id: i64, first: &str) -> SourceRecord {
    let mut fields = BTreeMap::new();
    fields.insert("PatientID".to_string(), Value::Int(id));
    fields.insert("FirstName".to_string(), Value::Text(first.to_string()));
    SourceRecord {
        entity: "Patient".into(),
        key: SourceKey::new(id.to_string()),
        fields,
        modified_at: None,
    }
}

impl Rows {
    fn set(&self, rows: Vec<SourceRecord>) {
        *self.0.lock().unwrap() = rows;
    }
}

#[async_trait]
impl Source for Rows {
    fn describe(&self) -> String {
        "memory".into()
    }
    async fn discover(&self) -> Result<Inventory, SourceError> {
        Ok(Inventory { tables: vec![] })
    }
    async fn count(&self, _entity: &str) -> Result<u64, SourceError> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
    async fn stream(
        &self,
        entity: &str,
        _since: Option<Watermark>,
    ) -> Result<crate::ports::SourceStream, SourceError> {
        let rows: Vec<Result<SourceItem, SourceError>> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.entity == entity)
            .cloned()
            .map(|r| {
                // A row marked `__unreadable` stands for one that did not fit its types.
                Ok(if r.fields.contains_key("__unreadable") {
                    SourceItem::Unreadable {
                        entity: r.entity.clone(),
                        key: Some(r.key.clone()),
                        place: format!("{} {} DateOfBirth", r.entity, r.key),
                        reason: "not a date".into(),
                    }
                } else {
                    SourceItem::Record(r)
                })
            })
            .collect();
        Ok(Box::pin(stream::iter(rows)))
    }
}

type KeyedBody = (String, Map<String, Json>);

/// Every create makes a new record; nothing is deduplicated here.
#[derive(Default)]
struct Naive {
    /// id → (idempotency key, body).
    records: Mutex<BTreeMap<String, KeyedBody>>,
    creates: Mutex<u64>,
    updates: Mutex<u64>,
    /// Creates that land but whose answer is lost.
    lose_answers: Mutex<u32>,
}

impl Naive {
    fn count_key(&self, key: &str) -> usize {
        self.records
            .lock()
            .unwrap()
            .values()
            .filter(|(k, _)| k == key)
            .count()
    }
}

#[async_trait]
impl ReadDestination for Naive {
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
        Ok(self
            .records
            .lock()
            .unwrap()
            .get(id)
            .map(|(_, body)| DestRecord {
                object: object.into(),
                id: id.into(),
                body: Json::Object(body.clone()),
            }))
    }
    async fn find_by_key(&self, object: &str, key: &str) -> Result<Option<DestRecord>, DestError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .find(|(_, (k, _))| k == key)
            .map(|(id, (_, body))| DestRecord {
                object: object.into(),
                id: id.clone(),
                body: Json::Object(body.clone()),
            }))
    }
}

#[async_trait]
impl Destination for Naive {
    async fn ensure_schema(&self, _spec: &SchemaSpec) -> Result<Vec<SchemaChange>, DestError> {
        Ok(vec![])
    }
    async fn drop_schema(&self, _change: &SchemaChange) -> Result<(), DestError> {
        Ok(())
    }
    async fn create(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let mut creates = self.creates.lock().unwrap();
        *creates += 1;
        let id = format!("id{creates}");
        self.records.lock().unwrap().insert(
            id.clone(),
            (request.idempotency_key.clone(), request.body.clone()),
        );
        let mut lose = self.lose_answers.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(DestError::Transient {
                endpoint: "POST /contacts".into(),
                status: Some(502),
                message: "answer lost".into(),
            });
        }
        Ok(WriteOutcome {
            dest_id: id,
            stored: Json::Object(request.body.clone()),
        })
    }
    async fn update(
        &self,
        _object: &str,
        id: &str,
        body: &Map<String, Json>,
    ) -> Result<WriteOutcome, DestError> {
        *self.updates.lock().unwrap() += 1;
        let mut records = self.records.lock().unwrap();
        let entry = records.get_mut(id).expect("updates only what exists");
        entry.1 = body.clone();
        Ok(WriteOutcome {
            dest_id: id.into(),
            stored: Json::Object(body.clone()),
        })
    }
    async fn delete(&self, _object: &str, id: &str) -> Result<(), DestError> {
        self.records.lock().unwrap().remove(id);
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    map: MapFile,
    source: Rows,
    dest: Naive,
}

fn fixture(rows: Vec<SourceRecord>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path().join("ledger")).unwrap();
    let map = MapFile::from_toml(MAP).unwrap();
    confirm_map(&mut ledger, &map, "test").unwrap();
    Fixture {
        _dir: dir,
        ledger,
        map,
        source: Rows(Mutex::new(rows)),
        dest: Naive::default(),
    }
}

fn options() -> RunOptions {
    RunOptions {
        batch: 2,
        concurrency: 2,
        ..RunOptions::default()
    }
}

async fn run(f: &mut Fixture) -> RunReport {
    run_migration(
        &mut f.ledger,
        &f.source,
        &f.dest,
        &f.map,
        &options(),
        &Silent,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_second_run_sends_nothing() {
    let mut f = fixture((1..=5).map(|i| patient(i, "Ann")).collect());
    let first = run(&mut f).await;
    assert_eq!(first.totals().created, 5);
    let second = run(&mut f).await;
    assert_eq!(second.totals().created, 0);
    assert_eq!(second.totals().unchanged, 5);
    assert_eq!(*f.dest.creates.lock().unwrap(), 5);
    assert_eq!(*f.dest.updates.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_create_in_doubt_that_landed_is_confirmed_not_repeated() {
    let mut f = fixture(vec![patient(1, "Ann"), patient(2, "Bob")]);
    run(&mut f).await;
    // A crash between the request and its answer: the intent is on disk, the
    // record is at the destination, no confirmation was written.
    f.source
        .set(vec![patient(1, "Ann"), patient(2, "Bob"), patient(3, "Cy")]);
    let key = crate::map::idempotency_key("contact", "Patient", "3");
    let request = WriteRequest {
        object: "contact".into(),
        idempotency_key: key.clone(),
        entity: "Patient".into(),
        source_key: SourceKey::new("3"),
        client_id: None,
        body: json!({"firstName": "Cy", "customFields": {"PANDA_Patient_ID": 3}})
            .as_object()
            .unwrap()
            .clone(),
    };
    let payload_hash = Digest::of(&canonical_json(&Json::Object(request.body.clone())));
    let crashed = f
        .ledger
        .start_run(RunKind::Full, "memory", "memory", None)
        .unwrap();
    let intent = f
        .ledger
        .append(
            crashed,
            [intent_event(
                &request,
                WriteOp::Create,
                payload_hash,
                None,
                None,
            )],
        )
        .unwrap();
    f.dest.create(&request).await.unwrap();

    let report = run(&mut f).await;
    assert_eq!(report.totals().resumed, 1, "{:?}", report.totals());
    assert_eq!(report.totals().created, 0);
    assert_eq!(f.dest.count_key(&key), 1, "created twice");
    match f.ledger.intent(intent).unwrap().unwrap().outcome {
        IntentOutcome::Confirmed { .. } => {}
        other => panic!("the intent in doubt ended {other:?}"),
    }
}

#[tokio::test]
async fn a_create_in_doubt_that_did_not_land_is_failed_and_sent_again() {
    let mut f = fixture(vec![patient(1, "Ann")]);
    let key = crate::map::idempotency_key("contact", "Patient", "1");
    let request = WriteRequest {
        object: "contact".into(),
        idempotency_key: key.clone(),
        entity: "Patient".into(),
        source_key: SourceKey::new("1"),
        client_id: None,
        body: Map::new(),
    };
    let crashed = f
        .ledger
        .start_run(RunKind::Full, "memory", "memory", None)
        .unwrap();
    let intent = f
        .ledger
        .append(
            crashed,
            [intent_event(
                &request,
                WriteOp::Create,
                Digest::ZERO,
                None,
                None,
            )],
        )
        .unwrap();
    let report = run(&mut f).await;
    assert_eq!(report.totals().created, 1);
    assert_eq!(f.dest.count_key(&key), 1);
    assert!(matches!(
        f.ledger.intent(intent).unwrap().unwrap().outcome,
        IntentOutcome::Failed { .. }
    ));
}

#[tokio::test]
async fn a_failed_create_that_landed_is_adopted_by_the_next_run() {
    let mut f = fixture(vec![patient(1, "Ann"), patient(2, "Bob")]);
    *f.dest.lose_answers.lock().unwrap() = 1;
    let first = run(&mut f).await;
    assert_eq!(first.totals().failed, 1);
    assert_eq!(first.outcome, RunOutcome::CompletedWithFailures);
    assert_eq!(first.failures.len(), 1);
    let second = run(&mut f).await;
    assert_eq!(second.totals().resumed, 1, "{:?}", second.totals());
    assert_eq!(second.totals().created, 0);
    assert_eq!(
        *f.dest.creates.lock().unwrap(),
        2,
        "the lost answer's record was created again"
    );
}

#[tokio::test]
async fn a_changed_row_becomes_an_update_with_its_before_image() {
    let mut f = fixture(vec![patient(1, "Ann"), patient(2, "Bob")]);
    run(&mut f).await;
    f.source.set(vec![patient(1, "Anne"), patient(2, "Bob")]);
    let report = run(&mut f).await;
    assert_eq!(report.totals().updated, 1);
    assert_eq!(report.totals().unchanged, 1);
    let mut update = None;
    f.ledger
        .intents(|seq, intent| {
            if intent.op == WriteOp::Update {
                update = Some((seq, intent));
            }
            Ok(true)
        })
        .unwrap();
    let (_, intent) = update.expect("an update intent");
    let image = f
        .ledger
        .blob(&intent.before_image.expect("a before-image"))
        .unwrap()
        .unwrap();
    let image: Json = serde_json::from_slice(&image).unwrap();
    assert_eq!(
        image["firstName"], "Ann",
        "the before-image is the record as it was"
    );
    let dest_id = intent.dest_id.unwrap();
    assert_eq!(
        f.dest.records.lock().unwrap()[&dest_id].1["firstName"],
        "Anne"
    );
}

#[tokio::test]
async fn a_dry_run_writes_nothing_anywhere() {
    let f = fixture(vec![patient(1, "Ann"), patient(2, "")]);
    let head = f.ledger.head();
    let plan = plan_migration(&f.ledger, &f.source, &f.dest, &f.map, &options(), &Silent)
        .await
        .unwrap();
    assert!(plan.dry_run);
    assert_eq!(
        plan.totals().created + plan.totals().quarantined,
        2,
        "{:?}",
        plan.totals()
    );
    assert_eq!(f.ledger.head(), head);
    assert_eq!(*f.dest.creates.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_changed_map_is_refused() {
    let mut f = fixture(vec![patient(1, "Ann")]);
    let other = MapFile::from_toml(&MAP.replace("required = true", "required = false")).unwrap();
    let error = run_migration(
        &mut f.ledger,
        &f.source,
        &f.dest,
        &other,
        &options(),
        &Silent,
    )
    .await
    .expect_err("a changed map was run");
    assert!(
        matches!(error, RunError::Map(MapGateError::Changed { .. })),
        "{error}"
    );
    assert_eq!(*f.dest.creates.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_filtered_run_leaves_unchosen_rows_alone_unreadable_ones_too() {
    let unreadable = |id: i64| {
        let mut row = patient(id, "X");
        row.fields.insert("__unreadable".into(), Value::Null);
        row
    };
    let mut f = fixture(vec![
        patient(1, "Ann"),
        patient(2, "Bob"),
        patient(3, "Cy"),
        unreadable(4),
        unreadable(5),
    ]);
    let chosen: std::collections::HashSet<String> = ["1", "2", "5"].map(String::from).into();
    let options = RunOptions {
        kind: RunKind::Sample,
        filter: Some(Arc::new(move |r: &SourceRecord| chosen.contains(&r.key.0))),
        ..options()
    };
    let report = run_migration(&mut f.ledger, &f.source, &f.dest, &f.map, &options, &Silent)
        .await
        .unwrap();
    let totals = report.totals();
    assert_eq!(totals.created, 2);
    assert_eq!(totals.quarantined, 1, "only the chosen unreadable row");
    assert_eq!(totals.excluded, 2);
    assert!(f.ledger.record_state("Patient", "4").unwrap().is_none());
    assert!(f.ledger.record_state("Patient", "3").unwrap().is_none());
    assert!(f
        .ledger
        .record_state("Patient", "5")
        .unwrap()
        .unwrap()
        .quarantine
        .is_some());
}
