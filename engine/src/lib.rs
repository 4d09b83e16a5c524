//! The migration engine: what a record is, the ports a source and a
//! destination implement, and (growing with later issues) mapping, cleaning,
//! planning, the run loop, rollback and reports.
//!
//! Boundary: the engine knows no sled, no reqwest, no tiberius. It talks to
//! [`ports::Source`], [`ports::Destination`] and the `cutover-ledger` API.
//! Nothing here prints or exits; the `cli` does.

pub mod clean;
pub mod compare;
pub mod error;
pub mod map;
pub mod ports;
pub mod reconcile;
pub mod record;
pub mod report;
pub mod rollback;
pub mod run;
pub mod sample;

pub use error::{DestError, ErrorClass, SourceError};
pub use ports::{
    canonical_json, flatten_paths, lookup_path, Capabilities, DestInventory, DestRecord,
    Destination, ReadDestination, SchemaChange, SchemaSpec, Source, SourceItem, SourceStream,
    WriteOutcome, WriteRequest,
};
pub use record::{ColumnInfo, Inventory, SourceKey, SourceRecord, TableInfo, Value, Watermark};
