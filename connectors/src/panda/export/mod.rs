//! The export-folder source (`export:DIR`, see `panda/export-format.md`):
//! one `<Table>.csv` per table and an optional `manifest.json`.
//!
//! Opening checks everything before a row is handed out: each file's row
//! count and BLAKE3 against the manifest (a truncated or altered export is
//! refused), headers present and unique. Streaming is then a plain
//! forward read with the `csv` crate on a blocking thread, handed over
//! through a bounded channel (memory stays flat whatever the table size).
//! Fields are typed by the reference schema; columns the reference does not
//! know are carried as text, never dropped. A row whose value does not fit
//! its type becomes [`SourceItem::Unreadable`] with its place and reason; a
//! line that is not CSV at all stops the stream with
//! [`SourceError::Malformed`] naming file, line and column. Rows must come
//! in primary-key order (the promise every source keeps); a row out of order
//! or with a duplicate key stops the stream the same way, as does a file that
//! changed after it was checked ([`SourceError::Interrupted`]).

pub mod format;
pub mod manifest;
pub mod quoting;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cutover_engine::{
    ColumnInfo, Inventory, Source, SourceError, SourceItem, SourceKey, SourceRecord, SourceStream,
    TableInfo, Value, Watermark,
};
use futures::StreamExt;

use crate::panda::reference::{reference_table, reference_tables, SqlType, TableDef};
use manifest::{file_facts, Hashing, Manifest};
use quoting::{QuotedEmptyMarker, QUOTED_EMPTY};

/// Rows travel from the reading thread in batches (one channel hand-off per
/// batch, not per row); at most `CHANNEL_BATCHES` batches wait at a time.
const BATCH_ROWS: usize = 128;
const CHANNEL_BATCHES: usize = 4;

/// One CSV file of the export, as checked at open.
#[derive(Debug, Clone)]
struct ExportTable {
    /// The entity name: the file name without `.csv`.
    name: String,
    path: PathBuf,
    file_name: String,
    header: Vec<String>,
    rows: u64,
    /// BLAKE3 of the file when it was checked at open.
    blake3: String,
    reference: Option<&'static TableDef>,
}

impl ExportTable {
    fn column_type(&self, column: &str) -> Option<SqlType> {
        self.reference
            .and_then(|t| t.column(column))
            .map(|c| c.sql_type)
    }

    fn primary_key(&self) -> Vec<String> {
        let Some(reference) = self.reference else {
            return Vec::new();
        };
        let key: Vec<String> = reference
            .primary_key
            .iter()
            .filter_map(|k| {
                self.header
                    .iter()
                    .find(|h| h.eq_ignore_ascii_case(k))
                    .cloned()
            })
            .collect();
        if key.len() == reference.primary_key.len() {
            key
        } else {
            Vec::new()
        }
    }

    fn modified_column(&self) -> Option<String> {
        self.header
            .iter()
            .find(|h| h.eq_ignore_ascii_case("ModifiedAt"))
            .cloned()
    }

    fn info(&self) -> TableInfo {
        TableInfo {
            name: self.name.clone(),
            columns: self
                .header
                .iter()
                .map(|h| {
                    let column = self.reference.and_then(|t| t.column(h));
                    ColumnInfo {
                        name: h.clone(),
                        // Columns beyond the reference are carried as text.
                        sql_type: column
                            .map(|c| c.sql_type.to_string())
                            .unwrap_or_else(|| "NVARCHAR(MAX)".into()),
                        nullable: column.map(|c| c.nullable).unwrap_or(true),
                    }
                })
                .collect(),
            row_count: self.rows,
            primary_key: self.primary_key(),
            modified_column: self.modified_column(),
        }
    }
}

/// An export folder, checked and ready to stream.
#[derive(Debug, Clone)]
pub struct ExportSource {
    dir: PathBuf,
    tables: Arc<Vec<ExportTable>>,
    has_manifest: bool,
}

