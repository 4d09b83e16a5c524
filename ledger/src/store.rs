//! The storage behind the ledger: a small trait, and its sled implementation.
//! Nothing outside this module knows sled exists.
//!
//! Layout (three sled trees):
//! - tree `events`: `0x00 ‖ first seq (u64 BE)` → a chunk of consecutive events, each
//!   `len (u32 LE) ‖ hash (32 bytes) ‖ encoded record` (`len` counts hash and record).
//!   Chunking keeps the per-event storage overhead near zero; a chunk holds
//!   the events of one commit, split at [`CHUNK_BYTES`].
//!   and `0x01` → the chain head (`seq`, `hash`);
//! - tree `projections`: key → projection value (derived; rebuildable), plus
//!   the marker of the seq they have applied up to;
//! - tree `blobs`: `digest` → bytes (content-addressed: the same bytes are stored once).
//!
//! A commit writes blobs, then events with the head (one sled batch, applied
//! atomically), then projections with their marker (one batch). sled's log
//! recovers a prefix of what was written, so after a crash: a blob without
//! its event is harmless, an event never lacks its blob, and projections are
//! at most behind the events (the ledger replays the gap on open), never ahead.
//! Separate trees keep the large chunk values out of the projection leaves.

use std::path::{Path, PathBuf};

use crate::error::{LedgerError, Result};
use crate::event::Digest;

/// A chunk is closed once it holds this many bytes.
pub(crate) const CHUNK_BYTES: usize = 16 * 1024;

/// One atomic commit: event chunks, the projection writes they cause, the new head, and new blobs.
#[derive(Default)]
pub(crate) struct Commit {
    pub chunks: Vec<(u64, Vec<u8>)>,
    pub projections: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub head: Option<(u64, Digest)>,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

/// Visits (key, value); returns false to stop.
pub(crate) type KeyValueVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// What the ledger needs of a store.
pub(crate) trait Store: Send + Sync {
    fn commit(&self, commit: Commit) -> Result<()>;
    /// Makes every earlier commit durable.
    fn flush(&self) -> Result<()>;
    fn head(&self) -> Result<Option<(u64, Digest)>>;
    /// The chunk holding `seq`: (first seq, bytes).
    fn chunk_containing(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>>;
    /// The last chunk: (first seq, bytes).
    fn last_chunk(&self) -> Result<Option<(u64, Vec<u8>)>>;
    /// Calls `visit(first seq, chunk bytes)` for every chunk that may hold seqs ≥ `from`, in order, until it returns false.
    fn scan_chunks(
        &self,
        from: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()>;
    fn projection(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan_projections(&self, prefix: &[u8], visit: &mut KeyValueVisitor) -> Result<()>;
    fn clear_projections(&self) -> Result<()>;
    fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    /// (count, total bytes) of blobs.
    fn blob_stats(&self) -> Result<(u64, u64)>;
    /// (chunks, total bytes) of the event log.
    fn event_log_stats(&self) -> Result<(u64, u64)>;
    /// Replaces the whole event log and head (tamper tests only: the ledger never rewrites events).
    #[cfg(test)]
    fn rewrite_events(
        &self,
        chunks: Vec<(u64, Vec<u8>)>,
        head: Option<(u64, Digest)>,
    ) -> Result<()>;
}
const CHUNK: u8 = 0x00;
const HEAD: u8 = 0x01;

fn chunk_key(seq: u64) -> [u8; 9] {
    let mut key = [CHUNK; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) struct SledStore {
    path: PathBuf,
    db: sled::Db,
    main: sled::Tree,
    projections: sled::Tree,
    blobs: sled::Tree,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(path, e))?;
        let main = db.open_tree("events").map_err(|e| open_error(path, e))?;
        let projections = db
            .open_tree("projections")
            .map_err(|e| open_error(path, e))?;
        let blobs = db.open_tree("blobs").map_err(|e| open_error(path, e))?;
        Ok(SledStore {
            path: path.to_path_buf(),
            db,
            main,
            projections,
            blobs,
        })
    }

    fn err(&self, e: sled::Error) -> LedgerError {
        store_error(&self.path, e)
    }

    fn chunk_seq(&self, key: &[u8]) -> Result<u64> {
        if key.len() != 9 {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail: format!("event chunk key of {} bytes", key.len()),
            });
        }
        Ok(u64::from_be_bytes(
            key[1..9].try_into().expect("9-byte key"),
        ))
    }
}

fn open_error(path: &Path, e: sled::Error) -> LedgerError {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.raw_os_error() == Some(11) =>
        {
            LedgerError::Unavailable {
                path: path.to_path_buf(),
                detail: io.to_string(),
            }
        }
        other => store_error(path, other),
    }
}

