//! `cutover rollback`: undoing runs from the ledger (DESIGN §5, docs/rollback.md).
//!
//! The plan comes from the ledger alone. Every confirmed create or update of the
//! selected runs names a destination record `(object, dest_id)`; per record:
//!
//! - one of the selected writes created it → **delete** it;
//! - the selected writes only updated it → **restore** the before-image of the
//!   oldest of those updates (the record as it stood before the first of them),
//!   so a record updated several times ends at its pre-migration image.
//!
//! Restores go first (newest first), then deletes in reverse creation order:
//! the run wrote parents before children, so the reverse puts children
//! (links, notes, tasks, opportunities) before contacts before businesses.
//!
//! Before each compensation the record is read (the drift check): gone →
//! `already_gone`; changed since we last wrote it (the destination's
//! [`ReadDestination::read_as_sent`] of what we sent, compared with
//! [`crate::compare::field_differences`]) → `conflict`, listed and left alone
//! unless `force`. Otherwise a `write_intended` (op `delete`, or `update` with the
//! image as payload) is appended and flushed before the request leaves; the
//! answer is appended as `write_confirmed` + one `compensated` per undone write
//! (or `write_failed`). A rollback killed mid-way resumes: compensated writes are
//! not planned again, and a rollback intent left without an answer is resolved by
//! reading the destination first (a delete that landed → `already_gone`, never a
//! second delete).
//!
//! Schema elements we created (`schema_changed` with `created`) are dropped last,
//! only when asked (`schema`) and only when every record was undone.
//!
//! A dry run ([`plan_rollback`]) gets a `&Ledger` and a [`ReadDestination`]: it
//! reads (the drift checks) and can write neither.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cutover_ledger::{
    Compensation, Digest, EventBody, FailureClass, IntentOutcome, IntentRecord, Ledger,
    LedgerError, RunId, RunKind, RunOutcome, WriteOp,
};
use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use crate::compare::field_differences;
use crate::error::{DestError, ErrorClass};
use crate::ports::{canonical_json, DestRecord, Destination, ReadDestination, SchemaChange};

/// Which runs to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One run (`run`, `delta` or `sample`), by id.
    Run(RunId),
    /// Every run, delta and sample run in the ledger.
    All,
}

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub selection: Selection,
    /// Compensate records that changed at the destination after we wrote them.
    pub force: bool,
    /// Also drop the custom fields and objects we created (last; `All` only).
    pub schema: bool,
    /// Compensations per ledger flush.
    pub batch: usize,
}

/// What a compensation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Delete,
    Restore,
}

/// How one record's compensation ended (or, in a dry run, would end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    Deleted,
    Restored,
    AlreadyGone,
    /// Changed at the destination since we wrote it: left alone (listed).
    Conflict,
    /// Not deleted because a record left in conflict refers to it (deleting it
    /// would change that record: destinations clear or cascade references).
    Kept,
    /// The request failed (the next rollback tries again).
    Failed,
    /// A write of the selected runs whose answer never came (resolve it with `cutover run` first).
    InDoubt,
    /// Dry run: the record is as we wrote it and would be deleted / restored.
    WouldDelete,
    WouldRestore,
}

/// One destination record in the plan and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub object: String,
    pub dest_id: String,
    pub entity: String,
    pub key: String,
    pub action: Action,
    pub outcome: ItemOutcome,
    /// The ledger's write intents this compensates.
    pub intents: Vec<u64>,
    /// For a conflict: the field paths that changed (names only, never values).
    pub changed_fields: Vec<String>,
    /// Kind of failure and where (never the server's words), or how an interrupted step was resolved.
    pub detail: String,
}

