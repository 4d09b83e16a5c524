//! `cutover sample -n N`: a representative slice of the practice written for
//! real, read back, and compared field by field (DESIGN §5, Sample).
//!
//! 1. [`select`] chooses N patients spread over the strata (referral source,
//!    plan stage, visit history, the dirt the cleaning rules flag) and takes
//!    their dependent rows and the reference rows they point at.
//! 2. The migration runs restricted to those rows ([`crate::run::run_migration`]
//!    with kind `Sample` and a [`RecordFilter`]): an ordinary ledgered run,
//!    intents and confirmations like any other, so `rollback --run` undoes it
//!    and a later `run` skips what it already moved.
//! 3. [`read_back`]: for every sampled row and rule, from the ledger's record
//!    state, the payload the destination confirmed (its blob) is compared with
//!    the record as the destination holds it
//!    ([`ReadDestination::read_as_sent`]), field by field, with the source
//!    value of the map line next to it. Records held back get one
//!    `quarantined` line with their reasons.

mod select;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cutover_ledger::{Ledger, LedgerError, RunKind, TargetStatus};
use futures::{stream, StreamExt};
use serde_json::{Map as JsonMap, Value as Json};

use crate::compare::values_match;
use crate::error::{DestError, SourceError};
use crate::map::{FieldMap, MapFile, Transform};
use crate::ports::{flatten_paths, lookup_path, DestRecord, Destination, ReadDestination, Source};
use crate::record::{SourceRecord, Value};
use crate::report::{cell, shorten, DiffRow, Verdict};
use crate::run::{run_migration, Progress, RecordFilter, RunError, RunOptions, RunReport};

pub use select::{select, SelectedPatient, Selection};

/// How big a sample, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOptions {
    /// Patients to take (fewer when the practice has fewer).
    pub patients: usize,
    /// Same seed, same patients (for a given source).
    pub seed: u64,
}

/// What a sample did and found.
#[derive(Debug)]
pub struct SampleOutcome {
    pub selection: Selection,
    pub run: RunReport,
    /// The report's lines, in plan order, then by source key.
    pub rows: Vec<DiffRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("reading {entity} from the source")]
    Source {
        entity: String,
        #[source]
        error: SourceError,
    },
    #[error("the source has no patients to sample")]
    NoPatients,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Reading the written records back failed (kind and endpoint only).
    #[error("reading the sample back from the destination ({object})")]
    Destination {
        object: String,
        #[source]
        error: DestError,
    },
}

/// Chooses, writes and reads back a sample. `options.kind` and
/// `options.filter` are set here (`Sample`, the selection).
pub async fn run_sample(
    ledger: &mut Ledger,
    source: &dyn Source,
    dest: &dyn Destination,
    map: &MapFile,
    options: &RunOptions,
    sample: SampleOptions,
    progress: &dyn Progress,
) -> Result<SampleOutcome, SampleError> {
    progress.phase("choosing the sample");
    let selection = select(
        source,
        map,
        sample.patients,
        sample.seed,
        options.today,
        &options.clean.default_region,
    )
    .await?;
    let rows = Arc::new(selection.rows.clone());
    let filter: RecordFilter = Arc::new(move |record: &SourceRecord| {
        rows.contains(&(record.entity.to_ascii_lowercase(), record.key.0.clone()))
    });
    let mut options = options.clone();
    options.kind = RunKind::Sample;
    options.filter = Some(filter);
    let run = run_migration(ledger, source, dest, map, &options, progress).await?;
    progress.phase("reading the sample back");
    let rows = read_back(ledger, dest, map, &selection, options.concurrency).await?;
    Ok(SampleOutcome {
        selection,
        run,
        rows,
    })
}

/// One record to read back.
struct Job<'m> {
    object: String,
    entity: String,
    key: String,
    dest_id: String,
    sent: JsonMap<String, Json>,
    fields: &'m [FieldMap],
    record: &'m SourceRecord,
    note: String,
}

