//! `manifest.json` of an export folder: each file's row count and BLAKE3
//! hash, checked before anything is read so a truncated or altered export is
//! caught up front.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use cutover_engine::SourceError;
use serde::{Deserialize, Serialize};

use super::quoting::QuotedEmptyMarker;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub rows: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tables: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Reads `dir/manifest.json`; `Ok(None)` when the export has none (it is optional).
    pub fn read(dir: &Path) -> Result<Option<Manifest>, SourceError> {
        let path = dir.join("manifest.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SourceError::Malformed {
                    place: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SourceError::Malformed {
                place: path.display().to_string(),
                message: format!("not a valid manifest: {e}"),
            })
    }
}

/// What one pass over a CSV file finds: its BLAKE3 and its data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub blake3: String,
    pub rows: u64,
}

/// A reader that hashes every byte it passes on.
pub struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    /// Reads what is left, then returns the hex BLAKE3 of everything read.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finalize().to_hex().to_string())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes `path` and counts its CSV records (header excluded) in one pass.
pub fn file_facts(path: &Path) -> Result<FileFacts, SourceError> {
    let place = path.display().to_string();
    let file = File::open(path).map_err(|e| SourceError::Malformed {
        place: place.clone(),
        message: format!("cannot open: {e}"),
    })?;
    let mut hashing = Hashing {
        inner: file,
        hasher: blake3::Hasher::new(),
    };
    let rows = {
        let marked = QuotedEmptyMarker::new(&mut hashing);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(marked);
        let mut record = csv::ByteRecord::new();
        let mut rows = 0u64;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => rows += 1,
                Ok(false) => break,
                Err(e) => {
                    return Err(SourceError::Malformed {
                        place,
                        message: e.to_string(),
                    })
                }
            }
        }
        rows
    };
    // The CSV reader may stop before the last bytes (e.g. a final newline); hash them too.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| SourceError::Malformed {
        place,
        message: e.to_string(),
    })?;
    Ok(FileFacts {
        blake3: hashing.hasher.finalize().to_hex().to_string(),
        rows,
    })
}