fn store_error(path: &Path, e: sled::Error) -> LedgerError {
    match e {
        sled::Error::Corruption { at, .. } => LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "sled reports corruption{}",
                at.map(|a| format!(" at {a:?}")).unwrap_or_default()
            ),
        },
        sled::Error::Io(io) => LedgerError::io(format!("ledger store {}", path.display()), io),
        other => LedgerError::Store(other.to_string()),
    }
}

impl Store for SledStore {
    fn commit(&self, commit: Commit) -> Result<()> {
        if !commit.blobs.is_empty() {
            let mut blobs = sled::Batch::default();
            for (digest, bytes) in commit.blobs {
                blobs.insert(&digest.0, bytes);
            }
            self.blobs.apply_batch(blobs).map_err(|e| self.err(e))?;
        }
        if !commit.chunks.is_empty() || commit.head.is_some() {
            let mut batch = sled::Batch::default();
            for (seq, bytes) in commit.chunks {
                batch.insert(&chunk_key(seq), bytes);
            }
            if let Some((seq, hash)) = commit.head {
                let mut head = Vec::with_capacity(40);
                head.extend_from_slice(&seq.to_be_bytes());
                head.extend_from_slice(&hash.0);
                batch.insert(&[HEAD], head);
            }
            self.main.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        if !commit.projections.is_empty() {
            let mut batch = sled::Batch::default();
            for (key, value) in commit.projections {
                match value {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
            self.projections
                .apply_batch(batch)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    fn head(&self) -> Result<Option<(u64, Digest)>> {
        match self.main.get([HEAD]).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) if v.len() == 40 => {
                let seq = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                let hash = Digest(v[8..].try_into().expect("32 bytes"));
                Ok(Some((seq, hash)))
            }
            Some(v) => Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail: format!("head record has {} bytes, expected 40", v.len()),
            }),
        }
    }

    fn chunk_containing(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>> {
        match self.main.range(chunk_key(0)..=chunk_key(seq)).next_back() {
            None => Ok(None),
            Some(Ok((k, v))) => Ok(Some((self.chunk_seq(&k)?, v.to_vec()))),
            Some(Err(e)) => Err(self.err(e)),
        }
    }

    fn last_chunk(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.chunk_containing(u64::MAX)
    }

    fn scan_chunks(
        &self,
        from: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let start = match self.main.range(chunk_key(0)..=chunk_key(from)).next_back() {
            Some(Ok((k, _))) => self.chunk_seq(&k)?,
            Some(Err(e)) => return Err(self.err(e)),
            None => 0,
        };
        for item in self.main.range(chunk_key(start)..=chunk_key(u64::MAX)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !visit(self.chunk_seq(&k)?, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn projection(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .projections
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn scan_projections(&self, prefix: &[u8], visit: &mut KeyValueVisitor) -> Result<()> {
        for item in self.projections.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn clear_projections(&self) -> Result<()> {
        self.projections.clear().map_err(|e| self.err(e))
    }

    fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .get(digest.0)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn blob_stats(&self) -> Result<(u64, u64)> {
        let mut count = 0;
        let mut bytes = 0;
        for item in self.blobs.iter() {
            let (_, v) = item.map_err(|e| self.err(e))?;
            count += 1;
            bytes += v.len() as u64;
        }
        Ok((count, bytes))
    }

    fn event_log_stats(&self) -> Result<(u64, u64)> {
        let mut count = 0;
        let mut bytes = 0;
        for item in self.main.range(chunk_key(0)..=chunk_key(u64::MAX)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            count += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((count, bytes))
    }

    #[cfg(test)]
    fn rewrite_events(
        &self,
        chunks: Vec<(u64, Vec<u8>)>,
        head: Option<(u64, Digest)>,
    ) -> Result<()> {
        self.main.clear().map_err(|e| self.err(e))?;
        self.commit(Commit {
            chunks,
            head,
            ..Commit::default()
        })?;
        self.flush()
    }
}