/// The report lines for the selection, from the ledger and the destination.
pub async fn read_back(
    ledger: &Ledger,
    dest: &dyn ReadDestination,
    map: &MapFile,
    selection: &Selection,
    concurrency: usize,
) -> Result<Vec<DiffRow>, SampleError> {
    let notes: BTreeMap<&str, String> = selection
        .patients
        .iter()
        .map(|p| (p.key.as_str(), format!("sampled: {}", p.strata())))
        .collect();
    let mut records: Vec<&SourceRecord> = selection.records.values().collect();
    records.sort_by(|a, b| {
        (a.entity.as_str(), natural(&a.key.0)).cmp(&(b.entity.as_str(), natural(&b.key.0)))
    });
    let mut out = Vec::new();
    let mut jobs = Vec::new();
    let mut quarantined: HashSet<(&str, &str)> = HashSet::new();
    for rule in map.plan_order() {
        for record in records
            .iter()
            .filter(|r| r.entity.eq_ignore_ascii_case(&rule.source))
        {
            let key = record.key.0.as_str();
            let note = if rule.source.eq_ignore_ascii_case(select::PATIENT) {
                notes.get(key).cloned().unwrap_or_default()
            } else {
                String::new()
            };
            let Some(state) = ledger.record_state(&record.entity, key)? else {
                continue;
            };
            let target = state.targets.get(&rule.target);
            let written = target.and_then(|t| match (t.status, &t.dest_id, t.confirmed_hash) {
                (TargetStatus::Confirmed, Some(id), Some(hash)) => Some((id.clone(), hash)),
                _ => None,
            });
            if written.is_none() {
                if let Some(reasons) = &state.quarantine {
                    // One line per record held back, at its first rule that did not write.
                    if quarantined.insert((record.entity.as_str(), key)) {
                        let reasons: Vec<String> = reasons
                            .iter()
                            .map(|r| format!("{}: {}", r.code, r.detail))
                            .collect();
                        out.push(DiffRow {
                            object: rule.target.clone(),
                            entity: record.entity.clone(),
                            key: key.to_string(),
                            dest_id: String::new(),
                            field: String::new(),
                            source_columns: String::new(),
                            source_value: String::new(),
                            sent_value: String::new(),
                            dest_value: String::new(),
                            verdict: Verdict::Quarantined,
                            note: join_notes(&reasons.join("; "), &note),
                        });
                    }
                    continue;
                }
            }
            let Some(target) = target else {
                // No write for this rule (a link rule whose column is empty).
                continue;
            };
            let Some((dest_id, hash)) = written else {
                let status = match target.status {
                    TargetStatus::Failed => format!(
                        "write failed ({})",
                        target
                            .last_failure
                            .map(|c| format!("{c:?}").to_lowercase())
                            .unwrap_or_default()
                    ),
                    other => format!("status {}", format!("{other:?}").to_lowercase()),
                };
                out.push(DiffRow {
                    object: rule.target.clone(),
                    entity: record.entity.clone(),
                    key: key.to_string(),
                    dest_id: target.dest_id.clone().unwrap_or_default(),
                    field: String::new(),
                    source_columns: String::new(),
                    source_value: String::new(),
                    sent_value: String::new(),
                    dest_value: String::new(),
                    verdict: Verdict::NotWritten,
                    note: join_notes(&status, &note),
                });
                continue;
            };
            let sent = ledger
                .blob(&hash)?
                .and_then(|bytes| serde_json::from_slice::<Json>(&bytes).ok())
                .and_then(|v| match v {
                    Json::Object(map) => Some(map),
                    _ => None,
                })
                .unwrap_or_default();
            jobs.push(Job {
                object: rule.target.clone(),
                entity: record.entity.clone(),
                key: key.to_string(),
                dest_id,
                sent,
                fields: &rule.fields,
                record,
                note,
            });
        }
    }
    let fetched: Vec<Result<Option<DestRecord>, DestError>> = stream::iter(jobs.iter())
        .map(|job| dest.get(&job.object, &job.dest_id))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for (job, held) in jobs.iter().zip(fetched) {
        let held = held.map_err(|error| SampleError::Destination {
            object: job.object.clone(),
            error,
        })?;
        out.extend(compare_record(dest, job, held.as_ref()));
    }
    Ok(out)
}

