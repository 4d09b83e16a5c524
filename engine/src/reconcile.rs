//! `cutover reconcile`: source against ledger against destination.
//!
//! Per rule of the confirmed map (`Entity → object`, in plan order), the source
//! entity is streamed once and every row is accounted for from the ledger's
//! record state alone:
//!
//! - **confirmed**: the destination confirmed a write of this row to the object;
//! - **quarantined**: the row is quarantined (its reasons are in the ledger);
//! - **skipped**: the rule does not apply to the row (`when_present` column
//!   empty) or the rule is optional and the row was not written (flagged);
//! - **rolled back**: the write was compensated by a rollback;
//! - anything else is **unaccounted** (a failed write, an intent still in
//!   doubt, a row the ledger never saw) and listed.
//!
//! The equation `source rows = confirmed + quarantined + skipped + rolled back`
//! must hold per rule (the source's own row count on the left).
//!
//! Every confirmed record (or a deterministic sample of `n` per rule) is then
//! read back: `ReadDestination::get` by its destination id, put in the
//! vocabulary of the payload the ledger says was sent
//! (`ReadDestination::read_as_sent`), and compared by the canonical hash of
//! both flattened bodies; where the hashes differ the fields are compared one
//! by one (`compare::field_differences`, which allows number forms and
//! surrounding whitespace) and each differing field is listed. A record the
//! destination does not have is listed as missing.
//!
//! Memory is bounded: rows stream, checks go in chunks of `chunk` records,
//! read with `ReadDestination::get_many` where the destination reads many ids
//! per request (Twenty: 100, under its 100 requests a minute) and otherwise
//! with `concurrency` single reads in flight (the connector's budget paces them), a sample keeps only its `n` picks per rule,
//! and findings are handed to the caller one by one.

use std::collections::BinaryHeap;

use cutover_ledger::{Digest, Ledger, LedgerError, TargetStatus};
use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use crate::compare::{field_differences, FieldDifference};
use crate::error::{DestError, SourceError};
use crate::map::{MapFile, ObjectMap};
use crate::ports::{canonical_json, flatten_paths, ReadDestination, Source, SourceItem};
use crate::record::Value;

/// How to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Read back only this many confirmed records per rule (a deterministic
    /// sample chosen by `seed`); `None` reads back every one.
    pub sample: Option<usize>,
    pub seed: u64,
    /// Destination reads in flight at once.
    pub concurrency: usize,
    /// Records per round of reads.
    pub chunk: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            sample: None,
            seed: 0,
            concurrency: 8,
            chunk: 256,
        }
    }
}

/// One rule's accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectReconcile {
    pub entity: String,
    pub object: String,
    /// The source's own row count (`Source::count`).
    pub source_rows: u64,
    /// Rows streamed from the source while accounting.
    pub streamed: u64,
    pub confirmed: u64,
    pub quarantined: u64,
    pub skipped: u64,
    pub rolled_back: u64,
    /// Failed, in doubt, or never seen by the ledger (each one is listed).
    pub unaccounted: u64,
    /// Confirmed records read back from the destination.
    pub checked: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub missing: u64,
}

impl ObjectReconcile {
    /// `source rows = confirmed + quarantined + skipped + rolled back`, and every streamed row accounted for.
    pub fn equation_holds(&self) -> bool {
        let accounted = self.confirmed + self.quarantined + self.skipped + self.rolled_back;
        self.unaccounted == 0 && self.source_rows == accounted && self.streamed == accounted
    }

    pub fn clean(&self) -> bool {
        self.equation_holds() && self.mismatched == 0 && self.missing == 0
    }
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum FindingKind {
    /// The destination does not have the record the ledger says it confirmed.
    Missing,
    /// The destination holds other values than were sent, field by field.
    Mismatch(Vec<FieldDifference>),
    /// The row is not confirmed, quarantined, skipped or rolled back.
    Unaccounted {
        /// `failed`, `in_doubt`, `transformed`, `not_in_ledger`.
        status: &'static str,
    },
}

impl FindingKind {
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Mismatch(_) => "mismatch",
            FindingKind::Unaccounted { .. } => "unaccounted",
        }
    }
}

