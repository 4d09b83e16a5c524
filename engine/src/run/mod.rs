//! `cutover run`, `delta` and `sample`: the streaming pipeline of DESIGN §5.
//!
//! For each rule of the confirmed map, in dependency order (`plan_order`:
//! parents before children, so lookups find their ids), the source entity is
//! streamed and every row goes extract → clean/transform → decide → write,
//! each step ledgered as docs/run-protocol.md says:
//!
//! - a row whose payload the destination already confirmed is skipped
//!   (nothing sent, nothing written): running `run` twice sends zero writes;
//! - an intent left in doubt by a crash is resolved by asking the destination
//!   (`find_existing`) before anything is re-sent: no duplicates on resume;
//! - writes go in batches: the batch's intents are appended and flushed once,
//!   then the requests leave (`create_batch` where the destination has a batch
//!   endpoint, else up to `concurrency` requests at once; the connector's own
//!   budget paces them); confirmations are appended as answers come and made
//!   durable with the next flush;
//! - a checkpoint carries, per entity, the newest modification time of a run
//!   in which every row of the entity ended confirmed, quarantined or skipped.
//!
//! A dry run ([`plan_migration`]) gets a [`ReadDestination`] only and writes
//! nothing, not even to the ledger.

mod progress;
mod resolver;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use cutover_ledger::{
    Digest, EventBody, FailureClass, Ledger, LedgerError, Micros, Reason, RecordState, RunId,
    RunKind, RunOutcome, TargetStatus, WriteOp,
};
use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use crate::clean::{quarantine_reasons, unreadable, CleanConfig, CleanConfigError, Cleaner};
use crate::error::{DestError, ErrorClass, SourceError};
use crate::map::ledgered::{require_confirmed, MapGateError};
use crate::map::{ApplyContext, ClinicalIndex, MapFile, ObjectMap, RecordOutcome, Transform};
use crate::ports::{
    canonical_json, DestRecord, Destination, ReadDestination, Source, SourceItem, WriteOutcome,
    WriteRequest,
};
use crate::record::SourceRecord;

pub use progress::{ObjectCounts, Progress, Silent, Step};
use resolver::RunResolver;

/// Which rows a run takes (a sample takes the rows of its selected patients).
pub type RecordFilter = Arc<dyn Fn(&SourceRecord) -> bool + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// `Full`, `Delta` or `Sample` (recorded in the ledger; the pipeline is the same).
    pub kind: RunKind,
    /// Rows outside the filter are counted as excluded and not touched (an
    /// unreadable row is offered to it with its entity and key and no fields).
    pub filter: Option<RecordFilter>,
    /// "Today" for future-date checks.
    pub today: NaiveDate,
    pub clean: CleanConfig,
    /// Requests (or batch requests) in flight at once.
    pub concurrency: usize,
    /// Records per ledger flush and per round of requests (at least the destination's batch size).
    pub batch: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            kind: RunKind::Full,
            filter: None,
            today: chrono::Utc::now().date_naive(),
            clean: CleanConfig::default(),
            concurrency: 8,
            batch: 240,
        }
    }
}

/// The outcome of a run (or of a dry run's plan).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id in the ledger (`None` for a dry run).
    pub run: Option<RunId>,
    pub dry_run: bool,
    /// Per rule, labelled `Entity → object`, in the order they ran.
    pub steps: Vec<(Step, ObjectCounts)>,
    pub outcome: RunOutcome,
    pub seconds: f64,
    /// Source rows the ledger knows that the source no longer has (reported, never acted on).
    pub deleted_at_source: BTreeMap<String, u64>,
    /// Rows whose content changed while their modification time did not move.
    pub changed_without_timestamp: u64,
    /// Every write that failed in this run (the next run retries them).
    pub failures: Vec<FailedWrite>,
}

/// A write that failed: where, and the kind of failure (never the server's words).
#[derive(Debug, Clone, Serialize)]
pub struct FailedWrite {
    pub entity: String,
    pub key: String,
    pub object: String,
    pub failure: String,
}

