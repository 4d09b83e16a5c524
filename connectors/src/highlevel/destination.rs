//! The engine's `Destination` port for HighLevel, object kind by object kind.
//!
//! `WriteRequest.body` is in HighLevel's vocabulary (references already
//! resolved to HighLevel ids). Per kind:
//!
//! | object | body | dest id |
//! | --- | --- | --- |
//! | `contact` | `CreateContactDto` fields; `customFields: [{id or key or name, field_value}]` | contact id |
//! | `business` | `CreateBusinessDto` fields | business id |
//! | `contact_business_link` | `{contactId, businessId}` | contact id |
//! | `opportunity` | `CreateDto` fields; `stage` (name) instead of `pipelineStageId` | opportunity id |
//! | `note` | `{contactId, body, title?}` | `contactId/noteId` |
//! | `task` | `{contactId, title, dueDate, completed, body?}` | `contactId/taskId` |
//! | `appointment` | `AppointmentCreateSchema` fields, `calendarId` optional | event id |
//! | `file` | `{contactId, field, fileName, contentType, contentBase64}` | `contactId/fieldId/fileUuid` |
//!
//! Idempotency: contacts and opportunities carry the key in the
//! `Source_System_ID` custom field (inline, no extra request); businesses,
//! notes, tasks and appointments carry a `cutover-ref:` line in their free
//! text; a file's part id is the key's deterministic UUID. A create that may
//! have landed (5xx, broken response, 422 — #64) is looked up by that marker
//! before anything is re-sent. Every 2xx is checked against what was sent:
//! a dropped or altered field is a [`DestError::Mismatch`], not a success.

use std::collections::HashMap;

use async_trait::async_trait;
use base64::Engine as _;
use cutover_engine::ports::{
    Capabilities, DestInventory, DestRecord, Destination, FieldSpec, FieldType, PipelineSpec,
    ReadDestination, SchemaChange, SchemaSpec, WriteOutcome, WriteRequest,
};
use cutover_engine::DestError;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::client::{ops, Endpoint, Failure, HighLevelClient, Payload};
use super::config::{HighLevelConfig, SOURCE_ID_FIELD};
use super::retry::{HighLevelResponses, Verdict};
use crate::http::retry::ClassifyResponse;

/// Every object kind this destination writes.
pub const OBJECT_KINDS: &[&str] = &[
    "contact",
    "business",
    "contact_business_link",
    "opportunity",
    "note",
    "task",
    "appointment",
    "file",
];

/// Properties `create-contact` accepts (`CreateContactDto`), minus `locationId`, which the client sets.
const CONTACT_CREATE_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "name",
    "email",
    "gender",
    "phone",
    "address1",
    "city",
    "state",
    "postalCode",
    "website",
    "timezone",
    "dnd",
    "dndSettings",
    "inboundDndSettings",
    "tags",
    "customFields",
    "source",
    "dateOfBirth",
    "country",
    "companyName",
    "assignedTo",
];
/// `UpdateContactDto` (live PUT also takes `companyName`, #314).
const CONTACT_UPDATE_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "address1",
    "city",
    "state",
    "postalCode",
    "website",
    "timezone",
    "dnd",
    "dndSettings",
    "inboundDndSettings",
    "tags",
    "customFields",
    "source",
    "dateOfBirth",
    "country",
    "assignedTo",
];
const BUSINESS_FIELDS: &[&str] = &[
    "name",
    "phone",
    "email",
    "website",
    "address",
    "city",
    "state",
    "postalCode",
    "country",
    "description",
];
const OPPORTUNITY_FIELDS: &[&str] = &[
    "pipelineId",
    "name",
    "pipelineStageId",
    "status",
    "monetaryValue",
    "assignedTo",
    "customFields",
];
const NOTE_FIELDS: &[&str] = &["body", "title", "userId", "color", "pinned"];
const TASK_FIELDS: &[&str] = &["title", "body", "dueDate", "completed", "assignedTo"];
const APPOINTMENT_FIELDS: &[&str] = &[
    "title",
    "meetingLocationType",
    "meetingLocationId",
    "overrideLocationConfig",
    "appointmentStatus",
    "assignedUserId",
    "description",
    "address",
    "ignoreDateRange",
    "toNotify",
    "ignoreFreeSlotValidation",
    "rrule",
    "calendarId",
    "startTime",
    "endTime",
];

/// The marker line that ties free-text records to their idempotency key.
fn marker(key: &str) -> String {
    format!("cutover-ref: {key}")
}

fn with_marker(text: Option<&str>, key: &str) -> String {
    match text {
        Some(t) if !t.is_empty() => format!("{t}\n\n{}", marker(key)),
        _ => marker(key),
    }
}

fn carries_marker(text: Option<&Value>, key: &str) -> bool {
    let wanted = marker(key);
    text.and_then(Value::as_str)
        .is_some_and(|t| t.lines().any(|line| line.trim() == wanted))
}

/// A location custom field as listed by `get-custom-fields`.
#[derive(Debug, Clone)]
pub(super) struct FieldInfo {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) field_key: String,
    pub(super) data_type: String,
    pub(super) model: String,
}

#[derive(Debug, Clone)]
struct PipelineInfo {
    id: String,
    name: String,
    stages: Vec<(String, String)>,
}

/// HighLevel as a `Destination`.
#[derive(Debug)]
pub struct HighLevelDestination {
    client: HighLevelClient,
    fields: Mutex<Option<Vec<FieldInfo>>>,
    pipelines: Mutex<Option<Vec<PipelineInfo>>>,
    calendar: Mutex<Option<String>>,
    /// Copies of the field and stage lists for `read_as_sent`, which cannot await.
    read_back: std::sync::RwLock<ReadBackCache>,
}

/// What `read_as_sent` needs to name what HighLevel stores by id.
#[derive(Debug, Default)]
struct ReadBackCache {
    fields: Vec<FieldInfo>,
    /// `(stage id, stage name)` of every pipeline.
    stages: Vec<(String, String)>,
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn reject(endpoint: &Endpoint, message: impl Into<String>) -> DestError {
    DestError::Rejected {
        endpoint: endpoint.describe(),
        status: 422,
        message: format!("refused before sending: {}", message.into()),
    }
}

/// Keeps only the whitelisted properties; anything else is an error naming it
/// (HighLevel answers unknown properties with 422 `property … should not exist`).
fn whitelist(
    endpoint: &Endpoint,
    body: &Map<String, Value>,
    allowed: &[&str],
    consumed: &[&str],
) -> Result<Map<String, Value>, DestError> {
    let mut out = Map::new();
    let mut unknown = Vec::new();
    for (k, v) in body {
        if allowed.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        } else if !consumed.contains(&k.as_str()) {
            unknown.push(k.clone());
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(reject(
            endpoint,
            format!(
                "not a field of {}: {}",
                endpoint.operation,
                unknown.join(", ")
            ),
        ))
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether a stored value carries what was sent, allowing for HighLevel's
/// normalisations (phone formatting, e-mail and tag case, number forms, instants).
pub(super) fn same_value(field: &str, sent: &Value, stored: Option<&Value>) -> bool {
    let Some(stored) = stored else {
        return sent.is_null();
    };
    match (sent, stored) {
        (Value::String(a), Value::String(b)) => {
            let a_trim = a.trim();
            let b_trim = b.trim();
            if field == "phone" {
                let (da, db) = (digits(a_trim), digits(b_trim));
                return !da.is_empty() && (da == db || db.ends_with(&da) || da.ends_with(&db));
            }
            if field == "dateOfBirth" {
                // Any accepted input form; stored as YYYY-MM-DD (or a timestamp starting with it).
                let sent_date = super::sandbox::store::normalise_date(a_trim);
                return sent_date.is_some_and(|d| b_trim.starts_with(&d));
            }
            if field == "email" || field == "status" || field == "appointmentStatus" {
                return a_trim.eq_ignore_ascii_case(b_trim);
            }
            if field.ends_with("Time") || field == "dueDate" {
                if let (Ok(x), Ok(y)) = (
                    chrono::DateTime::parse_from_rfc3339(a_trim),
                    chrono::DateTime::parse_from_rfc3339(b_trim),
                ) {
                    return x == y;
                }
            }
            a_trim == b_trim
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            b.trim().parse::<f64>().ok() == a.as_f64()
        }
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .all(|x| b.iter().any(|y| same_value(field, x, Some(y)))),
        (a, b) => a == b,
    }
}

/// Lists fields whose stored value differs from the sent one, and custom fields missing or altered.
fn differences(sent: &Map<String, Value>, stored: &Value, skip: &[&str]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (field, value) in sent {
        if skip.contains(&field.as_str()) || field == "customFields" {
            continue;
        }
        if field == "tags" {
            let stored_tags: Vec<String> = stored
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_lowercase))
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|t| !stored_tags.contains(&t.to_lowercase()))
                .collect();
            if !missing.is_empty() {
                diffs.push(format!("tags {missing:?} missing"));
            }
            continue;
        }
        if value.is_null() {
            continue;
        }
        if !same_value(field, value, stored.get(field)) {
            diffs.push(if stored.get(field).is_none_or(Value::is_null) {
                format!("{field} dropped")
            } else {
                format!("{field} altered")
            });
        }
    }
    if let Some(sent_fields) = sent.get("customFields").and_then(Value::as_array) {
        let stored_fields = stored
            .get("customFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in sent_fields {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                continue;
            };
            let sent_value = item.get("field_value").cloned().unwrap_or(Value::Null);
            let stored_value = stored_fields
                .iter()
                .find(|f| f.get("id").and_then(Value::as_str) == Some(id))
                .and_then(|f| {
                    f.get("value")
                        .or_else(|| f.get("fieldValue"))
                        .or_else(|| f.get("field_value"))
                });
            if !sent_value.is_null()
                && !sent_value.is_object()
                && !same_value("customField", &sent_value, stored_value)
            {
                diffs.push(format!(
                    "custom field {id} {}",
                    if stored_value.is_none() {
                        "dropped"
                    } else {
                        "altered"
                    }
                ));
            }
        }
    }
    diffs
}

