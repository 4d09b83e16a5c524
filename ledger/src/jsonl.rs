//! JSONL export and import: the audit trail as text, one event per line,
//! which is also the format a store is rebuilt from.
//!
//! ```text
//! {"format":"cutover-ledger-jsonl","version":1}
//! {"seq":1,"at":"…","run":1,"kind":"run_started","event":{…},"prev_hash":"…","hash":"…","record":"<base64>"}
//! …
//! {"head":{"seq":N,"hash":"…"}}
//! ```
//!
//! `record` is the exact encoded bytes the hash covers:
//! `hash = blake3(prev_hash ‖ seq as u64 little-endian ‖ record)`, so anyone
//! with a BLAKE3 implementation can check the chain (see `scripts/verify_ledger.py`).
//! `at`, `run`, `kind` and `event` are the readable rendering of `record`;
//! import and `verify --jsonl` reject a line where they disagree with it. The
//! closing `head` line makes a cut-off tail detectable. Export → import →
//! export is byte-identical.

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::codec::decode_event;
use crate::error::{LedgerError, Result};
use crate::event::{chain_hash, Digest, EventBody, EventRecord, Micros, RunId};
use crate::ledger::{Head, Ledger};

const FORMAT: &str = "cutover-ledger-jsonl";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    at: Micros,
    run: RunId,
    kind: String,
    event: EventBody,
    prev_hash: Digest,
    hash: Digest,
    record: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    head: Head,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Ledger {
    /// Writes the whole chain as JSONL. Returns the number of events written.
    pub fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64> {
        let io = |e| LedgerError::io("writing the JSONL export", e);
        let header = serde_json::to_string(&Header {
            format: FORMAT.into(),
            version: VERSION,
        })
        .expect("header serialises");
        writeln!(out, "{header}").map_err(io)?;
        let mut count = 0;
        let mut failure = None;
        let mut prev = Digest::ZERO;
        self.scan_raw_from(1, &mut |seq, hash, encoded| {
            let record =
                decode_event(encoded).map_err(|detail| LedgerError::Chain { seq, detail })?;
            let line = Line {
                seq,
                at: record.at,
                run: record.run,
                kind: record.body.kind().to_string(),
                event: record.body,
                prev_hash: prev,
                hash,
                record: b64().encode(encoded),
            };
            prev = hash;
            let text = serde_json::to_string(&line).expect("event line serialises");
            if let Err(e) = writeln!(out, "{text}") {
                failure = Some(e);
                return Ok(false);
            }
            count += 1;
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(io(e));
        }
        let trailer =
            serde_json::to_string(&Trailer { head: self.head() }).expect("trailer serialises");
        writeln!(out, "{trailer}").map_err(io)?;
        out.flush().map_err(io)?;
        Ok(count)
    }

    /// Rebuilds a ledger in `dir` (which must not hold one) from a JSONL export,
    /// checking every line as [`verify_jsonl`] does. On any error nothing is
    /// left behind claiming to be a ledger.
    pub fn import_jsonl(input: &mut dyn BufRead, dir: impl AsRef<Path>) -> Result<Ledger> {
        let dir = dir.as_ref();
        let mut ledger = Ledger::create(dir)?;
        let result = (|| {
            let mut pending: Vec<(EventRecord, Vec<u8>)> = Vec::new();
            let head = read_jsonl(input, &mut |record, encoded| {
                pending.push((record, encoded));
                if pending.len() >= 4096 {
                    ledger.append_encoded(pending.drain(..))?;
                }
                Ok(())
            })?;
            ledger.append_encoded(pending.drain(..))?;
            ledger.flush()?;
            if ledger.head() != head {
                return Err(LedgerError::Store(format!(
                    "imported chain ends at {:?}, export said {:?}",
                    ledger.head(),
                    head
                )));
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(ledger),
            Err(e) => {
                drop(ledger);
                // Remove the marker so the half-built directory is not taken for a ledger.
                let _ = std::fs::remove_file(dir.join("LEDGER"));
                Err(e)
            }
        }
    }
}

/// Checks a JSONL export without the tool's store: header, every line's
/// parse, seq continuity, chain links, the readable fields against the
/// encoded record, and the closing head. Returns the head.
pub fn verify_jsonl(input: &mut dyn BufRead) -> Result<Head> {
    read_jsonl(input, &mut |_, _| Ok(()))
}

/// Every line must be exactly as export writes it: a byte that differs but
/// parses to the same value (`z` for `Z`, upper-case hex, reordered keys) is an
/// alteration of the trail too.
fn canonical<T: Serialize>(line: u64, text: &str, value: &T) -> Result<()> {
    if serde_json::to_string(value).expect("parsed line serialises") != text {
        return Err(LedgerError::Jsonl {
            line,
            detail: "the line is not in the canonical form export writes (altered?)".into(),
        });
    }
    Ok(())
}

fn read_jsonl(
    input: &mut dyn BufRead,
    sink: &mut dyn FnMut(EventRecord, Vec<u8>) -> Result<()>,
) -> Result<Head> {
    let mut line_no = 0u64;
    let mut text = String::new();
    let mut next_line = |text: &mut String, line_no: &mut u64| -> Result<bool> {
        text.clear();
        *line_no += 1;
        let n = input.read_line(text).map_err(|e| LedgerError::Jsonl {
            line: *line_no,
            detail: format!("cannot read: {e}"),
        })?;
        Ok(n > 0)
    };
    if !next_line(&mut text, &mut line_no)? {
        return Err(LedgerError::Jsonl {
            line: 1,
            detail: "empty file: no header line".into(),
        });
    }
    let header_text = text.trim_end_matches(['\n', '\r']).to_string();
    let header: Header = serde_json::from_str(&header_text).map_err(|e| LedgerError::Jsonl {
        line: 1,
        detail: format!("not a cutover ledger export header: {e}"),
    })?;
    canonical(1, &header_text, &header)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(LedgerError::Jsonl {
            line: 1,
            detail: format!(
                "unsupported export format {} version {}",
                header.format, header.version
            ),
        });
    }
    let mut prev = Digest::ZERO;
    let mut expected_seq = 1u64;
    loop {
        if !next_line(&mut text, &mut line_no)? {
            return Err(LedgerError::Jsonl {
                line: line_no,
                detail: format!("the file ends after seq {} without its closing head line: the export is truncated", expected_seq - 1),
            });
        }
        let trimmed = text.trim_end_matches(['\n', '\r']);
        if trimmed.starts_with("{\"head\"") {
            let trailer: Trailer =
                serde_json::from_str(trimmed).map_err(|e| LedgerError::Jsonl {
                    line: line_no,
                    detail: format!("head line does not parse: {e}"),
                })?;
            canonical(line_no, trimmed, &trailer)?;
            let last = expected_seq - 1;
            if trailer.head.seq != last || trailer.head.hash != prev {
                return Err(LedgerError::Jsonl {
                    line: line_no,
                    detail: format!("the head line says seq {} but the chain ends at seq {last} (or its hash differs): events were cut or rewritten", trailer.head.seq),
                });
            }
            let mut rest = String::new();
            if input.read_line(&mut rest).map_err(|e| LedgerError::Jsonl {
                line: line_no + 1,
                detail: e.to_string(),
            })? > 0
            {
                return Err(LedgerError::Jsonl {
                    line: line_no + 1,
                    detail: "content after the closing head line".into(),
                });
            }
            return Ok(trailer.head);
        }
        let line: Line = serde_json::from_str(trimmed).map_err(|e| LedgerError::Jsonl {
            line: line_no,
            detail: format!("does not parse as an event line: {e}"),
        })?;
        canonical(line_no, trimmed, &line)?;
        let at = |detail: String| LedgerError::Jsonl {
            line: line_no,
            detail: format!("seq {}: {detail}", line.seq),
        };
        if line.seq != expected_seq {
            return Err(at(format!(
                "expected seq {expected_seq}: events are missing, inserted or reordered"
            )));
        }
        if line.prev_hash != prev {
            return Err(at(
                "prev_hash does not match the previous event's hash".into()
            ));
        }
        let encoded = b64()
            .decode(line.record.as_bytes())
            .map_err(|e| at(format!("record is not base64: {e}")))?;
        if chain_hash(&prev, line.seq, &encoded) != line.hash {
            return Err(at(
                "hash does not match the record and its predecessor".into()
            ));
        }
        let record =
            decode_event(&encoded).map_err(|e| at(format!("record does not decode: {e}")))?;
        if record.at != line.at
            || record.run != line.run
            || record.body != line.event
            || record.body.kind() != line.kind
        {
            return Err(at(
                "the readable fields (at, run, kind, event) differ from the hashed record".into(),
            ));
        }
        prev = line.hash;
        expected_seq += 1;
        sink(record, encoded)?;
    }
}