impl RunReport {
    pub fn totals(&self) -> ObjectCounts {
        let mut total = ObjectCounts::default();
        for (_, counts) in &self.steps {
            total.add(counts);
        }
        total
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Map(#[from] MapGateError),
    #[error(transparent)]
    Clean(#[from] CleanConfigError),
    #[error("the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("reading {entity} from the source")]
    Source {
        entity: String,
        #[source]
        error: SourceError,
    },
    /// The destination refuses in a way no retry fixes (credentials, configuration, a missing precondition).
    #[error("the destination stopped the run (run {run}) at {step}")]
    Destination {
        run: RunId,
        step: String,
        #[source]
        error: DestError,
    },
    #[error("the destination failed {count} writes in a row (run {run}) at {step}; the last")]
    TooManyFailures {
        run: RunId,
        step: String,
        count: usize,
        #[source]
        error: DestError,
    },
}

/// Consecutive failed writes after which the run stops instead of failing record after record.
const CONSECUTIVE_FAILURES_LIMIT: usize = 50;

/// Runs the migration, writing. The map must be the confirmed one.
pub async fn run_migration(
    ledger: &mut Ledger,
    source: &dyn Source,
    dest: &dyn Destination,
    map: &MapFile,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, RunError> {
    let map_hash = require_confirmed(ledger, map)?;
    let run = ledger.start_run(
        options.kind,
        &source.describe(),
        dest.kind(),
        Some(map_hash),
    )?;
    let mut pipeline = Pipeline::new(
        ledger,
        source,
        map,
        options,
        progress,
        Mode::Write {
            run,
            dest,
            map_hash,
        },
    )?;
    let result = pipeline.execute().await;
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            // What was confirmed stays confirmed; the run ends as failed in the
            // ledger and the next run resumes it.
            let _ = pipeline.flush();
            if let Some(l) = pipeline.ledger_mut() {
                let _ = l.finish_run(run, RunOutcome::Failed, &failure_detail(&error));
            }
            return Err(error);
        }
    };
    Ok(report)
}

/// Plans the migration without writing anything: reads the source, applies the
/// map and reads the destination (for records in doubt); the ledger is only read.
pub async fn plan_migration(
    ledger: &Ledger,
    source: &dyn Source,
    dest: &dyn ReadDestination,
    map: &MapFile,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, RunError> {
    require_confirmed(ledger, map)?;
    let mut pipeline = Pipeline::new_read_only(ledger, source, map, options, progress, dest)?;
    pipeline.execute().await
}

fn failure_detail(error: &RunError) -> String {
    // Kind only: messages from a server may quote record contents.
    match error {
        RunError::Destination { step, error, .. } => {
            format!("destination stopped the run at {step}: {:?}", error.class())
        }
        RunError::TooManyFailures { step, count, .. } => {
            format!("{count} failed writes in a row at {step}")
        }
        RunError::Source { entity, .. } => format!("source failed while reading {entity}"),
        other => other.to_string(),
    }
}

enum Mode<'d> {
    Write {
        run: RunId,
        dest: &'d dyn Destination,
        map_hash: Digest,
    },
    Plan {
        dest: &'d dyn ReadDestination,
    },
}

enum LedgerRef<'l> {
    Mut(&'l mut Ledger),
    Shared(&'l Ledger),
}

impl LedgerRef<'_> {
    fn get(&self) -> &Ledger {
        match self {
            LedgerRef::Mut(l) => l,
            LedgerRef::Shared(l) => l,
        }
    }
}

/// What a rule pass needs besides the row.
struct RuleContext<'r> {
    rule: &'r ObjectMap,
    clinical: &'r ClinicalIndex,
    hop_values: &'r HashMap<resolver::RowKey, crate::record::Value>,
    map_hash: Digest,
}

/// A batch whose intents are on disk and whose requests are (being) sent.
struct InFlight {
    batch: Vec<Planned>,
    /// Seq of the first intent; the batch's intents are consecutive.
    first: u64,
}

/// One write decided, waiting for its batch.
struct Planned {
    request: WriteRequest,
    op: WriteOp,
    /// Known for updates.
    dest_id: Option<String>,
    payload_hash: Digest,
}

struct Pipeline<'a> {
    ledger: LedgerRef<'a>,
    source: &'a dyn Source,
    map: &'a MapFile,
    options: &'a RunOptions,
    progress: &'a dyn Progress,
    mode: Mode<'a>,
    started: Instant,
    /// Records quarantined earlier in this run: their later rules are not tried.
    quarantined_now: HashSet<(String, String)>,
    /// Entities with a failure or an unresolved write in this run (no watermark for them).
    incomplete: HashSet<String>,
    newest_modified: HashMap<String, Micros>,
    consecutive_failures: usize,
    changed_without_timestamp: u64,
    /// Per entity, a 64-bit digest of every key streamed (8 bytes a row, not a
    /// string: a 50,000-patient practice streams over a million rows).
    seen_keys: HashMap<String, Vec<u64>>,
    failures: Vec<FailedWrite>,
    /// Events waiting for the next commit.
    queued: Vec<EventBody>,
}

impl<'a> Pipeline<'a> {
    fn new(
        ledger: &'a mut Ledger,
        source: &'a dyn Source,
        map: &'a MapFile,
        options: &'a RunOptions,
        progress: &'a dyn Progress,
        mode: Mode<'a>,
    ) -> Result<Self, RunError> {
        Ok(Self::with(
            LedgerRef::Mut(ledger),
            source,
            map,
            options,
            progress,
            mode,
        ))
    }

    fn new_read_only(
        ledger: &'a Ledger,
        source: &'a dyn Source,
        map: &'a MapFile,
        options: &'a RunOptions,
        progress: &'a dyn Progress,
        dest: &'a dyn ReadDestination,
    ) -> Result<Self, RunError> {
        Ok(Self::with(
            LedgerRef::Shared(ledger),
            source,
            map,
            options,
            progress,
            Mode::Plan { dest },
        ))
    }

