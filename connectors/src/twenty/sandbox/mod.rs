//! `cutover sandbox twenty`: a stateful emulator of the Twenty API subset the
//! client uses, served by axum on 127.0.0.1 — records (single and batch create,
//! filters, pagination caps, soft delete, destroy, restore, uniqueness that counts
//! soft-deleted rows, batch all-or-nothing), the metadata endpoints, the file-upload
//! flow and Twenty's 400/401/404/429 shapes — plus admin endpoints for tests:
//!
//! | admin endpoint | what it does |
//! | --- | --- |
//! | `GET /_sandbox/records?object=people` | every row of an object, soft-deleted included |
//! | `POST /_sandbox/faults` | replaces the fault plan ([`FaultSettings`], JSON) |
//! | `GET /_sandbox/stats` | requests answered, by status |
//! | `GET /_sandbox/requests` | the API requests received (method, path, query, body) |

pub mod faults;
pub mod filter;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::sandbox_common::{bind_local, BackgroundServer};

use faults::{FaultPlan, Injected};
pub use faults::{FaultSettings, RateLimitSettings};
use filter::Filter;
use store::{ApiError, ApiResult, Store};

/// How the emulator starts.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// 0 picks a free port.
    pub port: u16,
    /// When set, API requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The workspace's API budget (Twenty: 100 per 60 s); `None` = unlimited.
    pub rate_limit: Option<RateLimitSettings>,
    /// Twenty's `QUERY_MAX_RECORDS` (records per batch create).
    pub max_batch: usize,
    pub faults: FaultSettings,
    /// Name fields the 1.x way (`personId` instead of `targetPersonId`, no FILES on attachments).
    pub v1_names: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            port: 0,
            token: None,
            rate_limit: Some(RateLimitSettings {
                requests: 100,
                window_ms: 60_000,
            }),
            max_batch: 60,
            faults: FaultSettings::default(),
            v1_names: false,
        }
    }
}

/// One API request as received (for contract checks).
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    /// What the sandbox answered (status and JSON body), for response contract checks.
    pub status: u16,
    pub response: Value,
}

const LOG_CAP: usize = 20_000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SandboxStats {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
}

struct Shared {
    store: Mutex<Store>,
    faults: Mutex<FaultPlan>,
    default_limit: Option<RateLimitSettings>,
    stats: Mutex<SandboxStats>,
    log: Mutex<Vec<LoggedRequest>>,
    token: Option<String>,
    addr: SocketAddr,
}

/// A running emulator; stopped on [`SandboxHandle::stop`] or drop.
pub struct SandboxHandle {
    shared: Arc<Shared>,
    server: BackgroundServer,
}