/// A schema element dropped (or that would be).
#[derive(Debug, Clone, Serialize)]
pub struct SchemaItem {
    pub element: String,
    pub name: String,
    pub dest_id: String,
    /// `dropped`, `would_drop`, `failed`, `skipped`.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackCounts {
    pub deleted: u64,
    pub restored: u64,
    pub already_gone: u64,
    pub conflicts: u64,
    /// Parents kept for a conflicting record that refers to them.
    pub kept: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub would_delete: u64,
    pub would_restore: u64,
    /// Writes compensated by earlier rollbacks (nothing left to do for them).
    pub done_before: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The rollback run's id (`None` for a dry run).
    pub run: Option<RunId>,
    pub dry_run: bool,
    /// The runs undone.
    pub runs: Vec<RunId>,
    pub items: Vec<Item>,
    pub schema: Vec<SchemaItem>,
    pub counts: RollbackCounts,
    pub outcome: RunOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("run {0} is not in the ledger")]
    UnknownRun(RunId),
    #[error("run {run} is a {kind} run; only run, delta and sample runs are rolled back")]
    NotAMigrationRun { run: RunId, kind: String },
    #[error("--schema drops the schema of the whole migration: use it with --all")]
    SchemaNeedsAll,
    #[error("the ledger names blob {0}, which is missing from the blob store")]
    MissingBlob(Digest),
    /// A read or a write the destination refuses in a way no retry fixes, or a read that failed.
    #[error("the destination stopped the rollback (run {run:?}) at {object} {dest_id}")]
    Destination {
        run: Option<RunId>,
        object: String,
        dest_id: String,
        #[source]
        error: DestError,
    },
}

/// Told about each record as soon as it is decided (the cli prints it then:
/// a long rollback shows its progress, and a killed one what it did).
pub trait Observer: Send + Sync {
    fn item(&self, item: &Item);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn item(&self, _item: &Item) {}
}

/// Plans the rollback without writing anything: the drift checks read the
/// destination, nothing is sent that changes it, nothing is appended to the ledger.
pub async fn plan_rollback(
    ledger: &Ledger,
    dest: &dyn ReadDestination,
    options: &RollbackOptions,
    observer: &dyn Observer,
) -> Result<RollbackReport, RollbackError> {
    let mut rollback = Rollback {
        observer,
        ledger: LedgerRef::Read(ledger),
        reader: dest,
        writer: None,
        run: None,
        options,
        pending: Vec::new(),
        held: HashSet::new(),
    };
    rollback.execute().await
}

/// Rolls back, writing: a `rollback` run in the ledger, every compensation
/// bracketed by its intent (flushed first) and its answer.
pub async fn run_rollback(
    ledger: &mut Ledger,
    dest: &dyn Destination,
    options: &RollbackOptions,
    destination_description: &str,
    observer: &dyn Observer,
) -> Result<RollbackReport, RollbackError> {
    // Check the selection before a run is recorded.
    selected_runs(ledger, options)?;
    let run = ledger.start_run(RunKind::Rollback, "", destination_description, None)?;
    let mut rollback = Rollback {
        observer,
        ledger: LedgerRef::Write(ledger),
        reader: dest,
        writer: Some(dest),
        run: Some(run),
        options,
        pending: Vec::new(),
        held: HashSet::new(),
    };
    let result = rollback.execute().await;
    let ledger = rollback.ledger.get_mut().expect("a writing rollback");
    match &result {
        Ok(report) => {
            ledger.finish_run(run, report.outcome, &summary_detail(report))?;
        }
        Err(error) => {
            let _ = ledger.flush();
            let _ = ledger.finish_run(run, RunOutcome::Failed, &error.to_string());
        }
    }
    result
}

enum LedgerRef<'a> {
    Read(&'a Ledger),
    Write(&'a mut Ledger),
}

impl LedgerRef<'_> {
    fn get(&self) -> &Ledger {
        match self {
            LedgerRef::Read(l) => l,
            LedgerRef::Write(l) => l,
        }
    }

    fn get_mut(&mut self) -> Option<&mut Ledger> {
        match self {
            LedgerRef::Read(_) => None,
            LedgerRef::Write(l) => Some(l),
        }
    }
}

/// One destination record to compensate.
#[derive(Debug, Clone)]
struct Target {
    object: String,
    dest_id: String,
    entity: String,
    key: String,
    action: Action,
    /// The selected writes still to compensate, oldest first.
    writes: Vec<u64>,
    /// What we last put there (payload, or an image an earlier rollback restored).
    last_written: Digest,
    /// True when `last_written` is a record as read (an image), not a sent payload.
    last_is_image: bool,
    /// Restore: the image to write back.
    image: Option<Digest>,
    /// A rollback intent for this record that never got its answer.
    in_doubt: Option<(u64, WriteOp)>,
    /// Ordering: restores newest first, then deletes by their create's seq, newest first.
    order: u64,
}

