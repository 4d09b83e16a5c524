//! The SQL the connector sends — a fixed set of SELECT shapes, nothing else:
//! catalog reads from INFORMATION_SCHEMA, `COUNT_BIG(*)`, and one keyed
//! SELECT per table (`WHERE ModifiedAt > @P1` for delta, `WHERE key > last`
//! to resume), ordered by the primary key. Identifiers are bracket-quoted;
//! values only ever travel as parameters.

use chrono::NaiveDate;
use chrono::NaiveDateTime;
use cutover_engine::{ColumnInfo, TableInfo, Value, Watermark};

use crate::panda::reference::SqlType;

pub const TABLES: &str =
    "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME";

pub const COLUMNS: &str = "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, \
     NUMERIC_SCALE, DATETIME_PRECISION, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS ORDER BY TABLE_NAME, ORDINAL_POSITION";

pub const PRIMARY_KEYS: &str = "SELECT k.TABLE_NAME, k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS c \
     JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE k ON k.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND k.TABLE_NAME = c.TABLE_NAME \
     WHERE c.CONSTRAINT_TYPE = 'PRIMARY KEY' ORDER BY k.TABLE_NAME, k.ORDINAL_POSITION";

/// `[name]` with `]` doubled.
pub fn ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

pub fn table_ref(table: &str) -> String {
    format!("[dbo].{}", ident(table))
}

