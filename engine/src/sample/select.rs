//! Choosing the sample: N patients spread over the strata, then every row that
//! depends on them and every reference row they (transitively) point at.
//!
//! Strata (from the PANDA reference schema's columns):
//! - referral source: `Patient.ReferringDentistID` (`dentist:<id>`), else
//!   `ReferralSourceText` present (`text`), else `none`;
//! - plan stage: the `Status` of the patient's last `TreatmentPlan` (`none` without one);
//! - visit history: `Appointment` rows of the patient: `none`, `few` (1–3), `many` (4+);
//! - dirt the cleaning rules flag: e-mail invalid or duplicated, a phone that is
//!   not a phone, a birth date in the future, a name missing, a referring dentist
//!   that does not exist (orphan reference).
//!
//! Deterministic: patients are ranked by BLAKE3(seed ‖ key), dirt cases are taken
//! first (at most half the sample, one per kind, the earlier owner of a duplicated
//! e-mail with the duplicate so the duplicate shows), then the rest greedily by how
//! many stratum values not yet covered a patient adds.
//!
//! Dependents and references are found by column name, as PANDA names them: a
//! column named like another table's single-column primary key (or ending with
//! it, `PrimaryProviderID` → `Provider`) refers to that table. A table that refers
//! to `Patient`, or to a table that does, is a dependent table (plans, phases,
//! procedures, exams, findings, comparisons, appointments, notes, letters,
//! documents); its rows follow their parent into the sample. Every other table is
//! a reference table (practices, providers, referring offices and dentists); its
//! rows are taken when a sampled row points at them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use futures::StreamExt;
use serde::Serialize;

use crate::clean::normalise_email;
use crate::clean::to_e164;
use crate::error::SourceError;
use crate::map::MapFile;
use crate::ports::{Source, SourceItem};
use crate::record::{SourceRecord, Value};

use super::SampleError;

pub(super) const PATIENT: &str = "Patient";
const PLAN: &str = "TreatmentPlan";
const APPOINTMENT: &str = "Appointment";
const PHONE_COLUMNS: &[&str] = &["HomePhone", "MobilePhone", "WorkPhone"];

/// Why a patient is in the sample: its stratum values and dirt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectedPatient {
    pub key: String,
    pub referral: String,
    pub plan: String,
    pub visits: String,
    /// Dirt codes (`email_invalid`, `email_duplicate`, `phone_invalid`,
    /// `future_birth_date`, `name_missing`, `orphan_reference`).
    pub dirt: Vec<String>,
}

impl SelectedPatient {
    /// `referral dentist:3 · plan Accepted · visits few · dirt phone_invalid`.
    pub fn strata(&self) -> String {
        let mut out = format!(
            "referral {} · plan {} · visits {}",
            self.referral, self.plan, self.visits
        );
        if !self.dirt.is_empty() {
            out.push_str(" · dirt ");
            out.push_str(&self.dirt.join(","));
        }
        out
    }
}

/// The chosen rows.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub patients: Vec<SelectedPatient>,
    /// (entity lower-cased, key) of every row in the sample.
    pub rows: HashSet<(String, String)>,
    /// The rows themselves, for the report's source values.
    pub records: HashMap<(String, String), SourceRecord>,
}

impl Selection {
    pub fn contains(&self, entity: &str, key: &str) -> bool {
        self.rows
            .contains(&(entity.to_ascii_lowercase(), key.to_string()))
    }

    fn add(&mut self, record: SourceRecord) {
        let id = (record.entity.to_ascii_lowercase(), record.key.0.clone());
        self.rows.insert(id.clone());
        self.records.insert(id, record);
    }

    /// Rows per entity.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for record in self.records.values() {
            *out.entry(record.entity.clone()).or_insert(0) += 1;
        }
        out
    }
}

/// A patient's facts for stratifying.
struct Candidate {
    key: String,
    rank: [u8; 32],
    referral: String,
    dirt: Vec<String>,
    /// Earlier patient holding the same e-mail (for `email_duplicate`).
    duplicate_of: Option<String>,
}