impl SandboxHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT` (the client appends `/rest/…`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The API requests received so far (method, path, query, body).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Every row of an object (plural name), soft-deleted included.
    pub fn records(&self, plural: &str) -> Vec<Value> {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .all_rows(plural)
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }

    pub async fn stop(self) {
        self.server.stop().await
    }

    /// Serves until the process is interrupted (Ctrl-C).
    pub async fn wait(self) {
        self.server.wait().await
    }
}

/// Starts the emulator on 127.0.0.1.
pub async fn start(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let listener = bind_local(config.port).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        store: Mutex::new(if config.v1_names {
            Store::new_v1(config.max_batch)
        } else {
            Store::new(config.max_batch)
        }),
        faults: Mutex::new(FaultPlan::new(config.faults.clone(), config.rate_limit)),
        default_limit: config.rate_limit,
        stats: Mutex::new(SandboxStats::default()),
        log: Mutex::new(Vec::new()),
        token: config.token.clone(),
        addr,
    });
    let app = Router::new()
        .route("/rest/{*path}", any(rest))
        .route("/metadata", post(graphql_metadata))
        .route("/_sandbox/upload/{file_id}", put(upload))
        .route("/_sandbox/records", get(admin_records))
        .route("/_sandbox/faults", post(admin_faults))
        .route("/_sandbox/stats", get(admin_stats))
        .route("/_sandbox/requests", get(admin_requests))
        .with_state(shared.clone());
    let server = BackgroundServer::spawn(listener, app)?;
    Ok(SandboxHandle { shared, server })
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn too_many(shared: &Shared) -> ApiError {
    let plan = shared.faults.lock().expect("faults lock");
    let (requests, window) = plan
        .bucket
        .as_ref()
        .map_or((0, 0), |b| (b.settings.requests, b.settings.window_ms));
    ApiError {
        status: 429,
        message: format!("Limit reached ({requests} tokens per {window} ms)"),
    }
}

/// Authentication, rate limit and faults; `Err` is the answer to send instead.
async fn gate(shared: &Shared, headers: &HeaderMap, write: bool) -> Result<Injected, (u16, Value)> {
    if let Some(token) = &shared.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err((
                401,
                json!({"statusCode": 401, "message": "Token invalid.", "error": "Unauthorized"}),
            ));
        }
    }
    let (decision, latency) = {
        let mut plan = shared.faults.lock().expect("faults lock");
        (plan.decide(write), plan.latency())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match decision {
        Injected::RateLimited => Err((429, too_many(shared).body())),
        Injected::FailBefore(status) => Err((
            status,
            ApiError {
                status,
                message: "injected failure (before commit)".into(),
            }
            .body(),
        )),
        other => Ok(other),
    }
}

fn finish(shared: &Shared, response: Response) -> Response {
    let mut stats = shared.stats.lock().expect("stats lock");
    stats.requests += 1;
    *stats
        .by_status
        .entry(response.status().as_u16())
        .or_default() += 1;
    response
}

fn log(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &Value,
    answer: &(u16, Value),
) {
    let mut log = shared.log.lock().expect("log lock");
    if log.len() >= LOG_CAP {
        log.drain(..LOG_CAP / 2);
    }
    log.push(LoggedRequest {
        method: method.to_string(),
        path: path.into(),
        query: query.to_vec(),
        body: body.clone(),
        status: answer.0,
        response: answer.1.clone(),
    });
}

async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::String("<invalid JSON>".into()))
    };
    let answer = rest_answer(&shared, &method, &path, &query, &headers, &parsed).await;
    log(
        &shared,
        &method,
        &format!("/rest/{path}"),
        &query,
        &parsed,
        &answer,
    );
    let mut response = reply(answer.0, answer.1);
    if answer.0 == 429 {
        let retry_after = shared
            .faults
            .lock()
            .expect("faults lock")
            .settings
            .retry_after_s;
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
    }
    finish(&shared, response)
}

async fn rest_answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    parsed: &Value,
) -> (u16, Value) {
    let write = method != Method::GET;
    let injected = match gate(shared, headers, write).await {
        Ok(injected) => injected,
        Err(answer) => return answer,
    };
    if parsed == &Value::String("<invalid JSON>".into()) {
        let e = ApiError::bad("The body is not valid JSON");
        return (e.status, e.body());
    }
    let result = {
        let mut store = shared.store.lock().expect("store lock");
        dispatch(&mut store, method, path, query, parsed)
    };
    match result {
        Ok(answer) => match injected {
            Injected::FailAfter(code) => (
                code,
                ApiError {
                    status: code,
                    message: "injected failure (after commit)".into(),
                }
                .body(),
            ),
            _ => answer,
        },
        Err(e) => (e.status, e.body()),
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn check_params(query: &[(String, String)]) -> ApiResult<()> {
    const KNOWN: &[&str] = &[
        "filter",
        "order_by",
        "limit",
        "depth",
        "starting_after",
        "ending_before",
        "upsert",
        "soft_delete",
    ];
    for (key, value) in query {
        if !KNOWN.contains(&key.as_str()) {
            return Err(ApiError::bad(format!("Unknown query parameter {key}")));
        }
        match key.as_str() {
            "depth" if value != "0" && value != "1" => {
                return Err(ApiError::bad("depth must be 0 or 1"))
            }
            "limit" if value.parse::<usize>().is_err() => {
                return Err(ApiError::bad("limit must be an integer"))
            }
            "soft_delete" if value != "true" && value != "false" => {
                return Err(ApiError::bad("soft_delete must be true or false"))
            }
            "upsert" => {
                return Err(ApiError::bad(
                    "upsert is not emulated (cutover never uses it)",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn capitalise(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn parse_filter(query: &[(String, String)]) -> ApiResult<Option<Filter>> {
    param(query, "filter")
        .map(|f| Filter::parse(f).map_err(ApiError::bad))
        .transpose()
}

fn dispatch(
    store: &mut Store,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &Value,
) -> ApiResult<(u16, Value)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.first() == Some(&"metadata") {
        return metadata(store, method, &segments[1..], body);
    }
    check_params(query)?;
    match (method.clone(), segments.as_slice()) {
        (Method::POST, ["batch", plural]) => {
            let items = body
                .as_array()
                .ok_or_else(|| ApiError::bad("The batch body must be a JSON array"))?;
            let created = store.create_many(plural, items)?;
            Ok((
                201,
                json!({"data": {format!("create{}", capitalise(plural)): created}}),
            ))
        }
        (Method::PATCH, ["restore", plural, id]) => {
            let singular = store.object(plural)?.name_singular.clone();
            let row = store.restore(plural, id)?;
            Ok((
                200,
                json!({"data": {format!("restore{}", capitalise(&singular)): row}}),
            ))
        }
        (Method::GET, [plural]) => {
            let filter = parse_filter(query)?;
            let limit = param(query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(60)
                .clamp(1, 200);
            let after = match param(query, "starting_after") {
                // Cursors are record ids (the spec types them as UUIDs).
                Some(cursor) if uuid::Uuid::parse_str(cursor).is_ok() => Some(
                    store
                        .cursor_seq(plural, cursor)
                        .ok_or_else(|| ApiError::bad("Invalid cursor"))?,
                ),
                Some(_) => return Err(ApiError::bad("Invalid cursor")),
                None => None,
            };
            let store::Page {
                rows: page,
                has_next: more,
                total,
            } = store.find_many(plural, filter.as_ref(), after, limit)?;
            let start = page.first().and_then(|(_, r)| r.get("id").cloned());
            let end = page.last().and_then(|(_, r)| r.get("id").cloned());
            let rows: Vec<Value> = page.into_iter().map(|(_, r)| r).collect();
            Ok((
                200,
                json!({
                    "data": {plural.to_string(): rows},
                    "pageInfo": {"hasNextPage": more, "startCursor": start, "endCursor": end},
                    "totalCount": total,
                }),
            ))
        }
        (Method::POST, [plural]) => {
            let singular = store.object(plural)?.name_singular.clone();
            let mut created = store.create_many(plural, std::slice::from_ref(body))?;
            Ok((
                201,
                json!({"data": {format!("create{}", capitalise(&singular)): created.remove(0)}}),
            ))
        }
        (Method::DELETE, [plural]) => {
            let filter = parse_filter(query)?
                .ok_or_else(|| ApiError::bad("A filter is required to delete many records"))?;
            let soft = param(query, "soft_delete") == Some("true");
            let store::Page {
                rows: page, total, ..
            } = store.find_many(plural, Some(&filter), None, 100)?;
            if total > 100 {
                return Err(ApiError::bad("Too many records affected (maximum 100)"));
            }
            let mut deleted = Vec::new();
            for (_, row) in page {
                let id = row
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                deleted.push(if soft {
                    store.soft_delete(plural, &id)?
                } else {
                    store.destroy(plural, &id)?
                });
            }
            Ok((
                200,
                json!({"data": {format!("delete{}", capitalise(plural)): deleted}}),
            ))
        }
        (Method::GET, [plural, id]) => {
            let singular = store.object(plural)?.name_singular.clone();
            Ok((
                200,
                json!({"data": {singular: store.find_one(plural, id)?}}),
            ))
        }
        (Method::PATCH, [plural, id]) => {
            let singular = store.object(plural)?.name_singular.clone();
            let row = store.update(plural, id, body)?;
            Ok((
                200,
                json!({"data": {format!("update{}", capitalise(&singular)): row}}),
            ))
        }
        (Method::DELETE, [plural, id]) => {
            let singular = store.object(plural)?.name_singular.clone();
            let gone = if param(query, "soft_delete") == Some("true") {
                store.soft_delete(plural, id)?
            } else {
                store.destroy(plural, id)?
            };
            Ok((
                200,
                json!({"data": {format!("delete{}", capitalise(&singular)): gone}}),
            ))
        }
        _ => Err(ApiError {
            status: 404,
            message: format!("Cannot {method} /rest/{path}"),
        }),
    }
}

fn metadata(
    store: &mut Store,
    method: &Method,
    segments: &[&str],
    body: &Value,
) -> ApiResult<(u16, Value)> {
    match (method.clone(), segments) {
        (Method::GET, ["objects"]) => {
            let objects: Vec<Value> = store.objects.iter().map(|o| o.json()).collect();
            let total = objects.len();
            Ok((
                200,
                json!({"data": {"objects": objects}, "pageInfo": {"hasNextPage": false}, "totalCount": total}),
            ))
        }
        (Method::POST, ["objects"]) => Ok((
            201,
            json!({"data": {"createOneObject": store.create_object(body)?}}),
        )),
        (Method::GET, ["objects", id]) => {
            let object = store
                .objects
                .iter()
                .find(|o| o.id == *id)
                .ok_or_else(ApiError::not_found)?;
            Ok((200, json!({"data": {"object": object.json()}})))
        }
        (Method::PATCH, ["objects", id]) => Ok((
            200,
            json!({"data": {"updateOneObject": store.update_object(id, body)?}}),
        )),
        (Method::DELETE, ["objects", id]) => Ok((
            200,
            json!({"data": {"deleteOneObject": store.delete_object(id)?}}),
        )),
        (Method::GET, ["fields"]) => {
            let fields = store.fields_json();
            let total = fields.len();
            Ok((
                200,
                json!({"data": {"fields": fields}, "pageInfo": {"hasNextPage": false}, "totalCount": total}),
            ))
        }
        (Method::POST, ["fields"]) => Ok((
            201,
            json!({"data": {"createOneField": store.create_field(body)?}}),
        )),
        (Method::PATCH, ["fields", id]) => Ok((
            200,
            json!({"data": {"updateOneField": store.update_field(id, body)?}}),
        )),
        (Method::DELETE, ["fields", id]) => Ok((
            200,
            json!({"data": {"deleteOneField": store.delete_field(id)?}}),
        )),
        _ => Err(ApiError {
            status: 404,
            message: format!("Cannot {method} /rest/metadata/{}", segments.join("/")),
        }),
    }
}

fn graphql_error(message: &str, code: &str) -> (u16, Value) {
    (
        200,
        json!({"errors": [{"message": message, "extensions": {"code": code}}]}),
    )
}

/// The metadata GraphQL endpoint, as far as the upload flow needs it.
async fn graphql_metadata(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let answer = graphql_answer(&shared, &headers, &body).await;
    log(&shared, &Method::POST, "/metadata", &[], &body, &answer);
    finish(&shared, reply(answer.0, answer.1))
}

async fn graphql_answer(shared: &Shared, headers: &HeaderMap, body: &Value) -> (u16, Value) {
    match gate(shared, headers, true).await {
        // GraphQL reports the rate limit inside a 200.
        Err((429, _)) => return graphql_error(&too_many(shared).message, "BAD_USER_INPUT"),
        Err(answer) => return answer,
        Ok(_) => {}
    }
    let query = body.get("query").and_then(Value::as_str).unwrap_or("");
    let vars = body.get("variables").cloned().unwrap_or(json!({}));
    let mut store = shared.store.lock().expect("store lock");
    if query.contains("createFileUpload") {
        let filename = vars.get("filename").and_then(Value::as_str).unwrap_or("");
        let size = vars.get("size").and_then(Value::as_f64).unwrap_or(-1.0);
        let uid = vars
            .get("uid")
            .or_else(|| vars.get("fieldMetadataUniversalIdentifier"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if filename.is_empty() || size < 0.0 || uid.is_empty() {
            graphql_error(
                "createFileUpload needs filename, size and fieldMetadataUniversalIdentifier",
                "BAD_USER_INPUT",
            )
        } else {
            let file_id = uuid::Uuid::new_v4().to_string();
            store.uploads.insert(
                file_id.clone(),
                store::Upload {
                    filename: filename.into(),
                    size: size as u64,
                    bytes: None,
                    completed: false,
                },
            );
            let content_type = if filename.ends_with(".pdf") {
                "application/pdf"
            } else {
                "application/octet-stream"
            };
            (
                200,
                json!({"data": {"createFileUpload": {
                    "fileId": file_id,
                    "uploadUrl": format!("http://{}/_sandbox/upload/{file_id}", shared.addr),
                    "contentType": content_type,
                    "expiresAt": (chrono::Utc::now() + chrono::Duration::minutes(15)).to_rfc3339(),
                }}}),
            )
        }
    } else if query.contains("completeFileUpload") {
        let file_id = vars.get("fileId").and_then(Value::as_str).unwrap_or("");
        match store.uploads.get_mut(file_id) {
            Some(upload)
                if upload
                    .bytes
                    .as_ref()
                    .is_some_and(|b| b.len() as u64 == upload.size) =>
            {
                upload.completed = true;
                (
                    200,
                    json!({"data": {"completeFileUpload": {
                        "id": file_id, "path": format!("attachment/{file_id}/{}", upload.filename), "size": upload.size,
                        "createdAt": chrono::Utc::now().to_rfc3339(), "url": format!("http://{}/files/{file_id}", shared.addr),
                    }}}),
                )
            }
            Some(_) => graphql_error(
                "The uploaded bytes are missing or their size differs from the declared size",
                "BAD_USER_INPUT",
            ),
            None => graphql_error("File upload not found", "NOT_FOUND"),
        }
    } else {
        graphql_error("Operation not supported by the sandbox", "BAD_USER_INPUT")
    }
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(file_id): Path<String>,
    body: Bytes,
) -> Response {
    let mut store = shared.store.lock().expect("store lock");
    match store.uploads.get_mut(&file_id) {
        Some(upload) if upload.size == body.len() as u64 => {
            upload.bytes = Some(body.to_vec());
            StatusCode::OK.into_response()
        }
        Some(_) => (
            StatusCode::BAD_REQUEST,
            "size differs from the declared size",
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn admin_records(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let store = shared.store.lock().expect("store lock");
    match param(&query, "object") {
        Some(object) => {
            let plural = store
                .objects
                .iter()
                .find(|o| o.name_plural == object || o.name_singular == object)
                .map(|o| o.name_plural.clone())
                .unwrap_or_else(|| object.to_string());
            reply(
                200,
                json!({"object": plural, "records": store.all_rows(&plural)}),
            )
        }
        None => reply(200, json!({"counts": store.counts()})),
    }
}

async fn admin_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultSettings>(&body) {
        Ok(settings) => {
            *shared.faults.lock().expect("faults lock") =
                FaultPlan::new(settings.clone(), shared.default_limit);
            reply(200, json!({"faults": settings}))
        }
        Err(e) => reply(
            400,
            json!({"statusCode": 400, "error": "BadRequestException", "messages": [format!("fault settings: {e}")]}),
        ),
    }
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.stats.lock().expect("stats lock").clone();
    reply(200, serde_json::to_value(stats).unwrap_or(Value::Null))
}

async fn admin_requests(State(shared): State<Arc<Shared>>) -> Response {
    let log = shared.log.lock().expect("log lock").clone();
    reply(200, serde_json::to_value(log).unwrap_or(Value::Null))
}
