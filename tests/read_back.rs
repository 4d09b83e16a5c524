//! Read-back in the vocabulary of what was sent: every record the default maps
//! produce for a generated practice, written unchanged to a sandbox, reads back
//! equal for every mapped field (`ReadDestination::read_as_sent` and
//! `engine::compare::field_differences`), for both CRMs. Reconcile, the sample
//! report and the rollback drift check rest on this.

#[path = "support/practice.rs"]
mod practice_support;
use practice_support::{clinical, generated, today, Tables, TWENTY_OBJECTS};

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use cutover_connectors::highlevel::HighLevelDestination;
use cutover_engine::clean::{CleanConfig, Cleaner};
use cutover_engine::compare::field_differences;
use cutover_engine::map::defaults::default_map;
use cutover_engine::map::{ApplyContext, MapFile, MemoryResolver, RecordOutcome};
use cutover_engine::{Destination, SourceRecord};

async fn practice(patients: &str, seed: &str) -> (tempfile::TempDir, Tables) {
    let (dir, tables, _unreadable) = generated(patients, seed).await;
    (dir, tables)
}

/// Writes the whole practice through `destination`, reads each record back and
/// returns the differences per `object.path` (with one example each) and the
/// number of records checked per object.
async fn write_and_read_back(
    destination: &dyn Destination,
    map: &MapFile,
    tables: &BTreeMap<String, Vec<SourceRecord>>,
) -> (BTreeMap<String, (usize, String)>, BTreeMap<String, usize>) {
    let index = clinical(map, tables);
    let mut resolver = MemoryResolver::default();
    for name in ["ReferringDentist", "TreatmentPlan"] {
        for r in &tables[name] {
            resolver.insert_row(r);
        }
    }
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let mut diffs: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
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
                resolver.insert_id(
                    &record.entity,
                    record.key.as_str(),
                    &request.object,
                    &stored.dest_id,
                );
                let held = destination
                    .get(&request.object, &stored.dest_id)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| {
                        panic!(
                            "{} {} not found after create",
                            request.object, stored.dest_id
                        )
                    });
                let read = destination.read_as_sent(&request.body, &held);
                for d in field_differences(&request.body, &read) {
                    let entry = diffs
                        .entry(format!("{}.{}", request.object, d.path))
                        .or_insert((0, format!("sent {} held {}", d.sent, d.held)));
                    entry.0 += 1;
                }
                *checked.entry(request.object.clone()).or_default() += 1;
            }
        }
    }
    (diffs, checked)
}

/// Every object in `objects` had records checked, and no field differed.
fn assert_read_back_whole(
    diffs: &BTreeMap<String, (usize, String)>,
    checked: &BTreeMap<String, usize>,
    objects: &[&str],
) {
    for object in objects {
        assert!(
            checked.get(*object).copied().unwrap_or(0) > 0,
            "no {object} checked: {checked:?}"
        );
    }
    assert!(
        diffs.is_empty(),
        "fields that do not read back as sent: {diffs:#?}"
    );
}

#[tokio::test]
async fn highlevel_records_read_back_as_sent() {
    let (_dir, tables) = practice("15", "3").await;
    let map = default_map("highlevel").unwrap();
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
    destination.ensure_schema(&map.schema()).await.unwrap();
    let (diffs, checked) = write_and_read_back(&destination, &map, &tables).await;
    assert_read_back_whole(
        &diffs,
        &checked,
        &[
            "business",
            "contact",
            "contact_business_link",
            "opportunity",
            "note",
            "task",
            "file",
        ],
    );
    handle.stop().await;
}

#[tokio::test]
async fn twenty_records_read_back_as_sent() {
    use cutover_connectors::twenty::sandbox::{
        self as twenty_sandbox, SandboxConfig as TwentySandbox,
    };
    use cutover_connectors::twenty::{ApiToken, TwentyClient, TwentyConfig};

    let (_dir, tables) = practice("15", "3").await;
    let map = default_map("twenty").unwrap();
    let server = twenty_sandbox::start(TwentySandbox {
        token: Some("rb-token".into()),
        rate_limit: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = TwentyConfig::new(&server.base_url(), ApiToken::new("rb-token"))
        .unwrap()
        .with_requests_per_minute(600_000)
        .unwrap();
    config.base_backoff = Duration::from_millis(2);
    config.max_backoff = Duration::from_millis(20);
    let destination = TwentyClient::new(config).unwrap();
    destination.ensure_schema(&map.schema()).await.unwrap();
    let (diffs, checked) = write_and_read_back(&destination, &map, &tables).await;
    assert_read_back_whole(&diffs, &checked, &TWENTY_OBJECTS);
    server.stop().await;
}
