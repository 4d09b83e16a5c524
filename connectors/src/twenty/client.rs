//! The Twenty client: REST records, the metadata API and the file-upload flow,
//! implementing the engine's `Destination` port.
//!
//! Every request goes through one [`RequestBudget`] and one retry loop
//! ([`TwentyClient::call`]). Records are created with client-chosen UUIDs (the
//! idempotency key's v5 UUID unless the request carries one), so a request whose
//! answer was lost is resolved by looking the id up, never by sending it again
//! blindly, and never with the server's upsert (it revives soft-deleted rows and
//! returns no before-image).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::sync::RwLock;
use tracing::{debug, warn};
use uuid::Uuid;

use cutover_engine::ports::FieldType;

use cutover_engine::{
    Capabilities, DestError, DestInventory, DestRecord, Destination, ReadDestination, SchemaChange,
    SchemaSpec, WriteOutcome, WriteRequest,
};

use super::budget::{self, RequestBudget};
use super::config::TwentyConfig;
use super::metadata::{Catalog, ObjectMeta};
use super::retry::{Backoff, TwentyResponses, Verdict};
use super::schema::{
    options_json, plural_of, twenty_type, ATTACHMENT_FILE_FIELD_UID, LEGACY_CREATED_AT,
};
use crate::http::budget::BudgetRefusal;
use crate::http::retry::{ClassifyResponse, RetryClass, RetryPolicy, Tally};

/// Body key of an attachment write that carries the file itself:
/// `{"$upload": {"filename": "chart.pdf", "contentBase64": "…"}}`. The client runs the
/// upload flow and replaces it with the `file` field.
pub const UPLOAD_KEY: &str = "$upload";

/// Most ids per `filter=id[in]:[…]` (Twenty's `MUTATION_MAXIMUM_AFFECTED_RECORDS`).
const MAX_IDS_PER_FILTER: usize = 100;

/// Rollback order: the lower the rank, the earlier a record of that object is destroyed.
pub fn rollback_rank(object: &str) -> u8 {
    match object {
        "attachment" | "attachments" => 0,
        "noteTarget" | "noteTargets" | "taskTarget" | "taskTargets" => 1,
        "note" | "notes" | "task" | "tasks" => 2,
        "perioComparison" | "perioComparisons" => 3,
        "perioExam" | "perioExams" | "treatmentPlan" | "treatmentPlans" => 4,
        "opportunity" | "opportunities" => 5,
        "person" | "people" => 6,
        "company" | "companies" => 7,
        _ => 4,
    }
}

/// An answer that passed classification.
#[derive(Debug)]
struct Reply {
    body: Value,
}

/// A Twenty workspace as a destination.
pub struct TwentyClient {
    http: reqwest::Client,
    config: TwentyConfig,
    budget: Arc<RequestBudget>,
    catalog: RwLock<Option<Arc<Catalog>>>,
    /// Records per batch actually used: the configured size, lowered when the
    /// server says its cap (`QUERY_MAX_RECORDS`) is smaller.
    batch_size: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for TwentyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwentyClient")
            .field("base_url", &self.config.base_url.as_str())
            .finish()
    }
}

fn first_record(data: &Value) -> Option<&Value> {
    match data {
        Value::Object(map) => map
            .values()
            .find(|v| v.is_object() && v.get("id").is_some()),
        _ => None,
    }
}