impl ExportSource {
    /// Opens `dir`: reads the manifest (if any) and checks every file against
    /// it, reads every header. Blocking (it reads each file once).
    pub fn open(dir: &Path) -> Result<ExportSource, SourceError> {
        if !dir.is_dir() {
            return Err(SourceError::Config(format!(
                "export folder {} does not exist or is not a folder",
                dir.display()
            )));
        }
        let manifest = Manifest::read(dir)?;
        let mut csv_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| SourceError::Config(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries {
            let path = entry
                .map_err(|e| SourceError::Config(format!("cannot list {}: {e}", dir.display())))?
                .path();
            let is_csv = path
                .extension()
                .map(|e| e.eq_ignore_ascii_case("csv"))
                .unwrap_or(false);
            if is_csv && path.is_file() {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                csv_files.insert(stem, path);
            }
        }

        let manifest_place = dir.join("manifest.json").display().to_string();
        let mut tables = Vec::new();
        if let Some(manifest) = &manifest {
            for (name, entry) in &manifest.tables {
                if !csv_files.contains_key(name) && entry.rows > 0 {
                    return Err(SourceError::Malformed {
                        place: manifest_place.clone(),
                        message: format!(
                            "lists {name}.csv with {} rows, but the file is missing",
                            entry.rows
                        ),
                    });
                }
            }
            if let Some(unlisted) = csv_files
                .keys()
                .find(|name| !manifest.tables.contains_key(*name))
            {
                return Err(SourceError::Malformed {
                    place: manifest_place.clone(),
                    message: format!("{unlisted}.csv is in the folder but not in the manifest"),
                });
            }
        }
        for (name, path) in &csv_files {
            let facts = file_facts(path)?;
            if let Some(entry) = manifest.as_ref().and_then(|m| m.tables.get(name)) {
                if entry.rows != facts.rows || !entry.blake3.eq_ignore_ascii_case(&facts.blake3) {
                    return Err(SourceError::Malformed {
                        place: path.display().to_string(),
                        message: format!(
                            "does not match manifest.json: the manifest says {} rows and BLAKE3 {}, the file has {} rows and BLAKE3 {}",
                            entry.rows, entry.blake3, facts.rows, facts.blake3
                        ),
                    });
                }
            }
            let header = read_header(path)?;
            tables.push(ExportTable {
                name: name.clone(),
                path: path.clone(),
                file_name: path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default()
                    .to_string(),
                header,
                rows: facts.rows,
                blake3: facts.blake3,
                reference: reference_table(name),
            });
        }
        // Reference tables first, in dependency order; others after, by name.
        let order = |t: &ExportTable| {
            reference_tables()
                .iter()
                .position(|r| r.name.eq_ignore_ascii_case(&t.name))
                .unwrap_or(usize::MAX)
        };
        tables.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name.cmp(&b.name)));
        // Folder, table names and counts only: never a value (patient data).
        tracing::info!(
            folder = %dir.display(),
            tables = tables.len(),
            rows = tables.iter().map(|t| t.rows).sum::<u64>(),
            manifest = manifest.is_some(),
            "export folder checked"
        );
        Ok(ExportSource {
            dir: dir.to_path_buf(),
            tables: Arc::new(tables),
            has_manifest: manifest.is_some(),
        })
    }

    /// Whether the folder had a `manifest.json` (and so was checked against it).
    pub fn has_manifest(&self) -> bool {
        self.has_manifest
    }

    fn table(&self, entity: &str) -> Option<&ExportTable> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(entity))
    }

    /// The folder allows a table with no rows to be absent: a reference table is then empty.
    fn absent_reference_table(&self, entity: &str) -> Result<(), SourceError> {
        if reference_table(entity).is_some() {
            Ok(())
        } else {
            Err(SourceError::MissingTable {
                table: entity.to_string(),
                place: self.describe(),
            })
        }
    }
}

fn read_header(path: &Path) -> Result<Vec<String>, SourceError> {
    let place = path.display().to_string();
    let file = File::open(path).map_err(|e| SourceError::Malformed {
        place: place.clone(),
        message: format!("cannot open: {e}"),
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(QuotedEmptyMarker::new(BufReader::new(file)));
    let header = reader.byte_headers().map_err(|e| SourceError::Malformed {
        place: format!("{place} line 1"),
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| SourceError::Malformed {
                place: format!("{place} line 1"),
                message: format!("header field {} is not valid UTF-8", i + 1),
            })?
            .trim()
            .to_string();
        if name.is_empty() || raw == QUOTED_EMPTY {
            return Err(SourceError::Malformed {
                place: format!("{place} line 1"),
                message: format!("header field {} has no column name", i + 1),
            });
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(SourceError::Malformed {
                place: format!("{place} line 1 column {name}"),
                message: "the column name appears twice".into(),
            });
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err(SourceError::Malformed {
            place: place.clone(),
            message: "no header row".into(),
        });
    }
    Ok(names)
}

#[async_trait]
impl Source for ExportSource {
    fn describe(&self) -> String {
        format!("export:{}", self.dir.display())
    }

    async fn discover(&self) -> Result<Inventory, SourceError> {
        Ok(Inventory {
            tables: self.tables.iter().map(ExportTable::info).collect(),
        })
    }

    async fn count(&self, entity: &str) -> Result<u64, SourceError> {
        match self.table(entity) {
            Some(table) => Ok(table.rows),
            None => self.absent_reference_table(entity).map(|_| 0),
        }
    }

    async fn stream(
        &self,
        entity: &str,
        since: Option<Watermark>,
    ) -> Result<SourceStream, SourceError> {
        let Some(table) = self.table(entity).cloned() else {
            self.absent_reference_table(entity)?;
            return Ok(futures::stream::empty().boxed());
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(CHANNEL_BATCHES);
        tokio::task::spawn_blocking(move || {
            let mut batcher = Batcher {
                sender,
                batch: Vec::with_capacity(BATCH_ROWS),
            };
            read_table(&table, since, &mut batcher);
            batcher.flush();
        });
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|batch| (batch, receiver))
            })
            .flat_map(futures::stream::iter)
            .boxed(),
        )
    }
}

