//! Projections: views derived from the events, never written any other way.
//!
//! - record state by (entity, source key): last content hash, quarantine, and
//!   per destination object the status, destination id and confirmed payload hash;
//! - the destination-id index: (object, destination id) → (entity, source key);
//! - intents by seq (so confirmations, failures and compensations find their write);
//! - watermarks per entity (from the latest checkpoint);
//! - run summaries (kind, times, outcome, counts per event kind);
//! - schema elements created at the destination, and the confirmed map.
//!
//! [`Projector::apply`] is the one function that turns an event into projection writes;
//! the ledger calls it on every append (incrementally) and on replay (from
//! scratch), so the two cannot disagree except through storage bugs, which the
//! replay-equality property test exists to catch.

use std::collections::{BTreeMap, HashMap};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::{decode_value, encode_value};
use crate::event::{
    Compensation, Digest, EventBody, EventRecord, FailureClass, Micros, Reason, RunId, RunKind,
    RunOutcome, WriteOp,
};

/// Where a record stands at one destination object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    Transformed,
    Intended,
    Confirmed,
    Failed,
    Compensated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    pub status: TargetStatus,
    /// The destination id, once a create was confirmed (kept after compensation for the record).
    pub dest_id: Option<String>,
    /// Hash of the latest transformed payload.
    pub transformed_hash: Option<Digest>,
    /// Hash of the payload the destination last confirmed (unchanged ⇒ skip).
    pub confirmed_hash: Option<Digest>,
    /// The intent awaiting confirmation, if any (resume looks it up at the destination).
    pub pending_intent: Option<u64>,
    pub last_failure: Option<FailureClass>,
    /// Seq of the last event that touched this target.
    pub last_seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    pub content_hash: Option<Digest>,
    pub modified_at: Option<Micros>,
    pub extracted_seq: u64,
    /// Present while the record is quarantined (cleared when it transforms cleanly later).
    pub quarantine: Option<Vec<Reason>>,
    pub targets: BTreeMap<String, TargetState>,
}

/// A write as its intent recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    pub run: RunId,
    pub op: WriteOp,
    pub object: String,
    pub entity: String,
    pub key: String,
    pub idempotency_key: String,
    pub payload_hash: Digest,
    pub before_image: Option<Digest>,
    /// Known at intent time for updates/deletes; filled on confirmation for creates.
    pub dest_id: Option<String>,
    pub outcome: IntentOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentOutcome {
    Pending,
    Confirmed { seq: u64, response_hash: Digest },
    Failed { seq: u64, class: FailureClass },
    Compensated { seq: u64, outcome: Compensation },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: RunId,
    pub kind: Option<RunKind>,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub outcome: Option<RunOutcome>,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Events of this run by kind name.
    pub counts: BTreeMap<String, u64>,
}

/// A schema element this tool recorded at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaElement {
    pub element: String,
    pub name: String,
    pub dest_id: String,
    pub created: bool,
    pub seq: u64,
}

/// Key prefixes of the projection namespace.
pub(crate) mod keys {
    pub const RECORD: u8 = b'r';
    pub const DEST: u8 = b'd';
    pub const INTENT: u8 = b'i';
    pub const WATERMARK: u8 = b'w';
    pub const RUN: u8 = b'u';
    pub const SCHEMA: u8 = b's';
    pub const MAP: u8 = b'm';

    pub fn two(prefix: u8, a: &str, b: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + a.len() + b.len() + 1);
        k.push(prefix);
        k.extend_from_slice(a.as_bytes());
        k.push(0);
        k.extend_from_slice(b.as_bytes());
        k
    }

    pub fn one(prefix: u8, a: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + a.len());
        k.push(prefix);
        k.extend_from_slice(a.as_bytes());
        k
    }

    pub fn num(prefix: u8, n: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(9);
        k.push(prefix);
        k.extend_from_slice(&n.to_be_bytes());
        k
    }
}

pub(crate) fn record_key(entity: &str, key: &str) -> Vec<u8> {
    keys::two(keys::RECORD, entity, key)
}

pub(crate) fn dest_key(object: &str, dest_id: &str) -> Vec<u8> {
    keys::two(keys::DEST, object, dest_id)
}

pub(crate) fn intent_key(seq: u64) -> Vec<u8> {
    keys::num(keys::INTENT, seq)
}

pub(crate) fn run_key(run: RunId) -> Vec<u8> {
    keys::num(keys::RUN, run)
}

/// Read/write access to projection values, by raw key.
pub(crate) trait View {
    fn get(&mut self, key: &[u8]) -> crate::Result<Option<Vec<u8>>>;
    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>);
}