async fn stream_all(
    source: &dyn Source,
    entity: &str,
    mut visit: impl FnMut(SourceRecord),
) -> Result<(), SampleError> {
    let map_err = |error: SourceError| SampleError::Source {
        entity: entity.to_string(),
        error,
    };
    let mut rows = source.stream(entity, None).await.map_err(map_err)?;
    while let Some(item) = rows.next().await {
        if let SourceItem::Record(record) = item.map_err(map_err)? {
            visit(record);
        }
    }
    Ok(())
}

fn text(record: &SourceRecord, column: &str) -> Option<String> {
    match record.get(column) {
        None | Some(Value::Null) => None,
        Some(value) => {
            let s = value.to_string();
            (!s.trim().is_empty()).then_some(s)
        }
    }
}

/// How the tables refer to each other, from their names and primary keys.
struct Graph {
    /// Table → its single-column primary key.
    pk: BTreeMap<String, String>,
    /// Table (as the source names it) → its columns.
    columns: BTreeMap<String, Vec<String>>,
    /// Dependent tables in the order their parents come first.
    dependents: Vec<String>,
}

impl Graph {
    fn new(inventory: &crate::record::Inventory) -> Graph {
        let mut pk = BTreeMap::new();
        let mut columns = BTreeMap::new();
        for table in &inventory.tables {
            if table.primary_key.len() == 1 {
                pk.insert(table.name.clone(), table.primary_key[0].clone());
            }
            columns.insert(
                table.name.clone(),
                table.columns.iter().map(|c| c.name.clone()).collect(),
            );
        }
        let mut graph = Graph {
            pk,
            columns,
            dependents: Vec::new(),
        };
        let root = graph
            .columns
            .keys()
            .find(|t| t.eq_ignore_ascii_case(PATIENT))
            .cloned();
        let Some(root) = root else {
            return graph;
        };
        let mut known: BTreeSet<String> = BTreeSet::from([root.clone()]);
        loop {
            let found: Vec<String> = graph
                .columns
                .iter()
                .filter(|(table, _)| !known.contains(*table))
                .filter(|(table, cols)| {
                    cols.iter().any(|c| {
                        graph
                            .parent_of(table, c)
                            .is_some_and(|parent| known.contains(parent))
                    })
                })
                .map(|(table, _)| table.clone())
                .collect();
            if found.is_empty() {
                break;
            }
            for table in found {
                known.insert(table.clone());
                graph.dependents.push(table);
            }
        }
        graph
    }

    /// The table a column of `table` refers to: the table whose primary-key name
    /// is the column's name or its longest suffix (never `table` itself).
    fn parent_of<'g>(&'g self, table: &str, column: &str) -> Option<&'g String> {
        self.pk
            .iter()
            .filter(|(t, pk)| !t.eq_ignore_ascii_case(table) && column.ends_with(pk.as_str()))
            .max_by_key(|(_, pk)| pk.len())
            .map(|(t, _)| t)
    }

    fn is_dependent(&self, table: &str) -> bool {
        self.dependents
            .iter()
            .any(|t| t.eq_ignore_ascii_case(table))
    }
}

fn rank(seed: u64, key: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(key.as_bytes());
    *hasher.finalize().as_bytes()
}

