//! The PANDA Perio reference schema (`reference-schema.sql`, bundled), parsed
//! into table and column definitions with their SQL Server types.
//!
//! Everything that needs to know "what a PANDA table looks like" reads it from
//! here: the synthetic practice generator, the export-folder source (typing
//! CSV fields), the SQL Server source (gap reports), the TDS test server and
//! the default maps. A real install differs; `discover` reports the gaps.

use std::fmt;
use std::sync::OnceLock;

/// The bundled reference DDL (T-SQL).
pub const REFERENCE_SQL: &str = include_str!("reference-schema.sql");

/// A SQL Server column type, as far as PANDA uses them. `None` lengths are `(MAX)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Decimal { precision: u8, scale: u8 },
    Char(u16),
    VarChar(Option<u16>),
    NChar(u16),
    NVarChar(Option<u16>),
    Date,
    DateTime2(u8),
    VarBinary(Option<u16>),
}

impl SqlType {
    /// Parses a declared type such as `NVARCHAR(100)`, `DECIMAL(5,2)`, `VARBINARY(MAX)`.
    pub fn parse(declared: &str) -> Result<SqlType, String> {
        let compact: String = declared.split_whitespace().collect::<Vec<_>>().join("");
        let upper = compact.to_ascii_uppercase();
        let (name, args) = match upper.find('(') {
            Some(open) if upper.ends_with(')') => {
                (&upper[..open], Some(&upper[open + 1..upper.len() - 1]))
            }
            Some(_) => return Err(format!("unbalanced parentheses in type {declared:?}")),
            None => (upper.as_str(), None),
        };
        let length = |args: Option<&str>| -> Result<Option<u16>, String> {
            match args {
                None => Ok(Some(1)),
                // SQL Server reports MAX as -1 (INFORMATION_SCHEMA.CHARACTER_MAXIMUM_LENGTH).
                Some("MAX") | Some("-1") => Ok(None),
                Some(n) => n
                    .parse::<u16>()
                    .map(Some)
                    .map_err(|_| format!("bad length {n:?} in type {declared:?}")),
            }
        };
        let fixed = |args: Option<&str>| -> Result<u16, String> {
            length(args)?.ok_or_else(|| format!("MAX is not allowed in type {declared:?}"))
        };
        Ok(match name {
            "BIT" => SqlType::Bit,
            "TINYINT" => SqlType::TinyInt,
            "SMALLINT" => SqlType::SmallInt,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::BigInt,
            "DECIMAL" | "NUMERIC" => {
                let (precision, scale) = match args {
                    None => (18, 0),
                    Some(a) => {
                        let mut parts = a.split(',');
                        let p = parts.next().unwrap_or("18").parse::<u8>();
                        let s = parts.next().unwrap_or("0").parse::<u8>();
                        match (p, s) {
                            (Ok(p), Ok(s)) if (1..=38).contains(&p) && s <= p => (p, s),
                            _ => return Err(format!("bad precision/scale in type {declared:?}")),
                        }
                    }
                };
                SqlType::Decimal { precision, scale }
            }
            "CHAR" => SqlType::Char(fixed(args)?),
            "VARCHAR" => SqlType::VarChar(length(args)?),
            "NCHAR" => SqlType::NChar(fixed(args)?),
            "NVARCHAR" => SqlType::NVarChar(length(args)?),
            "DATE" => SqlType::Date,
            "DATETIME2" => SqlType::DateTime2(match args {
                None => 7,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 7)
                    .ok_or_else(|| format!("bad precision in type {declared:?}"))?,
            }),
            "VARBINARY" => SqlType::VarBinary(length(args)?),
            _ => return Err(format!("unsupported SQL type {declared:?}")),
        })
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_)
        )
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt
        )
    }

    /// Maximum characters (text) or bytes (binary); `None` for MAX and non-sized types.
    pub fn max_length(self) -> Option<u16> {
        match self {
            SqlType::Char(n) | SqlType::NChar(n) => Some(n),
            SqlType::VarChar(n) | SqlType::NVarChar(n) | SqlType::VarBinary(n) => n,
            _ => None,
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |n: &Option<u16>| n.map(|n| n.to_string()).unwrap_or_else(|| "MAX".into());
        match self {
            SqlType::Bit => f.write_str("BIT"),
            SqlType::TinyInt => f.write_str("TINYINT"),
            SqlType::SmallInt => f.write_str("SMALLINT"),
            SqlType::Int => f.write_str("INT"),
            SqlType::BigInt => f.write_str("BIGINT"),
            SqlType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            SqlType::Char(n) => write!(f, "CHAR({n})"),
            SqlType::VarChar(n) => write!(f, "VARCHAR({})", len(n)),
            SqlType::NChar(n) => write!(f, "NCHAR({n})"),
            SqlType::NVarChar(n) => write!(f, "NVARCHAR({})", len(n)),
            SqlType::Date => f.write_str("DATE"),
            SqlType::DateTime2(p) => write!(f, "DATETIME2({p})"),
            SqlType::VarBinary(n) => write!(f, "VARBINARY({})", len(n)),
        }
    }
}

