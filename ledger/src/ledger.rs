//! The ledger: a directory holding the event store, the blob store and an
//! anchor of the chain head.
//!
//! ```text
//! DIR/LEDGER   marker (format name and version); a directory without it is not a ledger
//! DIR/HEAD     the last durable (seq, hash), rewritten after every flush: if the store
//!              ever comes back shorter than this, events were lost and opening fails
//! DIR/store/   the sled database (see store.rs)
//! ```
//!
//! Appending assigns gap-free seqs, chains hashes, updates the projections in
//! the same atomic commit, and (for [`Ledger::append`]) flushes before
//! returning: an event reported durable is on disk.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::{decode_event, decode_value, encode_event};
use crate::error::{LedgerError, Result};
use crate::event::{
    chain_hash, Digest, Event, EventBody, EventRecord, Micros, RunId, RunKind, RunOutcome,
};
use crate::projection::{
    self, keys, DestRef, Events, IntentRecord, OpenIntents, Overlay, ProjectionSnapshot, Projector,
    RecordState, RunSummary, SchemaElement,
};
use crate::store::{Commit, SledStore, Store, CHUNK_BYTES};

const MARKER_FILE: &str = "LEDGER";
const HEAD_FILE: &str = "HEAD";
const STORE_DIR: &str = "store";
const PACKS_DIR: &str = "packs";
const FORMAT_NAME: &str = "cutover-ledger";
/// 2: blobs in packs filed by seq inside sled; 3: blob bytes in pack files beside
/// sled (store.rs). An older ledger keeps its blobs where they are and is marked 3
/// when opened by this build, so an older build, which would not find the new
/// blobs, refuses it.
const FORMAT_VERSION: u32 = 3;

/// The end of the chain: the last seq and its hash (seq 0 and the zero hash when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: Digest,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: Digest::ZERO,
    };
}

#[derive(Serialize, Deserialize)]
struct Marker {
    format: String,
    version: u32,
}

/// Counts and sizes, for `cutover ledger stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub events: u64,
    /// Bytes of the event log itself (chunks of encoded events with their hashes).
    pub event_log_bytes: u64,
    pub head: Head,
    pub runs: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub disk_bytes: u64,
    pub events_by_kind: BTreeMap<String, u64>,
}

pub struct Ledger {
    dir: PathBuf,
    store: Box<dyn Store>,
    head: Head,
    /// Blobs put since the last commit; they are written with it, before its events.
    pending_blobs: Vec<(Digest, Vec<u8>)>,
    /// The digests of `pending_blobs` (the same bytes put twice before a commit are stored once).
    pending_digests: std::collections::HashSet<Digest>,
    /// Intents not yet confirmed or failed, so that their answers in later commits
    /// find them without reading the event back (memory only; see projection.rs).
    open_intents: OpenIntents,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.dir)
            .field("head", &self.head)
            .finish()
    }
}

impl Ledger {
    /// Creates a new, empty ledger in `dir` (created if missing; must not hold a ledger).
    pub fn create(dir: impl AsRef<Path>) -> Result<Ledger> {
        let dir = dir.as_ref().to_path_buf();
        if dir.join(MARKER_FILE).exists() {
            return Err(LedgerError::AlreadyExists { path: dir });
        }
        fs::create_dir_all(&dir)
            .map_err(|e| LedgerError::io(format!("creating {}", dir.display()), e))?;
        write_marker(&dir)?;
        let store = SledStore::open(&dir.join(STORE_DIR), &dir.join(PACKS_DIR))?;
        let ledger = Ledger {
            dir,
            store: Box::new(store),
            head: Head::EMPTY,
            pending_blobs: Vec::new(),
            pending_digests: Default::default(),
            open_intents: OpenIntents::default(),
        };
        ledger.write_head_anchor()?;
        Ok(ledger)
    }

