//! The ports: what the engine needs of a source and of a destination.
//!
//! Connectors (`cutover-connectors`) implement these; the engine drives them.
//! A dry run is handed only a [`ReadDestination`], which has no write methods,
//! so it cannot write by construction.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::{DestError, SourceError};
use crate::record::{Inventory, SourceKey, SourceRecord, Watermark};

/// One item of a source stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceItem {
    /// A row read and typed.
    Record(SourceRecord),
    /// A row that was read but does not fit its declared types (a date that is
    /// not a date, a number that overflows). It is quarantined with the reason,
    /// never dropped. `place` names it (`Patient.csv line 17 column DateOfBirth`).
    Unreadable {
        entity: String,
        key: Option<SourceKey>,
        place: String,
        reason: String,
    },
}

/// A stream of rows. It ends only when the table has been read completely;
/// a break mid-way is an `Err` item ([`SourceError::Interrupted`]), never a
/// silent end.
pub type SourceStream = BoxStream<'static, Result<SourceItem, SourceError>>;

/// A PANDA Perio source: a SQL Server or an export folder. Strictly read-only.
#[async_trait]
pub trait Source: Send + Sync {
    /// A human description without secrets (`export:/data/panda`, `sqlserver:host\SQLEXPRESS/PANDA`).
    fn describe(&self) -> String;
    /// Tables, columns, types, keys and row counts.
    async fn discover(&self) -> Result<Inventory, SourceError>;
    /// Row count of one table.
    async fn count(&self, entity: &str) -> Result<u64, SourceError>;
    /// Streams a table in primary-key order with bounded memory; with a
    /// watermark, only rows modified after it (tables without a modification
    /// column stream whole, and the engine compares content hashes).
    async fn stream(
        &self,
        entity: &str,
        since: Option<Watermark>,
    ) -> Result<SourceStream, SourceError>;
}

/// How much a destination takes and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Records per batch-create request (1 = no batch endpoint).
    pub max_batch: usize,
    /// Requests allowed per window (HighLevel 100 / 10 s, Twenty 100 / 60 s).
    pub requests_per_window: u32,
    pub window: Duration,
    /// Daily cap, where the destination has one (HighLevel 200,000 per location).
    pub daily_limit: Option<u64>,
}

/// One create, keyed for exactly-once effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// Destination object (`contact`, `business`, `opportunity`, `person`, `perioExam`, …).
    pub object: String,
    /// Stable per (target object, source key); the same across runs and resumes.
    pub idempotency_key: String,
    /// Source entity and key it came from (for lookups and messages).
    pub entity: String,
    pub source_key: SourceKey,
    /// A client-chosen id where the destination accepts one (Twenty).
    pub client_id: Option<uuid::Uuid>,
    /// Fields in the destination's vocabulary, references already resolved to destination ids.
    pub body: serde_json::Map<String, serde_json::Value>,
}

impl WriteRequest {
    /// The deterministic UUID for an idempotency key (v5 in a fixed cutover namespace),
    /// so a resumed run asks the destination for the same id it chose before.
    pub fn uuid_for_key(idempotency_key: &str) -> uuid::Uuid {
        const NAMESPACE: uuid::Uuid =
            uuid::Uuid::from_u128(0x6375_746f_7665_7200_8000_0000_0000_0001);
        uuid::Uuid::new_v5(&NAMESPACE, idempotency_key.as_bytes())
    }
}

/// What the destination said after a create or update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub dest_id: String,
    /// The record as stored, as the destination returned it (for checks and diffs).
    pub stored: serde_json::Value,
}

/// A record read back from the destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestRecord {
    pub object: String,
    pub id: String,
    pub body: serde_json::Value,
}

/// Custom field data types both CRMs understand, by our names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    LargeText,
    Number,
    Currency,
    Date,
    DateTime,
    Boolean,
    Select,
    MultiSelect,
    File,
    Relation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Object the field belongs to (`contact`, `person`, `perioExam`).
    pub object: String,
    pub name: String,
    pub label: String,
    pub field_type: FieldType,
    /// Options for select fields.
    #[serde(default)]
    pub options: Vec<String>,
    /// Target object for relation fields.
    #[serde(default)]
    pub relation_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub name: String,
    pub label_singular: String,
    pub label_plural: String,
}

/// A pipeline the destination must already have (HighLevel cannot create one over the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    pub name: String,
    pub stages: Vec<String>,
}

/// Everything a confirmed map needs at the destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaSpec {
    pub objects: Vec<ObjectSpec>,
    pub fields: Vec<FieldSpec>,
    pub pipelines: Vec<PipelineSpec>,
}

/// One schema element as it stands at the destination after `ensure_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// `object`, `field` or `pipeline`.
    pub kind: String,
    /// `contact.Source_System_ID`, `perioExam`, …
    pub name: String,
    pub dest_id: String,
    /// True when this call created it (rollback removes only what we created).
    pub created: bool,
}

/// What the destination already has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestInventory {
    pub objects: Vec<String>,
    pub fields: Vec<SchemaChange>,
    pub pipelines: Vec<PipelineSpec>,
}

