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
//!   the marker of the seq they have applied up to (see projection.rs for what
//!   is stored there and what is answered from the events instead);
//! - tree `packs` (store layout 2): blob payloads filed under the seq of the
//!   commit that brought them, so every key is appended at the end of the tree:
//!   - `D ‖ seq (u64 BE) ‖ n (u32 BE)` → the commit's blob directory, one entry per
//!     blob: `digest (32) ‖ part (u32 LE) ‖ offset (u32 LE) ‖ len (u32 LE)`;
//!   - `P ‖ seq ‖ n ‖ part (u32 BE)` → up to [`PACK_BYTES`] of blob bytes back to back;
//!   - `I ‖ digest` → `seq ‖ n`: the digest index, kept only for pinned blobs
//!     (maps), which are looked up without an event;
//!
//!   `seq` is the first seq of the commit (head + 1 when it was written) and `n`
//!   counts commits filed under the same seq (a blob-only flush, then the append).
//! - tree `blobs` (store layout 1, read only): `digest` → bytes. Ledgers written
//!   before layout 2 keep their blobs here; nothing new is written to it.
//!
//! Why packs: a sled insert under a random key (a digest) cost 15–30 µs here,
//! one under the next sequential key a few µs, and one 64 KiB pack holds
//! ~100 blobs. Blobs are found from the event that names them (its seq bounds
//! where to look: the directories at or before it, newest first), pinned blobs
//! by the index, anything else by a scan of the directories (slow; for tools
//! and tests). Content addressing is kept (a blob is named and checked by its
//! BLAKE3) but the same bytes put in two commits are stored twice.
//!
//! A commit writes blobs (one sled batch), then events with the head (one
//! batch, applied atomically), then projections with their marker (one
//! batch). sled's log recovers a prefix of what was written, so after a
//! crash: a blob without its event is harmless, an event never lacks its
//! blob, and projections are at most behind the events (the ledger replays
//! the gap on open), never ahead. Separate trees keep the large chunk values
//! out of the projection leaves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{LedgerError, Result};
use crate::event::Digest;

/// A chunk is closed once it holds this many bytes.
pub(crate) const CHUNK_BYTES: usize = 16 * 1024;

/// A blob pack is closed once it holds this many bytes (a larger blob gets a pack of its own).
pub(crate) const PACK_BYTES: usize = 64 * 1024;

/// One atomic commit: event chunks, the projection writes they cause, the new head, and new blobs.
#[derive(Default)]
pub(crate) struct Commit {
    pub chunks: Vec<(u64, Vec<u8>)>,
    pub projections: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub head: Option<(u64, Digest)>,
    /// New blobs (distinct digests), filed under `blob_seq`.
    pub blobs: Vec<(Digest, Vec<u8>)>,
    /// The seq the blobs are filed under: the first seq of the commit (head + 1).
    pub blob_seq: u64,
    /// Digests among `blobs` to enter in the digest index (blobs looked up without an event).
    pub pinned: Vec<Digest>,
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
    /// A blob by digest: the digest index and the layout-1 tree, then the directory locator,
    /// then (a blob the locator cannot place) a scan of every directory.
    fn blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    /// A blob named by the event `seq`: the directories filed at or before `seq`, newest
    /// first (the blob was put before its event), then as [`Store::blob`].
    fn blob_before(&self, seq: u64, digest: &Digest) -> Result<Option<Vec<u8>>>;
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

const DIRECTORY: u8 = b'D';
const INDEX: u8 = b'I';
const PACK: u8 = b'P';
const DIRECTORY_ENTRY: usize = 32 + 12;

fn directory_key(seq: u64, n: u32) -> [u8; 13] {
    let mut key = [DIRECTORY; 13];
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..].copy_from_slice(&n.to_be_bytes());
    key
}

fn pack_key(seq: u64, n: u32, part: u32) -> [u8; 17] {
    let mut key = [PACK; 17];
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..13].copy_from_slice(&n.to_be_bytes());
    key[13..].copy_from_slice(&part.to_be_bytes());
    key
}

fn index_key(digest: &Digest) -> [u8; 33] {
    let mut key = [INDEX; 33];
    key[1..].copy_from_slice(&digest.0);
    key
}

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
    /// Layout-1 blobs (digest → bytes), read only.
    blobs: sled::Tree,
    packs: sled::Tree,
    /// Where the blobs filed in directories sit, learned on the first lookup by digest
    /// alone (reconcile, sample and rollback read thousands of payloads that way; a scan
    /// per lookup made them quadratic). Built lazily: `run` never pays for it.
    locator: Mutex<Locator>,
}

/// Digest prefix → directory, for every directory up to `through`. Directories are never
/// rewritten, so the map only grows; a prefix collision or a directory filed out of order
/// (after a crash) costs a fallback scan, never a wrong answer: bytes are checked against
/// their digest by the ledger.
#[derive(Default)]
struct Locator {
    through: Option<(u64, u32)>,
    at: HashMap<u64, (u64, u32)>,
}