struct Rollback<'a> {
    observer: &'a dyn Observer,
    ledger: LedgerRef<'a>,
    reader: &'a dyn ReadDestination,
    writer: Option<&'a dyn Destination>,
    run: Option<RunId>,
    options: &'a RollbackOptions,
    /// Events waiting for the next flush (answers).
    pending: Vec<EventBody>,
    /// Destination ids that records left at the destination (conflicts, kept) refer to.
    held: HashSet<String>,
}

/// A rollback's intent for one record carries this idempotency key.
fn rollback_key(object: &str, dest_id: &str) -> String {
    format!("rollback:{object}:{dest_id}")
}

/// The runs the selection names, checked.
fn selected_runs(
    ledger: &Ledger,
    options: &RollbackOptions,
) -> Result<BTreeSet<RunId>, RollbackError> {
    let runs = ledger.runs()?;
    let migration = |kind: Option<RunKind>| {
        matches!(kind, Some(RunKind::Full | RunKind::Delta | RunKind::Sample))
    };
    if options.schema && options.selection != Selection::All {
        return Err(RollbackError::SchemaNeedsAll);
    }
    match options.selection {
        Selection::All => Ok(runs
            .iter()
            .filter(|r| migration(r.kind))
            .map(|r| r.run)
            .collect()),
        Selection::Run(id) => {
            let summary = runs
                .iter()
                .find(|r| r.run == id && r.kind.is_some())
                .ok_or(RollbackError::UnknownRun(id))?;
            if !migration(summary.kind) {
                return Err(RollbackError::NotAMigrationRun {
                    run: id,
                    kind: summary
                        .kind
                        .map(|k| format!("{k:?}").to_lowercase())
                        .unwrap_or_default(),
                });
            }
            Ok([id].into_iter().collect())
        }
    }
}

