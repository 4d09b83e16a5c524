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
//! - pack files (store layout 3): blob bytes appended to `packs/NNNNNNNN.pack` beside
//!   the sled directory, a file closed once it passes [`PACK_FILE_BYTES`]; and in the
//!   sled tree `packs`, what says where they are, under keys that only grow:
//!   - `D ‖ seq (u64 BE) ‖ n (u32 BE) ‖ F` → a piece of the commit's blob directory
//!     (at most [`DIRECTORY_PIECE`] entries; a commit with more files several n), one
//!     entry per blob: `digest (32) ‖ file (u32 LE) ‖ offset (u64 LE) ‖ len (u32 LE)`;
//!   - `I ‖ digest` → `seq ‖ n ‖ F`: the digest index, kept only for pinned blobs
//!     (maps), which are looked up without an event;
//!
//!   `seq` is the first seq of the commit (head + 1 when it was written) and `n`
//!   counts commits filed under the same seq (a blob-only flush, then the append).
//! - store layout 2 (read only): the same directories without the `F` (13-byte keys),
//!   entries `digest ‖ part (u32 LE) ‖ offset (u32 LE) ‖ len (u32 LE)` pointing into
//!   `P ‖ seq ‖ n ‖ part (u32 BE)` → up to 64 KiB of blob bytes in sled itself; index
//!   values `seq ‖ n` without the `F`.
//! - tree `blobs` (store layout 1, read only): `digest` → bytes.
//!
//! Why pack files: sled 0.34 stores a large value by rewriting its leaf into a file of
//! its own whenever the leaf changes, and keeps state in memory for every page it ever
//! wrote. With blob packs inside sled a 50,000-patient run left 3.2 GB of sled blob
//! files for 1.43 GB of payloads and sled's memory grew with them (BENCHMARKS.md);
//! appended to a plain file, payload bytes are written once and cost sled nothing.
//! Blobs are found from the event that names them (its seq bounds
//! where to look: the directories at or before it, newest first), pinned blobs
//! by the index, anything else through a lazily built locator. Content addressing
//! is kept (a blob is named and checked by its BLAKE3) but the same bytes put in two
//! commits are stored twice.
//!
//! A commit appends its blob bytes to the pack file (one `write`, to the OS before
//! anything names them), then writes their directory (one sled batch), then events
//! with the head (one batch, applied atomically), then projections with their marker
//! (one batch). A flush syncs the pack file before sled's log, and sled never flushes
//! on a timer of its own, so nothing durable names bytes that are not. sled's log
//! recovers a prefix of what was written, so after a crash: bytes or a blob without
//! its event are harmless (never named, never overwritten), an event never lacks its
//! blob, and projections are at most behind the events (the ledger replays the gap on
//! open), never ahead. Opening checks that the newest directory's extents lie within
//! their files (what a power failure between two flushes could break) and says so. Separate trees keep the large chunk values
//! out of the projection leaves.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{LedgerError, Result};
use crate::event::Digest;

/// A chunk is closed once it holds this many bytes.
///
/// Chunks and directories stay small because sled 0.34 writes any node (a leaf holds
/// up to 16 values) larger than a quarter segment (128 KiB) to a file of its own,
/// anew each time the leaf is consolidated: 16 KiB chunks made most of a large run's
/// sled store such files. 4 KiB chunks keep a full leaf under 64 KiB.
pub(crate) const CHUNK_BYTES: usize = 4 * 1024;

/// A commit's blob directory is filed in pieces of at most this many entries (6 KiB),
/// for the same reason as [`CHUNK_BYTES`].
const DIRECTORY_PIECE: usize = 128;

/// A pack file is closed once it holds this many bytes (a commit's blobs never straddle two).
pub(crate) const PACK_FILE_BYTES: u64 = 1 << 30;

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
/// The last byte of a layout-3 directory key and index value: the blobs are in pack files.
const IN_FILES: u8 = b'F';
/// A layout-2 directory entry: digest, part, offset, len.
const PART_ENTRY: usize = 32 + 12;
/// A layout-3 directory entry: digest, file, offset (u64), len.
const FILE_ENTRY: usize = 32 + 16;

