//! The SQLite layout of a PANDA practice: the database the generator writes
//! and the TDS test server serves.
//!
//! Contract (shared with the TDS test server):
//! - one SQLite table per source table, same table and column names;
//! - each column's *declared* type is the SQL Server type text
//!   (`NVARCHAR(100)`, `DECIMAL(5,2)`, `DATETIME2(3)`), MAX written `-1`
//!   (`NVARCHAR(-1)`, SQLite cannot parse `(MAX)`), `NOT NULL` and the
//!   primary key as in the reference;
//! - values: integers and BIT as INTEGER, DECIMAL as TEXT holding the exact
//!   decimal (`"12.50"`), text as TEXT, DATE as TEXT `YYYY-MM-DD`, DATETIME2 as
//!   TEXT `YYYY-MM-DD HH:MM:SS.fff` (UTC), VARBINARY as BLOB, NULL as NULL.
//!
//! One SQLite quirk the readers must know: a declared type such as
//! `DECIMAL(5,2)` has NUMERIC affinity, so SQLite itself turns the text
//! `"12.50"` into the REAL `12.5` (and `"100.00"` into the INTEGER `100`) on
//! insert. The value is still exact for the reference's decimals (at most 12
//! significant digits, well inside a REAL's 15), and content hashes normalise
//! decimals, so [`from_sqlite`] accepts INTEGER, REAL or TEXT for DECIMAL.
//!
//! [`to_sqlite`] and [`from_sqlite`] are the two directions of that value
//! mapping; [`create_tables`] / [`insert_row`] work on any connection (tests
//! build small fixture databases with them), [`PracticeDb`] is the bulk writer.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use cutover_engine::{SourceKey, SourceRecord, Value};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use rust_decimal::Decimal;

use super::reference::{SqlType, TableDef};

/// The format of DATETIME2 values in the database (UTC, milliseconds).
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// The declared SQLite type of a column: the SQL Server type text, `MAX` as `-1`.
pub fn declared_type(sql_type: SqlType) -> String {
    sql_type.to_string().replace("(MAX)", "(-1)")
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `CREATE TABLE` for one table in the contract's layout.
pub fn create_table_sql(table: &TableDef) -> String {
    let mut items: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "NULL" } else { "NOT NULL" };
            format!(
                "{} {} {}",
                quote_ident(&c.name),
                declared_type(c.sql_type),
                null
            )
        })
        .collect();
    if !table.primary_key.is_empty() {
        let key: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
        items.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE {} (\n    {}\n)",
        quote_ident(&table.name),
        items.join(",\n    ")
    )
}

/// `INSERT` with one positional parameter per column, in declared column order.
pub fn insert_sql(table: &TableDef) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let params: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote_ident(&table.name),
        columns.join(", "),
        params.join(", ")
    )
}

/// Creates every table of `tables` on `conn`.
pub fn create_tables(conn: &Connection, tables: &[TableDef]) -> rusqlite::Result<()> {
    for table in tables {
        conn.execute(&create_table_sql(table), [])?;
    }
    Ok(())
}

/// Inserts one row (values in the table's column order). Statements are cached per connection.
pub fn insert_row(conn: &Connection, table: &TableDef, row: &[Value]) -> rusqlite::Result<()> {
    assert_eq!(
        row.len(),
        table.columns.len(),
        "row width must match table {}",
        table.name
    );
    let mut statement = conn.prepare_cached(&insert_sql(table))?;
    statement.execute(rusqlite::params_from_iter(row.iter().map(to_sqlite)))?;
    Ok(())
}