/// One record that does not reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub entity: String,
    pub key: String,
    pub object: String,
    pub dest_id: Option<String>,
    pub kind: FindingKind,
}

/// The whole reconciliation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub objects: Vec<ObjectReconcile>,
    /// Whether records were sampled (`--sample N`), and how many per rule.
    pub sample: Option<usize>,
}

impl ReconcileReport {
    pub fn clean(&self) -> bool {
        self.objects.iter().all(ObjectReconcile::clean)
    }

    pub fn totals(&self) -> ObjectReconcile {
        let mut t = ObjectReconcile {
            entity: "*".into(),
            object: "*".into(),
            ..Default::default()
        };
        for o in &self.objects {
            t.source_rows += o.source_rows;
            t.streamed += o.streamed;
            t.confirmed += o.confirmed;
            t.quarantined += o.quarantined;
            t.skipped += o.skipped;
            t.rolled_back += o.rolled_back;
            t.unaccounted += o.unaccounted;
            t.checked += o.checked;
            t.matched += o.matched;
            t.mismatched += o.mismatched;
            t.missing += o.missing;
        }
        t
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("reading {entity} from the source")]
    Source {
        entity: String,
        #[source]
        error: SourceError,
    },
    #[error("reading {object} {dest_id} from the destination")]
    Destination {
        object: String,
        dest_id: String,
        #[source]
        error: DestError,
    },
    #[error("the payload {hash} sent for {object} {entity}/{key} is missing from the ledger's blob store")]
    MissingPayload {
        object: String,
        entity: String,
        key: String,
        hash: String,
    },
    #[error("the payload {hash} sent for {object} {entity}/{key} is not a JSON object")]
    BadPayload {
        object: String,
        entity: String,
        key: String,
        hash: String,
    },
}

/// A confirmed record to read back.
#[derive(Debug, Clone)]
struct Check {
    /// Sample order (the smallest ranks are the sample); zero when not sampling.
    rank: [u8; 32],
    key: String,
    dest_id: String,
    payload: Digest,
}

impl PartialEq for Check {
    fn eq(&self, other: &Self) -> bool {
        (self.rank, &self.key) == (other.rank, &other.key)
    }
}
impl Eq for Check {}
impl PartialOrd for Check {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Check {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.rank, &self.key).cmp(&(other.rank, &other.key))
    }
}

