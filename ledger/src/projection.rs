//! Projections: views derived from the events, never written any other way.
//!
//! Stored (tree `projections`):
//! - record state by (entity, source key): last content hash, quarantine, and
//!   per destination object the status, destination id and confirmed payload hash;
//! - watermarks per entity (from the latest checkpoint);
//! - run summaries (kind, times, outcome, counts per event kind);
//! - schema elements created at the destination, and the confirmed map.
//!
//! Not stored, answered from the events or the record states instead:
//! - intents (`Ledger::intent`, `Ledger::intents`): a write's fields are its
//!   `write_intended` event, its outcome the last confirmation, failure or
//!   compensation naming it, both read from the event log;
//! - the destination-id index (`Ledger::source_of`): a query over the record
//!   states, which hold each target's destination id.
//!
//! Why: a stored intent (`i seq`) and index entry (`d object\0dest id`) were two
//! sled inserts per written record on top of its record state, the second under
//! a random key (dest ids are random UUIDs; sled took 42k random inserts/s
//! against 190k sequential ones here). On a 50,000-patient run (1.7M records)
//! leaving them out took peak RSS from 307 to 210 MiB, the run from 288 to
//! 219 s and the store from 8.4 to 5.0 GB. Nothing on the run's path read them:
//! the intent only repeated its event, and the index served an audit lookup.
//! Ledgers written with them (projection version 1) lose them once on open
//! (`Ledger::open`).
//!
//! [`Projector::apply`] is the one function that turns an event into projection writes;
//! the ledger calls it on every append (incrementally) and on replay (from
//! scratch), so the two cannot disagree except through storage bugs, which the
//! replay-equality property test exists to catch. A confirmation, failure or
//! compensation needs its intent's write (object, entity, key, op, hashes); the
//! projector finds it, in order: among the intents of the commit (or replay
//! slice) at hand; among the *open* intents (written, not yet confirmed or
//! failed), which the ledger keeps in memory across commits ([`OpenIntents`]);
//! else by reading the `write_intended` event at that seq from the log
//! ([`Events`]; compensations name old, long-confirmed intents, and after a
//! reopen so does every answer to an intent written before it).

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// Projection version 1 only: the destination-id index (removed on open).
    pub const OLD_DEST: u8 = b'd';
    /// Projection version 1 only: intents by seq (removed on open).
    pub const OLD_INTENT: u8 = b'i';
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

/// What a confirmation, failure or compensation needs of its intent: the
/// write as its `write_intended` event recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub op: WriteOp,
    pub object: String,
    pub entity: String,
    pub key: String,
    pub payload_hash: Digest,
    pub before_image: Option<Digest>,
}

impl Write {
    /// The write of a `write_intended` body; `None` for any other event.
    fn of(body: &EventBody) -> Option<Write> {
        match body {
            EventBody::WriteIntended {
                op,
                object,
                entity,
                key,
                payload_hash,
                before_image,
                ..
            } => Some(Write {
                op: *op,
                object: object.clone(),
                entity: entity.clone(),
                key: key.clone(),
                payload_hash: *payload_hash,
                before_image: *before_image,
            }),
            _ => None,
        }
    }
}

/// The intent a `write_intended` event records, outcome [`IntentOutcome::Pending`]
/// (answers are folded in with [`answer_intent`]). `None` for any other event.
pub(crate) fn intent_record(record: &EventRecord) -> Option<IntentRecord> {
    match &record.body {
        EventBody::WriteIntended {
            op,
            object,
            entity,
            key,
            idempotency_key,
            payload_hash,
            before_image,
            dest_id,
        } => Some(IntentRecord {
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
        }),
        _ => None,
    }
}

/// The intent seq a confirmation, failure or compensation names.
pub(crate) fn answered_intent(body: &EventBody) -> Option<u64> {
    match body {
        EventBody::WriteConfirmed { intent, .. }
        | EventBody::WriteFailed { intent, .. }
        | EventBody::Compensated { intent, .. } => Some(*intent),
        _ => None,
    }
}

/// Folds the answer at `seq` into its intent: the latest answer is the outcome
/// (a compensation after a confirmation, a confirmation after a failure), and a
/// create's destination id is the one its first confirmation reported.
pub(crate) fn answer_intent(intent: &mut IntentRecord, seq: u64, body: &EventBody) {
    match body {
        EventBody::WriteConfirmed {
            dest_id,
            response_hash,
            ..
        } => {
            intent.outcome = IntentOutcome::Confirmed {
                seq,
                response_hash: *response_hash,
            };
            if intent.dest_id.is_none() {
                intent.dest_id = Some(dest_id.clone());
            }
        }
        EventBody::WriteFailed { class, .. } => {
            intent.outcome = IntentOutcome::Failed { seq, class: *class };
        }
        EventBody::Compensated { outcome, .. } => {
            intent.outcome = IntentOutcome::Compensated {
                seq,
                outcome: *outcome,
            };
        }
        _ => {}
    }
}

