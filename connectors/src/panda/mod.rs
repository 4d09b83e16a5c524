//! PANDA Perio: the reference schema and (growing) the two sources — the
//! SQL Server connection and the CSV export folder.

pub mod reference;
pub mod sqlite;
