//! Maps: from source entities and columns to destination objects and fields.
//!
//! - [`format`]: the TOML map format (`docs/map-format.md`), validation, the stable hash.
//! - [`apply`]: a map applied to source records gives `WriteRequest`s (idempotency
//!   key per target object and source key) or a quarantine with reasons.
//! - [`clinical`]: the derived clinical values (latest exam summary, recall interval).
//! - [`defaults`]: the shipped default maps for HighLevel and Twenty.
//! - [`ledgered`]: confirming a map in the ledger, the gate `run` passes, the
//!   ledger-backed resolver, the list of quarantined records.
//! - [`propose`]: a map proposed for any discovered inventory, with confidences.

pub mod apply;
pub mod clinical;
pub mod defaults;
pub mod format;
pub mod ledgered;
pub mod propose;
#[cfg(test)]
mod tests;

pub use apply::{idempotency_key, ApplyContext, MemoryResolver, RecordOutcome, Resolve};
pub use clinical::{ClinicalIndex, ExamFacts};
pub use format::{
    ClinicalSource, Columns, Derived, FieldMap, MapError, MapFile, MapHash, NotMigrated, ObjectMap,
    Transform, Via, FORMAT_VERSION,
};
pub use propose::{propose, Missing, Proposal, ProposalLine, Unmapped};
