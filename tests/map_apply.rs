//! The default maps applied to a whole generated practice: the dirt the
//! generator plants comes out as bounded reasons that name columns and never
//! values, and the HighLevel bodies the map produces are accepted by the
//! HighLevel sandbox over real HTTP on 127.0.0.1, links included.

#[path = "support/practice.rs"]
mod practice_support;
use practice_support::{clinical, generated, today, Tables, TWENTY_OBJECTS};

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use cutover_connectors::highlevel::HighLevelDestination;
use cutover_engine::clean::{CleanConfig, Cleaner, ReasonCode, Severity};
use cutover_engine::map::defaults::default_map;
use cutover_engine::map::{ApplyContext, MemoryResolver, RecordOutcome, Resolve};
use cutover_engine::{Destination, Value};

async fn practice(patients: &str, seed: &str) -> (tempfile::TempDir, Tables) {
    let (dir, tables, unreadable) = generated(patients, seed).await;
    assert!(
        unreadable.is_empty(),
        "generated data unreadable at {unreadable:?}"
    );
    (dir, tables)
}

/// Resolves a reference when the referred row exists at the source (as if every
/// parent had been written), so what remains unresolved is a true orphan.
struct SourceKeys {
    keys: HashSet<(String, String)>,
    rows: MemoryResolver,
}

impl Resolve for SourceKeys {
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String> {
        self.keys
            .contains(&(entity.to_string(), key.to_string()))
            .then(|| format!("{object}-{key}"))
    }
    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value> {
        self.rows.source_value(entity, key, column)
    }
}

#[tokio::test]
async fn the_generators_dirt_becomes_bounded_reasons_without_values() {
    let (_dir, tables) = practice("60", "5").await;
    let mut keys = HashSet::new();
    let mut rows = MemoryResolver::default();
    for (name, records) in &tables {
        for r in records {
            keys.insert((name.clone(), r.key.0.clone()));
            if name == "ReferringDentist" || name == "TreatmentPlan" {
                rows.insert_row(r);
            }
        }
    }
    let resolver = SourceKeys { keys, rows };
    // Values that must never appear in a reason: e-mails, phones, names.
    let mut phi = HashSet::new();
    for r in &tables["Patient"] {
        for column in [
            "Email",
            "MobilePhone",
            "HomePhone",
            "WorkPhone",
            "FirstName",
            "LastName",
        ] {
            if let Some(Value::Text(v)) = r.get(column) {
                if v.trim().len() >= 4 {
                    phi.insert(v.trim().to_string());
                }
            }
        }
    }
    for kind in ["highlevel", "twenty"] {
        let map = default_map(kind).unwrap();
        let index = clinical(&map, &tables);
        let ctx = ApplyContext {
            resolver: &resolver,
            clinical: &index,
            today: today(),
        };
        let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
        let mut codes: HashMap<(ReasonCode, Severity), usize> = HashMap::new();
        let mut keys_seen = HashSet::new();
        let (mut ready, mut quarantined) = (0, 0);
        for rule in map.plan_order() {
            for record in &tables[&rule.source] {
                let outcome =
                    map.apply_rules(record, &ctx, &mut cleaner, |r| std::ptr::eq(r, rule));
                for issue in outcome.issues() {
                    *codes.entry((issue.code, issue.severity)).or_default() += 1;
                    let reason = issue.to_reason();
                    for value in &phi {
                        assert!(
                            !reason.detail.contains(value.as_str()),
                            "{kind}: a value reached a reason: {}",
                            reason.detail
                        );
                    }
                    assert!(
                        reason.detail.starts_with(&format!("{}.", record.entity))
                            || reason.detail.starts_with("derived"),
                        "{}",
                        reason.detail
                    );
                }
                match &outcome {
                    RecordOutcome::Ready { requests, .. } => {
                        ready += 1;
                        for request in requests {
                            assert!(
                                keys_seen.insert(request.idempotency_key.clone()),
                                "duplicate key {}",
                                request.idempotency_key
                            );
                        }
                    }
                    RecordOutcome::Quarantined { issues } => {
                        quarantined += 1;
                        assert!(issues.iter().any(|i| i.severity == Severity::Block));
                    }
                }
            }
        }
        let count = |code, severity| codes.get(&(code, severity)).copied().unwrap_or(0);
        // With 40+ patients every dirt kind is forced at least once.
        assert!(
            count(ReasonCode::FutureDate, Severity::Block) >= 1,
            "{kind}: {codes:?}"
        );
        assert!(
            count(ReasonCode::PhoneInvalid, Severity::Block) >= 1,
            "{kind}: {codes:?}"
        );
        assert!(
            count(ReasonCode::EmailDuplicate, Severity::Flag) >= 1,
            "{kind}: {codes:?}"
        );
        assert!(
            count(ReasonCode::OrphanReference, Severity::Flag) >= 1,
            "{kind}: {codes:?}"
        );
        if kind == "highlevel" {
            assert!(
                count(ReasonCode::TooLong, Severity::Block) >= 1,
                "{kind}: a > 64 KB note: {codes:?}"
            );
        }
        assert!(
            quarantined >= 2 && ready > quarantined * 5,
            "{kind}: ready {ready}, quarantined {quarantined}"
        );
    }
}

