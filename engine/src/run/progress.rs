//! What a run tells its observer while it works: the CLI draws progress bars
//! or prints `--json` lines from these calls; tests count them. Nothing here
//! carries record contents (no PHI reaches a progress line).

use serde::Serialize;

/// Counts for one rule (source entity → destination object) of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectCounts {
    /// Source rows read for this rule.
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    /// Already at the destination with the same payload: nothing sent.
    pub unchanged: u64,
    /// Found at the destination after an interrupted attempt (no second create).
    pub resumed: u64,
    pub quarantined: u64,
    /// The rule does not apply to the row (`when_present` empty, an optional rule held back).
    pub skipped: u64,
    /// Outside the run's filter (a sample).
    pub excluded: u64,
    /// Sent and failed (retried by the next run).
    pub failed: u64,
    /// Written, but the destination stores something else than was sent
    /// (counted in `created`/`updated` too; `reconcile` lists the fields).
    pub mismatched: u64,
}

impl ObjectCounts {
    /// Rows whose fate is decided in this run.
    pub fn done(&self) -> u64 {
        self.created
            + self.updated
            + self.unchanged
            + self.resumed
            + self.quarantined
            + self.skipped
            + self.excluded
            + self.failed
    }

    pub fn writes(&self) -> u64 {
        self.created + self.updated
    }

    pub fn add(&mut self, other: &ObjectCounts) {
        self.read += other.read;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.resumed += other.resumed;
        self.quarantined += other.quarantined;
        self.skipped += other.skipped;
        self.excluded += other.excluded;
        self.failed += other.failed;
        self.mismatched += other.mismatched;
    }
}

/// A rule of the run as the observer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `Patient → contact`.
    pub label: String,
    pub entity: String,
    pub object: String,
    /// Source rows to read, when the source can count them.
    pub total: Option<u64>,
}

/// The observer of a run. Every method has an empty default.
pub trait Progress: Send + Sync {
    /// A preparatory phase (reading the clinical tables, resolving interrupted writes).
    fn phase(&self, _what: &str) {}
    /// A rule starts.
    fn step_started(&self, _step: &Step) {}
    /// Counts after a batch.
    fn step_progress(&self, _step: &Step, _counts: &ObjectCounts) {}
    fn step_finished(&self, _step: &Step, _counts: &ObjectCounts) {}
}

/// Observes nothing.
pub struct Silent;

impl Progress for Silent {}