    fn with(
        ledger: LedgerRef<'a>,
        source: &'a dyn Source,
        map: &'a MapFile,
        options: &'a RunOptions,
        progress: &'a dyn Progress,
        mode: Mode<'a>,
    ) -> Self {
        Pipeline {
            ledger,
            source,
            map,
            options,
            progress,
            mode,
            started: Instant::now(),
            quarantined_now: HashSet::new(),
            incomplete: HashSet::new(),
            newest_modified: HashMap::new(),
            consecutive_failures: 0,
            changed_without_timestamp: 0,
            seen_keys: HashMap::new(),
            failures: Vec::new(),
            queued: Vec::new(),
        }
    }

    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        match &mut self.ledger {
            LedgerRef::Mut(l) => Some(l),
            LedgerRef::Shared(_) => None,
        }
    }

    fn run_id(&self) -> Option<RunId> {
        match self.mode {
            Mode::Write { run, .. } => Some(run),
            Mode::Plan { .. } => None,
        }
    }

    fn reader(&self) -> &'a dyn ReadDestination {
        match self.mode {
            Mode::Write { dest, .. } => dest,
            Mode::Plan { dest } => dest,
        }
    }

    /// Queues events of this run; they are committed together at the next
    /// [`Self::append_now`], batch or rule boundary (one ledger commit per batch
    /// instead of one per record). Nothing is queued in a dry run.
    fn append(&mut self, bodies: Vec<EventBody>) -> Result<(), RunError> {
        if self.run_id().is_some() {
            self.queued.extend(bodies);
        }
        Ok(())
    }

    /// Commits the queue, then `bodies`, and returns the seq of the first of
    /// `bodies` (0 in a dry run). Not flushed.
    fn append_now(&mut self, bodies: Vec<EventBody>) -> Result<u64, RunError> {
        let run = self.run_id();
        let mut queued = std::mem::take(&mut self.queued);
        let before = queued.len() as u64;
        queued.extend(bodies);
        match (&mut self.ledger, run) {
            (LedgerRef::Mut(l), Some(run)) if !queued.is_empty() => {
                Ok(l.append_buffered(run, queued)? + before)
            }
            _ => Ok(0),
        }
    }

    fn put_blob(&mut self, bytes: &[u8]) -> Result<Digest, RunError> {
        match &mut self.ledger {
            LedgerRef::Mut(l) => Ok(l.put_blob(bytes)?),
            LedgerRef::Shared(_) => Ok(Digest::of(bytes)),
        }
    }

    fn flush(&mut self) -> Result<(), RunError> {
        self.append_now(Vec::new())?;
        if let Some(l) = self.ledger_mut() {
            l.flush()?;
        }
        Ok(())
    }

    async fn execute(&mut self) -> Result<RunReport, RunError> {
        let mut cleaner = Cleaner::new(self.options.clean.clone())?;
        let clinical = self.read_clinical().await?;
        let hop_values = self.read_hop_values().await?;
        let order: Vec<ObjectMap> = self.map.plan_order().into_iter().cloned().collect();
        let mut steps = Vec::new();
        let mut planned_ids = self.run_id().is_none().then(HashSet::new);
        for rule in &order {
            let total = self.source.count(&rule.source).await.ok();
            let step = Step {
                label: format!("{} → {}", rule.source, rule.target),
                entity: rule.source.clone(),
                object: rule.target.clone(),
                total,
            };
            self.progress.step_started(&step);
            let counts = self
                .run_rule(
                    rule,
                    &step,
                    &clinical,
                    &hop_values,
                    &mut cleaner,
                    &mut planned_ids,
                )
                .await?;
            self.progress.step_finished(&step, &counts);
            steps.push((step, counts));
        }
        let deleted_at_source = self.deleted_at_source()?;
        let mut report = RunReport {
            run: self.run_id(),
            dry_run: self.run_id().is_none(),
            steps,
            outcome: RunOutcome::Completed,
            seconds: 0.0,
            deleted_at_source,
            changed_without_timestamp: self.changed_without_timestamp,
            failures: std::mem::take(&mut self.failures),
        };
        let totals = report.totals();
        if totals.failed > 0 {
            report.outcome = RunOutcome::CompletedWithFailures;
        }
        if let Some(run) = self.run_id() {
            let mut watermarks: Vec<(String, Micros)> = self
                .newest_modified
                .iter()
                .filter(|(entity, _)| !self.incomplete.contains(*entity))
                .map(|(entity, at)| (entity.clone(), *at))
                .collect();
            watermarks.sort();
            if !watermarks.is_empty() {
                self.append(vec![EventBody::Checkpoint {
                    label: format!("run {run}"),
                    watermarks,
                }])?;
            }
            self.flush()?;
            let detail = serde_json::to_string(&summary_detail(&report)).unwrap_or_default();
            let outcome = report.outcome;
            if let Some(l) = self.ledger_mut() {
                l.finish_run(run, outcome, &detail)?;
            }
        }
        report.seconds = self.started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The clinical tables, folded into the index the derived values read.
    async fn read_clinical(&mut self) -> Result<ClinicalIndex, RunError> {
        let mut index = ClinicalIndex::new(self.map.clinical.clone());
        let derives = self
            .map
            .objects
            .iter()
            .any(|o| o.fields.iter().any(|f| f.transform == Transform::Derived));
        if !derives {
            return Ok(index);
        }
        self.progress
            .phase("reading exams for the clinical summaries");
        let tables: Vec<String> = index.tables().iter().map(|t| t.to_string()).collect();
        for table in tables {
            let mut rows =
                self.source
                    .stream(&table, None)
                    .await
                    .map_err(|error| RunError::Source {
                        entity: table.clone(),
                        error,
                    })?;
            while let Some(item) = rows.next().await {
                match item.map_err(|error| RunError::Source {
                    entity: table.clone(),
                    error,
                })? {
                    SourceItem::Record(record) => index.add(&record),
                    // Unreadable rows are quarantined when their own rule reads them.
                    SourceItem::Unreadable { .. } => {}
                }
            }
        }
        Ok(index)
    }

    /// The source columns `via` hops read, one value per row.
    async fn read_hop_values(
        &mut self,
    ) -> Result<HashMap<resolver::RowKey, crate::record::Value>, RunError> {
        let mut wanted: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for rule in &self.map.objects {
            for field in &rule.fields {
                if let Some(via) = &field.via {
                    wanted
                        .entry(via.entity.clone())
                        .or_default()
                        .insert(via.column.clone());
                }
            }
        }
        let mut values = HashMap::new();
        for (entity, columns) in wanted {
            let mut rows =
                self.source
                    .stream(&entity, None)
                    .await
                    .map_err(|error| RunError::Source {
                        entity: entity.clone(),
                        error,
                    })?;
            while let Some(item) = rows.next().await {
                if let SourceItem::Record(record) = item.map_err(|error| RunError::Source {
                    entity: entity.clone(),
                    error,
                })? {
                    for column in &columns {
                        if let Some(value) = record.fields.get(column) {
                            values.insert(
                                (
                                    entity.to_ascii_lowercase(),
                                    record.key.0.clone(),
                                    column.clone(),
                                ),
                                value.clone(),
                            );
                        }
                    }
                }
            }
        }
        Ok(values)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_rule(
        &mut self,
        rule: &ObjectMap,
        step: &Step,
        clinical: &ClinicalIndex,
        hop_values: &HashMap<resolver::RowKey, crate::record::Value>,
        cleaner: &mut Cleaner,
        planned_ids: &mut Option<HashSet<u64>>,
    ) -> Result<ObjectCounts, RunError> {
        let mut counts = ObjectCounts::default();
        let mut rows = self
            .source
            .stream(&rule.source, None)
            .await
            .map_err(|error| RunError::Source {
                entity: rule.source.clone(),
                error,
            })?;
        let batch_size = self
            .options
            .batch
            .max(self.reader().capabilities().max_batch)
            .max(1);
        let ctx = RuleContext {
            rule,
            clinical,
            hop_values,
            map_hash: match self.mode {
                Mode::Write { map_hash, .. } => map_hash,
                Mode::Plan { .. } => Digest::ZERO,
            },
        };
        let writer = match self.mode {
            Mode::Write { dest, .. } => Some(dest),
            Mode::Plan { .. } => None,
        };
        let concurrency = self.options.concurrency.max(1);
        // One batch is on the wire while the next is read and decided: the
        // destination's work and ours overlap.
        let mut in_flight: Option<InFlight> = None;
        loop {
            let (answers, prepared) = match (&in_flight, writer) {
                (Some(flight), Some(dest)) => {
                    let sending = send(dest, &flight.batch, concurrency);
                    let preparing = self.prepare(
                        &mut rows,
                        &ctx,
                        cleaner,
                        planned_ids,
                        &mut counts,
                        batch_size,
                    );
                    let (answers, prepared) = futures::join!(sending, preparing);
                    (Some(answers), prepared?)
                }
                _ => (
                    None,
                    self.prepare(
                        &mut rows,
                        &ctx,
                        cleaner,
                        planned_ids,
                        &mut counts,
                        batch_size,
                    )
                    .await?,
                ),
            };
            if let (Some(answers), Some(flight)) = (answers, in_flight.take()) {
                self.finish_batch(flight, answers, &mut counts, step)
                    .await?;
                self.progress.step_progress(step, &counts);
            }
            let (batch, ended) = prepared;
            in_flight = self.begin_batch(batch, &mut counts, step).await?;
            if writer.is_none() {
                self.progress.step_progress(step, &counts);
            }
            if ended && in_flight.is_none() {
                break;
            }
            if ended {
                if let (Some(flight), Some(dest)) = (in_flight.take(), writer) {
                    let answers = send(dest, &flight.batch, concurrency).await;
                    self.finish_batch(flight, answers, &mut counts, step)
                        .await?;
                }
                break;
            }
        }
        // The next rule reads what this one confirmed.
        self.append_now(Vec::new())?;
        self.progress.step_progress(step, &counts);
        Ok(counts)
    }

    /// Reads and decides rows until `batch_size` writes are planned or the
    /// stream ends; returns the writes and whether the stream ended.
    async fn prepare(
        &mut self,
        rows: &mut crate::ports::SourceStream,
        ctx: &RuleContext<'_>,
        cleaner: &mut Cleaner,
        planned_ids: &mut Option<HashSet<u64>>,
        counts: &mut ObjectCounts,
        batch_size: usize,
    ) -> Result<(Vec<Planned>, bool), RunError> {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            let Some(item) = rows.next().await else {
                return Ok((batch, true));
            };
            if let Some(planned) = self
                .process_row(item, ctx, cleaner, planned_ids, counts)
                .await?
            {
                batch.push(planned);
            }
        }
        Ok((batch, false))
    }

    /// One source row: extracted, transformed or quarantined, and decided.
    async fn process_row(
        &mut self,
        item: Result<SourceItem, SourceError>,
        ctx: &RuleContext<'_>,
        cleaner: &mut Cleaner,
        planned_ids: &mut Option<HashSet<u64>>,
        counts: &mut ObjectCounts,
    ) -> Result<Option<Planned>, RunError> {
        let item = item.map_err(|error| RunError::Source {
            entity: ctx.rule.source.clone(),
            error,
        })?;
        counts.read += 1;
        let record = match item {
            SourceItem::Record(record) => record,
            SourceItem::Unreadable {
                entity,
                key,
                place,
                reason: _,
            } => {
                // A filtered run (a sample) leaves alone what it did not choose,
                // unreadable rows included (a row without a key cannot be chosen).
                if let Some(filter) = &self.options.filter {
                    let chosen = key.as_ref().is_some_and(|key| {
                        filter(&SourceRecord {
                            entity: entity.clone(),
                            key: key.clone(),
                            fields: Default::default(),
                            modified_at: None,
                        })
                    });
                    if !chosen {
                        counts.excluded += 1;
                        return Ok(None);
                    }
                }
                let key = key.map(|k| k.0).unwrap_or_else(|| format!("?{place}"));
                let reasons = quarantine_reasons(&[unreadable(&place)]);
                self.quarantine(&entity, &key, reasons)?;
                self.incomplete.insert(entity.clone());
                counts.quarantined += 1;
                return Ok(None);
            }
        };
        if let Some(filter) = &self.options.filter {
            if !filter(&record) {
                counts.excluded += 1;
                return Ok(None);
            }
        }
        if let Some(at) = record.modified_at {
            let at = Micros::from_datetime(at);
            let newest = self
                .newest_modified
                .entry(record.entity.clone())
                .or_insert(at);
            if at > *newest {
                *newest = at;
            }
        }
        let key = record.key.0.clone();
        self.seen_keys
            .entry(record.entity.clone())
            .or_default()
            .push(key_digest(&key));
        if self
            .quarantined_now
            .contains(&(record.entity.clone(), key.clone()))
        {
            counts.quarantined += 1;
            return Ok(None);
        }
        let state = self.ledger.get().record_state(&record.entity, &key)?;
        self.note_extracted(&record, state.as_ref())?;

        let outcome = {
            let resolver = RunResolver {
                ledger: self.ledger.get(),
                hops: ctx.hop_values,
                planned: planned_ids.as_ref(),
                error: Default::default(),
            };
            let apply = ApplyContext {
                resolver: &resolver,
                clinical: ctx.clinical,
                today: self.options.today,
            };
            let rule = ctx.rule;
            let outcome = self.map.apply_rules(&record, &apply, cleaner, |r| {
                r.target == rule.target && r.source.eq_ignore_ascii_case(&rule.source)
            });
            if let Some(error) = resolver.take_error() {
                return Err(error.into());
            }
            outcome
        };
        let request = match outcome {
            RecordOutcome::Quarantined { issues } => {
                let reasons = quarantine_reasons(&issues);
                let same = state
                    .as_ref()
                    .and_then(|s| s.quarantine.as_ref())
                    .is_some_and(|r| *r == reasons);
                if !same {
                    self.quarantine(&record.entity, &key, reasons)?;
                }
                self.quarantined_now.insert((record.entity.clone(), key));
                counts.quarantined += 1;
                return Ok(None);
            }
            RecordOutcome::Ready { mut requests, .. } => match requests.pop() {
                Some(request) => request,
                None => {
                    counts.skipped += 1;
                    return Ok(None);
                }
            },
        };
        let payload = canonical_json(&Json::Object(request.body.clone()));
        let payload_hash = Digest::of(&payload);
        let target = state
            .as_ref()
            .and_then(|s| s.targets.get(&request.object))
            .cloned();
        if let Some(t) = &target {
            if t.status == TargetStatus::Confirmed && t.confirmed_hash == Some(payload_hash) {
                counts.unchanged += 1;
                return Ok(None);
            }
        }
        if target.as_ref().and_then(|t| t.transformed_hash) != Some(payload_hash) {
            self.put_blob(&payload)?;
            self.append(vec![EventBody::Transformed {
                entity: record.entity.clone(),
                key: key.clone(),
                object: request.object.clone(),
                payload_hash,
                map_hash: ctx.map_hash,
            }])?;
        }
        let decided = self
            .decide(request, payload_hash, target.as_ref(), counts)
            .await?;
        if let Some(planned) = decided {
            if let Some(ids) = planned_ids.as_mut() {
                if planned.op == WriteOp::Create {
                    ids.insert(resolver::planned_digest(
                        &record.entity,
                        &key,
                        &planned.request.object,
                    ));
                }
            }
            return Ok(Some(planned));
        }
        Ok(None)
    }

    /// `extracted` once per changed or new row (an unchanged row writes nothing).
    fn note_extracted(
        &mut self,
        record: &SourceRecord,
        state: Option<&RecordState>,
    ) -> Result<(), RunError> {
        let content_hash = Digest(record.content_hash());
        let modified_at = record.modified_at.map(Micros::from_datetime);
        if let Some(state) = state {
            if state.content_hash == Some(content_hash) {
                return Ok(());
            }
            if state.content_hash.is_some()
                && modified_at.is_some()
                && state.modified_at == modified_at
            {
                self.changed_without_timestamp += 1;
            }
        }
        self.append(vec![EventBody::Extracted {
            entity: record.entity.clone(),
            key: record.key.0.clone(),
            content_hash,
            modified_at,
        }])?;
        Ok(())
    }

    fn quarantine(
        &mut self,
        entity: &str,
        key: &str,
        reasons: Vec<Reason>,
    ) -> Result<(), RunError> {
        self.append(vec![EventBody::Quarantined {
            entity: entity.to_string(),
            key: key.to_string(),
            reasons,
        }])?;
        Ok(())
    }

    /// Create, update, or nothing (resolved from an earlier attempt).
    async fn decide(
        &mut self,
        request: WriteRequest,
        payload_hash: Digest,
        target: Option<&cutover_ledger::TargetState>,
        counts: &mut ObjectCounts,
    ) -> Result<Option<Planned>, RunError> {
        let Some(target) = target else {
            return Ok(Some(Planned {
                request,
                op: WriteOp::Create,
                dest_id: None,
                payload_hash,
            }));
        };
        if let Some(intent_seq) = target.pending_intent {
            return self
                .resolve_in_doubt(intent_seq, request, payload_hash, counts)
                .await;
        }
        if target.confirmed_hash.is_some() && target.dest_id.is_some() {
            return Ok(Some(Planned {
                dest_id: target.dest_id.clone(),
                request,
                op: WriteOp::Update,
                payload_hash,
            }));
        }
        if target.status == TargetStatus::Failed {
            // A create that failed may still have landed (an answer lost after the write).
            if let Some(found) = self.find_existing(&request).await? {
                self.adopt(&request, payload_hash, &found)?;
                counts.resumed += 1;
                return Ok(None);
            }
        }
        Ok(Some(Planned {
            request,
            op: WriteOp::Create,
            dest_id: None,
            payload_hash,
        }))
    }

    async fn find_existing(&self, request: &WriteRequest) -> Result<Option<DestRecord>, RunError> {
        match self.reader().find_existing(request).await {
            Ok(found) => Ok(found),
            Err(error) => Err(RunError::Destination {
                run: self.run_id().unwrap_or(0),
                step: format!("{} (finding an earlier attempt)", request.object),
                error,
            }),
        }
    }

    /// An intent without an answer: ask the destination before sending again.
    async fn resolve_in_doubt(
        &mut self,
        intent_seq: u64,
        request: WriteRequest,
        payload_hash: Digest,
        counts: &mut ObjectCounts,
    ) -> Result<Option<Planned>, RunError> {
        let intent = self.ledger.get().intent(intent_seq)?;
        let Some(intent) = intent else {
            return Ok(Some(Planned {
                request,
                op: WriteOp::Create,
                dest_id: None,
                payload_hash,
            }));
        };
        if self.run_id().is_none() {
            // A dry run only reads: it plans the write the resume would make.
            let op = if intent.op == WriteOp::Create {
                WriteOp::Create
            } else {
                WriteOp::Update
            };
            return Ok(Some(Planned {
                request,
                op,
                dest_id: intent.dest_id,
                payload_hash,
            }));
        }
        if intent.op == WriteOp::Create {
            if let Some(found) = self.find_existing(&request).await? {
                let response = canonical_json(&found.body);
                let response_hash = self.put_blob(&response)?;
                self.append(vec![EventBody::WriteConfirmed {
                    intent: intent_seq,
                    dest_id: found.id.clone(),
                    response_hash,
                }])?;
                if intent.payload_hash == payload_hash {
                    counts.resumed += 1;
                    return Ok(None);
                }
                return Ok(Some(Planned {
                    request,
                    op: WriteOp::Update,
                    dest_id: Some(found.id),
                    payload_hash,
                }));
            }
            self.append(vec![EventBody::WriteFailed {
                intent: intent_seq,
                class: FailureClass::Transient,
                status: None,
                message: "interrupted; not at the destination".into(),
            }])?;
            return Ok(Some(Planned {
                request,
                op: WriteOp::Create,
                dest_id: None,
                payload_hash,
            }));
        }
        // An update in doubt is sent again (an update is idempotent).
        self.append(vec![EventBody::WriteFailed {
            intent: intent_seq,
            class: FailureClass::Transient,
            status: None,
            message: "interrupted; sent again".into(),
        }])?;
        Ok(Some(Planned {
            request,
            op: WriteOp::Update,
            dest_id: intent.dest_id,
            payload_hash,
        }))
    }

    /// A record an earlier, failed attempt created after all: ledgered as created now.
    fn adopt(
        &mut self,
        request: &WriteRequest,
        payload_hash: Digest,
        found: &DestRecord,
    ) -> Result<(), RunError> {
        let intent = self.append_now(vec![intent_event(
            request,
            WriteOp::Create,
            payload_hash,
            None,
            None,
        )])?;
        let response_hash = self.put_blob(&canonical_json(&found.body))?;
        self.append(vec![EventBody::WriteConfirmed {
            intent,
            dest_id: found.id.clone(),
            response_hash,
        }])?;
        Ok(())
    }

    /// Before-images read, the batch's intents appended and flushed: after
    /// this the requests may leave. A dry run only counts what it would send.
    async fn begin_batch(
        &mut self,
        batch: Vec<Planned>,
        counts: &mut ObjectCounts,
        step: &Step,
    ) -> Result<Option<InFlight>, RunError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let Mode::Write { dest, run, .. } = self.mode else {
            for planned in &batch {
                match planned.op {
                    WriteOp::Create => counts.created += 1,
                    _ => counts.updated += 1,
                }
            }
            return Ok(None);
        };
        // Before-images of updates, read before anything is written.
        let mut before_images: Vec<Option<Digest>> = Vec::with_capacity(batch.len());
        for planned in &batch {
            if planned.op == WriteOp::Update {
                let id = planned.dest_id.as_deref().unwrap_or_default();
                let current = dest
                    .get(&planned.request.object, id)
                    .await
                    .map_err(|error| RunError::Destination {
                        run,
                        step: step.label.clone(),
                        error,
                    })?;
                match current {
                    Some(current) => {
                        before_images.push(Some(self.put_blob(&canonical_json(&current.body))?))
                    }
                    None => before_images.push(None),
                }
            } else {
                before_images.push(None);
            }
        }
        // An update whose record is gone at the destination becomes a create.
        let batch: Vec<Planned> = batch
            .into_iter()
            .zip(&before_images)
            .map(|(mut planned, image)| {
                if planned.op == WriteOp::Update && image.is_none() {
                    planned.op = WriteOp::Create;
                    planned.dest_id = None;
                }
                planned
            })
            .collect();
        let intents: Vec<EventBody> = batch
            .iter()
            .zip(&before_images)
            .map(|(p, image)| {
                intent_event(&p.request, p.op, p.payload_hash, *image, p.dest_id.clone())
            })
            .collect();
        let first = self.append_now(intents)?;
        self.flush()?;
        Ok(Some(InFlight { batch, first }))
    }

    /// The answers to a batch, ledgered (committed with the next batch's intents).
    async fn finish_batch(
        &mut self,
        flight: InFlight,
        results: Vec<Result<WriteOutcome, DestError>>,
        counts: &mut ObjectCounts,
        step: &Step,
    ) -> Result<(), RunError> {
        let InFlight { batch, first } = flight;
        let run = self.run_id().unwrap_or(0);
        let mut events = Vec::with_capacity(batch.len());
        let mut last_error = None;
        for (index, (planned, result)) in batch.iter().zip(results).enumerate() {
            let intent = first + index as u64;
            let result = match result {
                Err(DestError::Mismatch { endpoint, message }) => {
                    // Written, but not as sent: keep its id so nothing is created twice.
                    counts.mismatched += 1;
                    match self.find_existing(&planned.request).await? {
                        Some(found) => Ok(WriteOutcome {
                            dest_id: found.id,
                            stored: found.body,
                        }),
                        None => Err(DestError::Mismatch { endpoint, message }),
                    }
                }
                other => other,
            };
            match result {
                Ok(outcome) => {
                    self.consecutive_failures = 0;
                    let response_hash = self.put_blob(&canonical_json(&outcome.stored))?;
                    events.push(EventBody::WriteConfirmed {
                        intent,
                        dest_id: outcome.dest_id,
                        response_hash,
                    });
                    match planned.op {
                        WriteOp::Create => counts.created += 1,
                        _ => counts.updated += 1,
                    }
                }
                Err(error) => {
                    self.failures.push(FailedWrite {
                        entity: planned.request.entity.clone(),
                        key: planned.request.source_key.0.clone(),
                        object: planned.request.object.clone(),
                        failure: error.kind_and_place(),
                    });
                    events.push(EventBody::WriteFailed {
                        intent,
                        class: match error.class() {
                            ErrorClass::Transient => FailureClass::Transient,
                            _ => FailureClass::Terminal,
                        },
                        status: error.status(),
                        message: error.kind_and_place(),
                    });
                    counts.failed += 1;
                    self.incomplete.insert(planned.request.entity.clone());
                    self.consecutive_failures += 1;
                    let fatal = matches!(
                        error,
                        DestError::Unauthorized { .. }
                            | DestError::Config(_)
                            | DestError::Precondition(_)
                    );
                    if fatal || self.consecutive_failures >= CONSECUTIVE_FAILURES_LIMIT {
                        last_error = Some((fatal, error));
                    }
                }
            }
        }
        self.append(events)?;
        if let Some((fatal, error)) = last_error {
            self.flush()?;
            return Err(if fatal {
                RunError::Destination {
                    run,
                    step: step.label.clone(),
                    error,
                }
            } else {
                RunError::TooManyFailures {
                    run,
                    step: step.label.clone(),
                    count: self.consecutive_failures,
                    error,
                }
            });
        }
        Ok(())
    }

    /// Keys the ledger has extracted that no stream of this run saw.
    fn deleted_at_source(&mut self) -> Result<BTreeMap<String, u64>, RunError> {
        let mut out = BTreeMap::new();
        if self.options.filter.is_some() {
            return Ok(out);
        }
        // Only a record extracted by an earlier run can be missing now. On a first run
        // the scan of every record state finds nothing and, at 50,000 patients, pages
        // all 1.7M of them through sled: +58 MB of peak memory (BENCHMARKS.md).
        let this_run = self.run_id();
        let extracted_before =
            self.ledger.get().runs()?.iter().any(|r| {
                Some(r.run) != this_run && r.counts.get("extracted").is_some_and(|n| *n > 0)
            });
        if !extracted_before {
            return Ok(out);
        }
        for keys in self.seen_keys.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        let read: HashSet<&str> = self.map.objects.iter().map(|o| o.source.as_str()).collect();
        self.ledger.get().record_states(|entity, key, state| {
            if read.contains(entity)
                && state.content_hash.is_some()
                && !key.starts_with('?')
                && self
                    .seen_keys
                    .get(entity)
                    .is_none_or(|keys| keys.binary_search(&key_digest(key)).is_err())
                && state
                    .targets
                    .values()
                    .any(|t| t.dest_id.is_some() && t.confirmed_hash.is_some())
            {
                *out.entry(entity.to_string()).or_insert(0) += 1;
            }
            Ok(true)
        })?;
        Ok(out)
    }
}