/// A typed value as the contract stores it.
pub fn to_sqlite(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Decimal(d) => SqlValue::Text(d.to_string()),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Date(d) => SqlValue::Text(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(t) => SqlValue::Text(t.format(DATETIME_FORMAT).to_string()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
    }
}

/// A stored value read back as the typed value of its declared column type.
/// The error says what did not fit (no value text in it: it may be patient data).
pub fn from_sqlite(sql_type: SqlType, value: ValueRef<'_>) -> Result<Value, String> {
    let text = |v: ValueRef<'_>| -> Result<String, String> {
        match v {
            ValueRef::Text(t) => {
                String::from_utf8(t.to_vec()).map_err(|_| "text is not valid UTF-8".to_string())
            }
            ValueRef::Integer(i) => Ok(i.to_string()),
            ValueRef::Real(r) => Ok(r.to_string()),
            ValueRef::Blob(_) => Err(format!("a BLOB where {sql_type} was expected")),
            ValueRef::Null => unreachable!("NULL handled before"),
        }
    };
    if let ValueRef::Null = value {
        return Ok(Value::Null);
    }
    Ok(match sql_type {
        SqlType::Bit => match value {
            ValueRef::Integer(0) => Value::Bool(false),
            ValueRef::Integer(1) => Value::Bool(true),
            other => {
                return Err(format!(
                    "BIT holds {:?}-typed value that is not 0 or 1",
                    other.data_type()
                ))
            }
        },
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => match value {
            ValueRef::Integer(i) => Value::Int(i),
            other => {
                let t = text(other)?;
                Value::Int(
                    t.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("not an integer for {sql_type}"))?,
                )
            }
        },
        SqlType::Decimal { .. } => {
            let t = text(value)?;
            Value::Decimal(
                Decimal::from_str(t.trim()).map_err(|_| format!("not a decimal for {sql_type}"))?,
            )
        }
        SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_) => {
            Value::Text(text(value)?)
        }
        SqlType::Date => {
            let t = text(value)?;
            Value::Date(
                NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                    .map_err(|_| "not a YYYY-MM-DD date".to_string())?,
            )
        }
        SqlType::DateTime2(_) => {
            let t = text(value)?;
            let naive = NaiveDateTime::parse_from_str(&t, DATETIME_FORMAT)
                .or_else(|_| NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S"))
                .map_err(|_| "not a YYYY-MM-DD HH:MM:SS.fff timestamp".to_string())?;
            Value::DateTime(Utc.from_utc_datetime(&naive))
        }
        SqlType::VarBinary(_) => match value {
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            other => {
                return Err(format!(
                    "VARBINARY holds a {:?} value, not a BLOB",
                    other.data_type()
                ))
            }
        },
    })
}

/// Reads a whole table as source records, in primary-key order, typed by
/// the declared column types of `table`. Meant for tests and small fixture
/// databases (it holds the table in memory); the TDS test server streams.
pub fn read_records(conn: &Connection, table: &TableDef) -> Result<Vec<SourceRecord>, String> {
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let order: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let sql = format!(
        "SELECT {} FROM {}{}",
        columns.join(", "),
        quote_ident(&table.name),
        if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", order.join(", "))
        }
    );
    let mut statement = conn
        .prepare(&sql)
        .map_err(|e| format!("{}: {e}", table.name))?;
    let mut rows = statement
        .query([])
        .map_err(|e| format!("{}: {e}", table.name))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("{}: {e}", table.name))? {
        let mut fields = BTreeMap::new();
        for (i, column) in table.columns.iter().enumerate() {
            let raw = row
                .get_ref(i)
                .map_err(|e| format!("{}.{}: {e}", table.name, column.name))?;
            let value = from_sqlite(column.sql_type, raw)
                .map_err(|e| format!("{}.{}: {e}", table.name, column.name))?;
            fields.insert(column.name.clone(), value);
        }
        let key = SourceKey::from_parts(table.primary_key.iter().map(|k| fields[k].to_string()));
        let modified_at = table
            .modified_column()
            .and_then(|m| match &fields[&m.name] {
                Value::DateTime(t) => Some(*t),
                _ => None,
            });
        out.push(SourceRecord {
            entity: table.name.clone(),
            key,
            fields,
            modified_at,
        });
    }
    Ok(out)
}

/// A practice database being written in bulk: fresh file, one transaction,
/// no journal (a crash leaves a file the generator rewrites anyway).
pub struct PracticeDb {
    conn: Connection,
    /// The INSERT of each table, built once (the statement cache is keyed by it).
    inserts: Vec<(String, String)>,
}

impl PracticeDb {
    /// Creates `path` (replacing an existing file) with every table of `tables`.
    pub fn create(path: &Path, tables: &[TableDef]) -> rusqlite::Result<PracticeDb> {
        if path.exists() {
            std::fs::remove_file(path)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 8192;",
        )?;
        create_tables(&conn, tables)?;
        conn.set_prepared_statement_cache_capacity(tables.len().max(16));
        conn.execute_batch("BEGIN")?;
        let inserts = tables
            .iter()
            .map(|t| (t.name.clone(), insert_sql(t)))
            .collect();
        Ok(PracticeDb { conn, inserts })
    }

