//! The map and the ledger: confirming a map (its canonical bytes as a blob,
//! `MapConfirmed { map_hash }` in a `map` run), the gate `run` passes before
//! anything moves (the map must be the confirmed one, byte for byte in meaning),
//! the [`Resolve`] the run loop backs with the ledger's id index, and the list
//! of quarantined records with their reasons.

use std::cell::RefCell;

use cutover_ledger::{Digest, EventBody, Ledger, LedgerError, Reason, RunKind, RunOutcome};

use super::apply::{MemoryResolver, Resolve};
use super::format::MapFile;
use crate::record::Value;

/// Why a run may not use a map.
#[derive(Debug, thiserror::Error)]
pub enum MapGateError {
    #[error("no map has been confirmed in this ledger: run `cutover map confirm` first")]
    NotConfirmed,
    #[error("the map differs from the confirmed one (confirmed {confirmed}, given {given}): confirm it again to use it")]
    Changed { confirmed: String, given: String },
    #[error("the confirmed map {0} is missing from the ledger's blob store")]
    MissingBlob(String),
    #[error("the confirmed map {hash} cannot be read back: {message}")]
    Unreadable { hash: String, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Confirms `map` in `ledger`: stores its canonical bytes under its hash and
/// appends `MapConfirmed` in a `map` run. Returns the hash.
pub fn confirm_map(
    ledger: &mut Ledger,
    map: &MapFile,
    origin: &str,
) -> Result<Digest, LedgerError> {
    let map_hash = Digest(map.hash());
    let run = ledger.start_run(RunKind::Map, origin, &map.destination, Some(map_hash))?;
    let stored = ledger.put_blob(&map.canonical_bytes())?;
    debug_assert_eq!(stored, map_hash, "blob digest = map hash by construction");
    ledger.append(run, [EventBody::MapConfirmed { map_hash }])?;
    ledger.finish_run(run, RunOutcome::Completed, "map confirmed")?;
    Ok(map_hash)
}

/// The gate of `run`: `map` must be the map last confirmed in `ledger`.
pub fn require_confirmed(ledger: &Ledger, map: &MapFile) -> Result<Digest, MapGateError> {
    let confirmed = ledger.confirmed_map()?.ok_or(MapGateError::NotConfirmed)?;
    let given = Digest(map.hash());
    if confirmed != given {
        return Err(MapGateError::Changed {
            confirmed: confirmed.to_hex(),
            given: given.to_hex(),
        });
    }
    Ok(confirmed)
}

/// The confirmed map, read back from the blob store.
pub fn load_confirmed(ledger: &Ledger) -> Result<MapFile, MapGateError> {
    let confirmed = ledger.confirmed_map()?.ok_or(MapGateError::NotConfirmed)?;
    let bytes = ledger
        .blob(&confirmed)?
        .ok_or_else(|| MapGateError::MissingBlob(confirmed.to_hex()))?;
    let map: MapFile = serde_json::from_slice(&bytes).map_err(|e| MapGateError::Unreadable {
        hash: confirmed.to_hex(),
        message: e.to_string(),
    })?;
    map.validate().map_err(|e| MapGateError::Unreadable {
        hash: confirmed.to_hex(),
        message: e.to_string(),
    })?;
    Ok(map)
}

/// [`Resolve`] over the ledger's source-key → destination-id index, with the
/// source rows `via` hops read held in memory (small tables: dentists, plans).
///
/// A ledger read error is not an orphan: the first one is kept and must be
/// checked with [`LedgerResolver::take_error`] after applying.
pub struct LedgerResolver<'a> {
    ledger: &'a Ledger,
    pub rows: MemoryResolver,
    error: RefCell<Option<LedgerError>>,
}

impl<'a> LedgerResolver<'a> {
    pub fn new(ledger: &'a Ledger) -> Self {
        LedgerResolver {
            ledger,
            rows: MemoryResolver::default(),
            error: RefCell::new(None),
        }
    }

    /// The first ledger error met while resolving, if any.
    pub fn take_error(&self) -> Option<LedgerError> {
        self.error.borrow_mut().take()
    }
}

impl Resolve for LedgerResolver<'_> {
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String> {
        match self.ledger.dest_id(entity, key, object) {
            Ok(id) => id,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }

    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value> {
        self.rows.source_value(entity, key, column)
    }
}

/// A record held back, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRecord {
    pub entity: String,
    pub key: String,
    pub reasons: Vec<Reason>,
}

/// Every record currently quarantined (a record that transforms cleanly on a
/// later run — after a fix at the source — leaves this list: that is the retry).
pub fn quarantined(ledger: &Ledger) -> Result<Vec<QuarantinedRecord>, LedgerError> {
    let mut out = Vec::new();
    ledger.record_states(|entity, key, state| {
        if let Some(reasons) = state.quarantine {
            out.push(QuarantinedRecord {
                entity: entity.to_string(),
                key: key.to_string(),
                reasons,
            });
        }
        Ok(true)
    })?;
    Ok(out)
}
