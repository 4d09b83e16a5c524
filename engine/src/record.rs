//! The record model: what a source row is once it has left the source.
//!
//! A [`SourceRecord`] is an entity name (the source table), a [`SourceKey`]
//! (its primary key, composite keys joined), and typed column values. Its
//! [`SourceRecord::content_hash`] is computed from a canonical encoding so the
//! same row read through the export folder, the TDS test server or any other
//! SQL Server gives the same hash — delta pickup and the source-equivalence
//! tests depend on that.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A typed column value. Every reference column type maps to one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    /// TINYINT, SMALLINT, INT, BIGINT.
    Int(i64),
    /// DECIMAL/NUMERIC/MONEY; hashed in normalised form (no trailing zeros).
    Decimal(Decimal),
    /// FLOAT/REAL (not in the reference schema; practice-specific columns may have it).
    Float(f64),
    /// CHAR, VARCHAR, NVARCHAR (incl. MAX), TEXT.
    Text(String),
    /// DATE.
    Date(NaiveDate),
    /// DATETIME, DATETIME2 — always UTC; the reference stores UTC without a zone.
    DateTime(DateTime<Utc>),
    /// VARBINARY (incl. MAX).
    Bytes(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Appends the canonical, unambiguous encoding used by content hashes.
    fn encode_canonical(&self, out: &mut Vec<u8>) {
        fn put(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        match self {
            Value::Null => put(out, 0, &[]),
            Value::Bool(b) => put(out, 1, &[*b as u8]),
            Value::Int(i) => put(out, 2, &i.to_le_bytes()),
            Value::Decimal(d) => put(out, 3, d.normalize().to_string().as_bytes()),
            Value::Float(f) => put(out, 4, &f.to_le_bytes()),
            Value::Text(s) => put(out, 5, s.as_bytes()),
            Value::Date(d) => put(out, 6, d.format("%Y-%m-%d").to_string().as_bytes()),
            Value::DateTime(t) => put(out, 7, &t.timestamp_millis().to_le_bytes()),
            Value::Bytes(b) => put(out, 8, b),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{}", *b as u8),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => f.write_str(s),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::DateTime(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// A source row's identity within its entity: the primary key, composite keys
/// joined with `/` in key-column order (`1001/3/MB` for a PerioExamSite).
/// Keys are ids, never patient data, so they may appear in logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceKey(pub String);

impl SourceKey {
    pub fn new(key: impl Into<String>) -> Self {
        SourceKey(key.into())
    }

    pub fn from_parts<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut key = String::new();
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            key.push_str(part.as_ref());
        }
        SourceKey(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One source row, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The source table, as the source names it (`Patient`, `tblPatient`, …).
    pub entity: String,
    pub key: SourceKey,
    /// Column name → value, every column the source has (extra columns included).
    pub fields: BTreeMap<String, Value>,
    /// The row's modification time, when the table has one.
    pub modified_at: Option<DateTime<Utc>>,
}

impl SourceRecord {
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.fields.get(column)
    }

    /// Canonical bytes of the row's content: columns in name order, each a
    /// length-prefixed name and a tagged, length-prefixed value.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.fields.len());
        for (name, value) in &self.fields {
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            value.encode_canonical(&mut out);
        }
        out
    }

    /// BLAKE3 of [`Self::canonical_bytes`]: equal content, equal hash, whatever the source.
    pub fn content_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.canonical_bytes()).as_bytes()
    }
}

/// Where delta pickup starts: rows modified strictly after this instant.
/// Tables without a modification column are compared by content hash instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub modified_after: DateTime<Utc>,
}

/// A column as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The SQL type as declared (`NVARCHAR(100)`, `DECIMAL(5,2)`, `DATETIME2(3)`).
    pub sql_type: String,
    pub nullable: bool,
}

/// A table as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    pub row_count: u64,
    /// Primary-key columns, in key order (empty when unknown).
    pub primary_key: Vec<String>,
    /// The column delta pickup filters on (`ModifiedAt`), when there is one.
    pub modified_column: Option<String>,
}

/// What a source holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub tables: Vec<TableInfo>,
}

impl Inventory {
    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn record(fields: &[(&str, Value)]) -> SourceRecord {
        SourceRecord {
            entity: "Patient".into(),
            key: SourceKey::new("1"),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            modified_at: None,
        }
    }

    #[test]
    fn decimal_scale_does_not_change_the_hash() {
        let a = record(&[("Pct", Value::Decimal(Decimal::from_str("12.50").unwrap()))]);
        let b = record(&[("Pct", Value::Decimal(Decimal::from_str("12.5").unwrap()))]);
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn type_and_boundary_changes_change_the_hash() {
        let text = record(&[("A", Value::Text("1".into()))]);
        let int = record(&[("A", Value::Int(1))]);
        assert_ne!(text.content_hash(), int.content_hash());
        // "ab"+"c" vs "a"+"bc" must not collide: values are length-prefixed.
        let x = record(&[("A", Value::Text("ab".into())), ("B", Value::Text("c".into()))]);
        let y = record(&[("A", Value::Text("a".into())), ("B", Value::Text("bc".into()))]);
        assert_ne!(x.content_hash(), y.content_hash());
        let null = record(&[("A", Value::Null)]);
        let empty = record(&[("A", Value::Text(String::new()))]);
        assert_ne!(null.content_hash(), empty.content_hash());
    }

    #[test]
    fn composite_keys_join_in_order() {
        assert_eq!(SourceKey::from_parts(["1001", "3", "MB"]).as_str(), "1001/3/MB");
    }
}