/// Reads events back from the log, for intents the projector does not hold.
pub(crate) trait Events {
    /// The event at `seq`, if the log has it.
    fn record(&self, seq: u64) -> crate::Result<Option<EventRecord>>;
}

/// Intents written and not yet confirmed or failed, by seq. The ledger keeps
/// them in memory across commits so that an answer in a later commit finds its
/// write without reading the event back: bounded by the writes in flight (and
/// by intents a crash left in doubt). Never stored, never rebuilt: an intent
/// missing here is read from the log.
#[derive(Debug, Default)]
pub(crate) struct OpenIntents(HashMap<u64, Write>);

impl OpenIntents {
    /// Takes in what a stored commit (or a replayed slice) did to the open intents.
    pub fn update(&mut self, changes: IntentChanges) {
        for seq in &changes.answered {
            self.0.remove(seq);
        }
        for (seq, write) in changes.written {
            if !changes.answered.contains(&seq) {
                self.0.insert(seq, write);
            }
        }
    }

    fn get(&self, seq: u64) -> Option<&Write> {
        self.0.get(&seq)
    }

    #[cfg(test)]
    pub fn seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.0.keys().copied().collect();
        seqs.sort_unstable();
        seqs
    }
}

/// The intents a commit wrote and those it confirmed or failed, for
/// [`OpenIntents::update`] once the commit is stored (a commit that fails
/// leaves the open intents as they were: its seqs will be given to other events).
#[derive(Debug, Default)]
pub(crate) struct IntentChanges {
    written: HashMap<u64, Write>,
    answered: HashSet<u64>,
}

/// Applies events to projections. Record states and run summaries are kept
/// typed while a commit (or a replay slice) is applied and encoded once at
/// [`Projector::finish`]: a record touched by four events in one commit is
/// decoded and encoded once, not four times.
pub(crate) struct Projector<'v> {
    view: &'v mut dyn View,
    events: &'v dyn Events,
    open: &'v OpenIntents,
    records: HashMap<Vec<u8>, RecordState>,
    runs: HashMap<RunId, RunSummary>,
    /// Intents written by this commit (or slice), and those it confirmed or failed.
    changes: IntentChanges,
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
    pub fn new(
        view: &'v mut dyn View,
        events: &'v dyn Events,
        open: &'v OpenIntents,
    ) -> Projector<'v> {
        Projector {
            view,
            events,
            open,
            records: HashMap::new(),
            runs: HashMap::new(),
            changes: IntentChanges::default(),
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

    /// The write of the intent at `intent`, named by the event at `seq`: from this
    /// commit, the open intents, or the log. It must be an earlier `write_intended`.
    fn write(&self, seq: u64, intent: u64) -> crate::Result<Write> {
        if intent < seq {
            if let Some(write) = self
                .changes
                .written
                .get(&intent)
                .or_else(|| self.open.get(intent))
            {
                return Ok(write.clone());
            }
            if let Some(write) = self.events.record(intent)?.and_then(|r| Write::of(&r.body)) {
                return Ok(write);
            }
        }
        Err(dangling(seq, intent))
    }

    /// Encodes everything cached into the view; returns what this commit did to
    /// the open intents, for the caller to take in once the commit is stored.
    pub fn finish(self) -> IntentChanges {
        for (k, v) in self.records {
            store(self.view, k, &v);
        }
        for (run, v) in self.runs {
            store(self.view, run_key(run), &v);
        }
        self.changes
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
                object,
                entity,
                key,
                ..
            } => {
                if let Some(write) = Write::of(&record.body) {
                    self.changes.written.insert(seq, write);
                }
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
                intent, dest_id, ..
            } => {
                let write = self.write(seq, *intent)?;
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
                self.changes.answered.insert(*intent);
            }
            EventBody::WriteFailed { intent, class, .. } => {
                let write = self.write(seq, *intent)?;
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
                self.changes.answered.insert(*intent);
            }
            EventBody::Compensated {
                intent, outcome, ..
            } => {
                let write = self.write(seq, *intent)?;
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