/// The lines of one written record.
fn compare_record(
    dest: &dyn ReadDestination,
    job: &Job<'_>,
    held: Option<&DestRecord>,
) -> Vec<DiffRow> {
    // Ask for the map's fields the body left out too, so a dropped value shows
    // what the destination holds there.
    let mut probe = job.sent.clone();
    for field in job.fields {
        if lookup_path(&Json::Object(probe.clone()), &field.to).is_none() {
            set_path(&mut probe, &field.to, Json::Null);
        }
    }
    let held_values = held.map(|record| dest.read_as_sent(&probe, record));
    let line = |field: &str,
                columns: String,
                source: String,
                sent: String,
                at: String,
                verdict,
                note: &str| DiffRow {
        object: job.object.clone(),
        entity: job.entity.clone(),
        key: job.key.clone(),
        dest_id: job.dest_id.clone(),
        field: field.to_string(),
        source_columns: columns,
        source_value: source,
        sent_value: sent,
        dest_value: at,
        verdict,
        note: note.to_string(),
    };
    let mut out = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut first_note = job.note.as_str();
    let gone = if held.is_none() {
        "the record is not at the destination"
    } else {
        ""
    };
    for field in job.fields {
        if !done.insert(field.to.clone()) {
            continue;
        }
        let (columns, source) = source_of(field, job.record);
        let sent = lookup_path(&Json::Object(job.sent.clone()), &field.to).cloned();
        let at = held_values
            .as_ref()
            .and_then(|h| h.get(&field.to).cloned())
            .unwrap_or(Json::Null);
        let verdict = match &sent {
            None if source.is_empty() => continue,
            None => Verdict::NotSent,
            Some(sent) => verdict(sent, &at, held.is_some()),
        };
        let note = join_notes(gone, first_note);
        out.push(line(
            &field.to,
            columns,
            source,
            sent.as_ref().map(cell).unwrap_or_default(),
            cell(&at),
            verdict,
            &note,
        ));
        first_note = "";
    }
    // Anything the body carries that no map line names.
    flatten_paths("", &Json::Object(job.sent.clone()), &mut |path, value| {
        if done.contains(path)
            || job
                .fields
                .iter()
                .any(|f| path.starts_with(&format!("{}.", f.to)))
        {
            return;
        }
        done.insert(path.to_string());
        let at = held_values
            .as_ref()
            .and_then(|h| h.get(path).cloned())
            .unwrap_or(Json::Null);
        out.push(line(
            path,
            String::new(),
            String::new(),
            cell(value),
            cell(&at),
            verdict(value, &at, held.is_some()),
            gone,
        ));
    });
    out
}

fn verdict(sent: &Json, at: &Json, present: bool) -> Verdict {
    if !present {
        return Verdict::MissingAtDestination;
    }
    if sent == at {
        Verdict::Match
    } else if values_match(sent, at) {
        Verdict::Normalised
    } else if at.is_null() && !sent.is_null() {
        Verdict::MissingAtDestination
    } else {
        Verdict::Differs
    }
}

/// The source side of a map line: its column names and their values.
fn source_of(field: &FieldMap, record: &SourceRecord) -> (String, String) {
    let columns: Vec<&str> = field.from.as_ref().map(|c| c.names()).unwrap_or_default();
    let value = |name: &str| match record.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    };
    match field.transform {
        Transform::Constant => ("(constant)".into(), String::new()),
        Transform::Derived => ("(derived from the exams)".into(), String::new()),
        Transform::Template => {
            let placeholders = field
                .template
                .as_deref()
                .map(crate::map::format::template_columns)
                .unwrap_or_default();
            let values: Vec<String> = placeholders.iter().map(|c| value(c)).collect();
            let joined = if values.iter().all(String::is_empty) {
                String::new()
            } else {
                values.join(" | ")
            };
            (placeholders.join("+"), shorten(joined))
        }
        _ => {
            let values: Vec<String> = columns.iter().map(|c| value(c)).collect();
            let joined = if values.iter().all(String::is_empty) {
                String::new()
            } else {
                values.join(" | ")
            };
            (columns.join("+"), shorten(joined))
        }
    }
}

fn join_notes(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// Sorts numeric keys as numbers (`2` before `10`).
fn natural(key: &str) -> (u64, &str) {
    (key.parse::<u64>().unwrap_or(u64::MAX), key)
}

/// Sets a dotted path in a JSON object, creating the objects on the way.
fn set_path(map: &mut JsonMap<String, Json>, path: &str, value: Json) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = map
                .entry(head.to_string())
                .or_insert_with(|| Json::Object(JsonMap::new()));
            if let Json::Object(inner) = inner {
                set_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&json!("a"), &json!("a"), true), Verdict::Match);
        assert_eq!(verdict(&json!(40), &json!("40"), true), Verdict::Normalised);
        assert_eq!(verdict(&json!("a"), &json!("b"), true), Verdict::Differs);
        assert_eq!(
            verdict(&json!("a"), &Json::Null, true),
            Verdict::MissingAtDestination
        );
        assert_eq!(
            verdict(&json!("a"), &json!("a"), false),
            Verdict::MissingAtDestination
        );
    }

    #[test]
    fn paths_are_set_nested() {
        let mut map = json!({"name": {"firstName": "A"}})
            .as_object()
            .unwrap()
            .clone();
        set_path(&mut map, "name.lastName", Json::Null);
        set_path(&mut map, "x", json!(1));
        assert_eq!(
            Json::Object(map),
            json!({"name": {"firstName": "A", "lastName": null}, "x": 1})
        );
    }
}
