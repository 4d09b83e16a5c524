//! PANDA Perio: the reference schema, the synthetic practice generator, the
//! SQLite practice layout, and the sources — the CSV export folder (and the
//! SQL Server connection) — plus the gap report every source shares.

pub mod export;
pub mod gaps;
pub mod generator;
pub mod open;
pub mod reference;
pub mod sqlite;
pub mod sqlserver;

pub use open::{open_source, SourceSpec};
