//! A generated practice read back through the export source, table by table, for
//! tests that apply the default maps in process (`map_apply`, `read_back`).

use std::collections::BTreeMap;
use std::process::Command;

use chrono::NaiveDate;
use cutover_connectors::panda::open_source;
use cutover_connectors::panda::reference::reference_tables;
use cutover_engine::map::{ClinicalIndex, MapFile};
use cutover_engine::{SourceItem, SourceRecord};
use futures::StreamExt;

/// The Twenty objects the default map writes, in dependency order.
pub const TWENTY_OBJECTS: [&str; 9] = [
    "company",
    "person",
    "perioExam",
    "treatmentPlan",
    "note",
    "noteTarget",
    "task",
    "taskTarget",
    "attachment",
];

/// Every table's records, by table name.
pub type Tables = BTreeMap<String, Vec<SourceRecord>>;

/// `cutover generate --patients P --seed S` into a temporary folder, every table
/// streamed; the places of rows the source could not read come back beside them.
pub async fn generated(patients: &str, seed: &str) -> (tempfile::TempDir, Tables, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "generate",
            "--patients",
            patients,
            "--seed",
            seed,
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = open_source(&format!("export:{}", dir.path().join("export").display()))
        .await
        .unwrap();
    let mut tables = BTreeMap::new();
    let mut unreadable = Vec::new();
    for table in reference_tables() {
        let mut rows = Vec::new();
        let mut stream = source.stream(&table.name, None).await.unwrap();
        while let Some(item) = stream.next().await {
            match item.unwrap() {
                SourceItem::Record(r) => rows.push(r),
                SourceItem::Unreadable { place, .. } => unreadable.push(place.to_string()),
            }
        }
        tables.insert(table.name.clone(), rows);
    }
    (dir, tables, unreadable)
}

/// The clinical index the map's derived values read, built from the tables.
pub fn clinical(map: &MapFile, tables: &Tables) -> ClinicalIndex {
    let mut index = ClinicalIndex::new(map.clinical.clone());
    for table in index.tables().map(String::from) {
        for r in &tables[&table] {
            index.add(r);
        }
    }
    index
}

/// The generated practice's "today" (the generator's fixed as-of date): its
/// future birth dates are future relative to that day.
pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
}