/// A column of the reference schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
    /// `(table, column)` this column references, if it is a foreign key.
    pub references: Option<(String, String)>,
}

/// A table of the reference schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Primary-key columns in key order.
    pub primary_key: Vec<String>,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// `ModifiedAt`, when the table has it (delta pickup filters on it).
    pub fn modified_column(&self) -> Option<&ColumnDef> {
        self.column("ModifiedAt")
    }
}

/// The reference tables, in dependency order (as declared: parents first).
pub fn reference_tables() -> &'static [TableDef] {
    static TABLES: OnceLock<Vec<TableDef>> = OnceLock::new();
    TABLES.get_or_init(|| {
        parse_ddl(REFERENCE_SQL).expect("the bundled reference schema parses (checked by a test)")
    })
}

/// One reference table by name (case-insensitive).
pub fn reference_table(name: &str) -> Option<&'static TableDef> {
    reference_tables()
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

/// Parses the subset of T-SQL DDL the reference schema uses: `CREATE TABLE`
/// with column definitions (`NOT NULL`/`NULL`, inline `PRIMARY KEY`,
/// `REFERENCES t(c)`) and a table-level `PRIMARY KEY (a, b)`. `--` comments are ignored.
pub fn parse_ddl(sql: &str) -> Result<Vec<TableDef>, String> {
    let without_comments: String = sql
        .lines()
        .map(|line| match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut tables = Vec::new();
    let mut rest = without_comments.as_str();
    while let Some(start) = find_ci(rest, "CREATE TABLE") {
        let after = &rest[start + "CREATE TABLE".len()..];
        let open = after
            .find('(')
            .ok_or("CREATE TABLE without a column list")?;
        let name = after[..open]
            .trim()
            .trim_start_matches("dbo.")
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let body_start = open + 1;
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in after[body_start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(body_start + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("table {name}: unbalanced parentheses"))?;
        tables.push(parse_table(&name, &after[body_start..end])?);
        rest = &after[end..];
    }
    if tables.is_empty() {
        return Err("no CREATE TABLE statement found".into());
    }
    Ok(tables)
}

fn parse_table(name: &str, body: &str) -> Result<TableDef, String> {
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    for item in split_top_level(body) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if starts_with_ci(item, "PRIMARY KEY") {
            let open = item
                .find('(')
                .ok_or_else(|| format!("table {name}: PRIMARY KEY without columns"))?;
            let close = item
                .rfind(')')
                .ok_or_else(|| format!("table {name}: PRIMARY KEY unclosed"))?;
            primary_key = item[open + 1..close]
                .split(',')
                .map(|c| c.trim().to_string())
                .collect();
            continue;
        }
        let mut words = item.splitn(2, char::is_whitespace);
        let column = words.next().unwrap_or_default().to_string();
        let rest = words.next().unwrap_or_default().trim();
        // The type runs up to the first keyword after it (and includes a parenthesised argument).
        let type_end = ["NOT NULL", "NULL", "PRIMARY KEY", "REFERENCES"]
            .iter()
            .filter_map(|kw| find_ci(rest, kw))
            .min()
            .unwrap_or(rest.len());
        let sql_type = SqlType::parse(rest[..type_end].trim())
            .map_err(|e| format!("table {name}, column {column}: {e}"))?;
        let constraints = &rest[type_end..];
        let nullable = find_ci(constraints, "NOT NULL").is_none();
        if find_ci(constraints, "PRIMARY KEY").is_some() {
            primary_key = vec![column.clone()];
        }
        let references = find_ci(constraints, "REFERENCES").and_then(|i| {
            let target = &constraints[i + "REFERENCES".len()..];
            let open = target.find('(')?;
            let close = target.find(')')?;
            Some((
                target[..open].trim().to_string(),
                target[open + 1..close].trim().to_string(),
            ))
        });
        columns.push(ColumnDef {
            name: column,
            sql_type,
            nullable,
            references,
        });
    }
    Ok(TableDef {
        name: name.to_string(),
        columns,
        primary_key,
    })
}

fn split_top_level(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_uppercase()
        .find(&needle.to_ascii_uppercase())
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_reference_parses_completely() {
        let tables = parse_ddl(REFERENCE_SQL).unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Practice",
                "Provider",
                "ReferringPractice",
                "ReferringDentist",
                "Patient",
                "PerioExam",
                "PerioExamSite",
                "PerioExamTooth",
                "CustomFinding",
                "ChartComparison",
                "ChartComparisonExam",
                "TreatmentPlan",
                "TreatmentPhase",
                "PlannedProcedure",
                "Appointment",
                "ProgressNote",
                "LetterTemplate",
                "Letter",
                "RecallRule",
                "Document"
            ]
        );
        let patient = reference_table("patient").unwrap();
        assert_eq!(patient.primary_key, ["PatientID"]);
        assert_eq!(patient.columns.len(), 32);
        let pct = patient.column("InsPrimaryCoveragePct").unwrap();
        assert_eq!(
            pct.sql_type,
            SqlType::Decimal {
                precision: 5,
                scale: 2
            }
        );
        assert!(pct.nullable);
        assert_eq!(
            patient.column("ReferringDentistID").unwrap().references,
            Some(("ReferringDentist".into(), "ReferringDentistID".into()))
        );
        let site = reference_table("PerioExamSite").unwrap();
        assert_eq!(site.primary_key, ["ExamID", "ToothNumber", "Site"]);
        assert!(site.modified_column().is_none());
        assert_eq!(
            reference_table("Document")
                .unwrap()
                .column("Content")
                .unwrap()
                .sql_type,
            SqlType::VarBinary(None)
        );
        assert_eq!(
            reference_table("PerioExam")
                .unwrap()
                .column("Notes")
                .unwrap()
                .sql_type,
            SqlType::NVarChar(None)
        );
        assert!(
            !reference_table("PerioExam")
                .unwrap()
                .column("IsBaseline")
                .unwrap()
                .nullable
        );
    }

    #[test]
    fn types_round_trip_through_display() {
        for t in [
            "BIT",
            "TINYINT",
            "DECIMAL(12,2)",
            "CHAR(1)",
            "VARCHAR(10)",
            "NVARCHAR(MAX)",
            "DATE",
            "DATETIME2(3)",
            "VARBINARY(MAX)",
        ] {
            assert_eq!(SqlType::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(
            SqlType::parse("nvarchar(-1)").unwrap(),
            SqlType::NVarChar(None)
        );
        assert!(SqlType::parse("GEOGRAPHY").is_err());
        assert!(SqlType::parse("DECIMAL(40,2)").is_err());
    }
}