fn check_stored(
    endpoint: &Endpoint,
    sent: &Map<String, Value>,
    stored: &Value,
    skip: &[&str],
) -> Result<(), DestError> {
    let diffs = differences(sent, stored, skip);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(DestError::Mismatch {
            endpoint: endpoint.describe(),
            message: diffs.join(", "),
        })
    }
}

/// The id inside a create/get response (`{contact: {id}}`, `{buiseness: {id}}`, `{id}`).
fn record_in<'a>(body: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| body.get(*k))
        .filter(|v| v.is_object())
        .or_else(|| body.get("id").map(|_| body))
}

fn id_of(record: &Value) -> Option<String> {
    record
        .get("id")
        .or_else(|| record.get("_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn split_id<'a>(endpoint: &Endpoint, id: &'a str, parts: usize) -> Result<Vec<&'a str>, DestError> {
    let split: Vec<&str> = id.split('/').collect();
    if split.len() == parts && split.iter().all(|p| !p.is_empty()) {
        Ok(split)
    } else {
        Err(reject(
            endpoint,
            format!("destination id `{id}` should have {parts} parts separated by `/`"),
        ))
    }
}

fn data_type_for(field_type: FieldType) -> Option<&'static str> {
    Some(match field_type {
        FieldType::Text => "TEXT",
        FieldType::LargeText => "LARGE_TEXT",
        FieldType::Number => "NUMERICAL",
        FieldType::Currency => "MONETORY",
        FieldType::Date | FieldType::DateTime => "DATE",
        FieldType::Boolean => "RADIO",
        FieldType::Select => "SINGLE_OPTIONS",
        FieldType::MultiSelect => "MULTIPLE_OPTIONS",
        FieldType::File => "FILE_UPLOAD",
        FieldType::Relation => return None,
    })
}

/// What a create attempt produced, before checking.
enum Landed {
    Created(Value),
    Found(Value),
}

impl HighLevelDestination {
    pub fn new(config: HighLevelConfig) -> Result<Self, DestError> {
        Ok(Self::from_client(HighLevelClient::new(config)?))
    }

    pub fn from_client(client: HighLevelClient) -> Self {
        HighLevelDestination {
            client,
            fields: Mutex::new(None),
            pipelines: Mutex::new(None),
            calendar: Mutex::new(None),
            read_back: std::sync::RwLock::new(ReadBackCache::default()),
        }
    }

    pub fn client(&self) -> &HighLevelClient {
        &self.client
    }

    fn location(&self) -> &str {
        &self.client.config().location_id
    }

    // ---- schema caches ------------------------------------------------------

    async fn load_fields(&self, refresh: bool) -> Result<Vec<FieldInfo>, DestError> {
        let mut cache = self.fields.lock().await;
        if refresh || cache.is_none() {
            let path = ops::LIST_CUSTOM_FIELDS.path_with(&[self.location()]);
            let body = self
                .client
                .call_json(&ops::LIST_CUSTOM_FIELDS, &path, &[("model", "all")], None)
                .await?;
            let list = body
                .get("customFields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            *cache = Some(
                list.iter()
                    .filter_map(|f| {
                        Some(FieldInfo {
                            id: id_of(f)?,
                            name: f.get("name")?.as_str()?.to_string(),
                            field_key: f
                                .get("fieldKey")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            data_type: f
                                .get("dataType")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            model: f
                                .get("model")
                                .and_then(Value::as_str)
                                .unwrap_or("contact")
                                .to_string(),
                        })
                    })
                    .collect(),
            );
            self.read_back.write().expect("read-back cache lock").fields =
                cache.clone().unwrap_or_default();
        }
        Ok(cache.clone().unwrap_or_default())
    }

    /// Resolves a field reference (id, `fieldKey`, or name) on a model.
    async fn field(&self, model: &str, reference: &str) -> Result<FieldInfo, DestError> {
        let matches = |f: &FieldInfo| {
            f.model == model
                && (f.id == reference
                    || f.field_key == reference
                    || f.field_key.strip_prefix(&format!("{model}.")) == Some(reference)
                    || f.name.eq_ignore_ascii_case(reference))
        };
        if let Some(found) = self.load_fields(false).await?.into_iter().find(matches) {
            return Ok(found);
        }
        self.load_fields(true).await?.into_iter().find(matches).ok_or_else(|| {
            DestError::Precondition(format!("custom field `{reference}` does not exist on {model}s of location {}; run `cutover schema apply`", self.location()))
        })
    }

    async fn load_pipelines(&self) -> Result<Vec<PipelineInfo>, DestError> {
        let mut cache = self.pipelines.lock().await;
        if cache.is_none() {
            let body = self
                .client
                .call_json(
                    &ops::GET_PIPELINES,
                    ops::GET_PIPELINES.path,
                    &[("locationId", self.location())],
                    None,
                )
                .await?;
            let list = body
                .get("pipelines")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            *cache = Some(
                list.iter()
                    .filter_map(|p| {
                        let stages = p
                            .get("stages")
                            .and_then(Value::as_array)
                            .map(|stages| {
                                // The spec types stages as an array of arrays; accept objects at either depth.
                                stages
                                    .iter()
                                    .flat_map(|s| {
                                        if let Value::Array(inner) = s {
                                            inner.clone()
                                        } else {
                                            vec![s.clone()]
                                        }
                                    })
                                    .filter_map(|s| {
                                        Some((id_of(&s)?, s.get("name")?.as_str()?.to_string()))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        Some(PipelineInfo {
                            id: id_of(p)?,
                            name: p.get("name")?.as_str()?.to_string(),
                            stages,
                        })
                    })
                    .collect(),
            );
            self.read_back.write().expect("read-back cache lock").stages = cache
                .iter()
                .flatten()
                .flat_map(|p| p.stages.iter().cloned())
                .collect();
        }
        Ok(cache.clone().unwrap_or_default())
    }

    /// The configured pipeline, found by name; missing or ambiguous is a precondition error.
    async fn pipeline(&self) -> Result<PipelineInfo, DestError> {
        let name = &self.client.config().pipeline_name;
        let found: Vec<PipelineInfo> = self
            .load_pipelines()
            .await?
            .into_iter()
            .filter(|p| p.name.eq_ignore_ascii_case(name))
            .collect();
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(DestError::Precondition(format!("pipeline \"{name}\" does not exist in location {}; create it in HighLevel (Settings → Pipelines) with its stages", self.location()))),
            n => Err(DestError::Precondition(format!("{n} pipelines are named \"{name}\"; rename all but one"))),
        }
    }

    async fn stage_id(&self, pipeline: &PipelineInfo, stage: &str) -> Result<String, DestError> {
        pipeline
            .stages
            .iter()
            .find(|(id, name)| name.eq_ignore_ascii_case(stage) || id == stage)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                DestError::Precondition(format!(
                    "stage \"{stage}\" does not exist in pipeline \"{}\"; add it in HighLevel",
                    pipeline.name
                ))
            })
    }

    /// The calendar appointments go into: the configured one, else the location's
    /// only calendar. Several calendars and none configured is a precondition error.
    pub async fn calendar(&self) -> Result<String, DestError> {
        if let Some(id) = &self.client.config().calendar_id {
            return Ok(id.clone());
        }
        let mut cache = self.calendar.lock().await;
        if let Some(id) = cache.as_ref() {
            return Ok(id.clone());
        }
        let query = [("locationId", self.location())];
        let body = self
            .client
            .call_json(&ops::LIST_CALENDARS, ops::LIST_CALENDARS.path, &query, None)
            .await?;
        let calendars = body
            .get("calendars")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match calendars.as_slice() {
            [only] => {
                let id = id_of(only).ok_or_else(|| DestError::Mismatch {
                    endpoint: ops::LIST_CALENDARS.describe(),
                    message: "a calendar without id".into(),
                })?;
                *cache = Some(id.clone());
                Ok(id)
            }
            [] => Err(DestError::Precondition(format!(
                "location {} has no calendar; create one in HighLevel for appointment history",
                self.location()
            ))),
            many => Err(DestError::Precondition(format!(
                "location {} has {} calendars; choose one for appointments (calendar_id): {}",
                self.location(),
                many.len(),
                many.iter()
                    .map(|c| format!(
                        "{} ({})",
                        id_of(c).unwrap_or_default(),
                        c.get("name").and_then(Value::as_str).unwrap_or("?")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Turns `customFields` (ids, keys or names; read shape `value` or write shape `field_value`)
    /// into HighLevel's write shape by id, and appends the Source_System_ID value when given.
    async fn custom_fields(
        &self,
        model: &str,
        body: &Map<String, Value>,
        key: Option<&str>,
    ) -> Result<Option<Value>, DestError> {
        let mut items = Vec::new();
        let mut seen = Vec::new();
        if let Some(given) = body.get("customFields") {
            let entries: Vec<(String, Value)> = match given {
                Value::Array(list) => list
                    .iter()
                    .map(|item| {
                        let reference = ["id", "key", "name"]
                            .iter()
                            .find_map(|k| item.get(*k).and_then(Value::as_str))
                            .unwrap_or("")
                            .to_string();
                        let value = item
                            .get("field_value")
                            .or_else(|| item.get("value"))
                            .or_else(|| item.get("fieldValue"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        (reference, value)
                    })
                    .collect(),
                Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                _ => {
                    return Err(DestError::Rejected {
                        endpoint: model.to_string(),
                        status: 422,
                        message:
                            "refused before sending: customFields must be an array or an object"
                                .into(),
                    })
                }
            };
            for (reference, value) in entries {
                if reference.is_empty() {
                    return Err(DestError::Rejected {
                        endpoint: model.to_string(),
                        status: 422,
                        message:
                            "refused before sending: a custom field item has no id, key or name"
                                .into(),
                    });
                }
                let field = self.field(model, &reference).await?;
                seen.push(field.id.clone());
                items.push(json!({ "id": field.id, "field_value": value }));
            }
        }
        if let Some(key) = key {
            let field = self.field(model, SOURCE_ID_FIELD).await?;
            if !seen.contains(&field.id) {
                items.push(json!({ "id": field.id, "field_value": key }));
            }
        }
        Ok(if items.is_empty() {
            None
        } else {
            Some(Value::Array(items))
        })
    }

    // ---- create with look-up before any re-send ----------------------------

    /// Sends a create; when the outcome is unknown (5xx, broken response, 422
    /// that may still have created, #64) looks the record up by its key before
    /// sending again. Never sends a create twice without that look-up.
    async fn create_once(
        &self,
        endpoint: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        payload: Payload,
        request: &WriteRequest,
    ) -> Result<Landed, DestError> {
        let mut attempts = self.client.retry_policy().attempts();
        loop {
            let failure = match self.client.attempt(endpoint, path, query, &payload).await {
                Ok(reply) => return Ok(Landed::Created(reply.body)),
                Err(failure) => failure,
            };
            let unknown_outcome = match failure.verdict {
                Verdict::Transient { may_have_landed } => may_have_landed,
                Verdict::Terminal => failure.status == Some(422),
                _ => false,
            };
            // A re-sent create refused as a duplicate of the contact an earlier,
            // unacknowledged attempt made: that contact is ours, not a conflict.
            if let Some(existing) = self.duplicate_is_ours(&failure, request).await? {
                return Ok(Landed::Found(existing));
            }
            if unknown_outcome {
                if let Some(found) = self.find_existing(request).await? {
                    tracing::info!(
                        operation = endpoint.operation,
                        "earlier create attempt had landed; not re-sending"
                    );
                    return Ok(Landed::Found(found.body));
                }
            }
            let tally = attempts.record(HighLevelResponses.retry_class(&failure.verdict));
            if tally.give_up || failure.daily_budget_spent() {
                return Err(self.creation_error(endpoint, failure));
            }
            self.client
                .pause_before_retry(&failure, tally.attempt)
                .await;
        }
    }

    async fn duplicate_is_ours(
        &self,
        failure: &Failure,
        request: &WriteRequest,
    ) -> Result<Option<Value>, DestError> {
        let existing = failure
            .body
            .as_ref()
            .and_then(|b| b.pointer("/meta/contactId"))
            .and_then(Value::as_str);
        let (Some(existing), Some(400), "contact") =
            (existing, failure.status, request.object.as_str())
        else {
            return Ok(None);
        };
        let field = self.field("contact", SOURCE_ID_FIELD).await?;
        let contact = self.get_contact(existing).await?;
        Ok(contact.filter(|c| {
            c.get("customFields")
                .and_then(Value::as_array)
                .is_some_and(|fields| {
                    fields.iter().any(|f| {
                        f.get("id").and_then(Value::as_str) == Some(&field.id)
                            && f.get("value").and_then(Value::as_str)
                                == Some(&request.idempotency_key)
                    })
                })
        }))
    }

    fn creation_error(&self, endpoint: &Endpoint, failure: Failure) -> DestError {
        if failure.status == Some(400) {
            if let Some(meta) = failure.body.as_ref().and_then(|b| b.get("meta")) {
                if let Some(existing) = meta.get("contactId").and_then(Value::as_str) {
                    let matching = meta
                        .get("matchingField")
                        .and_then(Value::as_str)
                        .unwrap_or("a unique field");
                    return DestError::Rejected {
                        endpoint: endpoint.describe(),
                        status: 400,
                        message: format!("the location does not allow duplicated contacts: matches existing contact {existing} on {matching}; nothing was created"),
                    };
                }
            }
        }
        failure.into_error(endpoint)
    }

    // ---- per kind ------------------------------------------------------------

    async fn create_contact(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_CONTACT;
        let mut body = whitelist(&ep, &request.body, CONTACT_CREATE_FIELDS, &[])?;
        body.insert("locationId".into(), json!(self.location()));
        body.entry("source").or_insert(json!("cutover"));
        match self
            .custom_fields("contact", &request.body, Some(&request.idempotency_key))
            .await?
        {
            Some(fields) => body.insert("customFields".into(), fields),
            None => body.remove("customFields"),
        };
        let landed = self
            .create_once(
                &ep,
                ep.path,
                &[],
                Payload::Json(Value::Object(body.clone())),
                request,
            )
            .await?;
        self.outcome(
            &ep,
            &body,
            landed,
            &["contact"],
            &["locationId", "dndSettings", "inboundDndSettings", "name"],
        )
    }

    /// Updates a record that lives under its contact (note, task): the id is
    /// `contactId/recordId`, the body is whitelisted, and the reply must carry
    /// what was sent.
    async fn update_contact_child(
        &self,
        ep: Endpoint,
        id: &str,
        body: &Map<String, Value>,
        fields: &[&str],
        read_only: &[&str],
        wrapper: &str,
    ) -> Result<WriteOutcome, DestError> {
        let parts = split_id(&ep, id, 2)?;
        let sent = whitelist(&ep, body, fields, read_only)?;
        let reply = self
            .client
            .call_json(
                &ep,
                &ep.path_with(&parts),
                &[],
                Some(Value::Object(sent.clone())),
            )
            .await?;
        let mut outcome = self.outcome(&ep, &sent, Landed::Created(reply), &[wrapper], &[])?;
        outcome.dest_id = id.to_string();
        Ok(outcome)
    }

    fn outcome(
        &self,
        ep: &Endpoint,
        sent: &Map<String, Value>,
        landed: Landed,
        wrappers: &[&str],
        skip: &[&str],
    ) -> Result<WriteOutcome, DestError> {
        let body = match landed {
            Landed::Created(b) | Landed::Found(b) => b,
        };
        let stored = record_in(&body, wrappers)
            .cloned()
            .ok_or_else(|| DestError::Mismatch {
                endpoint: ep.describe(),
                message: "the response carries no record".into(),
            })?;
        let dest_id = id_of(&stored).ok_or_else(|| DestError::Mismatch {
            endpoint: ep.describe(),
            message: "the response carries no id".into(),
        })?;
        check_stored(ep, sent, &stored, skip).map_err(|e| match e {
            DestError::Mismatch { endpoint, message } => DestError::Mismatch {
                endpoint,
                message: format!("{message} (stored as {dest_id})"),
            },
            other => other,
        })?;
        Ok(WriteOutcome { dest_id, stored })
    }

    async fn create_business(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_BUSINESS;
        let mut body = whitelist(&ep, &request.body, BUSINESS_FIELDS, &[])?;
        if str_field(&body, "name").is_none() {
            return Err(reject(&ep, "a business needs a name"));
        }
        let description = with_marker(str_field(&body, "description"), &request.idempotency_key);
        body.insert("description".into(), json!(description));
        body.insert("locationId".into(), json!(self.location()));
        let landed = self
            .create_once(
                &ep,
                ep.path,
                &[],
                Payload::Json(Value::Object(body.clone())),
                request,
            )
            .await?;
        self.outcome(
            &ep,
            &body,
            landed,
            &["buiseness", "business"],
            &["locationId"],
        )
    }

    async fn link_business(
        &self,
        contact_id: &str,
        business_id: Option<&str>,
    ) -> Result<(), DestError> {
        let body = json!({ "locationId": self.location(), "ids": [contact_id], "businessId": business_id });
        self.client
            .call_json(
                &ops::LINK_BUSINESS,
                ops::LINK_BUSINESS.path,
                &[],
                Some(body),
            )
            .await
            .map(|_| ())
    }

    async fn create_link(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::LINK_BUSINESS;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "a link needs contactId"))?;
        let business_id = str_field(&request.body, "businessId")
            .ok_or_else(|| reject(&ep, "a link needs businessId"))?;
        whitelist(&ep, &request.body, &["contactId", "businessId"], &[])?;
        // The previous link is what rollback restores.
        let before = self.get_contact(contact_id).await?.ok_or_else(|| {
            DestError::Precondition(format!("contact {contact_id} does not exist"))
        })?;
        let previous = before.get("businessId").cloned().unwrap_or(Value::Null);
        self.link_business(contact_id, Some(business_id)).await?;
        Ok(WriteOutcome {
            dest_id: contact_id.to_string(),
            stored: json!({ "contactId": contact_id, "businessId": business_id, "previousBusinessId": previous }),
        })
    }

    async fn create_opportunity(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_OPPORTUNITY;
        let mut body = whitelist(
            &ep,
            &request.body,
            OPPORTUNITY_FIELDS,
            &["stage", "contactId"],
        )?;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "an opportunity needs contactId"))?;
        let pipeline = self.pipeline().await?;
        body.insert("pipelineId".into(), json!(pipeline.id));
        if let Some(stage) = str_field(&request.body, "stage")
            .or_else(|| str_field(&request.body, "pipelineStageId"))
        {
            body.insert(
                "pipelineStageId".into(),
                json!(self.stage_id(&pipeline, stage).await?),
            );
        }
        body.insert("contactId".into(), json!(contact_id));
        body.insert("locationId".into(), json!(self.location()));
        body.entry("status").or_insert(json!("open"));
        match self
            .custom_fields("opportunity", &request.body, Some(&request.idempotency_key))
            .await?
        {
            Some(fields) => body.insert("customFields".into(), fields),
            None => body.remove("customFields"),
        };
        let landed = self
            .create_once(
                &ep,
                ep.path,
                &[],
                Payload::Json(Value::Object(body.clone())),
                request,
            )
            .await?;
        self.outcome(&ep, &body, landed, &["opportunity"], &["locationId"])
    }

    async fn create_note(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_NOTE;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "a note needs contactId"))?
            .to_string();
        let body = whitelist(&ep, &request.body, NOTE_FIELDS, &["contactId"])?;
        self.create_under_contact(ep, request, &contact_id, body, "note")
            .await
    }

    async fn create_task(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_TASK;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "a task needs contactId"))?
            .to_string();
        let mut body = whitelist(&ep, &request.body, TASK_FIELDS, &["contactId"])?;
        if str_field(&body, "title").is_none() || str_field(&body, "dueDate").is_none() {
            return Err(reject(&ep, "a task needs title and dueDate"));
        }
        body.entry("completed").or_insert(json!(false));
        self.create_under_contact(ep, request, &contact_id, body, "task")
            .await
    }

    /// Creates a record that lives under its contact (note, task): the
    /// idempotency marker goes into its body, the create is sent once (looked
    /// up before any re-send), and its id comes back as `contactId/recordId`.
    async fn create_under_contact(
        &self,
        ep: Endpoint,
        request: &WriteRequest,
        contact_id: &str,
        mut body: Map<String, Value>,
        wrapper: &str,
    ) -> Result<WriteOutcome, DestError> {
        let text = with_marker(str_field(&body, "body"), &request.idempotency_key);
        body.insert("body".into(), json!(text));
        let path = ep.path_with(&[contact_id]);
        let landed = self
            .create_once(
                &ep,
                &path,
                &[],
                Payload::Json(Value::Object(body.clone())),
                request,
            )
            .await?;
        let mut outcome = self.outcome(&ep, &body, landed, &[wrapper], &[])?;
        outcome.dest_id = format!("{contact_id}/{}", outcome.dest_id);
        Ok(outcome)
    }

    async fn create_appointment(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::CREATE_APPOINTMENT;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "an appointment needs contactId"))?
            .to_string();
        let mut body = whitelist(&ep, &request.body, APPOINTMENT_FIELDS, &["contactId"])?;
        if str_field(&body, "startTime").is_none() {
            return Err(reject(&ep, "an appointment needs startTime"));
        }
        if str_field(&body, "calendarId").is_none() {
            let calendar = self.calendar().await?;
            body.insert("calendarId".into(), json!(calendar));
        }
        body.insert("contactId".into(), json!(contact_id));
        body.insert("locationId".into(), json!(self.location()));
        // History must not trigger reminders or automations, nor be refused for a past slot.
        body.insert("toNotify".into(), json!(false));
        body.insert("ignoreDateRange".into(), json!(true));
        body.insert("ignoreFreeSlotValidation".into(), json!(true));
        let description = with_marker(str_field(&body, "description"), &request.idempotency_key);
        body.insert("description".into(), json!(description));
        let landed = self
            .create_once(
                &ep,
                ep.path,
                &[],
                Payload::Json(Value::Object(body.clone())),
                request,
            )
            .await?;
        self.outcome(
            &ep,
            &body,
            landed,
            &["appointment", "event"],
            &[
                "locationId",
                "toNotify",
                "ignoreDateRange",
                "ignoreFreeSlotValidation",
                "description",
            ],
        )
    }

    async fn create_file(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let ep = ops::UPLOAD_CUSTOM_FILES;
        whitelist(
            &ep,
            &request.body,
            &[
                "contactId",
                "field",
                "fileName",
                "contentType",
                "contentBase64",
            ],
            &[],
        )?;
        let contact_id = str_field(&request.body, "contactId")
            .ok_or_else(|| reject(&ep, "a file needs contactId"))?
            .to_string();
        let field_ref = str_field(&request.body, "field")
            .ok_or_else(|| reject(&ep, "a file needs the FILE_UPLOAD field (id or name)"))?;
        let file_name = str_field(&request.body, "fileName")
            .unwrap_or("chart.pdf")
            .to_string();
        let mime = str_field(&request.body, "contentType")
            .unwrap_or("application/pdf")
            .to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                str_field(&request.body, "contentBase64")
                    .ok_or_else(|| reject(&ep, "a file needs contentBase64"))?,
            )
            .map_err(|e| reject(&ep, format!("contentBase64 is not base64: {e}")))?;
        let field = self.field("contact", field_ref).await?;
        if field.data_type != "FILE_UPLOAD" {
            return Err(DestError::Precondition(format!(
                "custom field `{}` is {}, not FILE_UPLOAD",
                field.name, field.data_type
            )));
        }
        let uuid = WriteRequest::uuid_for_key(&request.idempotency_key).to_string();
        let payload = Payload::File {
            part_name: format!("{}_{uuid}", field.id),
            file_name,
            mime,
            bytes: bytes.clone(),
        };
        let query = [
            ("contactId", contact_id.as_str()),
            ("locationId", self.location()),
        ];
        let landed = self
            .create_once(&ep, ep.path, &query, payload, request)
            .await?;
        let body = match landed {
            Landed::Created(b) | Landed::Found(b) => b,
        };
        // The upload answers with the updated contact (no schema); read it when it does not.
        let contact = match record_in(&body, &["contact"])
            .filter(|c| file_entry(c, &field.id, &uuid).is_some())
        {
            Some(c) => c.clone(),
            None => self
                .get_contact(&contact_id)
                .await?
                .ok_or_else(|| DestError::Mismatch {
                    endpoint: ep.describe(),
                    message: format!("contact {contact_id} vanished after the upload"),
                })?,
        };
        let entry = file_entry(&contact, &field.id, &uuid).ok_or_else(|| DestError::Mismatch {
            endpoint: ep.describe(),
            message: format!(
                "the file is not in field {} of contact {contact_id} after a 2xx",
                field.id
            ),
        })?;
        let size = entry.pointer("/meta/size").and_then(Value::as_u64);
        if size.is_some_and(|s| s != bytes.len() as u64) {
            return Err(DestError::Mismatch {
                endpoint: ep.describe(),
                message: format!(
                    "stored file has {} bytes, sent {}",
                    size.unwrap_or(0),
                    bytes.len()
                ),
            });
        }
        Ok(WriteOutcome {
            dest_id: format!("{contact_id}/{}/{uuid}", field.id),
            stored: entry,
        })
    }

    async fn get_contact(&self, id: &str) -> Result<Option<Value>, DestError> {
        self.get_record(
            &ops::GET_CONTACT,
            &ops::GET_CONTACT.path_with(&[id]),
            &[],
            &["contact"],
        )
        .await
    }

    async fn get_record(
        &self,
        ep: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        wrappers: &[&str],
    ) -> Result<Option<Value>, DestError> {
        match self.client.call(ep, path, query, &Payload::None).await {
            Ok(reply) => Ok(record_in(&reply.body, wrappers).cloned()),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(f.into_error(ep)),
        }
    }

    async fn delete_record(
        &self,
        ep: &Endpoint,
        path: &str,
        body: Option<Value>,
    ) -> Result<(), DestError> {
        let payload = body.map(Payload::Json).unwrap_or(Payload::None);
        match self.client.call(ep, path, &[], &payload).await {
            Ok(_) => Ok(()),
            Err(f) if f.is_not_found() => Ok(()),
            Err(f) => Err(f.into_error(ep)),
        }
    }

    /// Looks for an earlier attempt's record, using the parent the request names
    /// where the marker can only be searched per contact.
    pub async fn find_existing(
        &self,
        request: &WriteRequest,
    ) -> Result<Option<DestRecord>, DestError> {
        let key = request.idempotency_key.as_str();
        let contact = str_field(&request.body, "contactId");
        let found = match (request.object.as_str(), contact) {
            ("note", Some(c)) => self
                .find_in_list(
                    &ops::LIST_NOTES,
                    &ops::LIST_NOTES.path_with(&[c]),
                    &[],
                    "notes",
                    "body",
                    key,
                )
                .await?
                .map(|(id, b)| (format!("{c}/{id}"), b)),
            ("task", Some(c)) => self
                .find_in_list(
                    &ops::LIST_TASKS,
                    &ops::LIST_TASKS.path_with(&[c]),
                    &[],
                    "tasks",
                    "body",
                    key,
                )
                .await?
                .map(|(id, b)| (format!("{c}/{id}"), b)),
            ("appointment", Some(c)) => {
                self.find_in_list(
                    &ops::CONTACT_APPOINTMENTS,
                    &ops::CONTACT_APPOINTMENTS.path_with(&[c]),
                    &[],
                    "events",
                    "description",
                    key,
                )
                .await?
            }
            ("opportunity", Some(c)) => self.find_opportunity(key, Some(c)).await?,
            ("file", Some(c)) => {
                let field_ref = str_field(&request.body, "field").unwrap_or_default();
                let field = self.field("contact", field_ref).await?;
                let uuid = WriteRequest::uuid_for_key(key).to_string();
                self.get_contact(c).await?.and_then(|contact| file_entry(&contact, &field.id, &uuid)).map(|entry| (format!("{c}/{}/{uuid}", field.id), json!({ "contact": { "id": c, "customFields": [{ "id": field.id, "value": { uuid.clone(): entry } }] } })))
            }
            ("contact_business_link", Some(c)) => {
                let wanted = str_field(&request.body, "businessId");
                self.get_contact(c)
                    .await?
                    .filter(|contact| contact.get("businessId").and_then(Value::as_str) == wanted)
                    .map(|contact| (c.to_string(), contact))
            }
            ("contact", _) => match self.find_by_key("contact", key).await? {
                Some(found) => return Ok(Some(found)),
                // The search index may lag a create that just landed; the duplicate
                // lookup by e-mail or phone reads the contact itself.
                None => self.find_contact_by_identity(&request.body, key).await?,
            },
            _ => return self.find_by_key(&request.object, key).await,
        };
        Ok(found.map(|(id, body)| DestRecord {
            object: request.object.clone(),
            id,
            body,
        }))
    }

    pub(super) async fn find_contact_by_identity(
        &self,
        body: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<(String, Value)>, DestError> {
        let field = self.field("contact", SOURCE_ID_FIELD).await?;
        for (param, value) in [
            ("email", str_field(body, "email")),
            ("number", str_field(body, "phone")),
        ] {
            let Some(value) = value else { continue };
            let query = [("locationId", self.location()), (param, value)];
            let reply = self
                .client
                .call_json(
                    &ops::DUPLICATE_CONTACT,
                    ops::DUPLICATE_CONTACT.path,
                    &query,
                    None,
                )
                .await?;
            let Some(contact) = reply.get("contact").filter(|c| c.is_object()) else {
                continue;
            };
            let ours = contact
                .get("customFields")
                .and_then(Value::as_array)
                .is_some_and(|fields| {
                    fields.iter().any(|f| {
                        f.get("id").and_then(Value::as_str) == Some(&field.id)
                            && f.get("value").and_then(Value::as_str) == Some(key)
                    })
                });
            if ours {
                return Ok(id_of(contact).map(|id| (id, contact.clone())));
            }
        }
        Ok(None)
    }

    async fn find_in_list(
        &self,
        ep: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        list: &str,
        text_field: &str,
        key: &str,
    ) -> Result<Option<(String, Value)>, DestError> {
        let body = match self.client.call(ep, path, query, &Payload::None).await {
            Ok(reply) => reply.body,
            Err(f) if f.is_not_found() => return Ok(None),
            Err(f) => return Err(f.into_error(ep)),
        };
        Ok(body
            .get(list)
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .find(|item| carries_marker(item.get(text_field), key))
            })
            .and_then(|item| Some((id_of(item)?, item.clone()))))
    }

    async fn find_opportunity(
        &self,
        key: &str,
        contact: Option<&str>,
    ) -> Result<Option<(String, Value)>, DestError> {
        let field = self.field("opportunity", SOURCE_ID_FIELD).await?;
        let pipeline = self.pipeline().await?;
        let mut page = 1u32;
        loop {
            let page_text = page.to_string();
            let mut query = vec![
                ("location_id", self.location()),
                ("pipeline_id", pipeline.id.as_str()),
                ("limit", "100"),
                ("page", page_text.as_str()),
            ];
            if let Some(c) = contact {
                query.push(("contact_id", c));
            }
            let body = self
                .client
                .call_json(
                    &ops::SEARCH_OPPORTUNITIES,
                    ops::SEARCH_OPPORTUNITIES.path,
                    &query,
                    None,
                )
                .await?;
            let items = body
                .get("opportunities")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let hit = items.iter().find(|o| {
                o.get("customFields")
                    .and_then(Value::as_array)
                    .is_some_and(|fields| {
                        fields.iter().any(|f| {
                            f.get("id").and_then(Value::as_str) == Some(&field.id)
                                && f.get("fieldValue")
                                    .or_else(|| f.get("value"))
                                    .and_then(Value::as_str)
                                    == Some(key)
                        })
                    })
            });
            if let Some(o) = hit {
                return Ok(Some((id_of(o).unwrap_or_default(), o.clone())));
            }
            if items.len() < 100 || page >= 1000 {
                return Ok(None);
            }
            page += 1;
        }
    }
}