fn load<T: DeserializeOwned>(view: &mut dyn View, key: &[u8]) -> crate::Result<Option<T>> {
    match view.get(key)? {
        None => Ok(None),
        Some(bytes) => decode_value(&bytes).map(Some).map_err(|e| {
            crate::LedgerError::Store(format!(
                "projection value {:?} does not decode: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

fn store<T: Serialize>(view: &mut dyn View, key: Vec<u8>, value: &T) {
    view.put(key, Some(encode_value(value)));
}

/// A destination id that refers back to its source record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestRef {
    pub entity: String,
    pub key: String,
}

/// Applies events to projections. Record states, intents and run summaries
/// are kept typed while a commit (or a replay slice) is applied and encoded
/// once at [`Projector::finish`]: a record touched by four events in one
/// commit is decoded and encoded once, not four times.
pub(crate) struct Projector<'v> {
    view: &'v mut dyn View,
    records: HashMap<Vec<u8>, RecordState>,
    intents: HashMap<u64, IntentRecord>,
    runs: HashMap<RunId, RunSummary>,
}

fn cached<'a, K, T>(
    map: &'a mut HashMap<K, T>,
    view: &mut dyn View,
    key: K,
    raw_key: &[u8],
    default: impl FnOnce() -> T,
) -> crate::Result<&'a mut T>
where
    K: std::hash::Hash + Eq,
    T: DeserializeOwned,
{
    use std::collections::hash_map::Entry;
    match map.entry(key) {
        Entry::Occupied(o) => Ok(o.into_mut()),
        Entry::Vacant(v) => {
            let value = load(view, raw_key)?.unwrap_or_else(default);
            Ok(v.insert(value))
        }
    }
}

impl<'v> Projector<'v> {
    pub fn new(view: &'v mut dyn View) -> Projector<'v> {
        Projector {
            view,
            records: HashMap::new(),
            intents: HashMap::new(),
            runs: HashMap::new(),
        }
    }

    fn record(&mut self, entity: &str, key: &str) -> crate::Result<&mut RecordState> {
        let k = record_key(entity, key);
        cached(
            &mut self.records,
            self.view,
            k.clone(),
            &k,
            RecordState::default,
        )
    }

    fn intent(&mut self, seq: u64, intent: u64) -> crate::Result<IntentRecord> {
        if let Some(i) = self.intents.get(&intent) {
            return Ok(i.clone());
        }
        load::<IntentRecord>(self.view, &intent_key(intent))?.ok_or_else(|| dangling(seq, intent))
    }

    /// Encodes everything cached into the view.
    pub fn finish(self) {
        for (k, v) in self.records {
            store(self.view, k, &v);
        }
        for (seq, v) in self.intents {
            store(self.view, intent_key(seq), &v);
        }
        for (run, v) in self.runs {
            store(self.view, run_key(run), &v);
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, seq: u64, record: &EventRecord) -> crate::Result<()> {
        let run_k = run_key(record.run);
        let run = record.run;
        let summary = cached(&mut self.runs, self.view, run, &run_k, || RunSummary {
            run,
            first_seq: seq,
            ..Default::default()
        })?;
        summary.last_seq = seq;
        match summary.counts.get_mut(record.body.kind()) {
            Some(n) => *n += 1,
            None => {
                summary.counts.insert(record.body.kind().to_string(), 1);
            }
        }
        match &record.body {
            EventBody::RunStarted { kind, .. } => {
                // A run's id is its RunStarted seq.
                summary.kind = Some(*kind);
                summary.started_at = Some(record.at);
                summary.first_seq = seq;
            }
            EventBody::RunFinished { outcome, .. } => {
                summary.finished_at = Some(record.at);
                summary.outcome = Some(*outcome);
            }
            EventBody::MapConfirmed { map_hash } => store(self.view, vec![keys::MAP], map_hash),
            EventBody::SchemaChanged {
                element,
                name,
                dest_id,
                created,
            } => {
                let key = keys::two(keys::SCHEMA, element, name);
                store(
                    self.view,
                    key,
                    &SchemaElement {
                        element: element.clone(),
                        name: name.clone(),
                        dest_id: dest_id.clone(),
                        created: *created,
                        seq,
                    },
                );
            }
            EventBody::Extracted {
                entity,
                key,
                content_hash,
                modified_at,
            } => {
                let state = self.record(entity, key)?;
                state.content_hash = Some(*content_hash);
                state.modified_at = *modified_at;
                state.extracted_seq = seq;
            }
            EventBody::Transformed {
                entity,
                key,
                object,
                payload_hash,
                ..
            } => {
                let state = self.record(entity, key)?;
                state.quarantine = None;
                let target = state
                    .targets
                    .entry(object.clone())
                    .or_insert_with(|| new_target(seq));
                target.transformed_hash = Some(*payload_hash);
                let already_there = target.status == TargetStatus::Confirmed
                    && target.confirmed_hash == Some(*payload_hash);
                if !already_there && target.pending_intent.is_none() {
                    target.status = TargetStatus::Transformed;
                }
                target.last_seq = seq;
            }
            EventBody::Quarantined {
                entity,
                key,
                reasons,
            } => {
                self.record(entity, key)?.quarantine = Some(reasons.clone());
            }
            EventBody::WriteIntended {
                op,
                object,
                entity,
                key,
                idempotency_key,
                payload_hash,
                before_image,
                dest_id,
            } => {
                self.intents.insert(
                    seq,
                    IntentRecord {
                        run: record.run,
                        op: *op,
                        object: object.clone(),
                        entity: entity.clone(),
                        key: key.clone(),
                        idempotency_key: idempotency_key.clone(),
                        payload_hash: *payload_hash,
                        before_image: *before_image,
                        dest_id: dest_id.clone(),
                        outcome: IntentOutcome::Pending,
                    },
                );
                let target = self
                    .record(entity, key)?
                    .targets
                    .entry(object.clone())
                    .or_insert_with(|| new_target(seq));
                target.status = TargetStatus::Intended;
                target.pending_intent = Some(seq);
                target.last_seq = seq;
            }
            EventBody::WriteConfirmed {
                intent,
                dest_id,
                response_hash,
            } => {
                let mut write = self.intent(seq, *intent)?;
                write.outcome = IntentOutcome::Confirmed {
                    seq,
                    response_hash: *response_hash,
                };
                if write.dest_id.is_none() {
                    write.dest_id = Some(dest_id.clone());
                }
                if write.op == WriteOp::Delete {
                    self.view.put(dest_key(&write.object, dest_id), None);
                } else {
                    store(
                        self.view,
                        dest_key(&write.object, dest_id),
                        &DestRef {
                            entity: write.entity.clone(),
                            key: write.key.clone(),
                        },
                    );
                }
                let target = self
                    .record(&write.entity, &write.key)?
                    .targets
                    .entry(write.object.clone())
                    .or_insert_with(|| new_target(seq));
                if write.op == WriteOp::Delete {
                    target.status = TargetStatus::Compensated;
                    target.confirmed_hash = None;
                } else {
                    target.status = TargetStatus::Confirmed;
                    target.confirmed_hash = Some(write.payload_hash);
                    target.dest_id = Some(dest_id.clone());
                }
                target.last_failure = None;
                if target.pending_intent == Some(*intent) {
                    target.pending_intent = None;
                }
                target.last_seq = seq;
                self.intents.insert(*intent, write);
            }
            EventBody::WriteFailed { intent, class, .. } => {
                let mut write = self.intent(seq, *intent)?;
                write.outcome = IntentOutcome::Failed { seq, class: *class };
                let target = self
                    .record(&write.entity, &write.key)?
                    .targets
                    .entry(write.object.clone())
                    .or_insert_with(|| new_target(seq));
                if target.pending_intent == Some(*intent) {
                    target.pending_intent = None;
                    // A failed update leaves the earlier confirmed state standing.
                    target.status =
                        if target.confirmed_hash.is_some() && write.op != WriteOp::Create {
                            TargetStatus::Confirmed
                        } else {
                            TargetStatus::Failed
                        };
                }
                target.last_failure = Some(*class);
                target.last_seq = seq;
                self.intents.insert(*intent, write);
            }
            EventBody::Compensated {
                intent, outcome, ..
            } => {
                let mut write = self.intent(seq, *intent)?;
                write.outcome = IntentOutcome::Compensated {
                    seq,
                    outcome: *outcome,
                };
                if matches!(outcome, Compensation::Deleted | Compensation::AlreadyGone) {
                    if let Some(id) = &write.dest_id {
                        self.view.put(dest_key(&write.object, id), None);
                    }
                }
                let target = self
                    .record(&write.entity, &write.key)?
                    .targets
                    .entry(write.object.clone())
                    .or_insert_with(|| new_target(seq));
                match outcome {
                    Compensation::Deleted | Compensation::AlreadyGone => {
                        target.status = TargetStatus::Compensated;
                        target.confirmed_hash = None;
                    }
                    // The before-image is back; what we last wrote is no longer there.
                    Compensation::Restored => target.confirmed_hash = write.before_image,
                    Compensation::Conflict => {}
                }
                target.last_seq = seq;
                self.intents.insert(*intent, write);
            }
            EventBody::Checkpoint { watermarks, .. } => {
                for (entity, at) in watermarks {
                    store(self.view, keys::one(keys::WATERMARK, entity), at);
                }
            }
        }
        Ok(())
    }
}

fn new_target(seq: u64) -> TargetState {
    TargetState {
        status: TargetStatus::Transformed,
        dest_id: None,
        transformed_hash: None,
        confirmed_hash: None,
        pending_intent: None,
        last_failure: None,
        last_seq: seq,
    }
}

fn dangling(seq: u64, intent: u64) -> crate::LedgerError {
    crate::LedgerError::Chain {
        seq,
        detail: format!("refers to intent seq {intent}, which is not a write_intended event"),
    }
}

/// Projection writes buffered over a store read, for one commit.
pub(crate) struct Overlay<'a> {
    pub store: &'a dyn crate::store::Store,
    pub dirty: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl View for Overlay<'_> {
    fn get(&mut self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        match self.dirty.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.store.projection(key),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.dirty.insert(key, value);
    }
}

/// An in-memory projection set (replay from scratch; equality checks).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProjectionSnapshot(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl View for ProjectionSnapshot {
    fn get(&mut self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        Ok(self.0.get(key).cloned())
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match value {
            Some(v) => {
                self.0.insert(key, v);
            }
            None => {
                self.0.remove(&key);
            }
        }
    }
}
