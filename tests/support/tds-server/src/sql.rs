//! The SQL engine behind the server: T-SQL statements rewritten for SQLite,
//! run against the served database, with an INFORMATION_SCHEMA built from
//! the SQLite schema. Results are encoded as TDS tokens and handed to a
//! [`TokenSink`] in chunks, so a large result streams with bounded memory.
//!
//! The rewrite is token-level and small on purpose: it covers the statement
//! shapes a read-only extractor sends (`[dbo].` prefixes, `TOP`, `OFFSET …
//! FETCH`, `COUNT_BIG`, `N'…'` literals, `WITH (NOLOCK)`, `@@VERSION`). SQLite
//! reports anything else as a syntax error, which the server passes on as
//! SQL Server error 102.

use std::path::Path;

use rusqlite::{params_from_iter, Connection};

use crate::protocol::{token, Param, CMD_SELECT, DONE_COUNT, DONE_ERROR, DONE_MORE};
use crate::types::ColType;

/// Opens the served database read-only (query_only) with an INFORMATION_SCHEMA attached.
pub fn open(path: &Path, catalog: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "ATTACH DATABASE ':memory:' AS INFORMATION_SCHEMA;
         CREATE TABLE INFORMATION_SCHEMA.TABLES (TABLE_CATALOG NVARCHAR(128), TABLE_SCHEMA NVARCHAR(128),
             TABLE_NAME NVARCHAR(128), TABLE_TYPE VARCHAR(10));
         CREATE TABLE INFORMATION_SCHEMA.COLUMNS (TABLE_CATALOG NVARCHAR(128), TABLE_SCHEMA NVARCHAR(128),
             TABLE_NAME NVARCHAR(128), COLUMN_NAME NVARCHAR(128), ORDINAL_POSITION INT, IS_NULLABLE VARCHAR(3),
             DATA_TYPE NVARCHAR(128), CHARACTER_MAXIMUM_LENGTH INT, NUMERIC_PRECISION TINYINT, NUMERIC_SCALE INT,
             DATETIME_PRECISION SMALLINT);
         CREATE TABLE INFORMATION_SCHEMA.TABLE_CONSTRAINTS (CONSTRAINT_CATALOG NVARCHAR(128),
             CONSTRAINT_SCHEMA NVARCHAR(128), CONSTRAINT_NAME NVARCHAR(128), TABLE_CATALOG NVARCHAR(128),
             TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128), CONSTRAINT_TYPE VARCHAR(11));
         CREATE TABLE INFORMATION_SCHEMA.KEY_COLUMN_USAGE (CONSTRAINT_CATALOG NVARCHAR(128),
             CONSTRAINT_SCHEMA NVARCHAR(128), CONSTRAINT_NAME NVARCHAR(128), TABLE_CATALOG NVARCHAR(128),
             TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128), COLUMN_NAME NVARCHAR(128), ORDINAL_POSITION INT);",
    )?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables {
        conn.execute(
            "INSERT INTO INFORMATION_SCHEMA.TABLES VALUES (?1, 'dbo', ?2, 'BASE TABLE')",
            (catalog, &table),
        )?;
        let columns: Vec<(i64, String, String, bool, i64)> = conn
            .prepare(&format!(
                "PRAGMA main.table_info(\"{}\")",
                table.replace('"', "\"\"")
            ))?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)? != 0,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let constraint = format!("PK_{table}");
        if columns.iter().any(|c| c.4 > 0) {
            conn.execute(
                "INSERT INTO INFORMATION_SCHEMA.TABLE_CONSTRAINTS VALUES (?1, 'dbo', ?2, ?1, 'dbo', ?3, 'PRIMARY KEY')",
                (catalog, &constraint, &table),
            )?;
        }
        for (cid, name, declared, not_null, pk) in columns {
            let ty = ColType::parse(&declared).unwrap_or(ColType::NVarChar(None));
            let (data_type, max_len, precision, scale, dt_precision) = ty.catalog();
            // SQLite lets a PRIMARY KEY column hold NULL unless declared NOT NULL; SQL Server does not.
            let nullable = if not_null || pk > 0 { "NO" } else { "YES" };
            conn.execute(
                "INSERT INTO INFORMATION_SCHEMA.COLUMNS VALUES (?1, 'dbo', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![catalog, table, name, cid + 1, nullable, data_type, max_len, precision, scale, dt_precision],
            )?;
            if pk > 0 {
                conn.execute(
                    "INSERT INTO INFORMATION_SCHEMA.KEY_COLUMN_USAGE VALUES (?1, 'dbo', ?2, ?1, 'dbo', ?3, ?4, ?5)",
                    rusqlite::params![catalog, constraint, table, name, pk],
                )?;
            }
        }
    }
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Bracketed(String),
    Punct(char),
    Space,
}