impl Rollback<'_> {
    fn blob_json(&self, digest: &Digest) -> Result<Json, RollbackError> {
        let bytes = self
            .ledger
            .get()
            .blob(digest)?
            .ok_or(RollbackError::MissingBlob(*digest))?;
        serde_json::from_slice(&bytes).map_err(|_| RollbackError::MissingBlob(*digest))
    }

    fn put_blob(&mut self, value: &Json) -> Result<Digest, RollbackError> {
        let bytes = canonical_json(value);
        match self.ledger.get_mut() {
            Some(l) => Ok(l.put_blob(&bytes)?),
            None => Ok(Digest::of(&bytes)),
        }
    }

    /// Appends an intent and flushes it (with every answer waiting): durable before the request leaves.
    fn intend(&mut self, intent: EventBody) -> Result<u64, RollbackError> {
        let run = self.run.unwrap_or(0);
        let mut events = std::mem::take(&mut self.pending);
        let before = events.len() as u64;
        events.push(intent);
        let ledger = self.ledger.get_mut().expect("a writing rollback");
        let first = ledger.append_buffered(run, events)?;
        ledger.flush()?;
        Ok(first + before)
    }

    /// Queues answers; they are committed with the next intent or flush.
    fn answer(&mut self, events: Vec<EventBody>) {
        if self.ledger.get_mut().is_some() {
            self.pending.extend(events);
        }
    }

    fn flush(&mut self) -> Result<(), RollbackError> {
        let run = self.run.unwrap_or(0);
        let events = std::mem::take(&mut self.pending);
        if let Some(ledger) = self.ledger.get_mut() {
            if !events.is_empty() {
                ledger.append_buffered(run, events)?;
            }
            ledger.flush()?;
        }
        Ok(())
    }

    /// The plan from the ledger: every record the selected runs wrote and no
    /// rollback has undone yet, in compensation order, plus the writes in doubt.
    fn targets(&self) -> Result<(Vec<Target>, Vec<Item>, u64), RollbackError> {
        let ledger = self.ledger.get();
        let selected = selected_runs(ledger, self.options)?;
        let kinds: HashMap<RunId, Option<RunKind>> = ledger
            .runs()?
            .into_iter()
            .map(|r| (r.run, r.kind))
            .collect();
        // Per destination record: the migration writes on it (seq order).
        let mut records: BTreeMap<(String, String), Vec<(u64, IntentRecord)>> = BTreeMap::new();
        let mut rollback_pending: HashMap<(String, String), (u64, WriteOp)> = HashMap::new();
        let mut in_doubt = Vec::new();
        ledger.intents(|seq, intent| {
            let kind = kinds.get(&intent.run).copied().flatten();
            if kind == Some(RunKind::Rollback) {
                let id = (
                    intent.object.clone(),
                    intent.dest_id.clone().unwrap_or_default(),
                );
                match intent.outcome {
                    IntentOutcome::Pending => {
                        rollback_pending.insert(id, (seq, intent.op));
                    }
                    _ => {
                        rollback_pending.remove(&id);
                    }
                }
                return Ok(true);
            }
            if intent.op == WriteOp::Delete {
                return Ok(true);
            }
            if intent.outcome == IntentOutcome::Pending && selected.contains(&intent.run) {
                in_doubt.push(Item {
                    object: intent.object.clone(),
                    dest_id: intent.dest_id.clone().unwrap_or_default(),
                    entity: intent.entity.clone(),
                    key: intent.key.clone(),
                    action: if intent.op == WriteOp::Create {
                        Action::Delete
                    } else {
                        Action::Restore
                    },
                    outcome: ItemOutcome::InDoubt,
                    intents: vec![seq],
                    changed_fields: Vec::new(),
                    detail: "the run never learnt whether this write landed; `cutover run` resolves it, then roll back again".into(),
                });
                return Ok(true);
            }
            if let Some(dest_id) = intent.dest_id.clone() {
                if matches!(
                    intent.outcome,
                    IntentOutcome::Confirmed { .. } | IntentOutcome::Compensated { .. }
                ) {
                    records
                        .entry((intent.object.clone(), dest_id))
                        .or_default()
                        .push((seq, intent));
                }
            }
            Ok(true)
        })?;

        let mut targets = Vec::new();
        let mut done_before = 0;
        for ((object, dest_id), writes) in records {
            // What we last put there: a confirmed payload, or an image a rollback restored.
            let mut last: Option<(u64, Digest, bool)> = None;
            let mut consider = |seq: u64, digest: Digest, image: bool| {
                if last.is_none_or(|(s, ..)| seq > s) {
                    last = Some((seq, digest, image));
                }
            };
            for (seq, write) in &writes {
                match &write.outcome {
                    IntentOutcome::Confirmed { .. } => consider(*seq, write.payload_hash, false),
                    IntentOutcome::Compensated {
                        seq: at,
                        outcome: Compensation::Restored,
                    } => {
                        if let Some(image) = write.before_image {
                            consider(*at, image, true)
                        }
                    }
                    IntentOutcome::Compensated {
                        outcome: Compensation::Conflict,
                        ..
                    } => consider(*seq, write.payload_hash, false),
                    _ => {}
                }
            }
            let todo: Vec<&(u64, IntentRecord)> = writes
                .iter()
                .filter(|(_, w)| selected.contains(&w.run))
                .filter(|(_, w)| {
                    matches!(
                        w.outcome,
                        IntentOutcome::Confirmed { .. }
                            | IntentOutcome::Compensated {
                                outcome: Compensation::Conflict,
                                ..
                            }
                    )
                })
                .collect();
            done_before += writes
                .iter()
                .filter(|(_, w)| selected.contains(&w.run))
                .filter(|(_, w)| {
                    matches!(
                        w.outcome,
                        IntentOutcome::Compensated { outcome, .. } if outcome != Compensation::Conflict
                    )
                })
                .count() as u64;
            let (Some(first), Some((_, last_written, last_is_image))) = (todo.first(), last) else {
                continue;
            };
            let create = todo.iter().find(|(_, w)| w.op == WriteOp::Create);
            let (action, image, order) = match create {
                Some((seq, _)) => (Action::Delete, None, *seq),
                None => (
                    Action::Restore,
                    first.1.before_image,
                    todo.last().map(|(s, _)| *s).unwrap_or(0),
                ),
            };
            let in_doubt_rb = rollback_pending
                .get(&(object.clone(), dest_id.clone()))
                .copied();
            targets.push(Target {
                object: object.clone(),
                dest_id: dest_id.clone(),
                entity: first.1.entity.clone(),
                key: first.1.key.clone(),
                action,
                writes: todo.iter().map(|(s, _)| *s).collect(),
                last_written,
                last_is_image,
                image,
                in_doubt: in_doubt_rb,
                order,
            });
        }
        // Restores first, newest first; then deletes in reverse creation order (children first).
        targets.sort_by_key(|t| {
            (
                match t.action {
                    Action::Restore => 0,
                    Action::Delete => 1,
                },
                std::cmp::Reverse(t.order),
            )
        });
        Ok((targets, in_doubt, done_before))
    }

    async fn execute(&mut self) -> Result<RollbackReport, RollbackError> {
        let runs: Vec<RunId> = selected_runs(self.ledger.get(), self.options)?
            .into_iter()
            .collect();
        let (targets, mut items, done_before) = self.targets()?;
        let mut counts = RollbackCounts {
            done_before,
            in_doubt: items.len() as u64,
            ..Default::default()
        };
        for item in &items {
            self.observer.item(item);
        }
        let batch = self.options.batch.max(1);
        // Records that share a destination id are one record (HighLevel's contact-business
        // link is the contact): undoing one changes the other.
        // So is a record stored inside another (`ReadDestination::stored_in`: a HighLevel file).
        let containers: Vec<String> = targets
            .iter()
            .map(|t| {
                self.reader
                    .stored_in(&t.object, &t.dest_id)
                    .map(|(_, id)| id)
                    .unwrap_or_else(|| t.dest_id.clone())
            })
            .collect();
        let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, id) in containers.iter().enumerate() {
            by_id.entry(id.as_str()).or_default().push(index);
        }
        for (index, target) in targets.iter().enumerate() {
            if !self.options.force && target.action == Action::Delete {
                for &later in by_id[containers[index].as_str()]
                    .iter()
                    .filter(|&&i| i > index)
                {
                    self.hold_if_conflicting(&targets[later]).await?;
                }
            }
            let item = self.compensate(target.clone()).await?;
            match item.outcome {
                ItemOutcome::Deleted => counts.deleted += 1,
                ItemOutcome::Restored => counts.restored += 1,
                ItemOutcome::AlreadyGone => counts.already_gone += 1,
                ItemOutcome::Conflict => counts.conflicts += 1,
                ItemOutcome::Kept => counts.kept += 1,
                ItemOutcome::Failed => counts.failed += 1,
                ItemOutcome::InDoubt => counts.in_doubt += 1,
                ItemOutcome::WouldDelete => counts.would_delete += 1,
                ItemOutcome::WouldRestore => counts.would_restore += 1,
            }
            self.observer.item(&item);
            items.push(item);
            if (index + 1) % batch == 0 {
                self.flush()?;
            }
        }
        self.flush()?;
        let clean =
            counts.conflicts == 0 && counts.kept == 0 && counts.failed == 0 && counts.in_doubt == 0;
        let mut schema = Vec::new();
        if self.options.schema {
            schema = self.drop_schema(clean).await?;
        }
        let schema_failed = schema.iter().any(|s| s.outcome == "failed");
        Ok(RollbackReport {
            run: self.run,
            dry_run: self.writer.is_none(),
            runs,
            items,
            schema,
            counts,
            outcome: if clean && !schema_failed {
                RunOutcome::Completed
            } else {
                RunOutcome::CompletedWithFailures
            },
        })
    }

    fn stop(&self, target: &Target, error: DestError) -> RollbackError {
        RollbackError::Destination {
            run: self.run,
            object: target.object.clone(),
            dest_id: target.dest_id.clone(),
            error,
        }
    }

    /// Events compensating every write of `target` with `outcome`. Newest first, so
    /// the projection ends at the oldest update's before-image after a restore.
    fn compensated(target: &Target, outcome: Compensation, detail: &str) -> Vec<EventBody> {
        target
            .writes
            .iter()
            .rev()
            .map(|&intent| EventBody::Compensated {
                intent,
                outcome,
                detail: detail.to_string(),
            })
            .collect()
    }

    fn item(target: &Target, outcome: ItemOutcome, fields: Vec<String>, detail: &str) -> Item {
        Item {
            object: target.object.clone(),
            dest_id: target.dest_id.clone(),
            entity: target.entity.clone(),
            key: target.key.clone(),
            action: target.action,
            outcome,
            intents: target.writes.clone(),
            changed_fields: fields,
            detail: detail.to_string(),
        }
    }

    /// The fields of the record that differ from what we last wrote (paths only).
    fn drift(&self, target: &Target, record: &DestRecord) -> Result<Vec<String>, RollbackError> {
        let written = self.blob_json(&target.last_written)?;
        let written = if target.last_is_image {
            comparable_image(&written)
        } else {
            sent_fields(&written)
        };
        Ok(differing_paths(self.reader, &written, record))
    }

    /// Drift-checks a record ahead of its turn (nothing ledgered): when it is in
    /// conflict, it and what it refers to are held.
    async fn hold_if_conflicting(&mut self, target: &Target) -> Result<(), RollbackError> {
        let current = self
            .reader
            .get(&target.object, &target.dest_id)
            .await
            .map_err(|e| self.stop(target, e))?;
        if let Some(record) = current {
            if !self.drift(target, &record)?.is_empty() {
                self.held.insert(target.dest_id.clone());
                self.hold_references(&record.body);
            }
        }
        Ok(())
    }

    /// Remembers every text value of a record left at the destination: the ids it
    /// refers to are not deleted (children come first, so parents come after).
    fn hold_references(&mut self, body: &Json) {
        let held = &mut self.held;
        crate::ports::flatten_paths("", body, &mut |_, value| match value {
            Json::String(text) => {
                held.insert(text.clone());
            }
            Json::Array(items) => {
                for item in items {
                    if let Some(text) = item.as_str() {
                        held.insert(text.to_string());
                    }
                }
            }
            _ => {}
        });
    }

    /// Whether the record holds the image (an interrupted restore that landed).
    fn holds_image(&self, image: &Digest, record: &DestRecord) -> Result<bool, RollbackError> {
        let image = comparable_image(&self.blob_json(image)?);
        Ok(differing_paths(self.reader, &image, record).is_empty())
    }

    async fn compensate(&mut self, target: Target) -> Result<Item, RollbackError> {
        let current = self
            .reader
            .get(&target.object, &target.dest_id)
            .await
            .map_err(|e| self.stop(&target, e))?;
        let mut resolved = String::new();
        // A rollback intent without its answer: find out whether it landed before anything is sent.
        if let Some((rb_intent, op)) = target.in_doubt {
            let landed = match (&current, op) {
                (None, _) => true,
                (Some(record), WriteOp::Update) => match target.image {
                    Some(image) => self.holds_image(&image, record)?,
                    None => false,
                },
                _ => false,
            };
            if landed {
                let (outcome, item_outcome, detail) = match (&current, op) {
                    (None, _) => (
                        Compensation::AlreadyGone,
                        ItemOutcome::AlreadyGone,
                        "gone at the destination (an interrupted rollback's delete had landed)",
                    ),
                    _ => (
                        Compensation::Restored,
                        ItemOutcome::Restored,
                        "an interrupted rollback's restore had landed",
                    ),
                };
                let response = current
                    .as_ref()
                    .map(|r| r.body.clone())
                    .unwrap_or(Json::Null);
                let response_hash = self.put_blob(&response)?;
                let mut events = vec![EventBody::WriteConfirmed {
                    intent: rb_intent,
                    dest_id: target.dest_id.clone(),
                    response_hash,
                }];
                events.extend(Self::compensated(&target, outcome, detail));
                self.answer(events);
                return Ok(Self::item(&target, item_outcome, Vec::new(), detail));
            }
            self.answer(vec![EventBody::WriteFailed {
                intent: rb_intent,
                class: FailureClass::Transient,
                status: None,
                message: "interrupted; not done at the destination".into(),
            }]);
            resolved = "an interrupted attempt had not landed; ".into();
        }
        let Some(record) = current else {
            let detail = format!("{resolved}gone at the destination");
            self.answer(Self::compensated(
                &target,
                Compensation::AlreadyGone,
                &detail,
            ));
            return Ok(Self::item(
                &target,
                ItemOutcome::AlreadyGone,
                Vec::new(),
                &detail,
            ));
        };
        let changed = self.drift(&target, &record)?;
        if !changed.is_empty() && !self.options.force {
            self.hold_references(&record.body);
            let detail = format!(
                "{resolved}changed at the destination since we wrote it ({}); left alone (--force overrides)",
                changed.join(", ")
            );
            self.answer(Self::compensated(&target, Compensation::Conflict, &detail));
            return Ok(Self::item(&target, ItemOutcome::Conflict, changed, &detail));
        }
        let container = self
            .reader
            .stored_in(&target.object, &target.dest_id)
            .map(|(_, id)| id);
        let held = self.held.contains(&target.dest_id)
            || container.is_some_and(|id| self.held.contains(&id));
        if target.action == Action::Delete && held {
            let detail = format!(
                "{resolved}kept: a record left at the destination (a conflict) refers to it"
            );
            self.hold_references(&record.body);
            self.answer(Self::compensated(&target, Compensation::Conflict, &detail));
            return Ok(Self::item(&target, ItemOutcome::Kept, Vec::new(), &detail));
        }
        let forced = if changed.is_empty() {
            String::new()
        } else {
            format!("forced over changes to {}; ", changed.join(", "))
        };
        let Some(dest) = self.writer else {
            let outcome = match target.action {
                Action::Delete => ItemOutcome::WouldDelete,
                Action::Restore => ItemOutcome::WouldRestore,
            };
            return Ok(Self::item(
                &target,
                outcome,
                changed,
                forced.trim_end_matches("; "),
            ));
        };
        // The intent, flushed before the request leaves.
        let current_hash = self.put_blob(&record.body)?;
        let (op, payload_hash) = match target.action {
            Action::Delete => (WriteOp::Delete, target.last_written),
            Action::Restore => match target.image {
                Some(image) => (WriteOp::Update, image),
                None => {
                    let detail = "the update has no before-image in the ledger";
                    return Ok(Self::item(&target, ItemOutcome::Failed, changed, detail));
                }
            },
        };
        let intent = self.intend(EventBody::WriteIntended {
            op,
            object: target.object.clone(),
            entity: target.entity.clone(),
            key: target.key.clone(),
            idempotency_key: rollback_key(&target.object, &target.dest_id),
            payload_hash,
            before_image: Some(current_hash),
            dest_id: Some(target.dest_id.clone()),
        })?;
        let result = match target.action {
            Action::Delete => dest
                .delete(&target.object, &target.dest_id)
                .await
                .map(|()| Json::Null),
            Action::Restore => {
                let image = self.blob_json(&payload_hash)?;
                let body = image.as_object().cloned().unwrap_or_default();
                dest.update(&target.object, &target.dest_id, &body)
                    .await
                    .map(|outcome| outcome.stored)
            }
        };
        match result {
            Ok(stored) => {
                let response_hash = self.put_blob(&stored)?;
                let (outcome, item_outcome) = match target.action {
                    Action::Delete => (Compensation::Deleted, ItemOutcome::Deleted),
                    Action::Restore => (Compensation::Restored, ItemOutcome::Restored),
                };
                let detail = format!("{resolved}{forced}")
                    .trim_end_matches("; ")
                    .to_string();
                let mut events = vec![EventBody::WriteConfirmed {
                    intent,
                    dest_id: target.dest_id.clone(),
                    response_hash,
                }];
                events.extend(Self::compensated(&target, outcome, &detail));
                self.answer(events);
                Ok(Self::item(&target, item_outcome, changed, &detail))
            }
            Err(error) => {
                let kind = error_kind(&error);
                self.answer(vec![EventBody::WriteFailed {
                    intent,
                    class: match error.class() {
                        ErrorClass::Transient => FailureClass::Transient,
                        ErrorClass::Terminal => FailureClass::Terminal,
                    },
                    status: error.status(),
                    message: kind.clone(),
                }]);
                if matches!(error, DestError::Unauthorized { .. } | DestError::Config(_)) {
                    self.flush()?;
                    return Err(self.stop(&target, error));
                }
                Ok(Self::item(&target, ItemOutcome::Failed, changed, &kind))
            }
        }
    }

    /// Drops the schema elements we created, newest first. Only when every record
    /// was undone (a field still holding data of a conflicting record stays).
    async fn drop_schema(&mut self, records_clean: bool) -> Result<Vec<SchemaItem>, RollbackError> {
        let mut elements: Vec<_> = self
            .ledger
            .get()
            .schema_elements()?
            .into_iter()
            .filter(|e| e.created && !e.dest_id.is_empty())
            .collect();
        elements.sort_by_key(|e| std::cmp::Reverse(e.seq));
        let mut out = Vec::new();
        for element in elements {
            let mut item = SchemaItem {
                element: element.element.clone(),
                name: element.name.clone(),
                dest_id: element.dest_id.clone(),
                outcome: String::new(),
                detail: String::new(),
            };
            let Some(dest) = self.writer else {
                item.outcome = "would_drop".into();
                out.push(item);
                continue;
            };
            if !records_clean {
                item.outcome = "skipped".into();
                item.detail = "records of the migration are still at the destination".into();
                out.push(item);
                continue;
            }
            let change = SchemaChange {
                kind: element.element.clone(),
                name: element.name.clone(),
                dest_id: element.dest_id.clone(),
                created: true,
            };
            match dest.drop_schema(&change).await {
                Ok(()) | Err(DestError::Rejected { status: 404, .. }) => {
                    // Recorded as no longer ours: a later rollback does not drop it again.
                    let run = self.run.unwrap_or(0);
                    if let Some(ledger) = self.ledger.get_mut() {
                        ledger.append(
                            run,
                            [EventBody::SchemaChanged {
                                element: element.element.clone(),
                                name: element.name.clone(),
                                dest_id: String::new(),
                                created: false,
                            }],
                        )?;
                    }
                    item.outcome = "dropped".into();
                }
                Err(error) => {
                    item.outcome = "failed".into();
                    item.detail = error_kind(&error);
                }
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// The fields of a sent payload that are stored fields (`$upload` and the like
/// are instructions to the connector, not fields).
fn sent_fields(sent: &Json) -> JsonMap<String, Json> {
    sent.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Fields every destination maintains itself; they change with any write, ours included.
const SERVER_MAINTAINED: &[&str] = &[
    "id",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "dateAdded",
    "dateUpdated",
    "createdBy",
    "updatedBy",
    "searchVector",
    "position",
];

/// A record as read, without the fields the destination maintains itself.
fn comparable_image(image: &Json) -> JsonMap<String, Json> {
    image
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !SERVER_MAINTAINED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn differing_paths(
    reader: &dyn ReadDestination,
    written: &JsonMap<String, Json>,
    record: &DestRecord,
) -> Vec<String> {
    let held = reader.read_as_sent(written, record);
    field_differences(written, &held)
        .into_iter()
        .map(|d| d.path)
        .collect()
}

/// [`DestError::kind_and_place`], with the status of a rejection.
fn error_kind(error: &DestError) -> String {
    match error {
        DestError::Rejected { status, .. } => {
            format!("{} (HTTP {status})", error.kind_and_place())
        }
        other => other.kind_and_place(),
    }
}

fn summary_detail(report: &RollbackReport) -> String {
    serde_json::json!({ "runs": report.runs, "counts": report.counts }).to_string()
}

#[cfg(test)]
#[path = "rollback_tests.rs"]
mod tests;
