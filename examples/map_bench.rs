//! Benchmark: the default maps applied to a generated practice, from the
//! export folder, as the run loop will (plan order, one rule at a time,
//! clinical index folded first, references resolved from an in-memory id index).
//!
//! `cargo run --release --example map_bench -- [--patients 5000] [--dest highlevel|twenty]`
//! Figures: `docs/benchmarks/engine-map.md`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_connectors::panda::open_source;
use cutover_connectors::panda::reference::reference_tables;
use cutover_engine::clean::{CleanConfig, Cleaner};
use cutover_engine::map::defaults::default_map;
use cutover_engine::map::{ApplyContext, ClinicalIndex, MemoryResolver, RecordOutcome, Resolve};
use cutover_engine::{SourceItem, SourceRecord, Value};
use futures::StreamExt;

struct Ids {
    keys: HashSet<(String, String)>,
    rows: MemoryResolver,
}

impl Resolve for Ids {
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String> {
        self.keys
            .contains(&(entity.to_string(), key.to_string()))
            .then(|| format!("{object}-{key}"))
    }
    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value> {
        self.rows.source_value(entity, key, column)
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let patients: u32 = arg("--patients", "5000").parse().expect("--patients N");
    let dest = arg("--dest", "highlevel");
    let dir = tempfile::tempdir().expect("temp dir");
    generate(
        dir.path(),
        &GenerateOptions {
            patients,
            seed: 1,
            sqlite: false,
        },
    )
    .expect("generate");
    let source = open_source(&format!("export:{}", dir.path().join("export").display()))
        .await
        .expect("open export");

    let started = Instant::now();
    let mut tables: HashMap<String, Vec<SourceRecord>> = HashMap::new();
    for table in reference_tables() {
        let mut rows = Vec::new();
        let mut stream = source.stream(&table.name, None).await.expect("stream");
        while let Some(item) = stream.next().await {
            if let SourceItem::Record(r) = item.expect("row") {
                rows.push(r);
            }
        }
        tables.insert(table.name.clone(), rows);
    }
    let read = started.elapsed();
    let total_rows: usize = tables.values().map(Vec::len).sum();

    let map = default_map(&dest).expect("default map");
    let apply_started = Instant::now();
    let mut index = ClinicalIndex::new(map.clinical.clone());
    for table in index.tables().map(String::from) {
        for r in &tables[&table] {
            index.add(r);
        }
    }
    let indexed = apply_started.elapsed();
    let mut ids = Ids {
        keys: HashSet::new(),
        rows: MemoryResolver::default(),
    };
    for (name, rows) in &tables {
        for r in rows {
            ids.keys.insert((name.clone(), r.key.0.clone()));
            if name == "ReferringDentist" || name == "TreatmentPlan" {
                ids.rows.insert_row(r);
            }
        }
    }
    let resolver_built = apply_started.elapsed();
    let today = chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
    let ctx = ApplyContext {
        resolver: &ids,
        clinical: &index,
        today,
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).expect("cleaner");
    let (mut applied, mut requests, mut quarantined) = (0usize, 0usize, 0usize);
    for rule in map.plan_order() {
        for record in &tables[&rule.source] {
            applied += 1;
            match map.apply_rules(record, &ctx, &mut cleaner, |r| std::ptr::eq(r, rule)) {
                RecordOutcome::Ready { requests: r, .. } => requests += r.len(),
                RecordOutcome::Quarantined { .. } => quarantined += 1,
            }
        }
    }
    let apply = apply_started.elapsed() - resolver_built;
    println!("destination            {dest}");
    println!("patients               {patients}");
    println!("source rows            {total_rows}");
    println!(
        "read (export folder)   {:.2} s  ({:.0} rows/s)",
        read.as_secs_f64(),
        total_rows as f64 / read.as_secs_f64()
    );
    println!("rule applications      {applied}");
    println!("write requests         {requests}");
    println!("quarantined            {quarantined}");
    let index_rows: usize = index.tables().iter().map(|t| tables[*t].len()).sum();
    println!(
        "clinical index fold    {:.2} s  ({index_rows} exam/site/recall rows, {:.0} rows/s)",
        indexed.as_secs_f64(),
        index_rows as f64 / indexed.as_secs_f64()
    );
    println!(
        "apply (map + cleaning) {:.2} s  ({:.0} applications/s, {:.0} requests/s)",
        apply.as_secs_f64(),
        applied as f64 / apply.as_secs_f64(),
        requests as f64 / apply.as_secs_f64()
    );
    println!(
        "peak RSS               {:.0} MiB (all rows held in memory by this benchmark)",
        peak_rss_mib()
    );
}
