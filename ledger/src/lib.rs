//! The cutover ledger: an append-only, BLAKE3-hash-chained log of every
//! extract, transform, create, update and compensation, with the
//! content-addressed payloads they refer to and the projections derived
//! from them.
//!
//! Invariants:
//! - events are the only truth; seqs are gap-free from 1; each event's
//!   `hash = blake3(prev_hash ‖ seq ‖ encoded record)`;
//! - an appended batch is atomic, and durable when `append` returns;
//! - projections are a function of the events (replay = incremental);
//! - no secrets and no payloads in events: payloads live in the blob store,
//!   named and checked by their hash, filed under the commit that brought them
//!   (found through the event that names them: [`Ledger::event_blob`]).
//!
//! Boundary: the ledger knows nothing of HTTP, SQL or CRMs, and nothing
//! outside this crate knows it is stored in sled (`store.rs`).

mod codec;
mod error;
mod event;
mod jsonl;
mod ledger;
mod projection;
#[cfg(test)]
mod projection_upgrade_tests;
mod store;
#[cfg(test)]
mod tamper_tests;

pub use codec::{decode_event, encode_event, EVENT_FORMAT_V1};
pub use error::{LedgerError, Result};
pub use event::{
    chain_hash, Compensation, Digest, Event, EventBody, EventRecord, FailureClass, Micros, Reason,
    RunId, RunKind, RunOutcome, WriteOp,
};
pub use jsonl::verify_jsonl;
pub use ledger::{Head, Ledger, Stats};
pub use projection::{
    DestRef, IntentOutcome, IntentRecord, ProjectionSnapshot, RecordState, RunSummary,
    SchemaElement, TargetState, TargetStatus,
};