/// Reading a destination: all a dry run, a reconcile or a drift check gets.
#[async_trait]
pub trait ReadDestination: Send + Sync {
    /// `highlevel`, `twenty`.
    fn kind(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    async fn inventory(&self) -> Result<DestInventory, DestError>;
    async fn get(&self, object: &str, id: &str) -> Result<Option<DestRecord>, DestError>;
    /// Finds the record an earlier attempt may have created for this key
    /// (Twenty: the client-chosen UUID; HighLevel: the `Source_System_ID` field).
    async fn find_by_key(
        &self,
        object: &str,
        idempotency_key: &str,
    ) -> Result<Option<DestRecord>, DestError>;
    /// Finds the record an earlier attempt of `request` may have created. Same as
    /// [`Self::find_by_key`] unless the destination can only search under a parent
    /// the request names (HighLevel notes, tasks, appointments and files live
    /// under their contact, `body.contactId`).
    async fn find_existing(&self, request: &WriteRequest) -> Result<Option<DestRecord>, DestError> {
        self.find_by_key(&request.object, &request.idempotency_key)
            .await
    }

    /// Reads several records of one object at once, one result per id in order
    /// (`None` for an id the destination does not have). `None` overall when the
    /// destination has no such read; callers then use [`Self::get`] per id.
    /// Twenty reads up to 100 ids per request (`filter=id[in]`), which matters
    /// under its 100 requests a minute.
    async fn get_many(
        &self,
        _object: &str,
        _ids: &[String],
    ) -> Option<Result<Vec<Option<DestRecord>>, DestError>> {
        None
    }

    /// The `(object, id)` of the record whose stored body a write to `(object, id)`
    /// changes, when that is another record (HighLevel: a file lives in its
    /// contact's custom field, a contact–business link is the contact's
    /// `businessId`). Rollback leaves such a record alone while its container is
    /// in conflict. Default: every record is stored on its own.
    fn stored_in(&self, _object: &str, _id: &str) -> Option<(String, String)> {
        None
    }

    /// The destination record in the vocabulary of a body we sent: for every
    /// field path of `sent` (`firstName`, `customFields.Chart_Number`,
    /// `emails.primaryEmail`), the value the destination holds, normalised the
    /// way the destination normalises (E.164 phones, dates); a path the record
    /// lacks maps to `null`. Reconcile, the sample report and the rollback drift
    /// check compare this with what was sent. The default reads the same paths
    /// in `record.body`; connectors whose stored shape differs (HighLevel's
    /// custom-field arrays, Twenty's composite fields) override it.
    fn read_as_sent(
        &self,
        sent: &serde_json::Map<String, serde_json::Value>,
        record: &DestRecord,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        flatten_paths(
            "",
            &serde_json::Value::Object(sent.clone()),
            &mut |path, _| {
                let value = lookup_path(&record.body, path)
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                out.insert(path.to_string(), value);
            },
        );
        out
    }
}

/// Writing a destination. Every method here changes state at the destination.
#[async_trait]
pub trait Destination: ReadDestination {
    /// Creates what is missing of `spec`; reports every element with its id.
    async fn ensure_schema(&self, spec: &SchemaSpec) -> Result<Vec<SchemaChange>, DestError>;
    /// Removes a schema element this tool created (rollback, behind a flag).
    async fn drop_schema(&self, change: &SchemaChange) -> Result<(), DestError>;
    async fn create(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError>;
    /// Creates several records; one result per request, in order. A destination
    /// without a batch endpoint creates them one by one.
    async fn create_batch(
        &self,
        requests: &[WriteRequest],
    ) -> Vec<Result<WriteOutcome, DestError>> {
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            out.push(self.create(request).await);
        }
        out
    }
    async fn update(
        &self,
        object: &str,
        id: &str,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<WriteOutcome, DestError>;
    /// Deletes for good (rollback); soft-deleting destinations must hard-delete.
    async fn delete(&self, object: &str, id: &str) -> Result<(), DestError>;
    /// Deletes several records of one object for good (rollback); one result per id,
    /// in order, an id already gone counting as deleted. A destination without a bulk
    /// delete deletes them one by one.
    async fn delete_batch(&self, object: &str, ids: &[String]) -> Vec<Result<(), DestError>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.delete(object, id).await);
        }
        out
    }
}

/// Calls `visit(path, value)` for every leaf of `value`, paths joined with `.`
/// (arrays are leaves: they are compared whole).
pub fn flatten_paths(
    prefix: &str,
    value: &serde_json::Value,
    visit: &mut dyn FnMut(&str, &serde_json::Value),
) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (name, inner) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten_paths(&path, inner, visit);
            }
        }
        leaf => visit(prefix, leaf),
    }
}

/// The value at a dotted path (`customFields.Chart_Number`) of a JSON value.
pub fn lookup_path<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .try_fold(value, |current, name| current.get(name))
}

/// The canonical bytes of a JSON value: keys sorted (serde_json's map is a
/// BTreeMap here), no whitespace. Payload, response and before-image blobs are
/// stored in this form, so equal bodies have equal digests (docs/run-protocol.md).
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a serde_json::Value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_flatten_nested_objects_and_keep_arrays_whole() {
        let mut seen = Vec::new();
        flatten_paths(
            "",
            &json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "e": {}}),
            &mut |p, v| seen.push((p.to_string(), v.clone())),
        );
        assert_eq!(
            seen,
            vec![
                ("a".into(), json!(1)),
                ("b.c".into(), json!("x")),
                ("b.d".into(), json!([1, 2])),
                ("e".into(), json!({})),
            ]
        );
        assert_eq!(lookup_path(&json!({"b": {"c": 3}}), "b.c"), Some(&json!(3)));
        assert_eq!(lookup_path(&json!({"b": {"c": 3}}), "b.x"), None);
    }
}