/// Chooses `n` patients and their rows.
pub async fn select(
    source: &dyn Source,
    map: &MapFile,
    n: usize,
    seed: u64,
    today: NaiveDate,
    region: &str,
) -> Result<Selection, SampleError> {
    let inventory = source
        .discover()
        .await
        .map_err(|error| SampleError::Source {
            entity: "(inventory)".into(),
            error,
        })?;
    let graph = Graph::new(&inventory);
    let table = |name: &str| {
        inventory
            .tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| t.name.clone())
    };
    let patient_table = table(PATIENT).ok_or(SampleError::NoPatients)?;
    let region = region
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .unwrap_or(phonenumber::country::Id::US);

    // Reference tables, whole (small: practices, providers, referring offices and dentists).
    let mut references: BTreeMap<String, BTreeMap<String, SourceRecord>> = BTreeMap::new();
    for name in graph.columns.keys() {
        if name == &patient_table || graph.is_dependent(name) || !graph.pk.contains_key(name) {
            continue;
        }
        let mut rows = BTreeMap::new();
        stream_all(source, name, |r| {
            rows.insert(r.key.0.clone(), r);
        })
        .await?;
        references.insert(name.clone(), rows);
    }
    let dentists: HashSet<String> = references
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case("ReferringDentist"))
        .map(|(_, rows)| rows.keys().cloned().collect())
        .unwrap_or_default();

    // Plans and visits per patient.
    let mut plan_status: HashMap<String, String> = HashMap::new();
    if let Some(plan) = table(PLAN) {
        stream_all(source, &plan, |r| {
            if let (Some(p), Some(s)) = (text(&r, "PatientID"), text(&r, "Status")) {
                plan_status.insert(p, s);
            }
        })
        .await?;
    }
    let mut visits: HashMap<String, usize> = HashMap::new();
    if let Some(appointment) = table(APPOINTMENT) {
        stream_all(source, &appointment, |r| {
            if let Some(p) = text(&r, "PatientID") {
                *visits.entry(p).or_insert(0) += 1;
            }
        })
        .await?;
    }

    // Patients: referral and dirt.
    let mut candidates = Vec::new();
    let mut emails: HashMap<String, String> = HashMap::new();
    stream_all(source, &patient_table, |r| {
        let key = r.key.0.clone();
        let mut dirt = Vec::new();
        let mut duplicate_of = None;
        if let Some(email) = text(&r, "Email") {
            match normalise_email(&email) {
                Err(_) => dirt.push("email_invalid".to_string()),
                Ok(normalised) => match emails.get(&normalised.to_lowercase()) {
                    Some(first) => {
                        dirt.push("email_duplicate".to_string());
                        duplicate_of = Some(first.clone());
                    }
                    None => {
                        emails.insert(normalised.to_lowercase(), key.clone());
                    }
                },
            }
        }
        if PHONE_COLUMNS
            .iter()
            .filter_map(|c| text(&r, c))
            .any(|phone| to_e164(&phone, region).is_err())
        {
            dirt.push("phone_invalid".to_string());
        }
        if let Some(Value::Date(born)) = r.get("DateOfBirth") {
            if *born > today {
                dirt.push("future_birth_date".to_string());
            }
        }
        if text(&r, "FirstName").is_none() || text(&r, "LastName").is_none() {
            dirt.push("name_missing".to_string());
        }
        let referral = match text(&r, "ReferringDentistID") {
            Some(dentist) => {
                if !dentists.contains(&dentist) {
                    dirt.push("orphan_reference".to_string());
                }
                format!("dentist:{dentist}")
            }
            None if text(&r, "ReferralSourceText").is_some() => "text".to_string(),
            None => "none".to_string(),
        };
        candidates.push((
            Candidate {
                rank: rank(seed, &key),
                key,
                referral,
                dirt,
                duplicate_of,
            },
            r,
        ));
    })
    .await?;
    if candidates.is_empty() {
        return Err(SampleError::NoPatients);
    }
    candidates.sort_by_key(|c| c.0.rank);

    let strata_of = |c: &Candidate| -> [String; 3] {
        let visits = match visits.get(&c.key).copied().unwrap_or(0) {
            0 => "none",
            1..=3 => "few",
            _ => "many",
        };
        [
            c.referral.clone(),
            plan_status
                .get(&c.key)
                .cloned()
                .unwrap_or_else(|| "none".into()),
            visits.to_string(),
        ]
    };

    let n = n.min(candidates.len());
    let mut chosen: Vec<usize> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let index_of: HashMap<String, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (c.key.clone(), i))
        .collect();
    // Dirt first: one per kind, at most half the sample.
    let dirt_budget = n.div_ceil(2);
    for kind in [
        "email_invalid",
        "phone_invalid",
        "future_birth_date",
        "orphan_reference",
        "email_duplicate",
        "name_missing",
    ] {
        if chosen.len() >= dirt_budget {
            break;
        }
        let Some(i) = candidates
            .iter()
            .position(|(c, _)| c.dirt.iter().any(|d| d == kind) && !taken.contains(&c.key))
        else {
            continue;
        };
        if candidates[i].0.dirt.iter().any(|d| d == "email_duplicate") {
            // The duplicate shows only next to the earlier holder of the address.
            if chosen.len() + 2 > dirt_budget {
                continue;
            }
            if let Some(first) = candidates[i]
                .0
                .duplicate_of
                .as_ref()
                .and_then(|k| index_of.get(k))
            {
                if taken.insert(candidates[*first].0.key.clone()) {
                    chosen.push(*first);
                }
            }
        }
        if taken.insert(candidates[i].0.key.clone()) {
            chosen.push(i);
        }
    }
    // Then spread: each pick adds the most stratum values not yet covered.
    let mut covered: [HashSet<String>; 3] = Default::default();
    for &i in &chosen {
        for (set, value) in covered.iter_mut().zip(strata_of(&candidates[i].0)) {
            set.insert(value);
        }
    }
    while chosen.len() < n {
        let mut best: Option<(usize, usize)> = None;
        for (i, (c, _)) in candidates.iter().enumerate() {
            if taken.contains(&c.key) {
                continue;
            }
            let gain = covered
                .iter()
                .zip(strata_of(c))
                .filter(|(set, value)| !set.contains(value))
                .count();
            if best.is_none_or(|(_, g)| gain > g) {
                best = Some((i, gain));
            }
            if gain == 3 {
                break;
            }
        }
        let Some((i, gain)) = best else { break };
        if gain == 0 && covered.iter().any(|s| !s.is_empty()) {
            // Everything is covered once: start covering again, for spread.
            covered.iter_mut().for_each(HashSet::clear);
        }
        taken.insert(candidates[i].0.key.clone());
        for (set, value) in covered.iter_mut().zip(strata_of(&candidates[i].0)) {
            set.insert(value);
        }
        chosen.push(i);
    }

    let mut selection = Selection::default();
    let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
    for &i in &chosen {
        let (c, record) = &candidates[i];
        let [referral, plan, visits] = strata_of(c);
        selection.patients.push(SelectedPatient {
            key: c.key.clone(),
            referral,
            plan,
            visits,
            dirt: c.dirt.clone(),
        });
        keys.entry(patient_table.clone())
            .or_default()
            .insert(c.key.clone());
        selection.add(record.clone());
    }
    drop(candidates);

    // Dependents, parents first. Tables no rule reads and no dependent table
    // hangs from (exam sites and teeth) are not read.
    let rule_sources: HashSet<String> = map
        .objects
        .iter()
        .map(|o| o.source.to_ascii_lowercase())
        .collect();
    let mut needed: HashSet<String> = graph
        .dependents
        .iter()
        .filter(|t| rule_sources.contains(&t.to_ascii_lowercase()))
        .cloned()
        .collect();
    for table in graph.dependents.iter().rev() {
        if needed.contains(table) {
            for column in &graph.columns[table] {
                if let Some(parent) = graph.parent_of(table, column) {
                    if graph.is_dependent(parent) {
                        needed.insert(parent.clone());
                    }
                }
            }
        }
    }
    for table in &graph.dependents {
        if !needed.contains(table) {
            continue;
        }
        let links: Vec<(String, String)> = graph.columns[table]
            .iter()
            .filter_map(|c| {
                graph
                    .parent_of(table, c)
                    .filter(|p| *p == &patient_table || graph.is_dependent(p))
                    .map(|p| (c.clone(), p.clone()))
            })
            .collect();
        let mut mine = HashSet::new();
        let mut rows = Vec::new();
        stream_all(source, table, |r| {
            let belongs = links.iter().any(|(column, parent)| {
                text(&r, column).is_some_and(|v| keys.get(parent).is_some_and(|k| k.contains(&v)))
            });
            if belongs {
                mine.insert(r.key.0.clone());
                rows.push(r);
            }
        })
        .await?;
        keys.insert(table.clone(), mine);
        for r in rows {
            selection.add(r);
        }
    }

    // References the sampled rows point at, transitively.
    let mut pending: Vec<SourceRecord> = selection.records.values().cloned().collect();
    while let Some(record) = pending.pop() {
        let Some(columns) = graph
            .columns
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(&record.entity))
            .map(|(_, c)| c)
        else {
            continue;
        };
        for column in columns {
            let Some(parent) = graph.parent_of(&record.entity, column) else {
                continue;
            };
            let (Some(rows), Some(value)) = (references.get(parent), text(&record, column)) else {
                continue;
            };
            if let Some(row) = rows.get(&value) {
                if !selection.contains(&row.entity, &row.key.0) {
                    selection.add(row.clone());
                    pending.push(row.clone());
                }
            }
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ColumnInfo, Inventory, TableInfo};

    fn table(name: &str, pk: &[&str], columns: &[&str]) -> TableInfo {
        TableInfo {
            name: name.into(),
            columns: columns
                .iter()
                .map(|c| ColumnInfo {
                    name: c.to_string(),
                    sql_type: "INT".into(),
                    nullable: true,
                })
                .collect(),
            row_count: 0,
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            modified_column: None,
        }
    }

    #[test]
    fn the_graph_tells_dependents_from_references() {
        let inventory = Inventory {
            tables: vec![
                table("Practice", &["PracticeID"], &["PracticeID"]),
                table(
                    "ReferringPractice",
                    &["ReferringPracticeID"],
                    &["ReferringPracticeID"],
                ),
                table(
                    "ReferringDentist",
                    &["ReferringDentistID"],
                    &["ReferringDentistID", "ReferringPracticeID"],
                ),
                table("Provider", &["ProviderID"], &["ProviderID", "PracticeID"]),
                table(
                    "Patient",
                    &["PatientID"],
                    &[
                        "PatientID",
                        "PracticeID",
                        "PrimaryProviderID",
                        "ReferringDentistID",
                    ],
                ),
                table(
                    "TreatmentPlan",
                    &["PlanID"],
                    &["PlanID", "PatientID", "ProviderID"],
                ),
                table("TreatmentPhase", &["PhaseID"], &["PhaseID", "PlanID"]),
                table(
                    "PlannedProcedure",
                    &["ProcedureID"],
                    &["ProcedureID", "PhaseID"],
                ),
                table(
                    "PerioExamSite",
                    &["ExamID", "ToothNumber", "Site"],
                    &["ExamID"],
                ),
                table("PerioExam", &["ExamID"], &["ExamID", "PatientID"]),
            ],
        };
        let graph = Graph::new(&inventory);
        assert_eq!(
            graph
                .parent_of("ReferringDentist", "ReferringPracticeID")
                .map(String::as_str),
            Some("ReferringPractice")
        );
        assert_eq!(
            graph
                .parent_of("Patient", "PrimaryProviderID")
                .map(String::as_str),
            Some("Provider")
        );
        assert!(graph.is_dependent("PlannedProcedure"));
        assert!(graph.is_dependent("PerioExamSite"));
        assert!(!graph.is_dependent("Provider"));
        assert!(!graph.is_dependent("ReferringDentist"));
        let at = |t: &str| graph.dependents.iter().position(|d| d == t).unwrap();
        assert!(at("TreatmentPlan") < at("TreatmentPhase"));
        assert!(at("TreatmentPhase") < at("PlannedProcedure"));
    }
}

