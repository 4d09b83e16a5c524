//! The events: the only truth. Every other view (record state, the
//! destination-id index, watermarks, run summaries) is derived from them.
//!
//! Kinds are only ever added, never rewritten: an event written today must
//! decode in five years (see `codec.rs` and the golden files in `tests/golden`).
//! Events carry hashes of payloads, never the payloads (see `blob.rs`), and no
//! secrets ever.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A BLAKE3 digest. Hex in JSON, raw 32 bytes in the binary encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const ZERO: Digest = Digest([0u8; 32]);

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Digest::from_hex(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("not a 64-digit hex digest: {text:?}"))
            })
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Digest)
        }
    }
}

/// Identifies a run: the `seq` of its `RunStarted` event (0 = outside any run).
pub type RunId = u64;

/// A point in time, microseconds since the Unix epoch, UTC. An integer in the
/// binary encoding, RFC 3339 text (`2026-11-22T02:30:00.123456Z`) in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            DateTime::parse_from_rfc3339(&text)
                .map(|t| Micros(t.timestamp_micros()))
                .map_err(|e| {
                    serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}: {e}"))
                })
        } else {
            i64::deserialize(deserializer).map(Micros)
        }
    }
}

impl Micros {
    pub fn now() -> Micros {
        Micros(Utc::now().timestamp_micros())
    }

    pub fn from_datetime(t: DateTime<Utc>) -> Micros {
        Micros(t.timestamp_micros())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0).single().unwrap_or_default()
    }
}

impl fmt::Debug for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Full,
    Delta,
    Sample,
    Schema,
    Rollback,
    Map,
    Checkpoint,
    Benchmark,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Everything done.
    Completed,
    /// Done, with record-level failures or quarantines (listed).
    CompletedWithFailures,
    /// Stopped by a fatal error.
    Failed,
}

/// A write operation at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    Create,
    Update,
    Delete,
}

/// Whether a failed write is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Transient,
    Terminal,
}

/// One reason a record was quarantined: a bounded code and a detail (no PHI in codes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable code from a bounded set (`email_invalid`, `phone_invalid`, `future_birth_date`, …).
    pub code: String,
    /// Where and why, for the person fixing it.
    pub detail: String,
}

/// How a compensation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    /// A create undone by deleting the record.
    Deleted,
    /// An update undone by writing the before-image back.
    Restored,
    /// Left alone: the record changed at the destination after we wrote it.
    Conflict,
    /// Nothing to undo: the record was already gone.
    AlreadyGone,
}

/// The events of format version 1. Add variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    /// A run began. Its `seq` becomes the run's id.
    RunStarted {
        kind: RunKind,
        /// Source description without secrets.
        source: String,
        /// Destination description without secrets.
        destination: String,
        /// The confirmed map the run works with.
        map_hash: Option<Digest>,
        tool_version: String,
    },
    /// A map was confirmed; its bytes are in the blob store under `map_hash`.
    MapConfirmed { map_hash: Digest },
    /// A custom field, custom object or relation now exists at the destination.
    SchemaChanged {
        element: String,
        name: String,
        dest_id: String,
        created: bool,
    },
    /// A source row was read; its canonical bytes are in the blob store under `content_hash`.
    Extracted {
        entity: String,
        key: String,
        content_hash: Digest,
        modified_at: Option<Micros>,
    },
    /// A source row became a destination payload (blob `payload_hash`) under map `map_hash`.
    Transformed {
        entity: String,
        key: String,
        object: String,
        payload_hash: Digest,
        map_hash: Digest,
    },
    /// A record cannot move; it stays in the retry list until fixed.
    Quarantined {
        entity: String,
        key: String,
        reasons: Vec<Reason>,
    },
    /// A write is about to be sent. Flushed to disk before the request leaves.
    WriteIntended {
        op: WriteOp,
        object: String,
        entity: String,
        key: String,
        idempotency_key: String,
        payload_hash: Digest,
        /// For updates and deletes: the destination record before the write (blob).
        before_image: Option<Digest>,
        /// For updates and deletes: the record written to.
        dest_id: Option<String>,
    },
    /// The destination confirmed the write named by `intent` (its `seq`).
    WriteConfirmed {
        intent: u64,
        dest_id: String,
        response_hash: Digest,
    },
    /// The write named by `intent` failed.
    WriteFailed {
        intent: u64,
        class: FailureClass,
        status: Option<u16>,
        message: String,
    },
    /// The cutover checkpoint: per-entity watermarks, only past confirmed writes.
    Checkpoint {
        label: String,
        watermarks: Vec<(String, Micros)>,
    },
    /// The write named by `intent` was compensated (rolled back).
    Compensated {
        intent: u64,
        outcome: Compensation,
        detail: String,
    },
    /// A run ended.
    RunFinished { outcome: RunOutcome, detail: String },
}

impl EventBody {
    /// The kind's name, as in JSONL and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::RunStarted { .. } => "run_started",
            EventBody::MapConfirmed { .. } => "map_confirmed",
            EventBody::SchemaChanged { .. } => "schema_changed",
            EventBody::Extracted { .. } => "extracted",
            EventBody::Transformed { .. } => "transformed",
            EventBody::Quarantined { .. } => "quarantined",
            EventBody::WriteIntended { .. } => "write_intended",
            EventBody::WriteConfirmed { .. } => "write_confirmed",
            EventBody::WriteFailed { .. } => "write_failed",
            EventBody::Checkpoint { .. } => "checkpoint",
            EventBody::Compensated { .. } => "compensated",
            EventBody::RunFinished { .. } => "run_finished",
        }
    }
}

/// What is hashed and stored for one event (apart from its seq and hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: Micros,
    pub run: RunId,
    pub body: EventBody,
}

/// An event with its envelope: `hash = blake3(prev_hash ‖ seq ‖ encoded record)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub prev_hash: Digest,
    pub hash: Digest,
    pub record: EventRecord,
}

/// The chain hash of an event.
pub fn chain_hash(prev_hash: &Digest, seq: u64, encoded: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev_hash.0);
    hasher.update(&seq.to_le_bytes());
    hasher.update(encoded);
    Digest(*hasher.finalize().as_bytes())
}