/// The entry for file `uuid` in FILE_UPLOAD field `field_id` of a contact (read shape).
fn file_entry(contact: &Value, field_id: &str, uuid: &str) -> Option<Value> {
    contact
        .get("customFields")?
        .as_array()?
        .iter()
        .find(|f| f.get("id").and_then(Value::as_str) == Some(field_id))?
        .get("value")
        .or_else(|| contact.get("field_value"))?
        .get(uuid)
        .cloned()
}

#[async_trait]
impl ReadDestination for HighLevelDestination {
    fn kind(&self) -> &'static str {
        "highlevel"
    }

    fn capabilities(&self) -> Capabilities {
        let config = self.client.config();
        Capabilities {
            max_batch: 1,
            requests_per_window: config.requests_per_window,
            window: config.window,
            daily_limit: Some(config.daily_limit),
        }
    }

    async fn inventory(&self) -> Result<DestInventory, DestError> {
        let fields = self.load_fields(true).await?;
        let pipelines = self.load_pipelines().await?;
        Ok(DestInventory {
            objects: OBJECT_KINDS.iter().map(|k| k.to_string()).collect(),
            fields: fields
                .into_iter()
                .map(|f| SchemaChange {
                    kind: "field".into(),
                    name: format!("{}.{}", f.model, f.name),
                    dest_id: f.id,
                    created: false,
                })
                .collect(),
            pipelines: pipelines
                .into_iter()
                .map(|p| PipelineSpec {
                    name: p.name,
                    stages: p.stages.into_iter().map(|(_, n)| n).collect(),
                })
                .collect(),
        })
    }

    async fn get(&self, object: &str, id: &str) -> Result<Option<DestRecord>, DestError> {
        // `read_as_sent` names custom fields and stages by these lists.
        if matches!(object, "contact" | "opportunity" | "file") {
            self.load_fields(false).await?;
        }
        if object == "opportunity" {
            self.load_pipelines().await?;
        }
        let body = match object {
            "contact" => self.get_contact(id).await?,
            "business" => self.get_record(&ops::GET_BUSINESS, &ops::GET_BUSINESS.path_with(&[id]), &[], &["business"]).await?,
            "contact_business_link" => self.get_contact(id).await?.map(|c| json!({ "contactId": id, "businessId": c.get("businessId").cloned().unwrap_or(Value::Null) })),
            "opportunity" => self.get_record(&ops::GET_OPPORTUNITY, &ops::GET_OPPORTUNITY.path_with(&[id]), &[], &["opportunity"]).await?,
            "note" => {
                let parts = split_id(&ops::GET_NOTE, id, 2)?;
                self.get_record(&ops::GET_NOTE, &ops::GET_NOTE.path_with(&parts), &[], &["note"]).await?
            }
            "task" => {
                let parts = split_id(&ops::GET_TASK, id, 2)?;
                self.get_record(&ops::GET_TASK, &ops::GET_TASK.path_with(&parts), &[], &["task"]).await?
            }
            "appointment" => self.get_record(&ops::GET_APPOINTMENT, &ops::GET_APPOINTMENT.path_with(&[id]), &[], &["event", "appointment"]).await?,
            "file" => {
                let parts = split_id(&ops::UPLOAD_CUSTOM_FILES, id, 3)?;
                self.get_contact(parts[0]).await?.and_then(|c| file_entry(&c, parts[1], parts[2]))
            }
            other => return Err(DestError::Precondition(format!("HighLevel has no object kind `{other}` (known: {})", OBJECT_KINDS.join(", ")))),
        };
        Ok(body.map(|body| DestRecord {
            object: object.to_string(),
            id: id.to_string(),
            body,
        }))
    }

    async fn find_by_key(
        &self,
        object: &str,
        idempotency_key: &str,
    ) -> Result<Option<DestRecord>, DestError> {
        let found = match object {
            "contact" => {
                let field = self.field("contact", SOURCE_ID_FIELD).await?;
                let search = json!({
                    "locationId": self.location(),
                    "page": 1,
                    "pageLimit": 20,
                    "filters": [{ "field": format!("customFields.{}", field.id), "operator": "eq", "value": idempotency_key }],
                });
                let body = self.client.call_json(&ops::SEARCH_CONTACTS, ops::SEARCH_CONTACTS.path, &[], Some(search)).await?;
                let contacts = body.get("contacts").and_then(Value::as_array).cloned().unwrap_or_default();
                // Trust the search only as far as the stored value confirms it.
                let mut hit = None;
                for candidate in contacts {
                    let Some(id) = id_of(&candidate) else { continue };
                    if let Some(contact) = self.get_contact(&id).await? {
                        let confirmed = contact.get("customFields").and_then(Value::as_array).is_some_and(|fields| {
                            fields.iter().any(|f| f.get("id").and_then(Value::as_str) == Some(&field.id) && f.get("value").and_then(Value::as_str) == Some(idempotency_key))
                        });
                        if confirmed {
                            hit = Some((id, contact));
                            break;
                        }
                    }
                }
                hit
            }
            "business" => {
                let mut skip = 0usize;
                loop {
                    let skip_text = skip.to_string();
                    let query = [("locationId", self.location()), ("limit", "100"), ("skip", skip_text.as_str())];
                    let body = self.client.call_json(&ops::LIST_BUSINESSES, ops::LIST_BUSINESSES.path, &query, None).await?;
                    let items = body.get("businesses").and_then(Value::as_array).cloned().unwrap_or_default();
                    if let Some(b) = items.iter().find(|b| carries_marker(b.get("description"), idempotency_key)) {
                        break id_of(b).map(|id| (id, b.clone()));
                    }
                    if items.len() < 100 {
                        break None;
                    }
                    skip += items.len();
                }
            }
            "opportunity" => self.find_opportunity(idempotency_key, None).await?,
            "note" | "task" | "appointment" | "file" | "contact_business_link" => {
                return Err(DestError::Precondition(format!("a HighLevel {object} can only be found through its contact: use find_existing with the write request")))
            }
            other => return Err(DestError::Precondition(format!("HighLevel has no object kind `{other}`"))),
        };
        Ok(found.map(|(id, body)| DestRecord {
            object: object.to_string(),
            id,
            body,
        }))
    }

    async fn find_existing(&self, request: &WriteRequest) -> Result<Option<DestRecord>, DestError> {
        HighLevelDestination::find_existing(self, request).await
    }

    /// Custom fields by name through the stored `[{id, value}]` arrays, stages by
    /// name, our marker lines removed, HighLevel's normalisations allowed for
    /// (`super::read_back`). Needs the field and pipeline lists, which `get` loads.
    fn read_as_sent(&self, sent: &Map<String, Value>, record: &DestRecord) -> Map<String, Value> {
        let cache = self.read_back.read().expect("read-back cache lock");
        super::read_back::read_as_sent(&cache.fields, &cache.stages, sent, record)
    }
}