type Item = Result<SourceItem, SourceError>;

/// Collects items into batches for the channel.
struct Batcher {
    sender: tokio::sync::mpsc::Sender<Vec<Item>>,
    batch: Vec<Item>,
}

impl Batcher {
    /// Queues one item; false when the consumer has gone away.
    fn push(&mut self, item: Item) -> bool {
        self.batch.push(item);
        self.batch.len() < BATCH_ROWS || self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ROWS));
        self.sender.blocking_send(batch).is_ok()
    }
}

/// Reads one table and sends its items; stops early only if the consumer went away.
fn read_table(table: &ExportTable, since: Option<Watermark>, sender: &mut Batcher) {
    let place = table.path.display().to_string();
    let file = match File::open(&table.path) {
        Ok(file) => file,
        Err(e) => {
            sender.push(Err(SourceError::Interrupted {
                table: table.name.clone(),
                rows_read: 0,
                message: format!("cannot reopen {place}: {e}"),
            }));
            return;
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(QuotedEmptyMarker::new(Hashing::new(
            BufReader::with_capacity(256 * 1024, file),
        )));
    let types: Vec<Option<SqlType>> = table.header.iter().map(|h| table.column_type(h)).collect();
    let not_null: Vec<bool> = table
        .header
        .iter()
        .map(|h| {
            table
                .reference
                .and_then(|t| t.column(h))
                .map(|c| !c.nullable)
                .unwrap_or(false)
        })
        .collect();
    let key_columns: Vec<usize> = table
        .primary_key()
        .iter()
        .filter_map(|k| table.header.iter().position(|h| h == k))
        .collect();
    let modified = table
        .modified_column()
        .and_then(|m| table.header.iter().position(|h| *h == m));
    let key_names: Vec<String> = key_columns
        .iter()
        .map(|k| table.header[*k].clone())
        .collect();
    let mut previous_key: Option<KeyOrder> = None;
    let mut previous_display = String::new();
    let mut record = csv::ByteRecord::new();
    let mut rows_read = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                sender.push(Err(malformed(table, &place, error)));
                return;
            }
        }
        rows_read += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let item = type_row(
            table,
            &record,
            line,
            &types,
            &not_null,
            &key_columns,
            modified,
        );
        if let SourceItem::Unreadable { place, .. } = &item {
            tracing::warn!(table = %table.name, %place, "row does not fit its types; handed on for quarantine");
        }
        if let SourceItem::Record(r) = &item {
            let key = KeyOrder::of(r, &key_names);
            if let Some(previous) = &previous_key {
                if key <= *previous {
                    let what = if key == *previous {
                        "a duplicate primary key"
                    } else {
                        "out of primary-key order"
                    };
                    sender.push(Err(SourceError::Malformed {
                        place: format!("{place} line {line}"),
                        message: format!(
                            "row {} is {what} (after {}); the export must be sorted by {}",
                            r.key,
                            previous_display,
                            key_names.join(", ")
                        ),
                    }));
                    return;
                }
            }
            if !key_names.is_empty() {
                previous_key = Some(key);
                previous_display = r.key.to_string();
            }
        }
        if let (Some(since), SourceItem::Record(r)) = (since, &item) {
            if modified.is_some()
                && r.modified_at
                    .map(|m| m <= since.modified_after)
                    .unwrap_or(false)
            {
                continue;
            }
        }
        if !sender.push(Ok(item)) {
            return;
        }
    }
    tracing::debug!(table = %table.name, rows = rows_read, "export table read");
    // The file must still be the one that was checked: same rows, same bytes.
    let now = reader.into_inner().into_inner().finish();
    if now.as_deref().ok() != Some(table.blake3.as_str()) {
        sender.push(Err(SourceError::Interrupted {
            table: table.name.clone(),
            rows_read,
            message: format!(
                "{place} changed while it was read (its BLAKE3 no longer matches the checked file)"
            ),
        }));
    } else if rows_read != table.rows {
        sender.push(Err(SourceError::Interrupted {
            table: table.name.clone(),
            rows_read,
            message: format!(
                "{place} changed since it was checked: {} rows were counted then",
                table.rows
            ),
        }));
    }
}