fn tokenize(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(Tok::Space);
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(Tok::Space);
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(Tok::Space);
        } else if c == '\'' || c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { c };
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if chars.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            let text: String = chars[start..i].iter().collect();
            out.push(if c == '\'' {
                Tok::Quoted(text)
            } else {
                Tok::Bracketed(text)
            });
        } else if c.is_alphanumeric() || c == '_' || c == '@' || c == '#' || c == '$' {
            let start = i;
            // A dot continues a number (12.5) but ends a name (dbo.Patient).
            let number = chars[start].is_ascii_digit();
            let continues = |c: char| {
                c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$') || (c == '.' && number)
            };
            while i < chars.len() && continues(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

fn render(tokens: &[Tok]) -> String {
    let mut s = String::new();
    for t in tokens {
        match t {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Bracketed(w) => s.push_str(w),
            Tok::Punct(c) => s.push(*c),
            Tok::Space if s.ends_with(' ') => {}
            Tok::Space => s.push(' '),
        }
    }
    s
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
}

/// Splits a batch at top-level semicolons (quotes, brackets and comments respected).
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = Vec::new();
    for t in tokenize(sql) {
        if t == Tok::Punct(';') {
            statements.push(std::mem::take(&mut current));
        } else {
            current.push(t);
        }
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|t| render(&t).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True when the statement is a query: its first keyword is SELECT (after any opening parentheses).
pub fn is_select(statement: &str) -> bool {
    tokenize(statement)
        .into_iter()
        .find(|t| !matches!(t, Tok::Space | Tok::Punct('(')))
        .is_some_and(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("SELECT")))
}

/// Rewrites one T-SQL statement into SQLite's dialect.
pub fn rewrite(statement: &str) -> String {
    let tokens: Vec<Tok> = tokenize(statement);
    let mut out: Vec<Tok> = Vec::with_capacity(tokens.len());
    let mut limit: Option<String> = None;
    let mut i = 0;
    let next_solid = |from: usize| -> usize {
        let mut j = from;
        while matches!(tokens.get(j), Some(Tok::Space)) {
            j += 1;
        }
        j
    };
    while i < tokens.len() {
        let t = &tokens[i];
        // [dbo]. / dbo.
        let is_dbo = matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("dbo"))
            || matches!(t, Tok::Bracketed(b) if b.eq_ignore_ascii_case("[dbo]"));
        if is_dbo && tokens.get(i + 1) == Some(&Tok::Punct('.')) {
            i += 2;
            continue;
        }
        if let Tok::Word(w) = t {
            // N'text' → 'text'
            if w.eq_ignore_ascii_case("N") && matches!(tokens.get(i + 1), Some(Tok::Quoted(_))) {
                i += 1;
                continue;
            }
            let upper = w.to_ascii_uppercase();
            match upper.as_str() {
                "COUNT_BIG" => {
                    out.push(Tok::Word("COUNT".into()));
                    i += 1;
                    continue;
                }
                "ISNULL" => {
                    out.push(Tok::Word("IFNULL".into()));
                    i += 1;
                    continue;
                }
                "LEN" => {
                    out.push(Tok::Word("LENGTH".into()));
                    i += 1;
                    continue;
                }
                "@@VERSION" => {
                    out.push(Tok::Quoted(
                        "'Microsoft SQL Server 2019 (RTM-CU) - cutover TDS test server'".into(),
                    ));
                    i += 1;
                    continue;
                }
                "WITH" => {
                    // table hint WITH (NOLOCK)
                    let open = next_solid(i + 1);
                    let hint = next_solid(open + 1);
                    let close = next_solid(hint + 1);
                    if tokens.get(open) == Some(&Tok::Punct('('))
                        && is_word(tokens.get(hint), "NOLOCK")
                        && tokens.get(close) == Some(&Tok::Punct(')'))
                    {
                        i = close + 1;
                        continue;
                    }
                }
                "TOP" if limit.is_none() => {
                    let start = next_solid(i + 1);
                    if tokens.get(start) == Some(&Tok::Punct('(')) {
                        let mut depth = 0;
                        let mut end = start;
                        while end < tokens.len() {
                            match tokens[end] {
                                Tok::Punct('(') => depth += 1,
                                Tok::Punct(')') => {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            end += 1;
                        }
                        limit = Some(render(&tokens[start..=end.min(tokens.len() - 1)]));
                        i = end + 1;
                    } else if let Some(Tok::Word(n)) = tokens.get(start) {
                        limit = Some(n.clone());
                        i = start + 1;
                    } else {
                        out.push(t.clone());
                        i += 1;
                    }
                    continue;
                }
                "OFFSET" => {
                    // OFFSET x ROWS FETCH NEXT y ROWS ONLY → LIMIT y OFFSET x
                    let x = next_solid(i + 1);
                    let rows = next_solid(x + 1);
                    let fetch = next_solid(rows + 1);
                    let next = next_solid(fetch + 1);
                    let y = next_solid(next + 1);
                    let rows2 = next_solid(y + 1);
                    let only = next_solid(rows2 + 1);
                    if (is_word(tokens.get(rows), "ROWS") || is_word(tokens.get(rows), "ROW"))
                        && is_word(tokens.get(fetch), "FETCH")
                        && is_word(tokens.get(only), "ONLY")
                    {
                        out.extend([
                            Tok::Word("LIMIT".into()),
                            Tok::Space,
                            tokens[y].clone(),
                            Tok::Space,
                            Tok::Word("OFFSET".into()),
                            Tok::Space,
                            tokens[x].clone(),
                        ]);
                        i = only + 1;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(t.clone());
        i += 1;
    }
    let mut sql = render(&case_insensitive(out)).trim().to_string();
    if let Some(limit) = limit {
        sql.push_str(" LIMIT ");
        sql.push_str(&limit);
    }
    sql
}

/// SQL Server's default collation (SQL_Latin1_General_CP1_CI_AS, the one the
/// server announces) compares and sorts text case-insensitively; SQLite's
/// default is binary. Comparisons with a parameter and ORDER BY items get
/// `COLLATE NOCASE` so keyset predicates and key order behave like SQL Server's.
fn case_insensitive(tokens: Vec<Tok>) -> Vec<Tok> {
    let nocase = [
        Tok::Space,
        Tok::Word("COLLATE".into()),
        Tok::Space,
        Tok::Word("NOCASE".into()),
    ];
    let mut out = Vec::with_capacity(tokens.len() + 8);
    let mut in_order_by = false;
    let mut item_has_collate = false;
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        let word = |w: &str| matches!(t, Tok::Word(x) if x.eq_ignore_ascii_case(w));
        if in_order_by && depth == 0 {
            let ends_item = matches!(t, Tok::Punct(','))
                || word("ASC")
                || word("DESC")
                || word("LIMIT")
                || matches!(t, Tok::Punct(')'));
            if ends_item && !item_has_collate {
                while matches!(out.last(), Some(Tok::Space)) {
                    out.pop();
                }
                out.extend(nocase.iter().cloned());
                if !matches!(t, Tok::Punct(_)) {
                    out.push(Tok::Space);
                }
                item_has_collate = true;
            }
            if matches!(t, Tok::Punct(',')) {
                item_has_collate = false;
            }
            if word("LIMIT") || matches!(t, Tok::Punct(')')) {
                in_order_by = false;
            }
        }
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            _ => {}
        }
        if word("COLLATE") {
            item_has_collate = true;
        }
        if word("BY")
            && out
                .iter()
                .rev()
                .find(|t| !matches!(t, Tok::Space))
                .is_some_and(|p| matches!(p, Tok::Word(x) if x.eq_ignore_ascii_case("ORDER")))
        {
            in_order_by = true;
            item_has_collate = false;
            depth = 0;
        }
        out.push(t.clone());
        let is_param = matches!(t, Tok::Word(w) if w.starts_with('@') && !w.starts_with("@@"));
        let next_collate = tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t, Tok::Space))
            .is_some_and(|t| matches!(t, Tok::Word(x) if x.eq_ignore_ascii_case("COLLATE")));
        if is_param && !next_collate && !in_order_by {
            out.extend(nocase.iter().cloned());
        }
    }
    if in_order_by && !item_has_collate {
        while matches!(out.last(), Some(Tok::Space)) {
            out.pop();
        }
        out.extend(nocase.iter().cloned());
    }
    out
}

/// Where encoded tokens go. `flush` returns false when the client is gone (stop producing).
pub trait TokenSink {
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn flush(&mut self) -> bool;
    /// Called after each row; returns true when the fault plan says to drop the connection now.
    fn row_sent(&mut self) -> bool;
    /// Drops the connection (fault injection).
    fn drop_connection(&mut self);
}

/// A server error to send as an ERROR token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub number: i32,
    pub class: u8,
    pub message: String,
}

impl SqlError {
    pub fn from_sqlite(e: &rusqlite::Error) -> SqlError {
        let text = e.to_string();
        let after = |prefix: &str| {
            text.find(prefix)
                .map(|i| text[i + prefix.len()..].trim().to_string())
        };
        if let Some(table) = after("no such table:") {
            let table = table.trim_start_matches("main.");
            return SqlError {
                number: 208,
                class: 16,
                message: format!("Invalid object name '{table}'."),
            };
        }
        if let Some(column) = after("no such column:") {
            return SqlError {
                number: 207,
                class: 16,
                message: format!("Invalid column name '{column}'."),
            };
        }
        if text.contains("syntax error") || text.contains("incomplete input") {
            let near = after("near").unwrap_or_default();
            let near = near
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"');
            return SqlError {
                number: 102,
                class: 15,
                message: format!("Incorrect syntax near '{near}'."),
            };
        }
        if text.contains("readonly") || text.contains("read-only") || text.contains("query_only") {
            return SqlError {
                number: 3906,
                class: 16,
                message: "Failed to update database \"PANDA\" because the database is read-only."
                    .into(),
            };
        }
        SqlError {
            number: 50000,
            class: 16,
            message: text,
        }
    }
}

/// Runs one statement and encodes its result (COLMETADATA, ROW/NBCROW…, DONE) into `sink`.
/// `more` sets DONE_MORE (another statement follows). Returns false when streaming must stop
/// (client gone or connection dropped by the fault plan).
pub fn run_statement(
    conn: &Connection,
    sql: &str,
    params: &[(String, Param)],
    more: bool,
    sink: &mut dyn TokenSink,
) -> bool {
    let more_bit = if more { DONE_MORE } else { 0 };
    let fail = |sink: &mut dyn TokenSink, e: SqlError| {
        token::message(sink.buffer(), true, e.number, e.class, &e.message);
        token::done(sink.buffer(), DONE_ERROR | more_bit, 0, 0);
        sink.flush()
    };
    let rewritten = rewrite(sql);
    let mut stmt = match conn.prepare(&rewritten) {
        Ok(s) => s,
        Err(e) => return fail(sink, SqlError::from_sqlite(&e)),
    };
    let mut values = Vec::new();
    for index in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(index).unwrap_or_default();
        let value = params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        let Some(value) = value else {
            let e = SqlError {
                number: 137,
                class: 15,
                message: format!("Must declare the scalar variable \"{name}\"."),
            };
            return fail(sink, e);
        };
        values.push(match value {
            Param::Null => rusqlite::types::Value::Null,
            Param::Int(i) => rusqlite::types::Value::Integer(i),
            Param::Float(f) => rusqlite::types::Value::Real(f),
            Param::Text(s) => rusqlite::types::Value::Text(s),
            Param::Bytes(b) => rusqlite::types::Value::Blob(b),
        });
    }
    let declared: Vec<(String, Option<ColType>)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.decl_type().and_then(ColType::parse)))
        .collect();
    let column_count = declared.len();
    let mut rows = match stmt.query(params_from_iter(values)) {
        Ok(r) => r,
        Err(e) => return fail(sink, SqlError::from_sqlite(&e)),
    };
    if column_count == 0 {
        // Not a query (only reachable when the select-only check is off; the database is query_only anyway).
        if let Err(e) = rows.next() {
            return fail(sink, SqlError::from_sqlite(&e));
        }
        token::done(sink.buffer(), more_bit, 0, 0);
        return sink.flush();
    }
    let first = match rows.next() {
        Ok(r) => r,
        Err(e) => return fail(sink, SqlError::from_sqlite(&e)),
    };
    let types: Vec<ColType> = declared
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| match (ty, first) {
            (Some(ty), _) => *ty,
            (None, Some(row)) => {
                ColType::infer(row.get_ref(i).unwrap_or(rusqlite::types::ValueRef::Null))
            }
            (None, None) => ColType::NVarChar(None),
        })
        .collect();
    let meta: Vec<(String, ColType, bool)> = declared
        .iter()
        .zip(&types)
        .map(|((n, _), t)| (n.clone(), *t, true))
        .collect();
    token::col_metadata(sink.buffer(), &meta);
    let mut count = 0u64;
    let mut row = first;
    let bitmap_len = column_count.div_ceil(8);
    while let Some(r) = row {
        let mut encoded = Vec::with_capacity(64);
        let mut nulls = vec![0u8; bitmap_len];
        let mut any_null = false;
        for (i, ty) in types.iter().enumerate() {
            let value = r.get_ref(i).unwrap_or(rusqlite::types::ValueRef::Null);
            if let rusqlite::types::ValueRef::Null = value {
                nulls[i / 8] |= 1 << (i % 8);
                any_null = true;
                continue;
            }
            if let Err(message) = ty.write_value(value, &mut encoded) {
                let e = SqlError {
                    number: 245,
                    class: 16,
                    message: format!("Conversion failed for column '{}': {message}", meta[i].0),
                };
                return fail(sink, e);
            }
        }
        let buf = sink.buffer();
        if any_null {
            buf.push(0xD2);
            buf.extend_from_slice(&nulls);
        } else {
            buf.push(0xD1);
        }
        buf.extend_from_slice(&encoded);
        count += 1;
        if sink.row_sent() {
            sink.drop_connection();
            return false;
        }
        if sink.buffer().len() >= 32 * 1024 && !sink.flush() {
            return false;
        }
        row = match rows.next() {
            Ok(r) => r,
            Err(e) => return fail(sink, SqlError::from_sqlite(&e)),
        };
    }
    token::done(sink.buffer(), DONE_COUNT | more_bit, CMD_SELECT, count);
    sink.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsql_shapes_become_sqlite() {
        assert_eq!(
            rewrite("SELECT TOP (10) [a], [b] FROM [dbo].[PerioExamSite] WITH (NOLOCK) WHERE [a] > @P1 ORDER BY [a]"),
            "SELECT [a], [b] FROM [PerioExamSite] WHERE [a] > @P1 COLLATE NOCASE ORDER BY [a] COLLATE NOCASE LIMIT (10)"
        );
        assert_eq!(
            rewrite("SELECT k FROM t WHERE (k > @P2 OR (k = @P2 AND s > @P1)) ORDER BY k, s DESC"),
            "SELECT k FROM t WHERE (k > @P2 COLLATE NOCASE OR (k = @P2 COLLATE NOCASE AND s > @P1 COLLATE NOCASE)) \
             ORDER BY k COLLATE NOCASE, s COLLATE NOCASE DESC"
        );
        assert_eq!(
            rewrite("SELECT COUNT_BIG(*) FROM dbo.Patient"),
            "SELECT COUNT(*) FROM Patient"
        );
        assert_eq!(
            rewrite("SELECT x FROM t ORDER BY x OFFSET 5 ROWS FETCH NEXT 10 ROWS ONLY"),
            "SELECT x FROM t ORDER BY x COLLATE NOCASE LIMIT 10 OFFSET 5"
        );
        assert_eq!(rewrite("SELECT N'it''s' AS s"), "SELECT 'it''s' AS s");
        // Inside quotes and brackets nothing changes.
        assert_eq!(
            rewrite("SELECT '[dbo].x TOP 1' AS [dbo.y]"),
            "SELECT '[dbo].x TOP 1' AS [dbo.y]"
        );
    }

    #[test]
    fn batches_split_outside_quotes_and_select_is_recognised() {
        let parts = split_statements("SELECT 'a;b'; DELETE FROM t; -- done;\n");
        assert_eq!(parts, vec!["SELECT 'a;b'", "DELETE FROM t"]);
        assert!(is_select("  (SELECT 1)"));
        assert!(!is_select("DELETE FROM t"));
        assert!(!is_select("WITH x AS (SELECT 1) DELETE FROM t"));
    }

    #[test]
    fn sqlite_errors_map_to_sql_server_numbers() {
        let conn = Connection::open_in_memory().unwrap();
        let e = conn.prepare("SELECT * FROM Nope").unwrap_err();
        assert_eq!(SqlError::from_sqlite(&e).number, 208);
        assert_eq!(
            SqlError::from_sqlite(&e).message,
            "Invalid object name 'Nope'."
        );
        let e = conn.prepare("SELEC 1").unwrap_err();
        assert_eq!(SqlError::from_sqlite(&e).number, 102);
    }

    #[test]
    fn catalog_describes_declared_types_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "CREATE TABLE Site (ExamID INT NOT NULL, Site VARCHAR(2) NOT NULL, Note NVARCHAR(-1) NULL,
                 PRIMARY KEY (ExamID, Site));",
            )
            .unwrap();
        drop(setup);
        let conn = open(&path, "PANDA").unwrap();
        let cols: Vec<(String, String, Option<i64>, String)> = conn
            .prepare("SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS ORDER BY ORDINAL_POSITION")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            cols[1],
            ("Site".into(), "varchar".into(), Some(2), "NO".into())
        );
        assert_eq!(
            cols[2],
            ("Note".into(), "nvarchar".into(), Some(-1), "YES".into())
        );
        let keys: Vec<String> = conn
            .prepare("SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.KEY_COLUMN_USAGE ORDER BY ORDINAL_POSITION")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, vec!["ExamID", "Site"]);
        // The served database itself cannot be changed.
        assert!(conn.execute("DELETE FROM Site", []).is_err());
    }
}