/// A key's 64-bit digest (a collision would hide one deletion among ~10^9 pairs of a
/// million keys; it can never cause a write).
fn key_digest(key: &str) -> u64 {
    let hash = blake3::hash(key.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn intent_event(
    request: &WriteRequest,
    op: WriteOp,
    payload_hash: Digest,
    before_image: Option<Digest>,
    dest_id: Option<String>,
) -> EventBody {
    EventBody::WriteIntended {
        op,
        object: request.object.clone(),
        entity: request.entity.clone(),
        key: request.source_key.0.clone(),
        idempotency_key: request.idempotency_key.clone(),
        payload_hash,
        before_image,
        dest_id,
    }
}

/// Sends a batch: creates through `create_batch` in chunks of the destination's
/// batch size, updates one by one; up to `concurrency` requests in flight.
/// Results come back in the batch's order.
async fn send(
    dest: &dyn Destination,
    batch: &[Planned],
    concurrency: usize,
) -> Vec<Result<WriteOutcome, DestError>> {
    let max_batch = dest.capabilities().max_batch.max(1);
    // Consecutive creates form chunks; each update is a chunk of its own.
    let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut index = 0;
    while index < batch.len() {
        if batch[index].op == WriteOp::Create {
            let start = index;
            while index < batch.len()
                && batch[index].op == WriteOp::Create
                && index - start < max_batch
            {
                index += 1;
            }
            chunks.push(start..index);
        } else {
            chunks.push(index..index + 1);
            index += 1;
        }
    }
    let answers: Vec<Vec<Result<WriteOutcome, DestError>>> = stream::iter(chunks)
        .map(|range| async move {
            let slice = &batch[range];
            if slice[0].op == WriteOp::Create {
                if slice.len() == 1 {
                    vec![dest.create(&slice[0].request).await]
                } else {
                    let requests: Vec<WriteRequest> =
                        slice.iter().map(|p| p.request.clone()).collect();
                    dest.create_batch(&requests).await
                }
            } else {
                let p = &slice[0];
                vec![
                    dest.update(
                        &p.request.object,
                        p.dest_id.as_deref().unwrap_or_default(),
                        &p.request.body,
                    )
                    .await,
                ]
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    answers.into_iter().flatten().collect()
}

fn summary_detail(report: &RunReport) -> Json {
    let mut steps = JsonMap::new();
    for (step, counts) in &report.steps {
        steps.insert(
            step.label.clone(),
            serde_json::to_value(counts).unwrap_or(Json::Null),
        );
    }
    serde_json::json!({
        "steps": steps,
        "deleted_at_source": report.deleted_at_source,
        "changed_without_timestamp": report.changed_without_timestamp,
    })
}

#[cfg(test)]
mod tests;