    /// Opens an existing ledger, checking it is one, that the store is whole
    /// against the head anchor, and that the projections are caught up.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ledger> {
        let dir = dir.as_ref().to_path_buf();
        let marker_path = dir.join(MARKER_FILE);
        let marker_bytes = match fs::read(&marker_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::NotALedger { path: dir })
            }
            Err(e) => {
                return Err(LedgerError::io(
                    format!("reading {}", marker_path.display()),
                    e,
                ))
            }
        };
        let marker: Marker =
            serde_json::from_slice(&marker_bytes).map_err(|e| LedgerError::Corrupt {
                path: marker_path.clone(),
                detail: format!("marker file does not parse: {e}"),
            })?;
        if marker.format != FORMAT_NAME {
            return Err(LedgerError::NotALedger { path: dir });
        }
        if marker.version > FORMAT_VERSION {
            return Err(LedgerError::Corrupt {
                path: marker_path,
                detail: format!("ledger format version {} is newer than this build understands ({FORMAT_VERSION})", marker.version),
            });
        }
        let upgrade = marker.version < FORMAT_VERSION;
        let store_path = dir.join(STORE_DIR);
        if !store_path.is_dir() {
            return Err(LedgerError::Corrupt {
                path: store_path,
                detail: "the store directory is missing".into(),
            });
        }
        let store = open_store_catching_panics(&store_path, &dir.join(PACKS_DIR))?;
        let mut ledger = Ledger {
            dir,
            store,
            head: Head::EMPTY,
            pending_blobs: Vec::new(),
            pending_digests: Default::default(),
            open_intents: OpenIntents::default(),
        };
        ledger.head = ledger.check_head()?;
        ledger.catch_up_projections()?;
        if upgrade {
            // Version 1 or 2 → 3: nothing moves (older blobs stay readable where they
            // are); new blobs go to pack files, so older builds must refuse it from now on.
            ledger.write_marker()?;
        }
        Ok(ledger)
    }

    /// Opens the ledger in `dir`, creating it when the directory has none.
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<Ledger> {
        if dir.as_ref().join(MARKER_FILE).exists() {
            Ledger::open(dir)
        } else {
            Ledger::create(dir)
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn head(&self) -> Head {
        self.head
    }

    /// Appends events as one atomic commit and flushes: durable on return.
    /// Returns the seq of the first event appended.
    pub fn append(
        &mut self,
        run: RunId,
        bodies: impl IntoIterator<Item = EventBody>,
    ) -> Result<u64> {
        let first = self.append_buffered(run, bodies)?;
        self.flush()?;
        Ok(first)
    }

    /// Appends events as one atomic commit without flushing (cheaper; durable
    /// at the next [`Ledger::flush`] or flushing append). Never use it for
    /// `WriteIntended`: an intent must be on disk before its request leaves.
    pub fn append_buffered(
        &mut self,
        run: RunId,
        bodies: impl IntoIterator<Item = EventBody>,
    ) -> Result<u64> {
        let at = Micros::now();
        let records = bodies.into_iter().map(|body| EventRecord { at, run, body });
        self.append_records(records)
    }

    /// Appends events with a chosen time, durable on return. For imports of
    /// foreign trails and for fixtures with fixed times; normal code uses [`Ledger::append`].
    pub fn append_at(
        &mut self,
        at: Micros,
        run: RunId,
        bodies: impl IntoIterator<Item = EventBody>,
    ) -> Result<u64> {
        let first =
            self.append_records(bodies.into_iter().map(|body| EventRecord { at, run, body }))?;
        self.flush()?;
        Ok(first)
    }

    /// Appends fully formed records (import and tests choose their own times).
    pub(crate) fn append_records(
        &mut self,
        records: impl IntoIterator<Item = EventRecord>,
    ) -> Result<u64> {
        self.append_encoded(records.into_iter().map(|record| {
            let encoded = encode_event(&record);
            (record, encoded)
        }))
    }

    /// Appends records with their encoded bytes (import keeps the exact bytes it verified,
    /// whatever format version wrote them).
    pub(crate) fn append_encoded(
        &mut self,
        records: impl IntoIterator<Item = (EventRecord, Vec<u8>)>,
    ) -> Result<u64> {
        let first = self.head.seq + 1;
        let mut head = self.head;
        let mut commit = Commit::default();
        let mut overlay = Overlay {
            store: self.store.as_ref(),
            dirty: Default::default(),
        };
        let events = StoredEvents::new(self.store.as_ref());
        let mut projector = Projector::new(&mut overlay, &events, &self.open_intents);
        let mut chunk: Vec<u8> = Vec::new();
        let mut chunk_first = first;
        for (record, encoded) in records {
            let seq = head.seq + 1;
            if let EventBody::MapConfirmed { map_hash }
            | EventBody::RunStarted {
                map_hash: Some(map_hash),
                ..
            } = &record.body
            {
                commit.pinned.push(*map_hash);
            }
            let hash = chain_hash(&head.hash, seq, &encoded);
            projector.apply(seq, &record)?;
            if chunk.len() >= CHUNK_BYTES {
                commit
                    .chunks
                    .push((chunk_first, std::mem::take(&mut chunk)));
                chunk_first = seq;
            }
            chunk.extend_from_slice(&((32 + encoded.len()) as u32).to_le_bytes());
            chunk.extend_from_slice(&hash.0);
            chunk.extend_from_slice(&encoded);
            head = Head { seq, hash };
        }
        let intents = projector.finish();
        if !chunk.is_empty() {
            commit.chunks.push((chunk_first, chunk));
        }
        self.pending_digests.clear();
        commit.blobs = std::mem::take(&mut self.pending_blobs);
        commit.blob_seq = first;
        if commit.chunks.is_empty() {
            if !commit.blobs.is_empty() {
                self.store.commit(commit)?;
            }
            return Ok(first);
        }
        commit.projections = overlay.dirty.into_iter().collect();
        commit
            .projections
            .push((APPLIED_KEY.to_vec(), Some(applied_marker(head.seq))));
        commit.head = Some((head.seq, head.hash));
        self.store.commit(commit)?;
        self.open_intents.update(intents);
        self.head = head;
        Ok(first)
    }

    /// Makes every appended event durable, then records the head anchor.
    pub fn flush(&mut self) -> Result<()> {
        if !self.pending_blobs.is_empty() {
            let blobs = self.take_pending_blobs();
            self.store.commit(Commit {
                blobs,
                blob_seq: self.head.seq + 1,
                ..Commit::default()
            })?;
        }
        self.store.flush()?;
        self.write_head_anchor()
    }

    /// Starts a run; its id is the seq of its `RunStarted` event.
    pub fn start_run(
        &mut self,
        kind: RunKind,
        source: &str,
        destination: &str,
        map_hash: Option<Digest>,
    ) -> Result<RunId> {
        let seq = self.head.seq + 1;
        self.append(
            seq,
            [EventBody::RunStarted {
                kind,
                source: source.into(),
                destination: destination.into(),
                map_hash,
                tool_version: env!("CARGO_PKG_VERSION").into(),
            }],
        )
    }

    pub fn finish_run(&mut self, run: RunId, outcome: RunOutcome, detail: &str) -> Result<()> {
        self.append(
            run,
            [EventBody::RunFinished {
                outcome,
                detail: detail.into(),
            }],
        )
        .map(|_| ())
    }

    /// Stores a payload under its BLAKE3 and returns the digest. It is
    /// written with the next append (filed under that commit's first seq),
    /// before the events that refer to it. Put twice before a commit, it is
    /// stored once; put again in a later commit, it is stored again (content
    /// addressing holds per commit, not across the whole ledger: see store.rs).
    pub fn put_blob(&mut self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.pending_digests.insert(digest) {
            self.pending_blobs.push((digest, bytes.to_vec()));
        }
        Ok(digest)
    }

    /// A payload by digest, checked against it. Fast for pinned blobs (maps
    /// named by `map_confirmed` or `run_started`) and layout-1 ledgers; any other
    /// blob is searched for through every blob directory, newest first — when
    /// the event that names it is known, use [`Ledger::event_blob`].
    pub fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.pending_blob(digest) {
            return Ok(Some(bytes));
        }
        let found = self.store.blob(digest)?;
        self.checked_blob(digest, found)
    }

    /// A payload named by the event `seq` (its content hash, payload hash,
    /// before-image or response hash), checked against its digest. Looks in the
    /// blobs filed at or before that event, newest first: the blob was put
    /// before the event, so this usually reads one directory and one pack.
    pub fn event_blob(&self, seq: u64, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.pending_blob(digest) {
            return Ok(Some(bytes));
        }
        let found = self.store.blob_before(seq, digest)?;
        self.checked_blob(digest, found)
    }

    fn pending_blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        if !self.pending_digests.contains(digest) {
            return None;
        }
        self.pending_blobs
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, bytes)| bytes.clone())
    }

    fn take_pending_blobs(&mut self) -> Vec<(Digest, Vec<u8>)> {
        self.pending_digests.clear();
        std::mem::take(&mut self.pending_blobs)
    }

    fn checked_blob(&self, digest: &Digest, found: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        match found {
            None => Ok(None),
            Some(bytes) if Digest::of(&bytes) == *digest => Ok(Some(bytes)),
            Some(_) => Err(LedgerError::Corrupt {
                path: self.store_path(),
                detail: format!("blob {digest} does not match its hash"),
            }),
        }
    }

    /// One event by seq, decoded, with its chain links.
    pub fn event(&self, seq: u64) -> Result<Option<Event>> {
        if seq == 0 || seq > self.head.seq {
            return Ok(None);
        }
        let mut found = None;
        self.scan(seq.saturating_sub(1).max(1), |event| {
            if event.seq == seq {
                found = Some(event);
                return Ok(false);
            }
            Ok(true)
        })?;
        match found {
            Some(event) => Ok(Some(event)),
            None => Err(LedgerError::Chain {
                seq,
                detail: "event missing from the store".into(),
            }),
        }
    }

    /// Visits every event from `from` on, decoded, in order; stops when `visit` returns false.
    /// Each event's stored hash is returned as is; [`Ledger::verify`] checks the links.
    pub fn scan(&self, from: u64, mut visit: impl FnMut(Event) -> Result<bool>) -> Result<()> {
        let mut prev_hash = Digest::ZERO;
        self.scan_raw_from(from.saturating_sub(1).max(1), &mut |seq, hash, encoded| {
            if seq < from {
                prev_hash = hash;
                return Ok(true);
            }
            let record =
                decode_event(encoded).map_err(|detail| LedgerError::Chain { seq, detail })?;
            let event = Event {
                seq,
                prev_hash,
                hash,
                record,
            };
            prev_hash = hash;
            visit(event)
        })
    }

    /// Recomputes every link of the chain and checks the head. Returns the
    /// number of events verified, or the first break found.
    pub fn verify(&self) -> Result<u64> {
        let mut expected_seq = 1u64;
        let mut prev = Digest::ZERO;
        self.scan_raw_from(1, &mut |seq, hash, encoded| {
            if seq != expected_seq {
                return Err(LedgerError::Chain {
                    seq: expected_seq,
                    detail: if seq > expected_seq {
                        format!("events {expected_seq}..{} are missing", seq - 1)
                    } else {
                        format!("seq {seq} out of order")
                    },
                });
            }
            if chain_hash(&prev, seq, encoded) != hash {
                return Err(LedgerError::Chain {
                    seq,
                    detail: "hash does not match the event's content and its predecessor".into(),
                });
            }
            decode_event(encoded).map_err(|detail| LedgerError::Chain {
                seq,
                detail: format!("event does not decode: {detail}"),
            })?;
            prev = hash;
            expected_seq += 1;
            Ok(true)
        })?;
        let last = expected_seq - 1;
        let stored_head = self
            .store
            .head()?
            .map(|(seq, hash)| Head { seq, hash })
            .unwrap_or(Head::EMPTY);
        if stored_head.seq != last || stored_head.hash != prev {
            return Err(LedgerError::Chain {
                seq: last.max(stored_head.seq),
                detail: format!(
                    "the chain ends at seq {last} but the recorded head is seq {} ({})",
                    stored_head.seq,
                    short(&stored_head.hash)
                ),
            });
        }
        let anchor = self.read_head_anchor()?;
        if anchor.seq > last || (anchor.seq == last && anchor.hash != prev) {
            return Err(LedgerError::Chain {
                seq: anchor.seq,
                detail: format!("the HEAD anchor records seq {} ({}) but the chain ends at seq {last}: events were lost or rewritten", anchor.seq, short(&anchor.hash)),
            });
        }
        Ok(last)
    }

    /// Visits (seq, stored hash, encoded record) for every event from (about) `from` on,
    /// in store order. Starts at the chunk holding `from`, so earlier events of that chunk are visited too.
    pub(crate) fn scan_raw_from(&self, from: u64, visit: &mut EntryVisitor) -> Result<()> {
        let mut go_on = true;
        self.store.scan_chunks(from, &mut |first, chunk| {
            go_on = for_each_in_chunk(first, chunk, visit)?;
            Ok(go_on)
        })
    }

    // ---- projections -------------------------------------------------------

    pub fn record_state(&self, entity: &str, key: &str) -> Result<Option<RecordState>> {
        self.load(&projection::record_key(entity, key))
    }

    /// The source record a destination id belongs to: the record whose target at
    /// `object` holds this destination id and a write the destination confirmed
    /// (a record whose destination copy was deleted, by a delete or a
    /// compensation, no longer answers; when several hold it, the one touched
    /// last). A scan of the record states: the destination-id index is a query,
    /// not a stored projection (see projection.rs for why).
    pub fn source_of(&self, object: &str, dest_id: &str) -> Result<Option<DestRef>> {
        let mut found: Option<(u64, DestRef)> = None;
        self.record_states(|entity, key, state| {
            if let Some(target) = state.targets.get(object) {
                if target.dest_id.as_deref() == Some(dest_id)
                    && target.confirmed_hash.is_some()
                    && found.as_ref().is_none_or(|(at, _)| target.last_seq > *at)
                {
                    found = Some((
                        target.last_seq,
                        DestRef {
                            entity: entity.to_string(),
                            key: key.to_string(),
                        },
                    ));
                }
            }
            Ok(true)
        })?;
        Ok(found.map(|(_, source)| source))
    }

    /// Every event in a record's story, in order: its extractions, transformations,
    /// quarantines, write intents, and the confirmations, failures and
    /// compensations of those intents. One pass over the log.
    pub fn record_history(&self, entity: &str, key: &str) -> Result<Vec<Event>> {
        let mut intents = std::collections::HashSet::new();
        let mut story = Vec::new();
        self.scan(1, |event| {
            let mine = match &event.record.body {
                EventBody::Extracted {
                    entity: e, key: k, ..
                }
                | EventBody::Transformed {
                    entity: e, key: k, ..
                }
                | EventBody::Quarantined {
                    entity: e, key: k, ..
                } => e == entity && k == key,
                EventBody::WriteIntended {
                    entity: e, key: k, ..
                } => {
                    let mine = e == entity && k == key;
                    if mine {
                        intents.insert(event.seq);
                    }
                    mine
                }
                EventBody::WriteConfirmed { intent, .. }
                | EventBody::WriteFailed { intent, .. }
                | EventBody::Compensated { intent, .. } => intents.contains(intent),
                _ => false,
            };
            if mine {
                story.push(event);
            }
            Ok(true)
        })?;
        Ok(story)
    }

    /// The source record behind a destination id when the object is not known:
    /// every (object, entity, key) whose confirmed write got this id.
    pub fn find_dest_id(&self, dest_id: &str) -> Result<Vec<(String, DestRef)>> {
        let mut found = Vec::new();
        self.record_states(|entity, key, state| {
            for (object, target) in &state.targets {
                if target.dest_id.as_deref() == Some(dest_id) {
                    found.push((
                        object.clone(),
                        DestRef {
                            entity: entity.to_string(),
                            key: key.to_string(),
                        },
                    ));
                }
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// The destination id of (entity, key) at `object`, once confirmed.
    pub fn dest_id(&self, entity: &str, key: &str, object: &str) -> Result<Option<String>> {
        Ok(self
            .record_state(entity, key)?
            .and_then(|s| s.targets.get(object).and_then(|t| t.dest_id.clone())))
    }

    /// The intent written at `seq` (`None` when that event is not a
    /// `write_intended`): its fields from the event, its outcome the latest
    /// confirmation, failure or compensation naming it. Pending, without reading
    /// further, while its target still waits on it: no confirmation or failure
    /// came (either clears the wait), and a compensation of a write never
    /// answered, which rollback does not write (it compensates confirmed writes),
    /// is not looked for; [`Ledger::intents`] does see one. Otherwise the answers
    /// are read from the log, from `seq` up to the last event that touched the
    /// intent's target (every answer touches it).
    pub fn intent(&self, seq: u64) -> Result<Option<IntentRecord>> {
        let Some(record) = StoredEvents::new(self.store.as_ref()).record(seq)? else {
            return Ok(None);
        };
        let Some(mut intent) = projection::intent_record(&record) else {
            return Ok(None);
        };
        let target = self
            .record_state(&intent.entity, &intent.key)?
            .and_then(|state| state.targets.get(&intent.object).cloned());
        let until = match target {
            // A confirmation or failure would have cleared it.
            Some(target) if target.pending_intent == Some(seq) => return Ok(Some(intent)),
            Some(target) => target.last_seq,
            None => self.head.seq,
        };
        self.scan(seq + 1, |event| {
            if event.seq > until {
                return Ok(false);
            }
            if projection::answered_intent(&event.record.body) == Some(seq) {
                projection::answer_intent(&mut intent, event.seq, &event.record.body);
            }
            Ok(true)
        })?;
        Ok(Some(intent))
    }

    /// Every intent in seq order with its latest outcome (rollback and resume walk
    /// these), from one scan of the event log. Holds every intent in memory until
    /// the scan ends (an intent's last answer can come at any later seq).
    pub fn intents(&self, mut visit: impl FnMut(u64, IntentRecord) -> Result<bool>) -> Result<()> {
        let mut intents: BTreeMap<u64, IntentRecord> = BTreeMap::new();
        self.scan(1, |event| {
            if let Some(intent) = projection::intent_record(&event.record) {
                intents.insert(event.seq, intent);
            } else if let Some(seq) = projection::answered_intent(&event.record.body) {
                if let Some(intent) = intents.get_mut(&seq) {
                    projection::answer_intent(intent, event.seq, &event.record.body);
                }
            }
            Ok(true)
        })?;
        for (seq, intent) in intents {
            if !visit(seq, intent)? {
                break;
            }
        }
        Ok(())
    }

    pub fn watermarks(&self) -> Result<BTreeMap<String, Micros>> {
        let mut out = BTreeMap::new();
        self.scan_prefix(&[keys::WATERMARK], |k, v: Micros| {
            out.insert(String::from_utf8_lossy(&k[1..]).into_owned(), v);
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn run_summary(&self, run: RunId) -> Result<Option<RunSummary>> {
        self.load(&projection::run_key(run))
    }

    pub fn runs(&self) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        self.scan_prefix(&[keys::RUN], |_, v: RunSummary| {
            out.push(v);
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn schema_elements(&self) -> Result<Vec<SchemaElement>> {
        let mut out = Vec::new();
        self.scan_prefix(&[keys::SCHEMA], |_, v: SchemaElement| {
            out.push(v);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The hash of the last confirmed map.
    pub fn confirmed_map(&self) -> Result<Option<Digest>> {
        self.load(&[keys::MAP])
    }

    /// Every record state, in (entity, key) order.
    pub fn record_states(
        &self,
        mut visit: impl FnMut(&str, &str, RecordState) -> Result<bool>,
    ) -> Result<()> {
        self.scan_prefix(&[keys::RECORD], |k, v| {
            let body = &k[1..];
            let split = body
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| LedgerError::Store("record key without separator".into()))?;
            let entity = String::from_utf8_lossy(&body[..split]);
            let key = String::from_utf8_lossy(&body[split + 1..]);
            visit(&entity, &key, v)
        })
    }

    /// The projections as stored (maintained incrementally on every append).
    pub fn projection_snapshot(&self) -> Result<ProjectionSnapshot> {
        let mut out = ProjectionSnapshot::default();
        self.store.scan_projections(&[], &mut |k, v| {
            if k != APPLIED_KEY {
                out.0.insert(k.to_vec(), v.to_vec());
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The projections rebuilt from scratch by replaying every event in memory.
    pub fn replay_projections(&self) -> Result<ProjectionSnapshot> {
        let mut out = ProjectionSnapshot::default();
        let mut pending: Vec<(u64, EventRecord)> = Vec::with_capacity(REPLAY_SLICE);
        let events = StoredEvents::new(self.store.as_ref());
        let mut open = OpenIntents::default();
        let mut apply =
            |out: &mut ProjectionSnapshot, pending: &mut Vec<(u64, EventRecord)>| -> Result<()> {
                let mut projector = Projector::new(out, &events, &open);
                for (seq, record) in pending.drain(..) {
                    projector.apply(seq, &record)?;
                }
                let intents = projector.finish();
                open.update(intents);
                Ok(())
            };
        self.scan_raw_from(1, &mut |seq, _, encoded| {
            let record =
                decode_event(encoded).map_err(|detail| LedgerError::Chain { seq, detail })?;
            pending.push((seq, record));
            if pending.len() >= REPLAY_SLICE {
                apply(&mut out, &mut pending)?;
            }
            Ok(true)
        })?;
        apply(&mut out, &mut pending)?;
        Ok(out)
    }

    /// Drops the stored projections and rebuilds them from the events.
    pub fn rebuild_projections(&mut self) -> Result<()> {
        let replayed = self.replay_projections()?;
        self.store.clear_projections()?;
        let mut commit = Commit {
            projections: replayed.0.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            ..Commit::default()
        };
        commit
            .projections
            .push((APPLIED_KEY.to_vec(), Some(applied_marker(self.head.seq))));
        self.store.commit(commit)?;
        self.flush()
    }

    pub fn stats(&self) -> Result<Stats> {
        let (blobs, blob_bytes) = self.store.blob_stats()?;
        let (_, event_log_bytes) = self.store.event_log_stats()?;
        let runs = self.runs()?;
        let mut events_by_kind = BTreeMap::new();
        for run in &runs {
            for (kind, n) in &run.counts {
                *events_by_kind.entry(kind.clone()).or_insert(0) += n;
            }
        }
        Ok(Stats {
            events: self.head.seq,
            event_log_bytes,
            head: self.head,
            runs: runs.iter().filter(|r| r.kind.is_some()).count() as u64,
            blobs,
            blob_bytes,
            disk_bytes: dir_size(&self.dir),
            events_by_kind,
        })
    }

    // ---- internals ---------------------------------------------------------

    fn store_path(&self) -> PathBuf {
        self.dir.join(STORE_DIR)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.store.projection(key)? {
            None => Ok(None),
            Some(bytes) => decode_value(&bytes)
                .map(Some)
                .map_err(|detail| LedgerError::Corrupt {
                    path: self.store_path(),
                    detail: format!("projection value: {detail}"),
                }),
        }
    }

    fn scan_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], T) -> Result<bool>,
    ) -> Result<()> {
        let path = self.store_path();
        self.store.scan_projections(prefix, &mut |k, v| {
            let value = decode_value(v).map_err(|detail| LedgerError::Corrupt {
                path: path.clone(),
                detail: format!("projection value: {detail}"),
            })?;
            visit(k, value)
        })
    }

    /// Reconciles the store's head, its last event and the HEAD anchor.
    fn check_head(&self) -> Result<Head> {
        let path = self.store_path();
        let stored = self.store.head()?;
        let mut last: Option<(u64, Digest)> = None;
        if let Some((first, chunk)) = self.store.last_chunk()? {
            for_each_in_chunk(first, &chunk, &mut |seq, hash, _| {
                last = Some((seq, hash));
                Ok(true)
            })?;
        }
        let head = match (stored, last) {
            (None, None) => Head::EMPTY,
            (Some((seq, hash)), Some((last_seq, last_hash))) if seq == last_seq => {
                if last_hash != hash {
                    return Err(LedgerError::Corrupt {
                        path,
                        detail: format!("the head record's hash differs from event {seq}'s"),
                    });
                }
                Head { seq, hash }
            }
            (Some((seq, _)), last) => {
                return Err(LedgerError::Corrupt {
                    path,
                    detail: format!(
                        "the head record says seq {seq} but the last event is {}",
                        last.map(|l| l.0.to_string())
                            .unwrap_or_else(|| "none".into())
                    ),
                })
            }
            (None, Some((last, _))) => {
                return Err(LedgerError::Corrupt {
                    path,
                    detail: format!("events up to seq {last} but no head record"),
                })
            }
        };
        let anchor = self.read_head_anchor()?;
        if anchor.seq > head.seq {
            return Err(LedgerError::Corrupt {
                path,
                detail: format!("the store ends at seq {} but seq {} was recorded durable in HEAD: events {}..{} were lost", head.seq, anchor.seq, head.seq + 1, anchor.seq),
            });
        }
        if anchor.seq == head.seq && anchor.hash != head.hash {
            return Err(LedgerError::Corrupt {
                path,
                detail: format!(
                    "event {} differs from the one recorded durable in HEAD",
                    head.seq
                ),
            });
        }
        Ok(head)
    }

    /// Projections are committed right after their events; after a crash
    /// between the two, or when this build's projection logic is newer, the
    /// gap is replayed here (incrementally when only the tail is missing).
    fn catch_up_projections(&mut self) -> Result<()> {
        let marker = self.store.projection(APPLIED_KEY)?;
        let applied = match marker.as_deref().and_then(parse_applied_marker) {
            None if marker.is_none() && self.head.seq == 0 => return Ok(()),
            Some((PROJECTION_VERSION, applied)) => applied,
            Some((1, applied)) => {
                self.drop_version_1_projections(applied)?;
                applied
            }
            _ => return self.rebuild_projections(),
        };
        if applied == self.head.seq {
            return Ok(());
        }
        if applied > self.head.seq {
            return Err(LedgerError::Corrupt {
                path: self.store_path(),
                detail: format!(
                    "projections claim seq {applied} but the chain ends at {}",
                    self.head.seq
                ),
            });
        }
        let mut overlay = Overlay {
            store: self.store.as_ref(),
            dirty: Default::default(),
        };
        let events = StoredEvents::new(self.store.as_ref());
        let mut projector = Projector::new(&mut overlay, &events, &self.open_intents);
        let mut failure = None;
        self.scan_raw_from(applied + 1, &mut |seq, _, encoded| {
            if seq <= applied {
                return Ok(true);
            }
            let record =
                decode_event(encoded).map_err(|detail| LedgerError::Chain { seq, detail })?;
            if let Err(e) = projector.apply(seq, &record) {
                failure = Some(e);
                return Ok(false);
            }
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let intents = projector.finish();
        let mut commit = Commit {
            projections: overlay.dirty.into_iter().collect(),
            ..Commit::default()
        };
        commit
            .projections
            .push((APPLIED_KEY.to_vec(), Some(applied_marker(self.head.seq))));
        self.store.commit(commit)?;
        self.open_intents.update(intents);
        self.store.flush()
    }

    /// Projection version 1 also stored intents by seq and the destination-id
    /// index; version 2 reads both from the events and record states instead
    /// (projection.rs), and is otherwise the same. Removes those keys in
    /// batches, then marks the projections version 2, still applied up to
    /// `applied`: a crash in between leaves version 1, and the next open
    /// finishes the job. Cheaper than a rebuild by replay, which would hold
    /// every projection of a large ledger in memory. Small batches: on a
    /// 1M-event ledger (~500k keys to drop) batches of 1,024 took 4.8 s and
    /// 57 MiB peak RSS, of 65,536 9.3 s and 322 MiB.
    fn drop_version_1_projections(&self, applied: u64) -> Result<()> {
        const BATCH: usize = 1_024;
        for prefix in [keys::OLD_INTENT, keys::OLD_DEST] {
            loop {
                let mut doomed: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
                self.store.scan_projections(&[prefix], &mut |k, _| {
                    doomed.push((k.to_vec(), None));
                    Ok(doomed.len() < BATCH)
                })?;
                let last = doomed.len() < BATCH;
                if !doomed.is_empty() {
                    self.store.commit(Commit {
                        projections: doomed,
                        ..Commit::default()
                    })?;
                }
                if last {
                    break;
                }
            }
        }
        self.store.commit(Commit {
            projections: vec![(APPLIED_KEY.to_vec(), Some(applied_marker(applied)))],
            ..Commit::default()
        })?;
        self.store.flush()
    }

    fn write_marker(&self) -> Result<()> {
        write_marker(&self.dir)
    }

    fn write_head_anchor(&self) -> Result<()> {
        let text = format!(
            "{{\"seq\":{},\"hash\":\"{}\"}}\n",
            self.head.seq,
            self.head.hash.to_hex()
        );
        write_anchor_in_place(&self.dir.join(HEAD_FILE), &text)
    }

    fn read_head_anchor(&self) -> Result<Head> {
        let path = self.dir.join(HEAD_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Head::EMPTY),
            Err(e) => return Err(LedgerError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
            path,
            detail: format!("HEAD does not parse: {e}"),
        })
    }
}

/// Marks how far the stored projections have applied the events, and with
/// which projection logic: a build whose logic changed bumps the version and
/// rebuilds by replay on open (or, from version 1, drops what version 2 no
/// longer stores: [`Ledger::drop_version_1_projections`]).
const APPLIED_KEY: &[u8] = b"#applied";
/// 2: no intents by seq (`i`) and no destination-id index (`d`).
const PROJECTION_VERSION: u32 = 2;

fn applied_marker(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&PROJECTION_VERSION.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// (projection version, applied seq) of a marker; `None` if it is not one.
fn parse_applied_marker(bytes: &[u8]) -> Option<(u32, u64)> {
    if bytes.len() != 12 {
        return None;
    }
    Some((
        u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")),
        u64::from_be_bytes(bytes[4..].try_into().expect("8 bytes")),
    ))
}

/// Events read back from the store by seq, for intents the projector does not
/// hold (projection.rs). Keeps the last chunk it read: compensations name
/// intents in seq order, often several in one chunk.
struct StoredEvents<'a> {
    store: &'a dyn Store,
    chunk: std::cell::RefCell<Option<(u64, Vec<u8>)>>,
}

impl<'a> StoredEvents<'a> {
    fn new(store: &'a dyn Store) -> StoredEvents<'a> {
        StoredEvents {
            store,
            chunk: Default::default(),
        }
    }

    fn find(first: u64, chunk: &[u8], seq: u64) -> Result<Option<EventRecord>> {
        let mut found = None;
        for_each_in_chunk(first, chunk, &mut |at, _, encoded| {
            if at < seq {
                return Ok(true);
            }
            if at == seq {
                found = Some(
                    decode_event(encoded).map_err(|detail| LedgerError::Chain { seq, detail })?,
                );
            }
            Ok(false)
        })?;
        Ok(found)
    }
}

impl Events for StoredEvents<'_> {
    fn record(&self, seq: u64) -> Result<Option<EventRecord>> {
        if seq == 0 {
            return Ok(None);
        }
        let mut cached = self.chunk.borrow_mut();
        if let Some((first, chunk)) = cached.as_ref() {
            if *first <= seq {
                if let Some(record) = Self::find(*first, chunk, seq)? {
                    return Ok(Some(record));
                }
            }
        }
        let Some((first, chunk)) = self.store.chunk_containing(seq)? else {
            return Ok(None);
        };
        let found = Self::find(first, &chunk, seq)?;
        *cached = Some((first, chunk));
        Ok(found)
    }
}

/// Visits (seq, stored hash, encoded record); returns false to stop.
pub(crate) type EntryVisitor<'a> = dyn FnMut(u64, Digest, &[u8]) -> Result<bool> + 'a;

/// Events decoded per projector slice during replay (bounds replay memory).
const REPLAY_SLICE: usize = 65_536;

/// Walks the entries of one chunk: `len (u32 LE) ‖ hash ‖ encoded`, seqs from `first`.
/// Returns false when `visit` asked to stop.
fn for_each_in_chunk(first: u64, chunk: &[u8], visit: &mut EntryVisitor) -> Result<bool> {
    let mut at = 0usize;
    let mut seq = first;
    while at < chunk.len() {
        let torn = |detail: String| LedgerError::Chain {
            seq,
            detail: format!("{detail} (torn or corrupt chunk starting at seq {first})"),
        };
        if chunk.len() - at < 4 {
            return Err(torn("truncated entry length".into()));
        }
        let len = u32::from_le_bytes(chunk[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4;
        if len < 33 || chunk.len() - at < len {
            return Err(torn(format!("entry of {len} bytes does not fit")));
        }
        let hash = Digest(chunk[at..at + 32].try_into().expect("32 bytes"));
        if !visit(seq, hash, &chunk[at + 32..at + len])? {
            return Ok(false);
        }
        at += len;
        seq += 1;
    }
    Ok(true)
}

fn short(d: &Digest) -> String {
    d.to_hex()[..12].to_string()
}

fn open_store_catching_panics(path: &Path, packs: &Path) -> Result<Box<dyn Store>> {
    // sled releases its file lock from a background thread shortly after the
    // last handle is dropped, so a reopen right after a close can find it still
    // held: retry for up to a second before reporting the ledger in use.
    let mut attempts = 0;
    loop {
        match open_store_once(path, packs) {
            Err(LedgerError::Unavailable { .. }) if attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn open_store_once(path: &Path, packs: &Path) -> Result<Box<dyn Store>> {
    // sled may panic on some on-disk corruption instead of returning an error;
    // a corrupt store must be reported, never crash the tool.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| SledStore::open(path, packs));
    std::panic::set_hook(previous);
    match result {
        Ok(Ok(store)) => Ok(Box::new(store)),
        Ok(Err(e)) => Err(e),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the storage engine panicked while opening".into());
            Err(LedgerError::Corrupt {
                path: path.to_path_buf(),
                detail,
            })
        }
    }
}

fn write_marker(dir: &Path) -> Result<()> {
    let marker = serde_json::to_vec_pretty(&Marker {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
    })
    .expect("marker serialises");
    write_atomically(&dir.join(MARKER_FILE), &marker)
}

/// The HEAD anchor is written in place: one write of [`ANCHOR_LEN`] bytes
/// (the JSON padded with spaces) at offset 0, then `fdatasync`. A write that
/// small lies in one disk sector, so it is not torn; this costs one sync per
/// flush where write-to-temp-and-rename cost a file creation, a sync and a
/// rename (~7 ms against ~3 ms here, on every flush).
const ANCHOR_LEN: usize = 128;

fn write_anchor_in_place(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut bytes = text.trim_end().as_bytes().to_vec();
    bytes.resize(ANCHOR_LEN - 1, b' ');
    bytes.push(b'\n');
    let result = (|| -> std::io::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.write_all_at(&bytes, 0)?;
        if file.metadata()?.len() != ANCHOR_LEN as u64 {
            file.set_len(ANCHOR_LEN as u64)?;
        }
        file.sync_data()
    })();
    result.map_err(|e| LedgerError::io(format!("writing {}", path.display()), e))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| LedgerError::io(format!("writing {}", path.display()), e))
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
impl Ledger {
    /// The stored entries (hash, encoded record) in order, for tamper tests.
    pub(crate) fn raw_entries(&self) -> Vec<(Digest, Vec<u8>)> {
        let mut out = Vec::new();
        self.scan_raw_from(1, &mut |_, hash, encoded| {
            out.push((hash, encoded.to_vec()));
            Ok(true)
        })
        .expect("scan");
        out
    }

    /// Replaces the stored events with `entries` (numbered from 1) and the in-store head,
    /// as an attacker with write access to the store would. The HEAD anchor is left alone.
    pub(crate) fn tamper(&self, entries: &[(Digest, Vec<u8>)], head: Option<Head>) {
        let mut chunks = Vec::new();
        for (i, (hash, encoded)) in entries.iter().enumerate() {
            let mut chunk = Vec::new();
            chunk.extend_from_slice(&((32 + encoded.len()) as u32).to_le_bytes());
            chunk.extend_from_slice(&hash.0);
            chunk.extend_from_slice(encoded);
            chunks.push((i as u64 + 1, chunk));
        }
        self.store
            .rewrite_events(chunks, head.map(|h| (h.seq, h.hash)))
            .expect("rewrite");
    }
}

#[cfg(test)]
impl Ledger {
    /// The seqs of the open intents (projection.rs), for tests of path (b).
    pub(crate) fn open_intent_seqs(&self) -> Vec<u64> {
        self.open_intents.seqs()
    }
}
