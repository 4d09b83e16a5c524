//! How a run resolves references while applying the map: destination ids from
//! the ledger's record-state projection (only targets whose write stands *now*
//! — a record rolled back keeps its old id for the record, not for lookups),
//! the few source columns `via` hops read (held in memory, one value per row),
//! and in a dry run the records the plan would create.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use cutover_ledger::{Ledger, LedgerError};

use crate::map::Resolve;
use crate::record::Value;

/// (entity lower-case, key, column or object).
pub(crate) type RowKey = (String, String, String);

/// What a dry run puts where a planned record's destination id will be.
pub(crate) const PLANNED_ID: &str = "(planned)";

pub(crate) struct RunResolver<'a> {
    pub(crate) ledger: &'a Ledger,
    /// (entity, key, column) → value, for `via` hops only.
    pub(crate) hops: &'a HashMap<RowKey, Value>,
    /// Dry run: digests of (entity, key, object) the plan creates
    /// ([`planned_digest`]; 8 bytes a record, not three strings).
    pub(crate) planned: Option<&'a HashSet<u64>>,
    pub(crate) error: RefCell<Option<LedgerError>>,
}

impl RunResolver<'_> {
    pub(crate) fn take_error(&self) -> Option<LedgerError> {
        self.error.borrow_mut().take()
    }
}

/// The dry run's 64-bit name for (entity, key, object).
pub(crate) fn planned_digest(entity: &str, key: &str, object: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    for part in [entity.to_ascii_lowercase().as_str(), key, object] {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    u64::from_le_bytes(
        hasher.finalize().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

fn row_key(entity: &str, key: &str, name: &str) -> RowKey {
    (
        entity.to_ascii_lowercase(),
        key.to_string(),
        name.to_string(),
    )
}

impl Resolve for RunResolver<'_> {
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String> {
        if self
            .planned
            .is_some_and(|planned| planned.contains(&planned_digest(entity, key, object)))
        {
            return Some(PLANNED_ID.to_string());
        }
        let state = match self.ledger.record_state(entity, key) {
            Ok(state) => state?,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                return None;
            }
        };
        let target = state.targets.get(object)?;
        // `confirmed_hash` is set while a write stands (also during an update in flight)
        // and cleared when it is compensated.
        target.confirmed_hash.and(target.dest_id.clone())
    }

    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value> {
        self.hops.get(&row_key(entity, key, column)).cloned()
    }
}