    pub fn insert(&self, table: &TableDef, row: &[Value]) -> rusqlite::Result<()> {
        let sql = match self.inserts.iter().find(|(name, _)| *name == table.name) {
            Some((_, sql)) => sql,
            None => return insert_row(&self.conn, table, row),
        };
        let mut statement = self.conn.prepare_cached(sql)?;
        statement.execute(rusqlite::params_from_iter(row.iter().map(to_sqlite)))?;
        Ok(())
    }

    /// Commits everything written and closes the file.
    pub fn finish(self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.conn.close().map_err(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panda::reference::{reference_table, reference_tables};

    #[test]
    fn declared_types_follow_the_contract() {
        let doc = reference_table("Document").unwrap();
        let sql = create_table_sql(doc);
        assert!(sql.contains("\"Content\" VARBINARY(-1) NOT NULL"), "{sql}");
        assert!(sql.contains("PRIMARY KEY (\"DocumentID\")"), "{sql}");
        let conn = Connection::open_in_memory().unwrap();
        create_tables(&conn, reference_tables()).unwrap();
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info('PerioExamSite')")
            .unwrap();
        let rows: Vec<(String, String, bool, i64)> = info
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows[0], ("ExamID".to_string(), "INT".to_string(), true, 1));
        assert_eq!(
            rows[2],
            ("Site".to_string(), "VARCHAR(2)".to_string(), true, 3)
        );
        assert_eq!(
            rows[4],
            ("Recession".to_string(), "SMALLINT".to_string(), false, 0)
        );
        // The declared type text parses back into the reference type.
        for table in reference_tables() {
            for column in &table.columns {
                assert_eq!(
                    SqlType::parse(&declared_type(column.sql_type)).unwrap(),
                    column.sql_type
                );
            }
        }
    }

    #[test]
    fn values_round_trip_with_the_contract_storage_classes() {
        let conn = Connection::open_in_memory().unwrap();
        let exam = reference_table("PerioExam").unwrap();
        create_tables(&conn, std::slice::from_ref(exam)).unwrap();
        let at = Utc.with_ymd_and_hms(2024, 3, 15, 10, 0, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let row = vec![
            Value::Int(7),
            Value::Int(1),
            Value::Null,
            Value::DateTime(at),
            Value::Text("Stage III".into()),
            Value::Text("B".into()),
            Value::Decimal(Decimal::from_str("12.50").unwrap()),
            Value::Null,
            Value::Bool(true),
            Value::Text(String::new()),
            Value::DateTime(at),
            Value::DateTime(at),
        ];
        insert_row(&conn, exam, &row).unwrap();
        let (stored_at, at_type, pct_type): (String, String, String) = conn
            .query_row(
                "SELECT ExamDate, typeof(ExamDate), typeof(BOPPercent) FROM PerioExam",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (stored_at.as_str(), at_type.as_str()),
            ("2024-03-15 10:00:00.123", "text")
        );
        // NUMERIC affinity (see the module doc): SQLite keeps the decimal as a number.
        assert_eq!(pct_type, "real");
        let mut statement = conn.prepare("SELECT * FROM PerioExam").unwrap();
        let mut rows = statement.query([]).unwrap();
        let stored = rows.next().unwrap().unwrap();
        for (i, column) in exam.columns.iter().enumerate() {
            assert_eq!(
                from_sqlite(column.sql_type, stored.get_ref(i).unwrap()).unwrap(),
                row[i],
                "column {}",
                column.name
            );
        }
        assert!(from_sqlite(SqlType::Date, ValueRef::Text(b"15/03/2024")).is_err());
        let money = SqlType::Decimal {
            precision: 12,
            scale: 2,
        };
        assert_eq!(
            from_sqlite(money, ValueRef::Real(1234567.89)).unwrap(),
            Value::Decimal(Decimal::from_str("1234567.89").unwrap())
        );
        assert_eq!(
            from_sqlite(money, ValueRef::Integer(100)).unwrap(),
            Value::Decimal(Decimal::from(100))
        );
        assert_eq!(
            from_sqlite(money, ValueRef::Text(b"12.50")).unwrap(),
            Value::Decimal(Decimal::from_str("12.5").unwrap())
        );
        assert_eq!(
            from_sqlite(SqlType::VarBinary(None), ValueRef::Blob(&[0, 255])).unwrap(),
            Value::Bytes(vec![0, 255])
        );
    }
}
