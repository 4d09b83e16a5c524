//! The binary encoding of events and projection values, in one place so it
//! can be swapped. Today: a format-version byte followed by bincode 2
//! (standard config: varint integers, length-prefixed strings).
//!
//! Version 1 is frozen: the golden files under `ledger/tests/golden/` hold
//! bytes written by it, and a test decodes them with every later build. A new
//! format gets a new version byte and a new decode arm; old arms stay.

use serde::{de::DeserializeOwned, Serialize};

use crate::event::EventRecord;

/// The version byte of the current event encoding.
pub const EVENT_FORMAT_V1: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes an event record as `[version][bincode]`.
pub fn encode_event(record: &EventRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(EVENT_FORMAT_V1);
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .expect("encoding into a Vec cannot fail");
    out
}

/// Decodes `[version][bincode]`, rejecting unknown versions and trailing bytes.
pub fn decode_event(bytes: &[u8]) -> Result<EventRecord, String> {
    match bytes.first() {
        None => Err("empty event record".into()),
        Some(&EVENT_FORMAT_V1) => decode_exact(&bytes[1..]),
        Some(v) => Err(format!("unknown event format version {v}")),
    }
}

/// Encodes a projection value (not versioned: projections are rebuilt by replay).
pub fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).expect("encoding into a Vec cannot fail")
}

pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_exact(bytes)
}

fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the record",
            bytes.len() - used
        ));
    }
    Ok(value)
}