#[cfg(test)]
mod selection_tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures::stream;

    use super::*;
    use crate::ports::SourceStream;
    use crate::record::{ColumnInfo, Inventory, SourceKey, TableInfo, Watermark};

    /// Tables as (name, primary key, rows of (column, value)).
    struct Memory {
        tables: Vec<(&'static str, &'static str, Vec<SourceRecord>)>,
        streamed: Mutex<Vec<String>>,
    }

    fn row(entity: &str, pk: &str, cells: &[(&str, Value)]) -> SourceRecord {
        let fields: BTreeMap<String, Value> = cells
            .iter()
            .map(|(c, v)| (c.to_string(), v.clone()))
            .collect();
        SourceRecord {
            entity: entity.into(),
            key: SourceKey::new(fields[pk].to_string()),
            fields,
            modified_at: None,
        }
    }

    #[async_trait]
    impl Source for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn discover(&self) -> Result<Inventory, SourceError> {
            Ok(Inventory {
                tables: self
                    .tables
                    .iter()
                    .map(|(name, pk, rows)| TableInfo {
                        name: name.to_string(),
                        columns: rows
                            .first()
                            .map(|r| {
                                r.fields
                                    .keys()
                                    .map(|c| ColumnInfo {
                                        name: c.clone(),
                                        sql_type: "INT".into(),
                                        nullable: true,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        row_count: rows.len() as u64,
                        primary_key: pk.split(',').map(String::from).collect(),
                        modified_column: None,
                    })
                    .collect(),
            })
        }
        async fn count(&self, _entity: &str) -> Result<u64, SourceError> {
            Ok(0)
        }
        async fn stream(
            &self,
            entity: &str,
            _since: Option<Watermark>,
        ) -> Result<SourceStream, SourceError> {
            self.streamed.lock().unwrap().push(entity.to_string());
            let rows: Vec<Result<SourceItem, SourceError>> = self
                .tables
                .iter()
                .filter(|(name, ..)| *name == entity)
                .flat_map(|(_, _, rows)| rows.clone())
                .map(|r| Ok(SourceItem::Record(r)))
                .collect();
            Ok(Box::pin(stream::iter(rows)))
        }
    }

    fn practice() -> Memory {
        let int = Value::Int;
        let txt = |s: &str| Value::Text(s.into());
        let mut patients = Vec::new();
        let mut plans = Vec::new();
        let mut phases = Vec::new();
        let mut visits = Vec::new();
        for p in 1..=30i64 {
            let email = match p {
                7 => txt("not an e-mail"),
                9 | 21 => txt("family@example.test"),
                _ => txt(&format!("p{p}@example.test")),
            };
            let dentist = match p % 4 {
                0 => Value::Null,
                1 => int(1),
                2 => int(2),
                _ if p == 11 => int(99),
                _ => int(1),
            };
            patients.push(row(
                "Patient",
                "PatientID",
                &[
                    ("PatientID", int(p)),
                    ("FirstName", txt("A")),
                    ("LastName", txt("B")),
                    ("Email", email),
                    (
                        "MobilePhone",
                        if p == 13 {
                            txt("n/a")
                        } else {
                            txt("(512) 555-0134")
                        },
                    ),
                    (
                        "DateOfBirth",
                        Value::Date(
                            NaiveDate::from_ymd_opt(if p == 17 { 2099 } else { 1970 }, 1, 1)
                                .unwrap(),
                        ),
                    ),
                    ("ReferringDentistID", dentist),
                    ("PrimaryProviderID", int(1 + p % 2)),
                ],
            ));
            if p % 3 != 0 {
                plans.push(row(
                    "TreatmentPlan",
                    "PlanID",
                    &[
                        ("PlanID", int(100 + p)),
                        ("PatientID", int(p)),
                        (
                            "Status",
                            txt(["Proposed", "Accepted", "Completed"][p as usize % 3]),
                        ),
                    ],
                ));
                phases.push(row(
                    "TreatmentPhase",
                    "PhaseID",
                    &[("PhaseID", int(1000 + p)), ("PlanID", int(100 + p))],
                ));
            }
            for v in 0..(p % 6) {
                visits.push(row(
                    "Appointment",
                    "AppointmentID",
                    &[("AppointmentID", int(p * 10 + v)), ("PatientID", int(p))],
                ));
            }
        }
        Memory {
            tables: vec![
                (
                    "Practice",
                    "PracticeID",
                    vec![row("Practice", "PracticeID", &[("PracticeID", int(1))])],
                ),
                (
                    "Provider",
                    "ProviderID",
                    (1..=3)
                        .map(|i| {
                            row(
                                "Provider",
                                "ProviderID",
                                &[("ProviderID", int(i)), ("PracticeID", int(1))],
                            )
                        })
                        .collect(),
                ),
                (
                    "ReferringPractice",
                    "ReferringPracticeID",
                    (1..=3)
                        .map(|i| {
                            row(
                                "ReferringPractice",
                                "ReferringPracticeID",
                                &[("ReferringPracticeID", int(i))],
                            )
                        })
                        .collect(),
                ),
                (
                    "ReferringDentist",
                    "ReferringDentistID",
                    (1..=3)
                        .map(|i| {
                            row(
                                "ReferringDentist",
                                "ReferringDentistID",
                                &[
                                    ("ReferringDentistID", int(i)),
                                    ("ReferringPracticeID", int(i)),
                                ],
                            )
                        })
                        .collect(),
                ),
                ("Patient", "PatientID", patients),
                ("TreatmentPlan", "PlanID", plans),
                ("TreatmentPhase", "PhaseID", phases),
                ("Appointment", "AppointmentID", visits),
                (
                    "PerioExamSite",
                    "ExamID,ToothNumber,Site",
                    vec![row(
                        "PerioExamSite",
                        "ExamID",
                        &[("ExamID", int(1)), ("PatientID", int(1))],
                    )],
                ),
            ],
            streamed: Mutex::new(Vec::new()),
        }
    }

    const MAP: &str = r#"
format = 1
destination = "twenty"

[[object]]
source = "ReferringPractice"
target = "company"
field = [{ to = "name", from = "ReferringPracticeID" }]

[[object]]
source = "Patient"
target = "person"
field = [{ to = "name.firstName", from = "FirstName" }]

[[object]]
source = "TreatmentPhase"
target = "treatmentPhase"
field = [{ to = "name", from = "PhaseID" }]

[[object]]
source = "Appointment"
target = "task"
field = [{ to = "title", from = "AppointmentID" }]
"#;

    async fn choose(source: &Memory, n: usize, seed: u64) -> Selection {
        let map = MapFile::from_toml(MAP).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        select(source, &map, n, seed, today, "US").await.unwrap()
    }

    #[tokio::test]
    async fn the_same_seed_chooses_the_same_spread_with_dependents_and_references() {
        let source = practice();
        let a = choose(&source, 8, 42).await;
        let b = choose(&source, 8, 42).await;
        let keys = |s: &Selection| s.patients.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(a.patients.len(), 8);
        assert_eq!(a.rows, b.rows);

        // Dirt first, at most half: invalid e-mail, bad phone, future birth, orphan dentist.
        let dirt: BTreeSet<&str> = a
            .patients
            .iter()
            .flat_map(|p| p.dirt.iter().map(String::as_str))
            .collect();
        for kind in ["email_invalid", "phone_invalid", "future_birth_date"] {
            assert!(dirt.contains(kind), "{kind} missing from {dirt:?}");
        }
        assert!(a.patients.iter().filter(|p| !p.dirt.is_empty()).count() <= 4);
        // The spread.
        let spread = |f: fn(&SelectedPatient) -> &str| {
            a.patients.iter().map(f).collect::<BTreeSet<_>>().len()
        };
        assert!(spread(|p| &p.referral) >= 3);
        assert!(spread(|p| &p.plan) >= 3);
        assert!(spread(|p| &p.visits) >= 3);

        // Every chosen patient's plans, phases and appointments, and nobody else's.
        let chosen: HashSet<String> = a.patients.iter().map(|p| p.key.clone()).collect();
        for record in a.records.values() {
            let owner = match record.entity.as_str() {
                "Patient" | "Appointment" | "TreatmentPlan" => {
                    record.fields["PatientID"].to_string()
                }
                "TreatmentPhase" => (record.fields["PlanID"].as_i64().unwrap() - 100).to_string(),
                _ => continue,
            };
            assert!(
                chosen.contains(&owner),
                "{} {} belongs to {owner}",
                record.entity,
                record.key
            );
        }
        for p in &chosen {
            let id: i64 = p.parse().unwrap();
            assert_eq!(
                a.records.values().filter(|r| r.entity == "Appointment" && r.fields["PatientID"] == Value::Int(id)).count() as i64,
                id % 6
            );
            if id % 3 != 0 {
                assert!(a.contains("TreatmentPhase", &(1000 + id).to_string()));
            }
        }
        // References, transitively: the dentists, their offices, the providers, the practice.
        for patient in a.records.values().filter(|r| r.entity == "Patient") {
            if let Value::Int(d) = patient.fields["ReferringDentistID"] {
                if d <= 3 {
                    assert!(a.contains("ReferringDentist", &d.to_string()));
                    assert!(a.contains("ReferringPractice", &d.to_string()));
                }
            }
            assert!(a.contains("Provider", &patient.fields["PrimaryProviderID"].to_string()));
        }
        assert!(a.contains("Practice", "1"));
        // Sites are read by the clinical index, not here.
        assert!(!source
            .streamed
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == "PerioExamSite"));

        let other = choose(&source, 8, 7).await;
        assert_ne!(keys(&other), keys(&a), "another seed, another sample");
        let all = choose(&source, 100, 1).await;
        assert_eq!(all.patients.len(), 30);
    }
}