#[async_trait]
impl Destination for HighLevelDestination {
    async fn ensure_schema(&self, spec: &SchemaSpec) -> Result<Vec<SchemaChange>, DestError> {
        let mut wanted: Vec<FieldSpec> = spec.fields.clone();
        for model in ["contact", "opportunity"] {
            if !wanted
                .iter()
                .any(|f| f.object == model && f.name.eq_ignore_ascii_case(SOURCE_ID_FIELD))
            {
                wanted.push(FieldSpec {
                    object: model.into(),
                    name: SOURCE_ID_FIELD.into(),
                    label: SOURCE_ID_FIELD.into(),
                    field_type: FieldType::Text,
                    options: vec![],
                    relation_to: None,
                });
            }
        }
        let mut problems = Vec::new();
        let mut changes = Vec::new();
        let existing = self.load_fields(true).await?;
        for field in &wanted {
            if !matches!(field.object.as_str(), "contact" | "opportunity") {
                problems.push(format!("{}.{}: HighLevel custom fields are written for contacts and opportunities only", field.object, field.name));
                continue;
            }
            let Some(data_type) = data_type_for(field.field_type) else {
                problems.push(format!(
                    "{}.{}: relation fields do not exist in HighLevel",
                    field.object, field.name
                ));
                continue;
            };
            if let Some(found) = existing
                .iter()
                .find(|f| f.model == field.object && f.name.eq_ignore_ascii_case(&field.name))
            {
                if !found.data_type.eq_ignore_ascii_case(data_type) {
                    problems.push(format!("{}.{} exists as {} but the map needs {data_type}; rename or fix it in HighLevel", field.object, found.name, found.data_type));
                } else {
                    changes.push(SchemaChange {
                        kind: "field".into(),
                        name: format!("{}.{}", field.object, field.name),
                        dest_id: found.id.clone(),
                        created: false,
                    });
                }
                continue;
            }
            let mut body =
                json!({ "name": field.name, "dataType": data_type, "model": field.object });
            match field.field_type {
                FieldType::File => {
                    body["acceptedFormat"] = json!([".pdf"]);
                    body["isMultipleFile"] = json!(true);
                    body["maxNumberOfFiles"] = json!(20);
                }
                FieldType::Boolean => body["options"] = json!(["Yes", "No"]),
                FieldType::Select | FieldType::MultiSelect => {
                    body["options"] = json!(field.options)
                }
                _ => {}
            }
            let path = ops::CREATE_CUSTOM_FIELD.path_with(&[self.location()]);
            let reply = self
                .client
                .call_json(&ops::CREATE_CUSTOM_FIELD, &path, &[], Some(body))
                .await?;
            let id =
                reply
                    .get("customField")
                    .and_then(id_of)
                    .ok_or_else(|| DestError::Mismatch {
                        endpoint: ops::CREATE_CUSTOM_FIELD.describe(),
                        message: "no id in the response".into(),
                    })?;
            changes.push(SchemaChange {
                kind: "field".into(),
                name: format!("{}.{}", field.object, field.name),
                dest_id: id,
                created: true,
            });
        }
        self.load_fields(true).await?;
        if !spec.pipelines.is_empty() {
            let pipelines = self.load_pipelines().await?;
            for wanted in &spec.pipelines {
                match pipelines
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(&wanted.name))
                {
                    None => problems.push(format!(
                        "pipeline \"{}\" with stages {} (create it in HighLevel)",
                        wanted.name,
                        wanted
                            .stages
                            .iter()
                            .map(|s| format!("\"{s}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Some(found) => {
                        let missing: Vec<&String> = wanted
                            .stages
                            .iter()
                            .filter(|s| {
                                !found.stages.iter().any(|(_, n)| n.eq_ignore_ascii_case(s))
                            })
                            .collect();
                        if missing.is_empty() {
                            changes.push(SchemaChange {
                                kind: "pipeline".into(),
                                name: found.name.clone(),
                                dest_id: found.id.clone(),
                                created: false,
                            });
                        } else {
                            problems.push(format!(
                                "stages {missing:?} in pipeline \"{}\" (add them in HighLevel)",
                                found.name
                            ));
                        }
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(DestError::Precondition(format!(
                "missing at the destination: {}",
                problems.join("; ")
            )));
        }
        Ok(changes)
    }

    async fn drop_schema(&self, change: &SchemaChange) -> Result<(), DestError> {
        if !change.created {
            return Err(DestError::Precondition(format!(
                "{} was not created by cutover; it is never deleted",
                change.name
            )));
        }
        match change.kind.as_str() {
            "field" => {
                let path = ops::DELETE_CUSTOM_FIELD.path_with(&[self.location(), &change.dest_id]);
                self.delete_record(&ops::DELETE_CUSTOM_FIELD, &path, None)
                    .await?;
                self.load_fields(true).await.map(|_| ())
            }
            other => Err(DestError::Precondition(format!(
                "cutover does not remove HighLevel {other}s"
            ))),
        }
    }

    async fn create(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        match request.object.as_str() {
            "contact" => self.create_contact(request).await,
            "business" => self.create_business(request).await,
            "contact_business_link" => self.create_link(request).await,
            "opportunity" => self.create_opportunity(request).await,
            "note" => self.create_note(request).await,
            "task" => self.create_task(request).await,
            "appointment" => self.create_appointment(request).await,
            "file" => self.create_file(request).await,
            other => Err(DestError::Precondition(format!(
                "HighLevel has no object kind `{other}` (known: {})",
                OBJECT_KINDS.join(", ")
            ))),
        }
    }

    async fn update(
        &self,
        object: &str,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<WriteOutcome, DestError> {
        match object {
            "contact" => {
                let ep = ops::UPDATE_CONTACT;
                // Read shapes (before-images) come back in: drop what is not writable.
                let read_only = [
                    "id",
                    "contactName",
                    "locationId",
                    "dateAdded",
                    "dateUpdated",
                    "emailLowerCase",
                    "firstNameLowerCase",
                    "lastNameLowerCase",
                    "fullNameLowerCase",
                    "type",
                    "businessId",
                    "attachments",
                    "additionalEmails",
                    "gender",
                    "companyName",
                    "lastActivity",
                    "attributionSource",
                    "lastAttributionSource",
                    "visitorId",
                    "keyword",
                    "ssn",
                    "followers",
                    "dateOfBirth_epoch",
                ];
                // `tags`, when given, replace all of the contact's tags (HighLevel's rule):
                // exactly right for restoring a before-image; forward updates leave them out.
                let mut sent = whitelist(&ep, body, CONTACT_UPDATE_FIELDS, &read_only)?;
                match self.custom_fields("contact", body, None).await? {
                    Some(fields) => sent.insert("customFields".into(), fields),
                    None => sent.remove("customFields"),
                };
                let reply = self
                    .client
                    .call_json(
                        &ep,
                        &ep.path_with(&[id]),
                        &[],
                        Some(Value::Object(sent.clone())),
                    )
                    .await?;
                self.outcome(
                    &ep,
                    &sent,
                    Landed::Created(reply),
                    &["contact"],
                    &["dndSettings", "inboundDndSettings", "name"],
                )
            }
            "business" => {
                let ep = ops::UPDATE_BUSINESS;
                let sent = whitelist(
                    &ep,
                    body,
                    BUSINESS_FIELDS,
                    &[
                        "id",
                        "locationId",
                        "createdAt",
                        "updatedAt",
                        "createdBy",
                        "updatedBy",
                    ],
                )?;
                let reply = self
                    .client
                    .call_json(
                        &ep,
                        &ep.path_with(&[id]),
                        &[],
                        Some(Value::Object(sent.clone())),
                    )
                    .await?;
                self.outcome(
                    &ep,
                    &sent,
                    Landed::Created(reply),
                    &["buiseness", "business"],
                    &[],
                )
            }
            "contact_business_link" => {
                let business = body
                    .get("businessId")
                    .or_else(|| body.get("previousBusinessId"))
                    .and_then(Value::as_str);
                self.link_business(id, business).await?;
                Ok(WriteOutcome {
                    dest_id: id.to_string(),
                    stored: json!({ "contactId": id, "businessId": business }),
                })
            }
            "opportunity" => {
                let ep = ops::UPDATE_OPPORTUNITY;
                let read_only = [
                    "id",
                    "locationId",
                    "contactId",
                    "contact",
                    "createdAt",
                    "updatedAt",
                    "lastStatusChangeAt",
                    "lastStageChangeAt",
                    "followers",
                    "source",
                    "notes",
                    "tasks",
                    "calendarEvents",
                    "lostReasonId",
                    "relations",
                    "attributions",
                    "sort",
                    "forecastProbability",
                    "effectiveProbability",
                    "lastActionDate",
                    "indexVersion",
                    "isAttribute",
                    "stage",
                ];
                let mut sent = whitelist(&ep, body, OPPORTUNITY_FIELDS, &read_only)?;
                if let Some(stage) = str_field(body, "stage") {
                    let pipeline = self.pipeline().await?;
                    sent.insert(
                        "pipelineStageId".into(),
                        json!(self.stage_id(&pipeline, stage).await?),
                    );
                }
                match self.custom_fields("opportunity", body, None).await? {
                    Some(fields) => sent.insert("customFields".into(), fields),
                    None => sent.remove("customFields"),
                };
                let reply = self
                    .client
                    .call_json(
                        &ep,
                        &ep.path_with(&[id]),
                        &[],
                        Some(Value::Object(sent.clone())),
                    )
                    .await?;
                self.outcome(&ep, &sent, Landed::Created(reply), &["opportunity"], &[])
            }
            "note" => {
                self.update_contact_child(
                    ops::UPDATE_NOTE,
                    id,
                    body,
                    NOTE_FIELDS,
                    &["id", "contactId", "dateAdded", "relations"],
                    "note",
                )
                .await
            }
            "task" => {
                self.update_contact_child(
                    ops::UPDATE_TASK,
                    id,
                    body,
                    TASK_FIELDS,
                    &["id", "contactId", "dateAdded", "dateUpdated"],
                    "task",
                )
                .await
            }
            "appointment" => {
                let ep = ops::UPDATE_APPOINTMENT;
                let read_only = [
                    "id",
                    "locationId",
                    "contactId",
                    "groupId",
                    "isRecurring",
                    "dateAdded",
                    "dateUpdated",
                    "appoinmentStatus",
                    "createdBy",
                    "masterEventId",
                ];
                let mut sent = whitelist(&ep, body, APPOINTMENT_FIELDS, &read_only)?;
                sent.insert("toNotify".into(), json!(false));
                sent.insert("ignoreDateRange".into(), json!(true));
                sent.insert("ignoreFreeSlotValidation".into(), json!(true));
                let reply = self
                    .client
                    .call_json(
                        &ep,
                        &ep.path_with(&[id]),
                        &[],
                        Some(Value::Object(sent.clone())),
                    )
                    .await?;
                self.outcome(
                    &ep,
                    &sent,
                    Landed::Created(reply),
                    &["appointment", "event"],
                    &["toNotify", "ignoreDateRange", "ignoreFreeSlotValidation"],
                )
            }
            "file" => {
                // Restores a FILE_UPLOAD field's value: `{field_value: <map>}` (an empty map clears it).
                let ep = ops::UPDATE_CONTACT;
                let parts = split_id(&ops::UPLOAD_CUSTOM_FILES, id, 3)?;
                let value = body
                    .get("field_value")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let sent = json!({ "customFields": [{ "id": parts[1], "field_value": value }] });
                let reply = self
                    .client
                    .call_json(&ep, &ep.path_with(&[parts[0]]), &[], Some(sent))
                    .await?;
                let stored = record_in(&reply, &["contact"])
                    .cloned()
                    .unwrap_or(Value::Null);
                Ok(WriteOutcome {
                    dest_id: id.to_string(),
                    stored,
                })
            }
            other => Err(DestError::Precondition(format!(
                "HighLevel has no object kind `{other}`"
            ))),
        }
    }

    async fn delete(&self, object: &str, id: &str) -> Result<(), DestError> {
        match object {
            "contact" => {
                self.delete_record(
                    &ops::DELETE_CONTACT,
                    &ops::DELETE_CONTACT.path_with(&[id]),
                    None,
                )
                .await
            }
            "business" => {
                self.delete_record(
                    &ops::DELETE_BUSINESS,
                    &ops::DELETE_BUSINESS.path_with(&[id]),
                    None,
                )
                .await
            }
            "contact_business_link" => self.link_business(id, None).await,
            "opportunity" => {
                self.delete_record(
                    &ops::DELETE_OPPORTUNITY,
                    &ops::DELETE_OPPORTUNITY.path_with(&[id]),
                    None,
                )
                .await
            }
            "note" => {
                let parts = split_id(&ops::DELETE_NOTE, id, 2)?;
                self.delete_record(&ops::DELETE_NOTE, &ops::DELETE_NOTE.path_with(&parts), None)
                    .await
            }
            "task" => {
                let parts = split_id(&ops::DELETE_TASK, id, 2)?;
                self.delete_record(&ops::DELETE_TASK, &ops::DELETE_TASK.path_with(&parts), None)
                    .await
            }
            "appointment" => {
                self.delete_record(
                    &ops::DELETE_EVENT,
                    &ops::DELETE_EVENT.path_with(&[id]),
                    Some(json!({})),
                )
                .await
            }
            "file" => {
                let parts = split_id(&ops::UPLOAD_CUSTOM_FILES, id, 3)?;
                let Some(contact) = self.get_contact(parts[0]).await? else {
                    return Ok(());
                };
                let mut map = contact
                    .get("customFields")
                    .and_then(Value::as_array)
                    .and_then(|fields| {
                        fields
                            .iter()
                            .find(|f| f.get("id").and_then(Value::as_str) == Some(parts[1]))
                    })
                    .and_then(|f| f.get("value"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if map.remove(parts[2]).is_none() {
                    return Ok(());
                }
                let mut restore = Map::new();
                restore.insert("field_value".into(), Value::Object(map));
                self.update("file", id, &restore).await.map(|_| ())
            }
            other => Err(DestError::Precondition(format!(
                "HighLevel has no object kind `{other}`"
            ))),
        }
    }
}

/// Field ids by name, for callers that build bodies (preflight, demo).
pub async fn field_ids(
    destination: &HighLevelDestination,
) -> Result<HashMap<String, String>, DestError> {
    Ok(destination
        .load_fields(false)
        .await?
        .into_iter()
        .map(|f| (format!("{}.{}", f.model, f.name), f.id))
        .collect())
}