fn absent(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Text(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// A body flattened to `path → value` (the shape `read_as_sent` returns).
fn flat(body: &JsonMap<String, Json>) -> JsonMap<String, Json> {
    let mut out = JsonMap::new();
    flatten_paths("", &Json::Object(body.clone()), &mut |path, value| {
        out.insert(path.to_string(), value.clone());
    });
    out
}

/// Reconciles every rule of `map`; findings go to `on_finding` as they are found.
pub async fn reconcile(
    ledger: &Ledger,
    source: &dyn Source,
    dest: &dyn ReadDestination,
    map: &MapFile,
    options: &ReconcileOptions,
    on_finding: &mut (dyn FnMut(&Finding) + Send),
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport {
        objects: Vec::new(),
        sample: options.sample,
    };
    for rule in map.plan_order() {
        let counts = reconcile_rule(ledger, source, dest, rule, options, on_finding).await?;
        report.objects.push(counts);
    }
    Ok(report)
}

async fn reconcile_rule(
    ledger: &Ledger,
    source: &dyn Source,
    dest: &dyn ReadDestination,
    rule: &ObjectMap,
    options: &ReconcileOptions,
    on_finding: &mut (dyn FnMut(&Finding) + Send),
) -> Result<ObjectReconcile, ReconcileError> {
    let entity = rule.source.as_str();
    let object = rule.target.as_str();
    let source_error = |error| ReconcileError::Source {
        entity: entity.to_string(),
        error,
    };
    let mut counts = ObjectReconcile {
        entity: entity.to_string(),
        object: object.to_string(),
        source_rows: source.count(entity).await.map_err(source_error)?,
        ..Default::default()
    };
    let mut rows = source.stream(entity, None).await.map_err(source_error)?;
    let chunk = options.chunk.max(1);
    let mut pending: Vec<Check> = Vec::new();
    // A sample keeps its n smallest ranks: a max-heap of at most n.
    let mut sample: BinaryHeap<Check> = BinaryHeap::new();
    while let Some(item) = rows.next().await {
        let item = item.map_err(source_error)?;
        counts.streamed += 1;
        let (key, row) = match item {
            SourceItem::Record(record) => (record.key.0.clone(), Some(record)),
            SourceItem::Unreadable { key, place, .. } => (
                key.map(|k| k.0).unwrap_or_else(|| format!("?{place}")),
                None,
            ),
        };
        let state = ledger.record_state(entity, &key)?;
        let target = state.as_ref().and_then(|s| s.targets.get(object));
        let unaccounted = |status| Finding {
            entity: entity.to_string(),
            key: key.clone(),
            object: object.to_string(),
            dest_id: target.and_then(|t| t.dest_id.clone()),
            kind: FindingKind::Unaccounted { status },
        };
        match target.map(|t| t.status) {
            Some(TargetStatus::Confirmed) => {
                let t = target.expect("matched Some");
                let (Some(dest_id), Some(payload)) = (t.dest_id.clone(), t.confirmed_hash) else {
                    counts.unaccounted += 1;
                    on_finding(&unaccounted("in_doubt"));
                    continue;
                };
                counts.confirmed += 1;
                let mut check = Check {
                    rank: [0; 32],
                    key: key.clone(),
                    dest_id,
                    payload,
                };
                match options.sample {
                    Some(n) => {
                        let mut hasher = blake3::Hasher::new();
                        hasher.update(&options.seed.to_le_bytes());
                        hasher.update(object.as_bytes());
                        hasher.update(&[0]);
                        hasher.update(entity.as_bytes());
                        hasher.update(&[0]);
                        hasher.update(key.as_bytes());
                        check.rank = *hasher.finalize().as_bytes();
                        sample.push(check);
                        if sample.len() > n {
                            sample.pop();
                        }
                    }
                    None => {
                        pending.push(check);
                        if pending.len() >= chunk {
                            let batch = std::mem::take(&mut pending);
                            check_all(ledger, dest, rule, batch, options, &mut counts, on_finding)
                                .await?;
                        }
                    }
                }
            }
            Some(TargetStatus::Compensated) => counts.rolled_back += 1,
            _ if state.as_ref().is_some_and(|s| s.quarantine.is_some()) => counts.quarantined += 1,
            Some(TargetStatus::Failed) => {
                counts.unaccounted += 1;
                on_finding(&unaccounted("failed"));
            }
            Some(TargetStatus::Intended) => {
                counts.unaccounted += 1;
                on_finding(&unaccounted("in_doubt"));
            }
            Some(TargetStatus::Transformed) => {
                counts.unaccounted += 1;
                on_finding(&unaccounted("transformed"));
            }
            None => {
                let not_applicable = match (&rule.when_present, &row) {
                    (Some(column), Some(row)) => absent(row.get(column)),
                    _ => false,
                };
                if not_applicable || (rule.optional && state.is_some()) {
                    counts.skipped += 1;
                } else {
                    counts.unaccounted += 1;
                    on_finding(&unaccounted(if state.is_some() {
                        "not_written"
                    } else {
                        "not_in_ledger"
                    }));
                }
            }
        }
    }
    let mut rest = std::mem::take(&mut pending);
    rest.extend(sample.into_sorted_vec());
    for batch in rest.chunks(chunk) {
        check_all(
            ledger,
            dest,
            rule,
            batch.to_vec(),
            options,
            &mut counts,
            on_finding,
        )
        .await?;
    }
    Ok(counts)
}

/// Reads a batch of confirmed records back and compares each with what was sent.
async fn check_all(
    ledger: &Ledger,
    dest: &dyn ReadDestination,
    rule: &ObjectMap,
    batch: Vec<Check>,
    options: &ReconcileOptions,
    counts: &mut ObjectReconcile,
    on_finding: &mut (dyn FnMut(&Finding) + Send),
) -> Result<(), ReconcileError> {
    let entity = rule.source.as_str();
    let object = rule.target.as_str();
    // Payloads are read from the ledger first (synchronously); only the reads leave.
    let mut work = Vec::with_capacity(batch.len());
    for check in batch {
        let missing_payload = || ReconcileError::MissingPayload {
            object: object.to_string(),
            entity: entity.to_string(),
            key: check.key.clone(),
            hash: check.payload.to_hex(),
        };
        let bytes = ledger.blob(&check.payload)?.ok_or_else(missing_payload)?;
        let sent: JsonMap<String, Json> = match serde_json::from_slice(&bytes) {
            Ok(Json::Object(map)) => map,
            _ => {
                return Err(ReconcileError::BadPayload {
                    object: object.to_string(),
                    entity: entity.to_string(),
                    key: check.key.clone(),
                    hash: check.payload.to_hex(),
                })
            }
        };
        work.push((check, sent));
    }
    let ids: Vec<String> = work.iter().map(|(c, _)| c.dest_id.clone()).collect();
    let results: Vec<_> = match dest.get_many(object, &ids).await {
        // A destination that reads many ids in one request (Twenty).
        Some(Ok(held)) if held.len() == work.len() => work
            .into_iter()
            .zip(held)
            .map(|((check, sent), held)| (check, sent, Ok(held)))
            .collect(),
        Some(Ok(held)) => {
            return Err(ReconcileError::Destination {
                object: object.to_string(),
                dest_id: ids.first().cloned().unwrap_or_default(),
                error: DestError::Mismatch {
                    endpoint: "get_many".into(),
                    message: format!(
                        "asked for {} records, got {} answers",
                        ids.len(),
                        held.len()
                    ),
                },
            })
        }
        Some(Err(error)) => {
            return Err(ReconcileError::Destination {
                object: object.to_string(),
                dest_id: ids.first().cloned().unwrap_or_default(),
                error,
            })
        }
        None => {
            stream::iter(work.into_iter().map(|(check, sent)| async move {
                let held = dest.get(object, &check.dest_id).await;
                (check, sent, held)
            }))
            .buffered(options.concurrency.max(1))
            .collect()
            .await
        }
    };
    for (check, sent, held) in results {
        counts.checked += 1;
        let held = held.map_err(|error| ReconcileError::Destination {
            object: object.to_string(),
            dest_id: check.dest_id.clone(),
            error,
        })?;
        let finding = |kind| Finding {
            entity: entity.to_string(),
            key: check.key.clone(),
            object: object.to_string(),
            dest_id: Some(check.dest_id.clone()),
            kind,
        };
        let Some(record) = held else {
            counts.missing += 1;
            on_finding(&finding(FindingKind::Missing));
            continue;
        };
        let read = dest.read_as_sent(&sent, &record);
        let sent_flat = flat(&sent);
        let same_hash = Digest::of(&canonical_json(&Json::Object(sent_flat)))
            == Digest::of(&canonical_json(&Json::Object(read.clone())));
        let differences = if same_hash {
            Vec::new()
        } else {
            field_differences(&sent, &read)
        };
        if differences.is_empty() {
            counts.matched += 1;
        } else {
            counts.mismatched += 1;
            on_finding(&finding(FindingKind::Mismatch(differences)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
