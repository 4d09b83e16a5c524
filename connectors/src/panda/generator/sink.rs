//! Where generated rows go: one CSV file per table (hashed with BLAKE3 as it
//! is written, for the manifest) and, optionally, the SQLite practice
//! database. Rows are streamed straight to disk; nothing is held back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cutover_engine::Value;

use super::GenerateError;
use crate::panda::export::format::{field_text, write_record};
use crate::panda::export::manifest::{Manifest, ManifestEntry};
use crate::panda::reference::TableDef;
use crate::panda::sqlite::PracticeDb;

/// A writer that feeds every byte it writes into a BLAKE3 hasher.
struct HashingWriter {
    file: File,
    hasher: blake3::Hasher,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

struct CsvTable {
    def: &'static TableDef,
    path: PathBuf,
    out: BufWriter<HashingWriter>,
    rows: u64,
}

/// The output of one generation run.
pub struct PracticeSink {
    tables: Vec<CsvTable>,
    db: Option<(PracticeDb, PathBuf)>,
    line: Vec<u8>,
    export_dir: PathBuf,
}

impl PracticeSink {
    /// Creates `export_dir` (one header-only CSV per table) and, with `sqlite`, the database.
    pub fn create(
        export_dir: &Path,
        sqlite: Option<&Path>,
        tables: &'static [TableDef],
    ) -> Result<PracticeSink, GenerateError> {
        std::fs::create_dir_all(export_dir).map_err(|e| GenerateError::io(export_dir, e))?;
        let mut csv_tables = Vec::with_capacity(tables.len());
        for def in tables {
            let path = export_dir.join(format!("{}.csv", def.name));
            let file = File::create(&path).map_err(|e| GenerateError::io(&path, e))?;
            let mut out = BufWriter::with_capacity(
                256 * 1024,
                HashingWriter {
                    file,
                    hasher: blake3::Hasher::new(),
                },
            );
            let mut header = Vec::new();
            write_record(
                &mut header,
                def.columns.iter().map(|c| Some(c.name.as_str().into())),
            );
            out.write_all(&header)
                .map_err(|e| GenerateError::io(&path, e))?;
            csv_tables.push(CsvTable {
                def,
                path,
                out,
                rows: 0,
            });
        }
        let db = match sqlite {
            Some(path) => Some((
                PracticeDb::create(path, tables).map_err(|e| GenerateError::Sqlite {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?,
                path.to_path_buf(),
            )),
            None => None,
        };
        Ok(PracticeSink {
            tables: csv_tables,
            db,
            line: Vec::with_capacity(4096),
            export_dir: export_dir.to_path_buf(),
        })
    }

    fn index(&self, table: &str) -> usize {
        self.tables
            .iter()
            .position(|t| t.def.name == table)
            .unwrap_or_else(|| panic!("generator writes unknown table {table}"))
    }

    /// Writes one row given in the table's column order.
    pub fn row(&mut self, table: &str, values: Vec<Value>) -> Result<(), GenerateError> {
        let index = self.index(table);
        self.write_at(index, values)
    }

    /// Writes one row given as (column, value) pairs; every column must be named exactly once.
    pub fn named(&mut self, table: &str, pairs: &[(&str, Value)]) -> Result<(), GenerateError> {
        let index = self.index(table);
        let def = self.tables[index].def;
        assert_eq!(
            pairs.len(),
            def.columns.len(),
            "table {table}: {} values for {} columns",
            pairs.len(),
            def.columns.len()
        );
        let values = def
            .columns
            .iter()
            .map(|c| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == c.name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("table {table}: no value for column {}", c.name))
            })
            .collect();
        self.write_at(index, values)
    }

    fn write_at(&mut self, index: usize, values: Vec<Value>) -> Result<(), GenerateError> {
        let table = &mut self.tables[index];
        debug_assert_eq!(
            values.len(),
            table.def.columns.len(),
            "row width of {}",
            table.def.name
        );
        self.line.clear();
        write_record(&mut self.line, values.iter().map(field_text));
        table
            .out
            .write_all(&self.line)
            .map_err(|e| GenerateError::io(&table.path, e))?;
        table.rows += 1;
        if let Some((db, path)) = &self.db {
            db.insert(table.def, &values)
                .map_err(|e| GenerateError::Sqlite {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Flushes every file, writes `manifest.json` and commits the database.
    pub fn finish(self) -> Result<Manifest, GenerateError> {
        let mut manifest = Manifest {
            tables: BTreeMap::new(),
        };
        for table in self.tables {
            let hashing = table
                .out
                .into_inner()
                .map_err(|e| GenerateError::io(&table.path, e.into_error()))?;
            hashing
                .file
                .sync_all()
                .map_err(|e| GenerateError::io(&table.path, e))?;
            manifest.tables.insert(
                table.def.name.clone(),
                ManifestEntry {
                    rows: table.rows,
                    blake3: hashing.hasher.finalize().to_hex().to_string(),
                },
            );
        }
        let path = self.export_dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
        std::fs::write(&path, text + "\n").map_err(|e| GenerateError::io(&path, e))?;
        if let Some((db, path)) = self.db {
            db.finish().map_err(|e| GenerateError::Sqlite {
                path,
                message: e.to_string(),
            })?;
        }
        Ok(manifest)
    }
}