fn capitalise(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

impl TwentyClient {
    pub fn new(config: TwentyConfig) -> Result<Self, DestError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestError::Config(format!("cannot build the HTTP client: {e}")))?;
        let budget = Arc::new(budget::per_minute(config.requests_per_minute));
        let batch_size = std::sync::atomic::AtomicUsize::new(config.batch_size);
        Ok(TwentyClient {
            http,
            config,
            budget,
            catalog: RwLock::new(None),
            batch_size,
        })
    }

    pub fn config(&self) -> &TwentyConfig {
        &self.config
    }

    pub fn budget(&self) -> &RequestBudget {
        &self.budget
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.config.base_backoff,
            cap: self.config.max_backoff,
        }
    }

    /// One API call through the budget, retried on 429 / 5xx / network errors.
    /// `endpoint` names the place in errors (method and path, no query: filters may hold PHI).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Reply, DestError> {
        let endpoint = format!("{method} /{}", path.trim_start_matches('/'));
        let url = self.config.url(path);
        let token = &self.config.token;
        let mut attempts = self.retry_policy().attempts();
        loop {
            if let Err(BudgetRefusal::DailyExhausted { retry_after }) = self.budget.acquire().await
            {
                // Twenty's budget has no daily cap; should one be configured, a spent
                // day is a rate limit the caller resumes from tomorrow.
                return Err(DestError::RateLimited {
                    endpoint,
                    retry_after_ms: Some(retry_after.as_millis() as u64),
                });
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose());
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let verdict = match request.send().await {
                Ok(response) => {
                    let status_code = response.status();
                    let status = status_code.as_u16();
                    let headers = response.headers().clone();
                    match response.text().await {
                        Ok(text) => {
                            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            match TwentyResponses.classify(status_code, &headers, &parsed) {
                                Verdict::Success => {
                                    self.budget.accepted();
                                    return Ok(Reply { body: parsed });
                                }
                                other => (Some(status), other),
                            }
                        }
                        // The answer broke off: whatever it said is unknown, so ask again
                        // (a create that landed then shows up as a duplicate and is read back).
                        Err(error) => (
                            Some(status),
                            Verdict::Transient {
                                message: token.redact(&format!(
                                    "the answer broke off: {}",
                                    error.without_url()
                                )),
                            },
                        ),
                    }
                }
                Err(error) => {
                    let message = token.redact(&error.without_url().to_string());
                    (None, Verdict::Transient { message })
                }
            };
            let class = TwentyResponses.retry_class(&verdict.1);
            if verdict.0.is_some() && class != RetryClass::RateLimited {
                self.budget.accepted();
            }
            let Tally {
                attempt,
                give_up: exhausted,
            } = attempts.record(class);
            match verdict {
                (_, Verdict::RateLimited { retry_after }) => {
                    let step = attempt.min(6) - 1;
                    let wait = self
                        .backoff()
                        .delay_with_floor(step, retry_after.or(Some(self.rate_limit_floor())));
                    self.budget.rate_limited(wait);
                    warn!(%endpoint, attempt, wait_ms = wait.as_millis() as u64, "rate limited by Twenty");
                    if exhausted {
                        return Err(DestError::RateLimited {
                            endpoint,
                            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
                        });
                    }
                }
                (status, Verdict::Transient { message }) => {
                    if exhausted {
                        return Err(DestError::Transient {
                            endpoint,
                            status,
                            message: token.redact(&message),
                        });
                    }
                    let wait = self.backoff().delay_with_floor(attempt - 1, None);
                    warn!(%endpoint, attempt, status, wait_ms = wait.as_millis() as u64, "transient failure, retrying");
                    tokio::time::sleep(wait).await;
                }
                (status, Verdict::NotFound { message }) => {
                    return Err(DestError::Rejected {
                        endpoint,
                        status: status.unwrap_or(404),
                        message: token.redact(&message),
                    })
                }
                (status, Verdict::Unauthorized { message }) => {
                    return Err(DestError::Unauthorized {
                        endpoint,
                        status: status.unwrap_or(401),
                        message: token.redact(&message),
                    })
                }
                (status, Verdict::Rejected { message, .. }) => {
                    return Err(DestError::Rejected {
                        endpoint,
                        status: status.unwrap_or(400),
                        message: token.redact(&message),
                    })
                }
                (_, Verdict::Success) => unreachable!("success returns above"),
            }
        }
    }

    /// Attempts per request: a 429 says "not processed", so it gets four times the
    /// tries of a failure whose effect is unknown, counted apart.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_attempts,
            max_rate_limited_attempts: Some(self.config.max_attempts.saturating_mul(4)),
        }
    }

    /// Twenty sends no `Retry-After`; one token of its bucket refills in window / limit.
    fn rate_limit_floor(&self) -> Duration {
        Duration::from_secs(60) / self.config.requests_per_minute.max(1)
    }

    // ---- metadata -------------------------------------------------------------------

    /// The workspace's objects and fields, read once (`GET /rest/metadata/objects`).
    pub async fn catalog(&self) -> Result<Arc<Catalog>, DestError> {
        if let Some(catalog) = self.catalog.read().await.as_ref() {
            return Ok(catalog.clone());
        }
        self.refresh_catalog().await
    }

    pub async fn refresh_catalog(&self) -> Result<Arc<Catalog>, DestError> {
        let reply = self
            .call(
                Method::GET,
                "rest/metadata/objects",
                &[("limit", "1000".into())],
                None,
            )
            .await?;
        let mut catalog = Catalog::from_response(&reply.body).map_err(|m| DestError::Mismatch {
            endpoint: "GET /rest/metadata/objects".into(),
            message: m,
        })?;
        if catalog.objects.iter().any(|o| o.fields.is_empty()) {
            // Some versions list objects without their fields: read those separately.
            let fields = self
                .call(
                    Method::GET,
                    "rest/metadata/fields",
                    &[("limit", "1000".into())],
                    None,
                )
                .await?;
            catalog
                .attach_fields(&fields.body)
                .map_err(|m| DestError::Mismatch {
                    endpoint: "GET /rest/metadata/fields".into(),
                    message: m,
                })?;
        }
        let catalog = Arc::new(catalog);
        *self.catalog.write().await = Some(catalog.clone());
        Ok(catalog)
    }

    async fn create_object(
        &self,
        spec: &cutover_engine::ports::ObjectSpec,
    ) -> Result<String, DestError> {
        let body = json!({
            "nameSingular": spec.name, "namePlural": plural_of(&spec.name),
            "labelSingular": spec.label_singular, "labelPlural": spec.label_plural,
            "icon": "IconTooth", "description": "Created by cutover",
        });
        let reply = self
            .call(Method::POST, "rest/metadata/objects", &[], Some(&body))
            .await?;
        self.id_from(&reply.body, "POST /rest/metadata/objects")
    }

    fn id_from(&self, body: &Value, endpoint: &str) -> Result<String, DestError> {
        let data = body.get("data").unwrap_or(body);
        let id = data
            .get("id")
            .or_else(|| first_record(data).and_then(|r| r.get("id")))
            .and_then(Value::as_str);
        id.map(str::to_string).ok_or_else(|| DestError::Mismatch {
            endpoint: endpoint.into(),
            message: "the answer carries no id".into(),
        })
    }

    async fn create_field(
        &self,
        catalog: &Catalog,
        spec: &cutover_engine::ports::FieldSpec,
        owner: &ObjectMeta,
    ) -> Result<String, DestError> {
        let mut body = json!({
            "type": twenty_type(spec.field_type), "name": spec.name, "label": spec.label,
            "objectMetadataId": owner.id, "isNullable": true, "description": "Created by cutover",
        });
        if matches!(spec.field_type, FieldType::Select | FieldType::MultiSelect) {
            body["options"] = Value::Array(options_json(&spec.options, 0));
        }
        if spec.field_type == FieldType::Relation {
            let target_name = spec.relation_to.as_deref().ok_or_else(|| {
                DestError::Config(format!(
                    "relation field {}.{} names no target object",
                    spec.object, spec.name
                ))
            })?;
            let target = catalog.require(target_name)?;
            body["relationCreationPayload"] = json!({
                "type": "MANY_TO_ONE", "targetObjectMetadataId": target.id,
                // The inverse field on the target is named from this label, so it must be unique there.
                "targetFieldLabel": format!("{} ({})", capitalise(&plural_of(&spec.object)), spec.label),
                "targetFieldIcon": "IconLink",
            });
        }
        let reply = self
            .call(Method::POST, "rest/metadata/fields", &[], Some(&body))
            .await?;
        self.id_from(&reply.body, "POST /rest/metadata/fields")
    }

    // ---- records --------------------------------------------------------------------

    /// Adds what every migrated record carries: its id, `createdBy` IMPORT and the
    /// original creation time in `legacyCreatedAt` when the object has that field.
    fn prepare(
        &self,
        catalog: &Catalog,
        object: &ObjectMeta,
        body: &Map<String, Value>,
        id: Uuid,
    ) -> Result<Map<String, Value>, DestError> {
        let mut body = catalog.translate(object, body)?;
        body.insert("id".into(), Value::String(id.to_string()));
        if object.field("createdBy").is_some() {
            body.entry("createdBy")
                .or_insert_with(|| json!({"source": "IMPORT", "name": "cutover"}));
        }
        if let Some(created) = body.get("createdAt").cloned() {
            if object.accepts(LEGACY_CREATED_AT) && !body.contains_key(LEGACY_CREATED_AT) {
                body.insert(LEGACY_CREATED_AT.into(), created);
            }
        }
        Ok(body)
    }

    /// Runs the 2.40+ upload flow for an attachment body's [`UPLOAD_KEY`] and puts
    /// the resulting `file` value in its place.
    async fn upload_into(
        &self,
        object: &ObjectMeta,
        body: &mut Map<String, Value>,
    ) -> Result<(), DestError> {
        let Some(upload) = body.remove(UPLOAD_KEY) else {
            return Ok(());
        };
        let filename = upload
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let content = upload
            .get("contentBase64")
            .and_then(Value::as_str)
            .unwrap_or("");
        if filename.is_empty() {
            return Err(DestError::Config(format!(
                "{UPLOAD_KEY} of an attachment needs a filename"
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| {
                DestError::Config(format!(
                    "{UPLOAD_KEY}.contentBase64 of {filename:?} is not base64: {e}"
                ))
            })?;
        if object.field("file").is_none() {
            return Err(DestError::Precondition(
                "this Twenty workspace's attachment object has no FILES field `file` (1.x upload flow is not supported)".into(),
            ));
        }
        let create = json!({
            "query": "mutation CreateFileUpload($filename: String!, $size: Float!, $uid: String!) { createFileUpload(filename: $filename, size: $size, fieldMetadataUniversalIdentifier: $uid) { fileId uploadUrl contentType expiresAt } }",
            "variables": {"filename": filename, "size": bytes.len(), "uid": ATTACHMENT_FILE_FIELD_UID},
        });
        let reply = self
            .call(Method::POST, "metadata", &[], Some(&create))
            .await?;
        let ticket = reply
            .body
            .pointer("/data/createFileUpload")
            .cloned()
            .unwrap_or(Value::Null);
        let (Some(file_id), Some(upload_url)) = (
            ticket.get("fileId").and_then(Value::as_str),
            ticket.get("uploadUrl").and_then(Value::as_str),
        ) else {
            return Err(DestError::Mismatch {
                endpoint: "POST /metadata createFileUpload".into(),
                message: "no fileId/uploadUrl".into(),
            });
        };
        let content_type = ticket
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream");
        // The upload URL is pre-signed (often object storage): no bearer token goes there.
        let put = self
            .http
            .put(upload_url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| DestError::Transient {
                endpoint: "PUT upload URL".into(),
                status: None,
                message: e.without_url().to_string(),
            })?;
        if !put.status().is_success() {
            let status = put.status().as_u16();
            return Err(if status >= 500 {
                DestError::Transient {
                    endpoint: "PUT upload URL".into(),
                    status: Some(status),
                    message: "upload failed".into(),
                }
            } else {
                DestError::Rejected {
                    endpoint: "PUT upload URL".into(),
                    status,
                    message: "upload refused".into(),
                }
            });
        }
        let complete = json!({
            "query": "mutation CompleteFileUpload($fileId: String!) { completeFileUpload(fileId: $fileId) { id path size createdAt url } }",
            "variables": {"fileId": file_id},
        });
        self.call(Method::POST, "metadata", &[], Some(&complete))
            .await?;
        body.insert(
            "file".into(),
            json!([{"fileId": file_id, "label": filename}]),
        );
        Ok(())
    }

    /// Records of `plural` among `ids`, live ones only (`filter=id[in]:[…]`).
    async fn existing(&self, plural: &str, ids: &[String]) -> Result<Vec<Value>, DestError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_FILTER) {
            let list = chunk
                .iter()
                .map(|id| format!("\"{id}\""))
                .collect::<Vec<_>>()
                .join(",");
            let query = [
                ("filter", format!("id[in]:[{list}]")),
                ("limit", "200".into()),
                ("depth", "0".into()),
            ];
            let reply = self
                .call(Method::GET, &format!("rest/{plural}"), &query, None)
                .await?;
            if let Some(items) = reply
                .body
                .pointer(&format!("/data/{plural}"))
                .and_then(Value::as_array)
            {
                found.extend(items.iter().cloned());
            }
        }
        Ok(found)
    }

    /// One record by id including soft-deleted ones.
    async fn lookup_any(&self, plural: &str, id: &str) -> Result<Option<Value>, DestError> {
        for filter in [
            format!("id[eq]:{id}"),
            format!("and(id[eq]:{id},deletedAt[is]:NOT_NULL)"),
        ] {
            let query = [("filter", filter), ("depth", "0".into())];
            let reply = self
                .call(Method::GET, &format!("rest/{plural}"), &query, None)
                .await?;
            if let Some(hit) = reply.body.pointer(&format!("/data/{plural}/0")) {
                return Ok(Some(hit.clone()));
            }
        }
        Ok(None)
    }

    /// Creates one prepared record; an answer lost or a duplicate on our own id is
    /// resolved by reading the id back.
    async fn create_one(
        &self,
        object: &ObjectMeta,
        body: Map<String, Value>,
        id: &str,
    ) -> Result<WriteOutcome, DestError> {
        let path = format!("rest/{}", object.name_plural);
        let result = self
            .call(
                Method::POST,
                &path,
                &[("depth", "0".into())],
                Some(&Value::Object(body)),
            )
            .await;
        match result {
            Ok(reply) => {
                let data = reply.body.get("data").cloned().unwrap_or(Value::Null);
                let key = format!("create{}", capitalise(&object.name_singular));
                let stored = data
                    .get(&key)
                    .or_else(|| first_record(&data))
                    .cloned()
                    .unwrap_or(Value::Null);
                self.outcome(&format!("POST /{path}"), id, stored)
            }
            Err(error) if may_have_landed(&error) => {
                match self.existing(&object.name_plural, &[id.to_string()]).await {
                    Ok(found) if !found.is_empty() => Ok(WriteOutcome {
                        dest_id: id.to_string(),
                        stored: found[0].clone(),
                    }),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    fn outcome(&self, endpoint: &str, id: &str, stored: Value) -> Result<WriteOutcome, DestError> {
        match stored.get("id").and_then(Value::as_str) {
            Some(got) if got == id => Ok(WriteOutcome {
                dest_id: id.to_string(),
                stored,
            }),
            Some(got) => Err(DestError::Mismatch {
                endpoint: endpoint.into(),
                message: format!("asked for id {id}, got {got}"),
            }),
            None => Err(DestError::Mismatch {
                endpoint: endpoint.into(),
                message: format!("no record in the answer for id {id}"),
            }),
        }
    }

    /// Batch-creates prepared records of one object. A rejected batch is split in
    /// halves until the bad records stand alone; a batch whose answer was lost is
    /// resolved by reading its ids back. Every input gets exactly one result.
    async fn create_chunk(
        &self,
        object: &ObjectMeta,
        items: Vec<(usize, String, Map<String, Value>)>,
    ) -> Vec<(usize, Result<WriteOutcome, DestError>)> {
        let path = format!("rest/batch/{}", object.name_plural);
        let mut results = Vec::with_capacity(items.len());
        let mut pending = vec![items];
        while let Some(chunk) = pending.pop() {
            if chunk.len() == 1 {
                let (index, id, body) = chunk.into_iter().next().expect("one item");
                results.push((index, self.create_one(object, body, &id).await));
                continue;
            }
            let bodies = Value::Array(
                chunk
                    .iter()
                    .map(|(_, _, b)| Value::Object(b.clone()))
                    .collect(),
            );
            debug!(object = %object.name_plural, size = chunk.len(), "batch create");
            match self
                .call(Method::POST, &path, &[("depth", "0".into())], Some(&bodies))
                .await
            {
                Ok(reply) => {
                    let key = format!("create{}", capitalise(&object.name_plural));
                    let stored: Vec<Value> = reply
                        .body
                        .pointer(&format!("/data/{key}"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let mut missing = Vec::new();
                    for (index, id, body) in chunk {
                        match stored
                            .iter()
                            .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
                        {
                            Some(record) => results.push((
                                index,
                                Ok(WriteOutcome {
                                    dest_id: id,
                                    stored: record.clone(),
                                }),
                            )),
                            None => missing.push((index, id, body)),
                        }
                    }
                    // Not in the answer: settle each alone (found → confirmed, else created or quarantined).
                    pending.extend(missing.into_iter().map(|item| vec![item]));
                }
                Err(error) => {
                    let ids: Vec<String> = chunk.iter().map(|(_, id, _)| id.clone()).collect();
                    let probe = if may_have_landed(&error) {
                        self.existing(&object.name_plural, &ids).await
                    } else {
                        Ok(Vec::new())
                    };
                    let found = match probe {
                        Ok(found) => found,
                        Err(probe_error) => {
                            // State unknown for these: say so per record, transient, so they are retried.
                            for (index, _, _) in chunk {
                                results.push((index, Err(DestError::Transient {
                                    endpoint: format!("POST /{path}"),
                                    status: None,
                                    message: format!("batch failed ({error}); read-back failed ({probe_error})"),
                                })));
                            }
                            continue;
                        }
                    };
                    let mut rest = Vec::new();
                    for (index, id, body) in chunk {
                        match found
                            .iter()
                            .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
                        {
                            Some(record) => results.push((
                                index,
                                Ok(WriteOutcome {
                                    dest_id: id,
                                    stored: record.clone(),
                                }),
                            )),
                            None => rest.push((index, id, body)),
                        }
                    }
                    if rest.is_empty() {
                        continue;
                    }
                    let cap = match &error {
                        DestError::Rejected { message, .. } => self.learn_batch_cap(message),
                        _ => None,
                    };
                    match &error {
                        // Too many for this server: re-cut at its cap, nothing is wrong with the records.
                        DestError::Rejected { .. } if cap.is_some_and(|cap| rest.len() > cap) => {
                            let cap = cap.unwrap_or(1);
                            while rest.len() > cap {
                                let tail = rest.split_off(cap);
                                pending.push(std::mem::replace(&mut rest, tail));
                            }
                            pending.push(rest);
                        }
                        DestError::Rejected { .. } if rest.len() > 1 => {
                            let second = rest.split_off(rest.len() / 2);
                            pending.push(second);
                            pending.push(rest);
                        }
                        DestError::Rejected { .. } => pending.push(rest),
                        _ => {
                            for (index, _, _) in rest {
                                results.push((index, Err(clone_error(&error))));
                            }
                        }
                    }
                }
            }
        }
        results
    }

    /// Lowers the batch size when the server reports a smaller cap
    /// ("Maximum number of records to upsert is 20.").
    fn learn_batch_cap(&self, message: &str) -> Option<usize> {
        const MARK: &str = "Maximum number of records to upsert is ";
        let rest = message.find(MARK).map(|at| &message[at + MARK.len()..])?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let cap = digits.parse::<usize>().ok().filter(|cap| *cap > 0)?;
        let previous = self
            .batch_size
            .fetch_min(cap, std::sync::atomic::Ordering::Relaxed);
        if cap < previous {
            warn!(
                cap,
                previous, "the server caps batches lower than configured; using its cap"
            );
        }
        Some(cap)
    }

    /// The batch size in use (configured, or the server's lower cap once seen).
    pub fn effective_batch_size(&self) -> usize {
        self.batch_size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hard-deletes many records of one object (`DELETE /rest/{plural}?filter=id[in]:[…]`,
    /// ≤ 100 per call). Ids already gone count as done.
    pub async fn delete_many(&self, object: &str, ids: &[String]) -> Result<usize, DestError> {
        let catalog = self.catalog().await?;
        let plural = catalog.require(object)?.name_plural.clone();
        let mut deleted = 0;
        for chunk in ids.chunks(MAX_IDS_PER_FILTER) {
            let list = chunk
                .iter()
                .map(|id| format!("\"{id}\""))
                .collect::<Vec<_>>()
                .join(",");
            let query = [
                ("filter", format!("id[in]:[{list}]")),
                ("soft_delete", "false".into()),
            ];
            let reply = self
                .call(Method::DELETE, &format!("rest/{plural}"), &query, None)
                .await?;
            let key = format!("delete{}", capitalise(&plural));
            deleted += reply
                .body
                .pointer(&format!("/data/{key}"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
        }
        Ok(deleted)
    }

    /// Restores a soft-deleted record (`PATCH /rest/restore/{plural}/{id}`).
    pub async fn restore(&self, object: &str, id: &str) -> Result<WriteOutcome, DestError> {
        let catalog = self.catalog().await?;
        let meta = catalog.require(object)?;
        let path = format!("rest/restore/{}/{id}", meta.name_plural);
        let reply = self.call(Method::PATCH, &path, &[], None).await?;
        let data = reply.body.get("data").cloned().unwrap_or(Value::Null);
        let stored = first_record(&data).cloned().unwrap_or(Value::Null);
        self.outcome(&format!("PATCH /{path}"), id, stored)
    }

    /// Destroys `(object, id)` pairs children first (attachments … companies), in
    /// bulk per object (≤ 100 ids per request).
    pub async fn delete_children_first(
        &self,
        mut records: Vec<(String, String)>,
    ) -> Result<(), DestError> {
        records.sort_by_key(|(object, _)| rollback_rank(object));
        let mut start = 0;
        while start < records.len() {
            let object = records[start].0.clone();
            let end = records[start..]
                .iter()
                .position(|(o, _)| *o != object)
                .map_or(records.len(), |p| start + p);
            let ids: Vec<String> = records[start..end]
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            if let Some(Err(error)) = self
                .delete_batch(&object, &ids)
                .await
                .into_iter()
                .find(Result::is_err)
            {
                return Err(error);
            }
            start = end;
        }
        Ok(())
    }
}

/// True when an earlier attempt of a create may have been stored although this
/// answer failed: a lost or 5xx answer, a rate limit after such an attempt, or a
/// duplicate (possibly of our own id). Only then is the id worth reading back.
fn may_have_landed(error: &DestError) -> bool {
    match error {
        DestError::Transient { .. } | DestError::RateLimited { .. } => true,
        DestError::Rejected { message, .. } => {
            let lower = message.to_ascii_lowercase();
            lower.contains("duplicate") || lower.contains("unique constraint")
        }
        _ => false,
    }
}

/// Fields the server maintains; a before-image PATCHed back must not carry them.
const READ_ONLY_ON_UPDATE: &[&str] = &[
    "id",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "createdBy",
    "updatedBy",
    "searchVector",
];

fn clone_error(error: &DestError) -> DestError {
    match error {
        DestError::RateLimited {
            endpoint,
            retry_after_ms,
        } => DestError::RateLimited {
            endpoint: endpoint.clone(),
            retry_after_ms: *retry_after_ms,
        },
        DestError::Transient {
            endpoint,
            status,
            message,
        } => DestError::Transient {
            endpoint: endpoint.clone(),
            status: *status,
            message: message.clone(),
        },
        DestError::Rejected {
            endpoint,
            status,
            message,
        } => DestError::Rejected {
            endpoint: endpoint.clone(),
            status: *status,
            message: message.clone(),
        },
        DestError::Unauthorized {
            endpoint,
            status,
            message,
        } => DestError::Unauthorized {
            endpoint: endpoint.clone(),
            status: *status,
            message: message.clone(),
        },
        DestError::Mismatch { endpoint, message } => DestError::Mismatch {
            endpoint: endpoint.clone(),
            message: message.clone(),
        },
        DestError::Precondition(m) => DestError::Precondition(m.clone()),
        DestError::Config(m) => DestError::Config(m.clone()),
    }
}

fn request_id(request: &WriteRequest) -> Uuid {
    request
        .client_id
        .unwrap_or_else(|| WriteRequest::uuid_for_key(&request.idempotency_key))
}

#[async_trait]
impl ReadDestination for TwentyClient {
    fn kind(&self) -> &'static str {
        "twenty"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: self.effective_batch_size(),
            requests_per_window: self.config.requests_per_minute,
            window: Duration::from_secs(60),
            daily_limit: None,
        }
    }

    async fn inventory(&self) -> Result<DestInventory, DestError> {
        let catalog = self.refresh_catalog().await?;
        let mut inventory = DestInventory::default();
        for object in catalog.objects.iter().filter(|o| o.is_active) {
            inventory.objects.push(object.name_singular.clone());
            for field in object.fields.iter().filter(|f| f.is_custom && f.is_active) {
                inventory.fields.push(SchemaChange {
                    kind: "field".into(),
                    name: format!("{}.{}", object.name_singular, field.name),
                    dest_id: field.id.clone(),
                    created: false,
                });
            }
        }
        Ok(inventory)
    }

    async fn get(&self, object: &str, id: &str) -> Result<Option<DestRecord>, DestError> {
        let catalog = self.catalog().await?;
        let meta = catalog.require(object)?;
        let path = format!("rest/{}/{id}", meta.name_plural);
        match self
            .call(Method::GET, &path, &[("depth", "0".into())], None)
            .await
        {
            Ok(reply) => {
                let data = reply.body.get("data").cloned().unwrap_or(Value::Null);
                let body = data
                    .get(&meta.name_singular)
                    .or_else(|| first_record(&data))
                    .cloned()
                    .unwrap_or(Value::Null);
                Ok(Some(DestRecord {
                    object: meta.name_singular.clone(),
                    id: id.to_string(),
                    body,
                }))
            }
            Err(DestError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn find_by_key(
        &self,
        object: &str,
        idempotency_key: &str,
    ) -> Result<Option<DestRecord>, DestError> {
        let catalog = self.catalog().await?;
        let meta = catalog.require(object)?;
        let id = WriteRequest::uuid_for_key(idempotency_key).to_string();
        Ok(self
            .lookup_any(&meta.name_plural, &id)
            .await?
            .map(|body| DestRecord {
                object: meta.name_singular.clone(),
                id,
                body,
            }))
    }

    /// Composite fields by dotted path, keys under this workspace's spelling,
    /// Twenty's normalisations allowed for (`super::read_back`). Uses the catalog
    /// `get` has loaded; without it, names are read as sent.
    fn read_as_sent(&self, sent: &Map<String, Value>, record: &DestRecord) -> Map<String, Value> {
        let catalog = self.catalog.try_read().ok().and_then(|c| c.clone());
        let meta = catalog.as_ref().and_then(|c| c.object(&record.object));
        super::read_back::read_as_sent(meta, sent, record)
    }
}

#[async_trait]
impl Destination for TwentyClient {
    async fn ensure_schema(&self, spec: &SchemaSpec) -> Result<Vec<SchemaChange>, DestError> {
        let mut changes = Vec::new();
        let mut catalog = self.refresh_catalog().await?;
        for object in &spec.objects {
            match catalog.object(&object.name) {
                Some(existing) => changes.push(SchemaChange {
                    kind: "object".into(),
                    name: object.name.clone(),
                    dest_id: existing.id.clone(),
                    created: false,
                }),
                None => {
                    let id = self.create_object(object).await?;
                    changes.push(SchemaChange {
                        kind: "object".into(),
                        name: object.name.clone(),
                        dest_id: id,
                        created: true,
                    });
                }
            }
        }
        if changes.iter().any(|c| c.created) {
            catalog = self.refresh_catalog().await?;
        }
        // Plain fields before relations, so a relation's target and its inverse settle last.
        let mut fields: Vec<_> = spec.fields.iter().collect();
        fields.sort_by_key(|f| f.field_type == FieldType::Relation);
        for field in fields {
            let owner = catalog.require(&field.object)?;
            let name = format!("{}.{}", owner.name_singular, field.name);
            let join_taken =
                field.field_type == FieldType::Relation && owner.field(&field.name).is_some();
            match owner.field(&field.name) {
                Some(existing) if join_taken || field.options.is_empty() => {
                    changes.push(SchemaChange {
                        kind: "field".into(),
                        name,
                        dest_id: existing.id.clone(),
                        created: false,
                    });
                }
                Some(existing) => {
                    // Select options: add the missing ones, sending the full list.
                    let have = existing.option_values();
                    let missing: Vec<String> = field
                        .options
                        .iter()
                        .filter(|o| !have.contains(&super::schema::option_value(o)))
                        .cloned()
                        .collect();
                    if missing.is_empty() {
                        changes.push(SchemaChange {
                            kind: "field".into(),
                            name,
                            dest_id: existing.id.clone(),
                            created: false,
                        });
                        continue;
                    }
                    let mut all = existing.options.clone();
                    all.extend(options_json(&missing, have.len()));
                    let body = json!({"options": all});
                    self.call(
                        Method::PATCH,
                        &format!("rest/metadata/fields/{}", existing.id),
                        &[],
                        Some(&body),
                    )
                    .await?;
                    let added: Vec<String> = missing
                        .iter()
                        .map(|o| super::schema::option_value(o))
                        .collect();
                    changes.push(SchemaChange {
                        kind: "field_options".into(),
                        name: format!("{name}+{}", added.join(",")),
                        dest_id: existing.id.clone(),
                        created: true,
                    });
                }
                None => {
                    let id = self.create_field(&catalog, field, owner).await?;
                    changes.push(SchemaChange {
                        kind: "field".into(),
                        name,
                        dest_id: id,
                        created: true,
                    });
                }
            }
        }
        self.refresh_catalog().await?;
        Ok(changes)
    }

    async fn drop_schema(&self, change: &SchemaChange) -> Result<(), DestError> {
        if !change.created {
            return Err(DestError::Precondition(format!(
                "{} {} was not created by cutover; it is left in place",
                change.kind, change.name
            )));
        }
        let (collection, id) = match change.kind.as_str() {
            "object" => ("objects", change.dest_id.as_str()),
            "field" => ("fields", change.dest_id.as_str()),
            "field_options" => {
                let added: Vec<&str> = change
                    .name
                    .rsplit_once('+')
                    .map(|(_, a)| a.split(',').collect())
                    .unwrap_or_default();
                let catalog = self.refresh_catalog().await?;
                let field = catalog
                    .objects
                    .iter()
                    .flat_map(|o| o.fields.iter())
                    .find(|f| f.id == change.dest_id)
                    .ok_or_else(|| {
                        DestError::Precondition(format!("field {} is gone", change.name))
                    })?;
                let kept: Vec<Value> = field
                    .options
                    .iter()
                    .filter(|o| {
                        !o.get("value")
                            .and_then(Value::as_str)
                            .is_some_and(|v| added.contains(&v))
                    })
                    .cloned()
                    .collect();
                let body = json!({"options": kept});
                self.call(
                    Method::PATCH,
                    &format!("rest/metadata/fields/{}", change.dest_id),
                    &[],
                    Some(&body),
                )
                .await?;
                self.refresh_catalog().await?;
                return Ok(());
            }
            other => {
                return Err(DestError::Precondition(format!(
                    "unknown schema change kind {other:?}"
                )))
            }
        };
        let path = format!("rest/metadata/{collection}/{id}");
        let deactivate = json!({"isActive": false});
        match self
            .call(Method::PATCH, &path, &[], Some(&deactivate))
            .await
        {
            Ok(_) | Err(DestError::Rejected { status: 404, .. }) => {}
            Err(error) => return Err(error),
        }
        match self.call(Method::DELETE, &path, &[], None).await {
            Ok(_) | Err(DestError::Rejected { status: 404, .. }) => {}
            Err(error) => return Err(error),
        }
        self.refresh_catalog().await?;
        Ok(())
    }

    async fn create(&self, request: &WriteRequest) -> Result<WriteOutcome, DestError> {
        let catalog = self.catalog().await?;
        let object = catalog.require(&request.object)?;
        let id = request_id(request);
        let mut raw = request.body.clone();
        if raw.contains_key(UPLOAD_KEY) {
            // A retried attachment whose first attempt landed must not upload its file again.
            if let Some(stored) = self
                .existing(&object.name_plural, &[id.to_string()])
                .await?
                .pop()
            {
                return Ok(WriteOutcome {
                    dest_id: id.to_string(),
                    stored,
                });
            }
            self.upload_into(object, &mut raw).await?;
        }
        let body = self.prepare(&catalog, object, &raw, id)?;
        self.create_one(object, body, &id.to_string()).await
    }

    async fn create_batch(
        &self,
        requests: &[WriteRequest],
    ) -> Vec<Result<WriteOutcome, DestError>> {
        let mut results: Vec<Option<Result<WriteOutcome, DestError>>> =
            (0..requests.len()).map(|_| None).collect();
        let catalog = match self.catalog().await {
            Ok(c) => c,
            Err(error) => return requests.iter().map(|_| Err(clone_error(&error))).collect(),
        };
        let mut start = 0;
        while start < requests.len() {
            let object_name = &requests[start].object;
            let end = requests[start..]
                .iter()
                .position(|r| &r.object != object_name)
                .map_or(requests.len(), |p| start + p);
            let Ok(object) = catalog.require(object_name) else {
                for (offset, slot) in results[start..end].iter_mut().enumerate() {
                    let _ = offset;
                    *slot = Some(Err(catalog
                        .require(object_name)
                        .expect_err("missing object")));
                }
                start = end;
                continue;
            };
            let mut prepared = Vec::new();
            for (index, request) in requests.iter().enumerate().take(end).skip(start) {
                if request.body.contains_key(UPLOAD_KEY) {
                    results[index] = Some(self.create(request).await);
                    continue;
                }
                let id = request_id(request);
                match self.prepare(&catalog, object, &request.body, id) {
                    Ok(body) => prepared.push((index, id.to_string(), body)),
                    Err(error) => results[index] = Some(Err(error)),
                }
            }
            while !prepared.is_empty() {
                // Re-read each time: a refusal may have taught us the server's lower cap.
                let size = self.effective_batch_size().max(1);
                let rest = prepared.split_off(prepared.len().min(size));
                let chunk = std::mem::replace(&mut prepared, rest);
                for (index, result) in self.create_chunk(object, chunk).await {
                    results[index] = Some(result);
                }
            }
            start = end;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(DestError::Precondition(
                        "internal: a batch item got no result".into(),
                    ))
                })
            })
            .collect()
    }

    async fn update(
        &self,
        object: &str,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<WriteOutcome, DestError> {
        let catalog = self.catalog().await?;
        let meta = catalog.require(object)?;
        // A before-image may be a whole record as read: keep only writable fields, and
        // remember whether it was soft-deleted so that state is put back too.
        let was_deleted = body.get("deletedAt").is_some_and(|d| !d.is_null());
        let writable: Map<String, Value> = body
            .iter()
            .filter(|(k, _)| !READ_ONLY_ON_UPDATE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = catalog.translate(meta, &writable)?;
        let path = format!("rest/{}/{id}", meta.name_plural);
        let reply = self
            .call(
                Method::PATCH,
                &path,
                &[("depth", "0".into())],
                Some(&Value::Object(body)),
            )
            .await?;
        let data = reply.body.get("data").cloned().unwrap_or(Value::Null);
        let key = format!("update{}", capitalise(&meta.name_singular));
        let stored = data
            .get(&key)
            .or_else(|| first_record(&data))
            .cloned()
            .unwrap_or(Value::Null);
        let mut outcome = self.outcome(&format!("PATCH /{path}"), id, stored)?;
        if was_deleted {
            self.call(
                Method::DELETE,
                &path,
                &[("soft_delete", "true".into())],
                None,
            )
            .await?;
            if let Some(record) = self.lookup_any(&meta.name_plural, id).await? {
                outcome.stored = record;
            }
        }
        Ok(outcome)
    }

    /// `DELETE /rest/{plural}?filter=id[in]:[…]` (destroy), ≤ 100 ids per request.
    async fn delete_batch(&self, object: &str, ids: &[String]) -> Vec<Result<(), DestError>> {
        let mut results = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_FILTER) {
            match self.delete_many(object, chunk).await {
                Ok(_) => results.extend(chunk.iter().map(|_| Ok(()))),
                Err(error) => results.extend(chunk.iter().map(|_| Err(clone_error(&error)))),
            }
        }
        results
    }

    async fn delete(&self, object: &str, id: &str) -> Result<(), DestError> {
        let catalog = self.catalog().await?;
        let meta = catalog.require(object)?;
        let path = format!("rest/{}/{id}", meta.name_plural);
        // Destroy, never soft-delete: soft-deleted rows still hold unique values.
        match self
            .call(
                Method::DELETE,
                &path,
                &[("soft_delete", "false".into())],
                None,
            )
            .await
        {
            Ok(_) | Err(DestError::Rejected { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}