#[tokio::test]
async fn highlevel_bodies_from_the_default_map_are_accepted_by_the_sandbox() {
    let (_dir, tables) = practice("12", "3").await;
    let map = default_map("highlevel").unwrap();
    let index = clinical(&map, &tables);
    let (handle, mut config) = sandbox::in_process(SandboxConfig {
        requests_per_window: 100_000,
        window: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    config.requests_per_window = 100_000;
    config.window = Duration::from_secs(1);
    let destination = HighLevelDestination::new(config).unwrap();
    destination
        .ensure_schema(&map.schema())
        .await
        .expect("the map's schema is created");

    let mut resolver = MemoryResolver::default();
    for r in &tables["ReferringDentist"] {
        resolver.insert_row(r);
    }
    for r in &tables["TreatmentPlan"] {
        resolver.insert_row(r);
    }
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut contacts_with_business = 0;
    for rule in map.plan_order() {
        for record in &tables[&rule.source] {
            let outcome = {
                let ctx = ApplyContext {
                    resolver: &resolver,
                    clinical: &index,
                    today: today(),
                };
                map.apply_rules(record, &ctx, &mut cleaner, |r| std::ptr::eq(r, rule))
            };
            let RecordOutcome::Ready { requests, .. } = outcome else {
                continue;
            };
            for request in requests {
                let stored = destination.create(&request).await.unwrap_or_else(|e| {
                    panic!(
                        "{} {} refused: {e}",
                        request.object, request.idempotency_key
                    )
                });
                if request.object == "contact_business_link" {
                    contacts_with_business += 1;
                }
                resolver.insert_id(
                    &record.entity,
                    record.key.as_str(),
                    &request.object,
                    &stored.dest_id,
                );
                *created.entry(request.object.clone()).or_default() += 1;
            }
        }
    }
    for object in ["business", "contact", "opportunity", "note", "task", "file"] {
        assert!(
            created.get(object).copied().unwrap_or(0) > 0,
            "no {object} created: {created:?}"
        );
    }
    assert!(contacts_with_business > 0, "{created:?}");
    // The sandbox holds exactly what was created, with the derived fields on contacts.
    let stored_contacts = handle.shared.store.lock().unwrap().contacts.len();
    assert_eq!(stored_contacts, created["contact"]);
    handle.stop().await;
}

#[tokio::test]
async fn twenty_bodies_from_the_default_map_are_accepted_by_the_sandbox() {
    use cutover_connectors::twenty::sandbox::{
        self as twenty_sandbox, SandboxConfig as TwentySandbox,
    };
    use cutover_connectors::twenty::{ApiToken, TwentyClient, TwentyConfig};

    let (_dir, tables) = practice("12", "3").await;
    let map = default_map("twenty").unwrap();
    let index = clinical(&map, &tables);
    let server = twenty_sandbox::start(TwentySandbox {
        token: Some("map-test-token".into()),
        rate_limit: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = TwentyConfig::new(&server.base_url(), ApiToken::new("map-test-token"))
        .unwrap()
        .with_requests_per_minute(600_000)
        .unwrap();
    config.base_backoff = Duration::from_millis(2);
    config.max_backoff = Duration::from_millis(20);
    let destination = TwentyClient::new(config).unwrap();
    destination
        .ensure_schema(&map.schema())
        .await
        .expect("the map's custom objects and fields are created");

    let mut resolver = MemoryResolver::default();
    for r in &tables["ReferringDentist"] {
        resolver.insert_row(r);
    }
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let mut created: HashMap<String, usize> = HashMap::new();
    for rule in map.plan_order() {
        for record in &tables[&rule.source] {
            let outcome = {
                let ctx = ApplyContext {
                    resolver: &resolver,
                    clinical: &index,
                    today: today(),
                };
                map.apply_rules(record, &ctx, &mut cleaner, |r| std::ptr::eq(r, rule))
            };
            let RecordOutcome::Ready { requests, .. } = outcome else {
                continue;
            };
            for request in requests {
                let stored = destination.create(&request).await.unwrap_or_else(|e| {
                    panic!(
                        "{} {} refused: {e}",
                        request.object, request.idempotency_key
                    )
                });
                assert_eq!(stored.dest_id, request.client_id.unwrap().to_string());
                resolver.insert_id(
                    &record.entity,
                    record.key.as_str(),
                    &request.object,
                    &stored.dest_id,
                );
                *created.entry(request.object.clone()).or_default() += 1;
            }
        }
    }
    for object in TWENTY_OBJECTS {
        assert!(
            created.get(object).copied().unwrap_or(0) > 0,
            "no {object} created: {created:?}"
        );
    }
    let exams = server.records("perioExams");
    assert_eq!(exams.len(), created["perioExam"]);
    assert!(
        exams.iter().all(|e| e["patientId"].is_string()),
        "every exam links its patient"
    );
    server.stop().await;
}