/// A COLUMNS row (in [`COLUMNS`] order) as a column description with its declared type text.
pub fn column_info(row: &[Value]) -> ColumnInfo {
    let text = |i: usize| match row.get(i) {
        Some(Value::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let int = |i: usize| match row.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let data_type = text(2).to_ascii_uppercase();
    let sql_type = match data_type.as_str() {
        "CHAR" | "VARCHAR" | "NCHAR" | "NVARCHAR" | "BINARY" | "VARBINARY" => match int(3) {
            Some(-1) => format!("{data_type}(MAX)"),
            Some(n) => format!("{data_type}({n})"),
            None => data_type,
        },
        "DECIMAL" | "NUMERIC" => format!(
            "{data_type}({},{})",
            int(4).unwrap_or(18),
            int(5).unwrap_or(0)
        ),
        "DATETIME2" => format!("DATETIME2({})", int(6).unwrap_or(7)),
        _ => data_type,
    };
    ColumnInfo {
        name: text(1),
        sql_type,
        nullable: text(7).eq_ignore_ascii_case("YES"),
    }
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyParam {
    Int(i64),
    Text(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl KeyParam {
    fn of(value: &Value) -> KeyParam {
        match value {
            Value::Int(i) => KeyParam::Int(*i),
            Value::Bool(b) => KeyParam::Int(*b as i64),
            Value::Date(d) => KeyParam::Date(*d),
            Value::DateTime(t) => KeyParam::DateTime(t.naive_utc()),
            other => KeyParam::Text(other.to_string()),
        }
    }
}

/// A statement and its `@P1…` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub sql: String,
    pub params: Vec<KeyParam>,
}

/// The table's SELECT: every column, optionally only rows modified after the watermark,
/// optionally only rows after `resume_after` (key values in key order), in key order.
pub fn select(
    table: &TableInfo,
    modified: Option<(&ColumnInfo, Watermark)>,
    resume_after: Option<&[Value]>,
) -> Select {
    let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        table_ref(&table.name)
    );
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    if let Some((column, watermark)) = modified {
        params.push(match SqlType::parse(&column.sql_type) {
            Ok(SqlType::DateTime2(_) | SqlType::Date) => {
                KeyParam::DateTime(watermark.modified_after.naive_utc())
            }
            // Text-stored timestamps compare as text in their stored (ISO) form.
            _ => KeyParam::Text(
                watermark
                    .modified_after
                    .format("%Y-%m-%d %H:%M:%S%.3f")
                    .to_string(),
            ),
        });
        conditions.push(format!("{} > @P{}", ident(&column.name), params.len()));
    }
    if let Some(after) = resume_after {
        // (k1 > a) OR (k1 = a AND (k2 > b OR (k2 = b AND k3 > c)))
        let mut condition = String::new();
        for (depth, (key, value)) in table.primary_key.iter().zip(after).enumerate().rev() {
            params.push(KeyParam::of(value));
            let p = format!("@P{}", params.len());
            condition = if depth + 1 == after.len() {
                format!("{} > {p}", ident(key))
            } else {
                format!("{k} > {p} OR ({k} = {p} AND ({condition}))", k = ident(key))
            };
        }
        conditions.push(format!("({condition})"));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if !table.primary_key.is_empty() {
        let keys: Vec<String> = table.primary_key.iter().map(|k| ident(k)).collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&keys.join(", "));
    }
    Select { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn site_table() -> TableInfo {
        let col = |n: &str, t: &str| ColumnInfo {
            name: n.into(),
            sql_type: t.into(),
            nullable: false,
        };
        TableInfo {
            name: "PerioExamSite".into(),
            columns: vec![
                col("ExamID", "INT"),
                col("ToothNumber", "TINYINT"),
                col("Site", "VARCHAR(2)"),
                col("ModifiedAt", "DATETIME2(3)"),
            ],
            row_count: 0,
            primary_key: vec!["ExamID".into(), "ToothNumber".into(), "Site".into()],
            modified_column: Some("ModifiedAt".into()),
        }
    }

    #[test]
    fn resume_condition_is_a_keyset_predicate_over_the_composite_key() {
        let t = site_table();
        let s = select(
            &t,
            None,
            Some(&[Value::Int(7), Value::Int(3), Value::Text("MB".into())]),
        );
        assert_eq!(
            s.sql,
            "SELECT [ExamID], [ToothNumber], [Site], [ModifiedAt] FROM [dbo].[PerioExamSite] WHERE \
             ([ExamID] > @P3 OR ([ExamID] = @P3 AND ([ToothNumber] > @P2 OR ([ToothNumber] = @P2 AND ([Site] > @P1))))) \
             ORDER BY [ExamID], [ToothNumber], [Site]"
        );
        assert_eq!(
            s.params,
            vec![
                KeyParam::Text("MB".into()),
                KeyParam::Int(3),
                KeyParam::Int(7)
            ]
        );
    }

    #[test]
    fn delta_filters_on_modified_at_with_a_datetime2_parameter_and_every_statement_is_a_select() {
        let t = site_table();
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let s = select(
            &t,
            Some((&t.columns[3], Watermark { modified_after: at })),
            None,
        );
        assert!(
            s.sql.contains("WHERE [ModifiedAt] > @P1 ORDER BY"),
            "{}",
            s.sql
        );
        assert_eq!(s.params, vec![KeyParam::DateTime(at.naive_utc())]);
        for sql in [TABLES, COLUMNS, PRIMARY_KEYS, &s.sql] {
            assert!(sql.starts_with("SELECT "), "{sql}");
        }
    }

    #[test]
    fn identifiers_are_bracket_quoted_with_closing_brackets_doubled() {
        assert_eq!(ident("odd]name"), "[odd]]name]");
    }

    #[test]
    fn catalog_rows_become_declared_types() {
        let row = |dt: &str, len: Option<i64>, p: Option<i64>, s: Option<i64>, dtp: Option<i64>| {
            let v = |x: Option<i64>| x.map(Value::Int).unwrap_or(Value::Null);
            vec![
                Value::Text("T".into()),
                Value::Text("C".into()),
                Value::Text(dt.into()),
                v(len),
                v(p),
                v(s),
                v(dtp),
                Value::Text("YES".into()),
            ]
        };
        assert_eq!(
            column_info(&row("nvarchar", Some(-1), None, None, None)).sql_type,
            "NVARCHAR(MAX)"
        );
        assert_eq!(
            column_info(&row("decimal", None, Some(5), Some(2), None)).sql_type,
            "DECIMAL(5,2)"
        );
        assert_eq!(
            column_info(&row("datetime2", None, None, None, Some(3))).sql_type,
            "DATETIME2(3)"
        );
        assert!(column_info(&row("int", None, Some(10), Some(0), None)).nullable);
    }
}