fn digest_prefix(digest: &[u8]) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// sled's page cache, in MiB, unless `CUTOVER_LEDGER_CACHE_MB` says otherwise. 16 MiB
/// ran a 5,000-patient practice as fast as 64 MiB with 40 MB less peak RSS (BENCHMARKS.md). sled
/// counts serialized bytes; the decoded nodes it holds take about twice that.
const DEFAULT_CACHE_MB: u64 = 16;

fn cache_bytes() -> u64 {
    std::env::var("CUTOVER_LEDGER_CACHE_MB")
        .ok()
        .and_then(|mb| mb.trim().parse::<u64>().ok())
        .filter(|mb| *mb > 0)
        .unwrap_or(DEFAULT_CACHE_MB)
        * 1024
        * 1024
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes())
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(path, e))?;
        let main = db.open_tree("events").map_err(|e| open_error(path, e))?;
        let projections = db
            .open_tree("projections")
            .map_err(|e| open_error(path, e))?;
        let blobs = db.open_tree("blobs").map_err(|e| open_error(path, e))?;
        let packs = db.open_tree("packs").map_err(|e| open_error(path, e))?;
        Ok(SledStore {
            path: path.to_path_buf(),
            db,
            main,
            projections,
            blobs,
            packs,
            locator: Mutex::new(Locator::default()),
        })
    }

    fn directory_id(&self, key: &[u8]) -> Result<(u64, u32)> {
        if key.len() != 13 || key[0] != DIRECTORY {
            return Err(self.corrupt(format!("blob directory key of {} bytes", key.len())));
        }
        Ok((
            u64::from_be_bytes(key[1..9].try_into().expect("8 bytes")),
            u32::from_be_bytes(key[9..13].try_into().expect("4 bytes")),
        ))
    }

    fn corrupt(&self, detail: String) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Writes a commit's blobs: packs of at most [`PACK_BYTES`], their directory, and index
    /// entries for the pinned ones, in one batch.
    fn write_blobs(
        &self,
        seq: u64,
        blobs: Vec<(Digest, Vec<u8>)>,
        pinned: &[Digest],
    ) -> Result<()> {
        // The next free n under this seq, read from the tree: a blob-only flush
        // may have filed blobs under it already, and after a crash blobs whose
        // events were lost may sit under this seq or later ones (orphans that no
        // surviving event names; they are never overwritten, and a lookup that
        // meets one gets bytes checked against their digest all the same).
        let n = match self
            .packs
            .range(directory_key(seq, 0)..=directory_key(seq, u32::MAX))
            .next_back()
        {
            None => 0,
            Some(Ok((k, _))) => self.directory_id(&k)?.1 + 1,
            Some(Err(e)) => return Err(self.err(e)),
        };
        let mut batch = sled::Batch::default();
        let mut directory = Vec::with_capacity(blobs.len() * DIRECTORY_ENTRY);
        let mut part = 0u32;
        let mut pack: Vec<u8> = Vec::with_capacity(PACK_BYTES);
        for (digest, bytes) in &blobs {
            if !pack.is_empty() && pack.len() + bytes.len() > PACK_BYTES {
                batch.insert(&pack_key(seq, n, part), std::mem::take(&mut pack));
                part += 1;
            }
            directory.extend_from_slice(&digest.0);
            directory.extend_from_slice(&part.to_le_bytes());
            directory.extend_from_slice(&(pack.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            pack.extend_from_slice(bytes);
        }
        if !pack.is_empty() {
            batch.insert(&pack_key(seq, n, part), pack);
        }
        batch.insert(&directory_key(seq, n), directory);
        for digest in pinned {
            if blobs.iter().any(|(d, _)| d == digest) {
                let mut at = Vec::with_capacity(12);
                at.extend_from_slice(&seq.to_be_bytes());
                at.extend_from_slice(&n.to_be_bytes());
                batch.insert(&index_key(digest)[..], at);
            }
        }
        self.packs.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Finds `digest` in one directory and reads its bytes.
    fn blob_in_directory(
        &self,
        (seq, n): (u64, u32),
        directory: &[u8],
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>> {
        if !directory.len().is_multiple_of(DIRECTORY_ENTRY) {
            return Err(self.corrupt(format!(
                "blob directory {seq}/{n} has {} bytes",
                directory.len()
            )));
        }
        for entry in directory.chunks_exact(DIRECTORY_ENTRY) {
            if entry[..32] != digest.0 {
                continue;
            }
            let word = |i: usize| u32::from_le_bytes(entry[i..i + 4].try_into().expect("4 bytes"));
            let (part, offset, len) = (word(32), word(36) as usize, word(40) as usize);
            let pack = self
                .packs
                .get(pack_key(seq, n, part))
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupt(format!("blob pack {seq}/{n}/{part} is missing")))?;
            if pack.len() < offset + len {
                return Err(self.corrupt(format!(
                    "blob pack {seq}/{n}/{part} is shorter than its directory says"
                )));
            }
            return Ok(Some(pack[offset..offset + len].to_vec()));
        }
        Ok(None)
    }

    /// The digest index (pinned blobs), then the layout-1 tree.
    fn indexed_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(at) = self.packs.get(index_key(digest)).map_err(|e| self.err(e))? {
            if at.len() != 12 {
                return Err(self.corrupt(format!("blob index entry of {} bytes", at.len())));
            }
            let seq = u64::from_be_bytes(at[..8].try_into().expect("8 bytes"));
            let n = u32::from_be_bytes(at[8..].try_into().expect("4 bytes"));
            if let Some(directory) = self
                .packs
                .get(directory_key(seq, n))
                .map_err(|e| self.err(e))?
            {
                if let Some(bytes) = self.blob_in_directory((seq, n), &directory, digest)? {
                    return Ok(Some(bytes));
                }
            }
        }
        Ok(self
            .blobs
            .get(digest.0)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// A blob by digest through the [`Locator`], brought up to date with the directories
    /// filed since it last looked. `None` means the locator does not know it.
    fn located_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let mut locator = self.locator.lock().unwrap_or_else(|p| p.into_inner());
        let from = match locator.through {
            None => directory_key(0, 0).to_vec(),
            Some((seq, n)) => {
                let mut after = directory_key(seq, n).to_vec();
                after.push(0);
                after
            }
        };
        for item in self
            .packs
            .range(from..=directory_key(u64::MAX, u32::MAX).to_vec())
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = self.directory_id(&k)?;
            for entry in v.chunks_exact(DIRECTORY_ENTRY) {
                locator.at.insert(digest_prefix(&entry[..32]), id);
            }
            locator.through = Some(id);
        }
        let Some(&id) = locator.at.get(&digest_prefix(&digest.0)) else {
            return Ok(None);
        };
        drop(locator);
        match self
            .packs
            .get(directory_key(id.0, id.1))
            .map_err(|e| self.err(e))?
        {
            Some(directory) => self.blob_in_directory(id, &directory, digest),
            None => Ok(None),
        }
    }

    /// Searches the directories filed at seqs `from..=to`, newest first.
    fn scan_directories(&self, from: u64, to: u64, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if from > to {
            return Ok(None);
        }
        for item in self
            .packs
            .range(directory_key(from, 0)..=directory_key(to, u32::MAX))
            .rev()
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = self.directory_id(&k)?;
            if let Some(bytes) = self.blob_in_directory(id, &v, digest)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
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
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.raw_os_error() == Some(11)
                || io.to_string().contains("could not acquire lock") =>
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
            self.write_blobs(commit.blob_seq, commit.blobs, &commit.pinned)?;
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
        if let Some(bytes) = self.indexed_blob(digest)? {
            return Ok(Some(bytes));
        }
        if let Some(bytes) = self.located_blob(digest)? {
            return Ok(Some(bytes));
        }
        self.scan_directories(0, u64::MAX, digest)
    }

    fn blob_before(&self, seq: u64, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.scan_directories(0, seq, digest)? {
            return Ok(Some(bytes));
        }
        match self.indexed_blob(digest)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.scan_directories(seq.saturating_add(1), u64::MAX, digest),
        }
    }

    fn blob_stats(&self) -> Result<(u64, u64)> {
        let mut count = 0;
        let mut bytes = 0;
        for item in self.blobs.iter() {
            let (_, v) = item.map_err(|e| self.err(e))?;
            count += 1;
            bytes += v.len() as u64;
        }
        for item in self
            .packs
            .range(directory_key(0, 0)..=directory_key(u64::MAX, u32::MAX))
        {
            let (_, v) = item.map_err(|e| self.err(e))?;
            for entry in v.chunks_exact(DIRECTORY_ENTRY) {
                count += 1;
                bytes += u64::from(u32::from_le_bytes(
                    entry[40..44].try_into().expect("4 bytes"),
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_commit(seq: u64, blobs: &[&[u8]]) -> Commit {
        Commit {
            blobs: blobs.iter().map(|b| (Digest::of(b), b.to_vec())).collect(),
            blob_seq: seq,
            ..Commit::default()
        }
    }

    /// After a crash, sled may have kept a commit's blobs but not its events: the
    /// next commit files its blobs under an earlier seq than the orphans, or the same.
    #[test]
    fn blobs_filed_before_or_beside_orphans_of_a_lost_commit_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(blob_commit(7, &[b"orphan at 7"])).unwrap();
        store.commit(blob_commit(5, &[b"orphan at 5"])).unwrap();
        store.commit(blob_commit(5, &[b"kept at 5"])).unwrap();
        store.commit(blob_commit(7, &[b"kept at 7"])).unwrap();
        for (seq, bytes) in [
            (7u64, &b"orphan at 7"[..]),
            (5, b"orphan at 5"),
            (5, b"kept at 5"),
            (7, b"kept at 7"),
        ] {
            let d = Digest::of(bytes);
            assert_eq!(store.blob_before(seq, &d).unwrap().as_deref(), Some(bytes));
            assert_eq!(store.blob(&d).unwrap().as_deref(), Some(bytes));
        }
        assert_eq!(
            store
                .blob_before(4, &Digest::of(b"kept at 5"))
                .unwrap()
                .as_deref(),
            Some(&b"kept at 5"[..])
        );
        assert_eq!(store.blob_stats().unwrap().0, 4);
    }
}