fn malformed(table: &ExportTable, place: &str, error: csv::Error) -> SourceError {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let line = pos.as_ref().map(|p| p.line()).unwrap_or(0);
            let (expected, found) = (*expected_len as usize, *len as usize);
            let column = if found < expected {
                format!("column {} (and after) missing", table.header[found])
            } else {
                format!(
                    "{} extra field(s) after column {}",
                    found - expected,
                    table.header[expected - 1]
                )
            };
            SourceError::Malformed {
                place: format!(
                    "{place} line {line} column {}",
                    table
                        .header
                        .get(found.min(expected))
                        .or(table.header.last())
                        .cloned()
                        .unwrap_or_default()
                ),
                message: format!("{found} fields where the header has {expected}: {column}"),
            }
        }
        _ => SourceError::Malformed {
            place: place.to_string(),
            message: error.to_string(),
        },
    }
}

/// A primary key as SQL Server orders it: numbers numerically, text
/// case-insensitively (the default collation), column by column.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KeyOrder(Vec<KeyPart>);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart {
    Int(i64),
    Text(String),
    Other(String),
}

impl KeyOrder {
    fn of(record: &SourceRecord, key_names: &[String]) -> KeyOrder {
        KeyOrder(
            key_names
                .iter()
                .map(|k| match record.fields.get(k) {
                    Some(Value::Int(i)) => KeyPart::Int(*i),
                    Some(Value::Text(t)) => KeyPart::Text(t.to_lowercase()),
                    other => KeyPart::Other(other.map(Value::to_string).unwrap_or_default()),
                })
                .collect(),
        )
    }
}

fn type_row(
    table: &ExportTable,
    record: &csv::ByteRecord,
    line: u64,
    types: &[Option<SqlType>],
    not_null: &[bool],
    key_columns: &[usize],
    modified: Option<usize>,
) -> SourceItem {
    let mut fields = BTreeMap::new();
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut values: Vec<Value> = Vec::with_capacity(record.len());
    for (i, raw) in record.iter().enumerate() {
        let value = if raw.is_empty() {
            if not_null[i] {
                problems.push((i, "empty (NULL) in a NOT NULL column".into()));
            }
            Ok(Value::Null)
        } else if raw == QUOTED_EMPTY {
            format::parse_field(types[i], "")
        } else {
            match std::str::from_utf8(raw) {
                Ok(text) => format::parse_field(types[i], text),
                Err(_) => Err("not valid UTF-8".to_string()),
            }
        };
        match value {
            Ok(v) => values.push(v),
            Err(reason) => {
                problems.push((i, reason));
                values.push(Value::Null);
            }
        }
    }
    let key_ok = key_columns
        .iter()
        .all(|k| !problems.iter().any(|(i, _)| i == k) && !values[*k].is_null());
    let key = (key_ok && !key_columns.is_empty())
        .then(|| SourceKey::from_parts(key_columns.iter().map(|k| values[*k].to_string())));
    if !problems.is_empty() {
        let columns: Vec<&str> = problems
            .iter()
            .map(|(i, _)| table.header[*i].as_str())
            .collect();
        let reason = problems
            .iter()
            .map(|(i, r)| format!("{}: {r}", table.header[*i]))
            .collect::<Vec<_>>()
            .join("; ");
        return SourceItem::Unreadable {
            entity: table.name.clone(),
            key,
            place: format!(
                "{} line {line} column {}",
                table.file_name,
                columns.join(", ")
            ),
            reason,
        };
    }
    let modified_at = modified.and_then(|m| match &values[m] {
        Value::DateTime(t) => Some(*t),
        _ => None,
    });
    for (name, value) in table.header.iter().zip(values) {
        fields.insert(name.clone(), value);
    }
    SourceItem::Record(SourceRecord {
        entity: table.name.clone(),
        // Tables without a known key are keyed by their line: stable for the same file.
        key: key.unwrap_or_else(|| SourceKey::new(format!("line{line}"))),
        fields,
        modified_at,
    })
}

#[cfg(test)]
mod tests;