/// A layout-2 directory key (blobs in sled parts).
fn directory_key(seq: u64, n: u32) -> [u8; 13] {
    let mut key = [DIRECTORY; 13];
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..].copy_from_slice(&n.to_be_bytes());
    key
}

/// A layout-3 directory key (blobs in pack files): sorts right after the layout-2 key
/// of the same (seq, n), so one range walks both layouts in (seq, n) order.
fn file_directory_key(seq: u64, n: u32) -> [u8; 14] {
    let mut key = [IN_FILES; 14];
    key[..13].copy_from_slice(&directory_key(seq, n));
    key
}

/// The end (inclusive) of a range of directories filed at seqs up to `to`.
fn directories_through(to: u64) -> Vec<u8> {
    let mut key = directory_key(to, u32::MAX).to_vec();
    key.push(u8::MAX);
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
    /// Where the pack files are (beside the sled directory).
    packs_dir: PathBuf,
    /// The pack file being appended to, opened on the first write.
    writer: Mutex<Option<PackWriter>>,
    /// [`PACK_FILE_BYTES`], smaller in tests.
    pack_file_bytes: u64,
    /// Pack files opened for reading, by number.
    readers: Mutex<HashMap<u32, Arc<File>>>,
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

/// The open end of the newest pack file.
struct PackWriter {
    number: u32,
    file: File,
    len: u64,
    /// Bytes written since the last sync.
    unsynced: bool,
}

fn pack_file_name(number: u32) -> String {
    format!("{number:08}.pack")
}

/// Where a directory entry's bytes are.
enum Extent {
    /// Layout 2: a part of a sled pack.
    Part {
        part: u32,
        offset: usize,
        len: usize,
    },
    /// Layout 3: a range of a pack file.
    File { file: u32, offset: u64, len: usize },
}

/// Which layout a directory key belongs to, and its (seq, n).
struct DirectoryId {
    seq: u64,
    n: u32,
    in_files: bool,
}

/// Digest prefix → directory, for every directory up to `through`. Directories are never
/// rewritten, so the map only grows; a prefix collision or a directory filed out of order
/// (after a crash) costs a fallback scan, never a wrong answer: bytes are checked against
/// their digest by the ledger.
#[derive(Default)]
struct Locator {
    /// The last directory key read.
    through: Option<Vec<u8>>,
    /// Digest prefix → directory key.
    at: HashMap<u64, Vec<u8>>,
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
    /// Opens (or creates) the sled store at `path` with its pack files in `packs_dir`.
    pub fn open(path: &Path, packs_dir: &Path) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes())
            .mode(sled::Mode::HighThroughput)
            // Only our flush makes sled durable, after the pack file it names is synced.
            .flush_every_ms(None)
            .open()
            .map_err(|e| open_error(path, e))?;
        std::fs::create_dir_all(packs_dir)
            .map_err(|e| LedgerError::io(format!("creating {}", packs_dir.display()), e))?;
        let main = db.open_tree("events").map_err(|e| open_error(path, e))?;
        let projections = db
            .open_tree("projections")
            .map_err(|e| open_error(path, e))?;
        let blobs = db.open_tree("blobs").map_err(|e| open_error(path, e))?;
        let packs = db.open_tree("packs").map_err(|e| open_error(path, e))?;
        let store = SledStore {
            path: path.to_path_buf(),
            packs_dir: packs_dir.to_path_buf(),
            writer: Mutex::new(None),
            pack_file_bytes: PACK_FILE_BYTES,
            readers: Mutex::new(HashMap::new()),
            db,
            main,
            projections,
            blobs,
            packs,
            locator: Mutex::new(Locator::default()),
        };
        store.check_newest_directory()?;
        Ok(store)
    }

    fn directory_id(&self, key: &[u8]) -> Result<DirectoryId> {
        let in_files = match key.len() {
            13 => false,
            14 if key[13] == IN_FILES => true,
            _ => return Err(self.corrupt(format!("blob directory key of {} bytes", key.len()))),
        };
        if key[0] != DIRECTORY {
            return Err(self.corrupt("blob directory key without its prefix".into()));
        }
        Ok(DirectoryId {
            seq: u64::from_be_bytes(key[1..9].try_into().expect("8 bytes")),
            n: u32::from_be_bytes(key[9..13].try_into().expect("4 bytes")),
            in_files,
        })
    }

    /// The entries of one directory: (digest, where its bytes are).
    fn directory_entries<'d>(
        &self,
        id: &DirectoryId,
        directory: &'d [u8],
    ) -> Result<impl Iterator<Item = (&'d [u8], Extent)> + 'd> {
        let size = if id.in_files { FILE_ENTRY } else { PART_ENTRY };
        if !directory.len().is_multiple_of(size) {
            return Err(self.corrupt(format!(
                "blob directory {}/{} has {} bytes",
                id.seq,
                id.n,
                directory.len()
            )));
        }
        let in_files = id.in_files;
        Ok(directory.chunks_exact(size).map(move |entry| {
            let word = |i: usize| u32::from_le_bytes(entry[i..i + 4].try_into().expect("4 bytes"));
            let extent = if in_files {
                Extent::File {
                    file: word(32),
                    offset: u64::from_le_bytes(entry[36..44].try_into().expect("8 bytes")),
                    len: word(44) as usize,
                }
            } else {
                Extent::Part {
                    part: word(32),
                    offset: word(36) as usize,
                    len: word(40) as usize,
                }
            };
            (&entry[..32], extent)
        }))
    }

    fn corrupt(&self, detail: String) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    fn pack_path(&self, number: u32) -> PathBuf {
        self.packs_dir.join(pack_file_name(number))
    }

    /// The pack file to append to: the newest one, or the next when it is full.
    fn open_writer(&self) -> Result<PackWriter> {
        let mut newest = None;
        let entries = std::fs::read_dir(&self.packs_dir)
            .map_err(|e| LedgerError::io(format!("listing {}", self.packs_dir.display()), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| LedgerError::io(format!("listing {}", self.packs_dir.display()), e))?;
            let name = entry.file_name();
            let number = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(number) = number {
                newest = newest.max(Some(number));
            }
        }
        let mut number = newest.unwrap_or(0);
        loop {
            let path = self.pack_path(number);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| LedgerError::io(format!("opening {}", path.display()), e))?;
            let len = file
                .metadata()
                .map_err(|e| LedgerError::io(format!("reading {}", path.display()), e))?
                .len();
            if len < self.pack_file_bytes {
                return Ok(PackWriter {
                    number,
                    file,
                    len,
                    unsynced: false,
                });
            }
            number += 1;
        }
    }

    /// Appends `bytes` to the pack file in one write; returns (file number, offset).
    fn append_to_pack(&self, bytes: &[u8]) -> Result<(u32, u64)> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.is_none() {
            *writer = Some(self.open_writer()?);
        }
        let current = writer.as_mut().expect("opened above");
        if current.len > 0 && current.len + bytes.len() as u64 > self.pack_file_bytes {
            // Closing a file syncs it: a flush syncs only the file it writes to.
            self.sync_writer(current)?;
            let path = self.pack_path(current.number + 1);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| LedgerError::io(format!("opening {}", path.display()), e))?;
            *current = PackWriter {
                number: current.number + 1,
                file,
                len: 0,
                unsynced: false,
            };
        }
        let at = (current.number, current.len);
        if let Err(e) = current.file.write_all(bytes) {
            // A partial write leaves bytes nothing names; appending goes on at the file's end.
            *writer = None;
            return Err(LedgerError::io(
                format!("writing {}", self.pack_path(at.0).display()),
                e,
            ));
        }
        current.len += bytes.len() as u64;
        current.unsynced = true;
        Ok(at)
    }

    fn sync_writer(&self, writer: &mut PackWriter) -> Result<()> {
        if writer.unsynced {
            writer.file.sync_data().map_err(|e| {
                LedgerError::io(
                    format!("syncing {}", self.pack_path(writer.number).display()),
                    e,
                )
            })?;
            writer.unsynced = false;
        }
        Ok(())
    }

    fn reader(&self, number: u32) -> Result<Arc<File>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = readers.get(&number) {
            return Ok(file.clone());
        }
        let path = self.pack_path(number);
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LedgerError::Corrupt {
                path: path.clone(),
                detail: "a blob pack file the store names is missing".into(),
            },
            _ => LedgerError::io(format!("opening {}", path.display()), e),
        })?;
        let file = Arc::new(file);
        readers.insert(number, file.clone());
        Ok(file)
    }

    /// The newest layout-3 directory's extents must lie within their pack files: a
    /// power failure after sled wrote a directory but before the OS wrote the bytes it
    /// names is the one way to break that, and it must be reported, not met later.
    fn check_newest_directory(&self) -> Result<()> {
        for item in self
            .packs
            .range(directory_key(0, 0).to_vec()..=directories_through(u64::MAX))
            .rev()
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = self.directory_id(&k)?;
            if !id.in_files {
                continue;
            }
            for (_, extent) in self.directory_entries(&id, &v)? {
                if let Extent::File { file, offset, len } = extent {
                    let path = self.pack_path(file);
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if size < offset + len as u64 {
                        return Err(LedgerError::Corrupt {
                            path,
                            detail: format!(
                                "holds {size} bytes but blob directory {}/{} names bytes up to {} \
                                 (blob bytes lost, e.g. by a power failure before a flush)",
                                id.seq,
                                id.n,
                                offset + len as u64
                            ),
                        });
                    }
                }
            }
            break;
        }
        Ok(())
    }

    /// Writes a commit's blobs: their bytes to the pack file, then their directory and
    /// index entries for the pinned ones, in one sled batch.
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
            .range(directory_key(seq, 0).to_vec()..=directories_through(seq))
            .next_back()
        {
            None => 0,
            Some(Ok((k, _))) => self.directory_id(&k)?.n + 1,
            Some(Err(e)) => return Err(self.err(e)),
        };
        let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        for (_, b) in &blobs {
            bytes.extend_from_slice(b);
        }
        let (file, start) = self.append_to_pack(&bytes)?;
        drop(bytes);
        let mut batch = sled::Batch::default();
        let mut offset = start;
        for (piece, group) in blobs.chunks(DIRECTORY_PIECE).enumerate() {
            let n = n + piece as u32;
            let mut directory = Vec::with_capacity(group.len() * FILE_ENTRY);
            for (digest, b) in group {
                directory.extend_from_slice(&digest.0);
                directory.extend_from_slice(&file.to_le_bytes());
                directory.extend_from_slice(&offset.to_le_bytes());
                directory.extend_from_slice(&(b.len() as u32).to_le_bytes());
                offset += b.len() as u64;
                if pinned.contains(digest) {
                    let mut at = Vec::with_capacity(13);
                    at.extend_from_slice(&seq.to_be_bytes());
                    at.extend_from_slice(&n.to_be_bytes());
                    at.push(IN_FILES);
                    batch.insert(&index_key(digest)[..], at);
                }
            }
            batch.insert(&file_directory_key(seq, n)[..], directory);
        }
        self.packs.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Reads the bytes of one extent.
    fn read_extent(&self, id: &DirectoryId, extent: Extent) -> Result<Vec<u8>> {
        match extent {
            Extent::Part { part, offset, len } => {
                let (seq, n) = (id.seq, id.n);
                let pack = self
                    .packs
                    .get(pack_key(seq, n, part))
                    .map_err(|e| self.err(e))?
                    .ok_or_else(|| {
                        self.corrupt(format!("blob pack {seq}/{n}/{part} is missing"))
                    })?;
                if pack.len() < offset + len {
                    return Err(self.corrupt(format!(
                        "blob pack {seq}/{n}/{part} is shorter than its directory says"
                    )));
                }
                Ok(pack[offset..offset + len].to_vec())
            }
            Extent::File { file, offset, len } => {
                let mut bytes = vec![0; len];
                self.reader(file)?
                    .read_exact_at(&mut bytes, offset)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => LedgerError::Corrupt {
                            path: self.pack_path(file),
                            detail: format!(
                                "is shorter than blob directory {}/{} says",
                                id.seq, id.n
                            ),
                        },
                        _ => LedgerError::io(
                            format!("reading {}", self.pack_path(file).display()),
                            e,
                        ),
                    })?;
                Ok(bytes)
            }
        }
    }

    /// Finds `digest` in one directory and reads its bytes.
    fn blob_in_directory(
        &self,
        key: &[u8],
        directory: &[u8],
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>> {
        let id = self.directory_id(key)?;
        let found = self
            .directory_entries(&id, directory)?
            .find(|(d, _)| *d == digest.0);
        match found {
            Some((_, extent)) => self.read_extent(&id, extent).map(Some),
            None => Ok(None),
        }
    }

    /// The digest index (pinned blobs), then the layout-1 tree.
    fn indexed_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(at) = self.packs.get(index_key(digest)).map_err(|e| self.err(e))? {
            if !(at.len() == 12 || (at.len() == 13 && at[12] == IN_FILES)) {
                return Err(self.corrupt(format!("blob index entry of {} bytes", at.len())));
            }
            let mut key = vec![DIRECTORY];
            key.extend_from_slice(&at);
            if let Some(directory) = self.packs.get(&key).map_err(|e| self.err(e))? {
                if let Some(bytes) = self.blob_in_directory(&key, &directory, digest)? {
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
        let from = match &locator.through {
            None => directory_key(0, 0).to_vec(),
            Some(key) => {
                let mut after = key.clone();
                after.push(0);
                after
            }
        };
        for item in self.packs.range(from..=directories_through(u64::MAX)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = self.directory_id(&k)?;
            for (d, _) in self.directory_entries(&id, &v)? {
                locator.at.insert(digest_prefix(d), k.to_vec());
            }
            locator.through = Some(k.to_vec());
        }
        let Some(key) = locator.at.get(&digest_prefix(&digest.0)).cloned() else {
            return Ok(None);
        };
        drop(locator);
        match self.packs.get(&key).map_err(|e| self.err(e))? {
            Some(directory) => self.blob_in_directory(&key, &directory, digest),
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
            .range(directory_key(from, 0).to_vec()..=directories_through(to))
            .rev()
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Some(bytes) = self.blob_in_directory(&k, &v, digest)? {
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

/// sled flushes its log when its last tree is dropped; the pack file goes first,
/// so a clean close never leaves a durable event naming bytes that are not.
impl Drop for SledStore {
    fn drop(&mut self) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = writer.as_mut() {
            if writer.unsynced {
                // Nothing to report to on drop; the next open checks the newest directory.
                let _ = writer.file.sync_data();
            }
        }
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
        {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(writer) = writer.as_mut() {
                self.sync_writer(writer)?;
            }
        }
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
            .range(directory_key(0, 0).to_vec()..=directories_through(u64::MAX))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let id = self.directory_id(&k)?;
            for (_, extent) in self.directory_entries(&id, &v)? {
                count += 1;
                bytes += match extent {
                    Extent::Part { len, .. } | Extent::File { len, .. } => len as u64,
                };
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
        let store = SledStore::open(&dir.path().join("store"), &dir.path().join("packs")).unwrap();
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

    /// A full pack file is closed and the next commit starts a new one; reopening
    /// appends to the newest file that has room, and every blob is found in its file.
    #[test]
    fn pack_files_roll_over_and_every_blob_is_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let mut store =
                SledStore::open(&dir.path().join("store"), &dir.path().join("packs")).unwrap();
            store.pack_file_bytes = 100;
            store
        };
        let blobs: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 30 + i as usize]).collect();
        let store = open();
        for (seq, pair) in blobs[..6].chunks(2).enumerate() {
            let pair: Vec<&[u8]> = pair.iter().map(|b| b.as_slice()).collect();
            store.commit(blob_commit(seq as u64 + 1, &pair)).unwrap();
        }
        store.flush().unwrap();
        drop(store);
        let store = open();
        for (seq, pair) in blobs[6..].chunks(2).enumerate() {
            let pair: Vec<&[u8]> = pair.iter().map(|b| b.as_slice()).collect();
            store.commit(blob_commit(seq as u64 + 4, &pair)).unwrap();
        }
        store.flush().unwrap();
        let files = std::fs::read_dir(dir.path().join("packs")).unwrap().count();
        assert!(
            files >= 4,
            "12 blobs of 30-41 bytes, 100-byte files: {files} files"
        );
        for b in &blobs {
            assert_eq!(store.blob(&Digest::of(b)).unwrap().as_deref(), Some(&b[..]));
        }
        assert_eq!(
            store.blob_stats().unwrap(),
            (12, blobs.iter().map(|b| b.len() as u64).sum())
        );
    }

    /// A commit with more blobs than a directory piece holds files several pieces under
    /// its seq; a pinned blob in a later piece is found through the index, every blob
    /// through its seq, and the next commit under the same seq takes the next free n.
    #[test]
    fn a_large_commit_files_its_directory_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store"), &dir.path().join("packs")).unwrap();
        let blobs: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("blob {i}").into_bytes())
            .collect();
        let mut commit = blob_commit(9, &blobs.iter().map(|b| b.as_slice()).collect::<Vec<_>>());
        let pinned = Digest::of(&blobs[299]);
        commit.pinned = vec![pinned];
        store.commit(commit).unwrap();
        store.commit(blob_commit(9, &[b"later, same seq"])).unwrap();
        let pieces = store
            .packs
            .range(directory_key(9, 0).to_vec()..=directories_through(9))
            .count();
        assert_eq!(
            pieces,
            3 + 1,
            "300 blobs in pieces of {DIRECTORY_PIECE}, then one more"
        );
        assert_eq!(
            store.indexed_blob(&pinned).unwrap().as_deref(),
            Some(&blobs[299][..])
        );
        for b in blobs.iter().chain([&b"later, same seq".to_vec()]) {
            assert_eq!(
                store.blob_before(9, &Digest::of(b)).unwrap().as_deref(),
                Some(&b[..])
            );
        }
        assert_eq!(store.blob_stats().unwrap().0, 301);
    }

    /// Bytes a directory names but its pack file lacks (a power failure between two
    /// flushes can do that) are reported on open, naming the file.
    #[test]
    fn a_pack_file_shorter_than_its_directory_is_reported_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store"), &dir.path().join("packs")).unwrap();
        store
            .commit(blob_commit(1, &[b"first blob", b"second blob"]))
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let pack = dir.path().join("packs/00000000.pack");
        let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        file.set_len(12).unwrap();
        drop(file);
        let error = loop {
            match SledStore::open(&dir.path().join("store"), &dir.path().join("packs")) {
                Err(LedgerError::Unavailable { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => break e,
                Ok(_) => panic!("a short pack file opened"),
            }
        };
        let text = error.to_string();
        assert!(text.contains("00000000.pack"), "{text}");
        assert!(text.contains("holds 12 bytes"), "{text}");
    }
}
