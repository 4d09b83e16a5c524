//! The emulated HighLevel endpoints. Bodies are checked against the write
//! whitelists (unknown property → 422 with a message array, as HighLevel
//! does), stored in read shapes, and answered with the documented envelopes
//! (including the spec's spellings `succeded` and `buiseness`).

// Handlers return a finished error `Response` early from their checks; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde_json::{json, Map, Value};

use super::store::{new_id, normalise_date, normalise_phone, now, snake, Store};
use super::Shared;

type Params = Query<HashMap<String, String>>;
type St = State<Arc<Shared>>;

const CONTACT_CREATE: &[&str] = &[
    "firstName",
    "lastName",
    "name",
    "email",
    "locationId",
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
const CONTACT_UPDATE: &[&str] = &[
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
    "companyName",
];
const BUSINESS_CREATE: &[&str] = &[
    "name",
    "locationId",
    "phone",
    "email",
    "website",
    "address",
    "city",
    "postalCode",
    "state",
    "country",
    "description",
];
const BUSINESS_UPDATE: &[&str] = &[
    "name",
    "phone",
    "email",
    "postalCode",
    "website",
    "address",
    "state",
    "city",
    "country",
    "description",
];
const OPPORTUNITY_CREATE: &[&str] = &[
    "pipelineId",
    "locationId",
    "name",
    "pipelineStageId",
    "status",
    "contactId",
    "monetaryValue",
    "assignedTo",
    "customFields",
];
const OPPORTUNITY_UPDATE: &[&str] = &[
    "pipelineId",
    "name",
    "pipelineStageId",
    "status",
    "monetaryValue",
    "assignedTo",
    "customFields",
];
const NOTE: &[&str] = &["userId", "body", "title", "color", "pinned"];
const TASK_CREATE: &[&str] = &["title", "body", "dueDate", "completed", "assignedTo"];
const APPOINTMENT: &[&str] = &[
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
    "locationId",
    "contactId",
    "startTime",
    "endTime",
];
const FIELD_CREATE: &[&str] = &[
    "name",
    "dataType",
    "placeholder",
    "acceptedFormat",
    "isMultipleFile",
    "maxNumberOfFiles",
    "textBoxListOptions",
    "position",
    "model",
    "options",
];
const DATA_TYPES: &[&str] = &[
    "TEXT",
    "LARGE_TEXT",
    "NUMERICAL",
    "PHONE",
    "MONETORY",
    "CHECKBOX",
    "SINGLE_OPTIONS",
    "MULTIPLE_OPTIONS",
    "DATE",
    "TEXTBOX_LIST",
    "FILE_UPLOAD",
    "RADIO",
    "EMAIL",
];

pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/locations/{location_id}", get(get_location))
        .route(
            "/locations/{location_id}/customFields",
            get(list_fields).post(create_field),
        )
        .route(
            "/locations/{location_id}/customFields/{id}",
            get(get_field).delete(delete_field),
        )
        .route("/contacts/", post(create_contact))
        .route("/contacts/search", post(search_contacts))
        .route("/contacts/search/duplicate", get(duplicate_contact))
        .route("/contacts/bulk/business", post(link_business))
        .route(
            "/contacts/{contact_id}",
            get(get_contact).put(update_contact).delete(delete_contact),
        )
        .route(
            "/contacts/{contact_id}/notes",
            get(list_notes).post(create_note),
        )
        .route(
            "/contacts/{contact_id}/notes/{id}",
            get(get_note).put(update_note).delete(delete_note),
        )
        .route(
            "/contacts/{contact_id}/tasks",
            get(list_tasks).post(create_task),
        )
        .route(
            "/contacts/{contact_id}/tasks/{id}",
            get(get_task).put(update_task).delete(delete_task),
        )
        .route(
            "/contacts/{contact_id}/appointments",
            get(contact_appointments),
        )
        .route("/businesses/", get(list_businesses).post(create_business))
        .route(
            "/businesses/{id}",
            get(get_business)
                .put(update_business)
                .delete(delete_business),
        )
        .route("/opportunities/pipelines", get(list_pipelines))
        .route("/opportunities/search", get(search_opportunities))
        .route("/opportunities/", post(create_opportunity))
        .route(
            "/opportunities/{id}",
            get(get_opportunity)
                .put(update_opportunity)
                .delete(delete_opportunity),
        )
        .route("/calendars/", get(list_calendars))
        .route("/calendars/events/appointments", post(create_appointment))
        .route(
            "/calendars/events/appointments/{id}",
            get(get_appointment).put(update_appointment),
        )
        .route(
            "/calendars/events/{id}",
            axum::routing::delete(delete_event),
        )
        .route("/forms/upload-custom-files", post(upload_files))
        .fallback(not_found_route)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            super::faults::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            super::limits::middleware,
        ))
        .with_state(shared)
}

// ---- helpers -------------------------------------------------------------------

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        json!({ "statusCode": 400, "message": message.into() }),
    )
}

fn unprocessable(messages: Vec<String>) -> Response {
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "statusCode": 422, "message": messages, "error": "Unprocessable Entity" }),
    )
}

fn not_found(what: &str) -> Response {
    bad_request(format!("{what} not found"))
}

async fn not_found_route() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({ "statusCode": 404, "message": "Cannot find this route", "error": "Not Found" }),
    )
}

fn store(shared: &Shared) -> MutexGuard<'_, Store> {
    shared.store.lock().expect("store lock")
}

/// Parses a JSON object body and applies the whitelist (422 `property x should not exist`).
fn parse(bytes: &Bytes, allowed: &[&str]) -> Result<Map<String, Value>, Response> {
    let value: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| bad_request(format!("Unexpected token in JSON: {e}")))?
    };
    let Value::Object(map) = value else {
        return Err(bad_request("body must be a JSON object"));
    };
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("property {k} should not exist"))
        .collect();
    if unknown.is_empty() {
        Ok(map)
    } else {
        Err(unprocessable(unknown))
    }
}

fn require(map: &Map<String, Value>, fields: &[&str]) -> Result<(), Response> {
    let missing: Vec<String> = fields
        .iter()
        .filter(|f| {
            map.get(**f)
                .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        })
        .map(|f| format!("{f} should not be empty"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(missing))
    }
}

fn check_location(store: &Store, given: Option<&Value>) -> Result<(), Response> {
    match given.and_then(Value::as_str) {
        Some(id) if id == store.location_id() => Ok(()),
        _ => Err(reply(
            StatusCode::FORBIDDEN,
            json!({ "statusCode": 403, "message": "The token does not have access to this location." }),
        )),
    }
}

/// Applies write-shape custom fields (`{id|key, field_value}`) onto a read-shape list (`value_key`).
fn apply_custom_fields(
    store: &Store,
    model: &str,
    given: Option<&Value>,
    current: &mut Vec<Value>,
    value_key: &str,
) -> Result<(), Response> {
    let Some(given) = given else { return Ok(()) };
    let Some(items) = given.as_array() else {
        return Err(unprocessable(vec!["customFields must be an array".into()]));
    };
    for (i, item) in items.iter().enumerate() {
        let reference = item
            .get("id")
            .or_else(|| item.get("key"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(field) = store.field(model, reference) else {
            return Err(bad_request(format!(
                "customFields[{i}]: custom field `{reference}` not found"
            )));
        };
        let id = field["id"].as_str().unwrap_or_default().to_string();
        let value = item.get("field_value").cloned().unwrap_or(Value::Null);
        let value = match (field["dataType"].as_str(), value) {
            (Some("NUMERICAL" | "MONETORY"), Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(|n| json!(n))
                .unwrap_or(Value::String(s)),
            (_, v) => v,
        };
        current.retain(|f| f["id"] != id.as_str());
        let empty = value.is_null()
            || value.as_str() == Some("")
            || value.as_object().is_some_and(Map::is_empty);
        if !empty {
            current.push(json!({ "id": id, value_key: value }));
        }
    }
    Ok(())
}

// ---- location and custom fields ---------------------------------------------------

async fn get_location(State(shared): St, Path(location_id): Path<String>) -> Response {
    let store = store(&shared);
    if location_id != store.location_id() {
        return not_found("Location");
    }
    reply(StatusCode::OK, json!({ "location": store.location }))
}

async fn list_fields(
    State(shared): St,
    Path(location_id): Path<String>,
    Query(q): Params,
) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, Some(&json!(location_id))) {
        return r;
    }
    let model = q.get("model").map(String::as_str).unwrap_or("contact");
    let fields: Vec<&Value> = store
        .custom_fields
        .values()
        .filter(|f| model == "all" || f["model"] == model)
        .collect();
    reply(StatusCode::OK, json!({ "customFields": fields }))
}

async fn get_field(State(shared): St, Path((location_id, id)): Path<(String, String)>) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, Some(&json!(location_id))) {
        return r;
    }
    match store.custom_fields.get(&id).or_else(|| {
        store
            .custom_fields
            .values()
            .find(|f| f["fieldKey"] == id.as_str())
    }) {
        Some(f) => reply(StatusCode::OK, json!({ "customField": f })),
        None => not_found("Custom field"),
    }
}

async fn create_field(State(shared): St, Path(location_id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    if let Err(r) = check_location(&store, Some(&json!(location_id))) {
        return r;
    }
    let map = match parse(&body, FIELD_CREATE)
        .and_then(|m| require(&m, &["name", "dataType"]).map(|_| m))
    {
        Ok(m) => m,
        Err(r) => return r,
    };
    let data_type = map["dataType"].as_str().unwrap_or_default().to_string();
    if !DATA_TYPES.contains(&data_type.as_str()) {
        return unprocessable(vec![format!(
            "dataType must be one of {}",
            DATA_TYPES.join(", ")
        )]);
    }
    let model = map
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("contact")
        .to_string();
    if !matches!(model.as_str(), "contact" | "opportunity") {
        return unprocessable(vec![
            "model must be one of the following values: contact, opportunity".into(),
        ]);
    }
    let name = map["name"].as_str().unwrap_or_default().to_string();
    let field_key = format!("{model}.{}", snake(&name));
    if store
        .custom_fields
        .values()
        .any(|f| f["fieldKey"] == field_key.as_str())
    {
        return bad_request(format!("Custom field with key {field_key} already exists"));
    }
    let id = new_id();
    let field = json!({
        "id": id, "name": name, "fieldKey": field_key, "dataType": data_type, "model": model,
        "locationId": store.location_id(), "position": map.get("position").cloned().unwrap_or(json!(0)),
        "picklistOptions": map.get("options").cloned().unwrap_or(json!([])),
        "isMultiFileAllowed": map.get("isMultipleFile").cloned().unwrap_or(json!(false)),
        "maxFileLimit": map.get("maxNumberOfFiles").cloned().unwrap_or(json!(1)),
        "acceptedFormat": map.get("acceptedFormat").cloned().unwrap_or(json!([])),
    });
    store.custom_fields.insert(id, field.clone());
    reply(StatusCode::CREATED, json!({ "customField": field }))
}

async fn delete_field(
    State(shared): St,
    Path((location_id, id)): Path<(String, String)>,
) -> Response {
    let mut store = store(&shared);
    if let Err(r) = check_location(&store, Some(&json!(location_id))) {
        return r;
    }
    if store.custom_fields.remove(&id).is_none() {
        return not_found("Custom field");
    }
    // Deleting a field deletes its values on every record.
    let Store {
        contacts,
        opportunities,
        ..
    } = &mut *store;
    for record in contacts.values_mut().chain(opportunities.values_mut()) {
        if let Some(list) = record.get_mut("customFields").and_then(Value::as_array_mut) {
            list.retain(|f| f["id"] != id.as_str());
        }
    }
    reply(StatusCode::OK, json!({ "succeded": true }))
}

// ---- contacts ---------------------------------------------------------------------

fn duplicate_of(
    store: &Store,
    email: Option<&str>,
    phone: Option<&str>,
    except: Option<&str>,
) -> Option<(String, String, &'static str)> {
    let others = |key: String| {
        let found: Vec<&Value> = store
            .contacts_with(&key)
            .filter(move |c| except.is_none_or(|id| c["id"] != id))
            .collect();
        found.into_iter()
    };
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        if let Some(c) = others(format!("email:{}", email.to_lowercase())).find(|c| {
            c["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        }) {
            return Some((
                c["id"].as_str().unwrap_or_default().into(),
                c["contactName"].as_str().unwrap_or_default().into(),
                "email",
            ));
        }
    }
    if let Some(phone) = phone.filter(|p| !p.is_empty()) {
        let phone = normalise_phone(phone);
        if let Some(c) =
            others(format!("phone:{phone}")).find(|c| c["phone"].as_str() == Some(phone.as_str()))
        {
            return Some((
                c["id"].as_str().unwrap_or_default().into(),
                c["contactName"].as_str().unwrap_or_default().into(),
                "phone",
            ));
        }
    }
    None
}

/// Writes the whitelisted fields of `map` onto a stored contact, HighLevel's normalisations applied.
fn write_contact(
    store: &Store,
    contact: &mut Map<String, Value>,
    map: &Map<String, Value>,
    dropped: &[String],
) -> Result<(), Response> {
    for (k, v) in map {
        if dropped.contains(k) || k == "customFields" || k == "locationId" {
            continue;
        }
        let value = match (k.as_str(), v) {
            ("phone", Value::String(p)) => json!(normalise_phone(p)),
            ("email", Value::String(e)) => json!(e.trim().to_lowercase()),
            ("dateOfBirth", Value::String(d)) => match normalise_date(d) {
                Some(date) => json!(date),
                None => {
                    return Err(unprocessable(vec![format!(
                        "dateOfBirth `{d}` is not in a supported format"
                    )]))
                }
            },
            ("tags", Value::Array(tags)) => json!(tags
                .iter()
                .filter_map(Value::as_str)
                .map(|t| t.trim().to_lowercase())
                .collect::<Vec<_>>()),
            _ => v.clone(),
        };
        contact.insert(k.clone(), value);
    }
    let first = contact
        .get("firstName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let last = contact
        .get("lastName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    contact.insert(
        "contactName".into(),
        json!(format!("{first} {last}").trim().to_string()),
    );
    let mut fields = contact
        .get("customFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    apply_custom_fields(
        store,
        "contact",
        map.get("customFields"),
        &mut fields,
        "value",
    )?;
    contact.insert("customFields".into(), Value::Array(fields));
    contact.insert("dateUpdated".into(), json!(now()));
    Ok(())
}

async fn create_contact(State(shared): St, body: Bytes) -> Response {
    let dropped = shared
        .faults
        .lock()
        .expect("faults lock")
        .drop_fields
        .clone();
    let mut store = store(&shared);
    let map = match parse(&body, CONTACT_CREATE) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) =
        require(&map, &["locationId"]).and_then(|_| check_location(&store, map.get("locationId")))
    {
        return r;
    }
    if !store.allow_duplicates() {
        if let Some((id, name, field)) = duplicate_of(
            &store,
            map.get("email").and_then(Value::as_str),
            map.get("phone").and_then(Value::as_str),
            None,
        ) {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({ "statusCode": 400, "message": "This location does not allow duplicated contacts.", "meta": { "contactId": id, "contactName": name, "matchingField": field } }),
            );
        }
    }
    let id = new_id();
    let mut contact = Map::new();
    for (k, v) in [
        ("id", json!(id)),
        ("locationId", json!(store.location_id())),
        ("type", json!("lead")),
        ("dateAdded", json!(now())),
        ("businessId", Value::Null),
        ("tags", json!([])),
    ] {
        contact.insert(k.into(), v);
    }
    if let Err(r) = write_contact(&store, &mut contact, &map, &dropped) {
        return r;
    }
    let contact = Value::Object(contact);
    store.put_contact(id, contact.clone());
    reply(StatusCode::CREATED, json!({ "contact": contact }))
}

async fn get_contact(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).contacts.get(&id) {
        Some(c) => reply(StatusCode::OK, json!({ "contact": c })),
        None => not_found("Contact"),
    }
}

async fn update_contact(State(shared): St, Path(id): Path<String>, body: Bytes) -> Response {
    let dropped = shared
        .faults
        .lock()
        .expect("faults lock")
        .drop_fields
        .clone();
    let mut store = store(&shared);
    let map = match parse(&body, CONTACT_UPDATE) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(Value::Object(mut contact)) = store.contacts.get(&id).cloned() else {
        return not_found("Contact");
    };
    if !store.allow_duplicates() {
        if let Some((other, name, field)) = duplicate_of(
            &store,
            map.get("email").and_then(Value::as_str),
            map.get("phone").and_then(Value::as_str),
            Some(&id),
        ) {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({ "statusCode": 400, "message": "This location does not allow duplicated contacts.", "meta": { "contactId": other, "contactName": name, "matchingField": field } }),
            );
        }
    }
    if let Err(r) = write_contact(&store, &mut contact, &map, &dropped) {
        return r;
    }
    let contact = Value::Object(contact);
    store.put_contact(id, contact.clone());
    reply(
        StatusCode::OK,
        json!({ "succeded": true, "contact": contact }),
    )
}

async fn delete_contact(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).remove_contact(&id) {
        Some(_) => reply(StatusCode::OK, json!({ "succeded": true })),
        None => not_found("Contact"),
    }
}

async fn search_contacts(State(shared): St, body: Bytes) -> Response {
    let store = store(&shared);
    let map = match parse(
        &body,
        &[
            "locationId",
            "page",
            "pageLimit",
            "searchAfter",
            "filters",
            "sort",
            "query",
        ],
    ) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = require(&map, &["locationId", "pageLimit"])
        .and_then(|_| check_location(&store, map.get("locationId")))
    {
        return r;
    }
    let limit = map["pageLimit"].as_u64().unwrap_or(20).min(500) as usize;
    let page = map.get("page").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
    let filters = map
        .get("filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matches = |c: &Value| {
        filters.iter().all(|f| {
            let field = f["field"].as_str().unwrap_or_default();
            let value = &f["value"];
            if f["operator"].as_str() != Some("eq") {
                return false;
            }
            if let Some(field_id) = field.strip_prefix("customFields.") {
                c["customFields"].as_array().is_some_and(|list| {
                    list.iter()
                        .any(|cf| cf["id"] == field_id && &cf["value"] == value)
                })
            } else if field == "phone" {
                value
                    .as_str()
                    .is_some_and(|p| c["phone"].as_str() == Some(normalise_phone(p).as_str()))
            } else {
                c.get(field).is_some_and(|v| {
                    v == value
                        || (v
                            .as_str()
                            .zip(value.as_str())
                            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b)))
                })
            }
        })
    };
    let all: Vec<&Value> = store.contacts.values().filter(|c| matches(c)).collect();
    let page_items: Vec<&Value> = all
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .copied()
        .collect();
    reply(
        StatusCode::OK,
        json!({ "contacts": page_items, "total": all.len() }),
    )
}

async fn duplicate_contact(State(shared): St, Query(q): Params) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, q.get("locationId").map(|l| json!(l)).as_ref()) {
        return r;
    }
    let found = duplicate_of(
        &store,
        q.get("email").map(String::as_str),
        q.get("number").map(String::as_str),
        None,
    )
    .and_then(|(id, _, _)| store.contacts.get(&id).cloned());
    reply(StatusCode::OK, json!({ "contact": found }))
}

async fn link_business(State(shared): St, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, &["locationId", "ids", "businessId"]) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !map.contains_key("businessId") {
        return unprocessable(vec!["businessId must be a string or null".into()]);
    }
    if let Err(r) = require(&map, &["locationId", "ids"])
        .and_then(|_| check_location(&store, map.get("locationId")))
    {
        return r;
    }
    let business = map["businessId"].clone();
    if let Some(b) = business.as_str() {
        if !store.businesses.contains_key(b) {
            return unprocessable(vec![format!("business {b} not found")]);
        }
    }
    let ids: Vec<String> = map["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if let Some(missing) = ids.iter().find(|id| !store.contacts.contains_key(*id)) {
        return unprocessable(vec![format!("contact {missing} not found")]);
    }
    for id in &ids {
        if let Some(c) = store.contacts.get_mut(id) {
            c["businessId"] = business.clone();
        }
    }
    reply(StatusCode::OK, json!({ "success": true, "ids": ids }))
}

// ---- notes and tasks ------------------------------------------------------------------

fn child_list(map: &std::collections::BTreeMap<String, Value>, contact_id: &str) -> Vec<Value> {
    map.values()
        .filter(|n| n["contactId"] == contact_id)
        .cloned()
        .collect()
}

async fn list_notes(State(shared): St, Path(contact_id): Path<String>) -> Response {
    let store = store(&shared);
    if !store.contacts.contains_key(&contact_id) {
        return not_found("Contact");
    }
    reply(
        StatusCode::OK,
        json!({ "notes": child_list(&store.notes, &contact_id) }),
    )
}

async fn create_note(State(shared): St, Path(contact_id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, NOTE).and_then(|m| require(&m, &["body"]).map(|_| m)) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !store.contacts.contains_key(&contact_id) {
        return not_found("Contact");
    }
    let id = new_id();
    let mut note = map.clone();
    note.insert("id".into(), json!(id));
    note.insert("contactId".into(), json!(contact_id));
    note.insert("dateAdded".into(), json!(now()));
    let note = Value::Object(note);
    store.notes.insert(id, note.clone());
    reply(StatusCode::CREATED, json!({ "note": note }))
}

async fn get_note(State(shared): St, Path((contact_id, id)): Path<(String, String)>) -> Response {
    match store(&shared)
        .notes
        .get(&id)
        .filter(|n| n["contactId"] == contact_id.as_str())
    {
        Some(n) => reply(StatusCode::OK, json!({ "note": n })),
        None => not_found("Note"),
    }
}

async fn update_note(
    State(shared): St,
    Path((contact_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, NOTE).and_then(|m| require(&m, &["body"]).map(|_| m)) {
        Ok(m) => m,
        Err(r) => return r,
    };
    patch_contact_child(&mut store.notes, &contact_id, &id, map, "Note", "note")
}

async fn delete_note(
    State(shared): St,
    Path((contact_id, id)): Path<(String, String)>,
) -> Response {
    delete_contact_child(&mut store(&shared).notes, &contact_id, &id, "Note")
}

async fn list_tasks(State(shared): St, Path(contact_id): Path<String>) -> Response {
    let store = store(&shared);
    if !store.contacts.contains_key(&contact_id) {
        return not_found("Contact");
    }
    reply(
        StatusCode::OK,
        json!({ "tasks": child_list(&store.tasks, &contact_id) }),
    )
}

async fn create_task(State(shared): St, Path(contact_id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, TASK_CREATE)
        .and_then(|m| require(&m, &["title", "dueDate", "completed"]).map(|_| m))
    {
        Ok(m) => m,
        Err(r) => return r,
    };
    if chrono::DateTime::parse_from_rfc3339(map["dueDate"].as_str().unwrap_or_default()).is_err() {
        return unprocessable(vec!["dueDate must be a valid ISO 8601 date string".into()]);
    }
    if !store.contacts.contains_key(&contact_id) {
        return not_found("Contact");
    }
    let id = new_id();
    let mut task = map.clone();
    task.insert("id".into(), json!(id));
    task.insert("contactId".into(), json!(contact_id));
    task.insert("dateAdded".into(), json!(now()));
    let task = Value::Object(task);
    store.tasks.insert(id, task.clone());
    reply(StatusCode::CREATED, json!({ "task": task }))
}

async fn get_task(State(shared): St, Path((contact_id, id)): Path<(String, String)>) -> Response {
    match store(&shared)
        .tasks
        .get(&id)
        .filter(|t| t["contactId"] == contact_id.as_str())
    {
        Some(t) => reply(StatusCode::OK, json!({ "task": t })),
        None => not_found("Task"),
    }
}

async fn update_task(
    State(shared): St,
    Path((contact_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, TASK_CREATE) {
        Ok(m) => m,
        Err(r) => return r,
    };
    patch_contact_child(&mut store.tasks, &contact_id, &id, map, "Task", "task")
}

async fn delete_task(
    State(shared): St,
    Path((contact_id, id)): Path<(String, String)>,
) -> Response {
    delete_contact_child(&mut store(&shared).tasks, &contact_id, &id, "Task")
}

/// PUT on a record that lives under a contact (note, task): 404 unless it is that contact's.
fn patch_contact_child(
    records: &mut BTreeMap<String, Value>,
    contact_id: &str,
    id: &str,
    changes: Map<String, Value>,
    label: &str,
    wrapper: &str,
) -> Response {
    let Some(record) = records.get_mut(id).filter(|r| r["contactId"] == contact_id) else {
        return not_found(label);
    };
    for (k, v) in changes {
        record[k.as_str()] = v;
    }
    let record = record.clone();
    reply(StatusCode::OK, json!({ wrapper: record }))
}

/// DELETE of a record that lives under a contact (note, task), with HighLevel's answer body.
fn delete_contact_child(
    records: &mut BTreeMap<String, Value>,
    contact_id: &str,
    id: &str,
    label: &str,
) -> Response {
    if records.get(id).is_none_or(|r| r["contactId"] != contact_id) {
        return not_found(label);
    }
    records.remove(id);
    reply(StatusCode::OK, json!({ "succeded": true }))
}

// ---- businesses ------------------------------------------------------------------------

async fn create_business(State(shared): St, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, BUSINESS_CREATE)
        .and_then(|m| require(&m, &["name", "locationId"]).map(|_| m))
    {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = check_location(&store, map.get("locationId")) {
        return r;
    }
    let id = new_id();
    let mut business = map.clone();
    business.insert("id".into(), json!(id));
    business.insert("createdAt".into(), json!(now()));
    let business = Value::Object(business);
    store.businesses.insert(id, business.clone());
    reply(
        StatusCode::CREATED,
        json!({ "success": true, "buiseness": business }),
    )
}

async fn list_businesses(State(shared): St, Query(q): Params) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, q.get("locationId").map(|l| json!(l)).as_ref()) {
        return r;
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize);
    let skip = q.get("skip").and_then(|s| s.parse().ok()).unwrap_or(0usize);
    let items: Vec<&Value> = store.businesses.values().skip(skip).take(limit).collect();
    reply(StatusCode::OK, json!({ "businesses": items }))
}

async fn get_business(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).businesses.get(&id) {
        Some(b) => reply(StatusCode::OK, json!({ "business": b })),
        None => not_found("Business"),
    }
}

async fn update_business(State(shared): St, Path(id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, BUSINESS_UPDATE) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(business) = store.businesses.get_mut(&id) else {
        return not_found("Business");
    };
    for (k, v) in map {
        business[k.as_str()] = v;
    }
    let business = business.clone();
    reply(
        StatusCode::OK,
        json!({ "success": true, "buiseness": business }),
    )
}

async fn delete_business(State(shared): St, Path(id): Path<String>) -> Response {
    let mut store = store(&shared);
    if store.businesses.remove(&id).is_none() {
        return not_found("Business");
    }
    for contact in store.contacts.values_mut() {
        if contact["businessId"] == id.as_str() {
            contact["businessId"] = Value::Null;
        }
    }
    reply(StatusCode::OK, json!({ "success": true }))
}

// ---- pipelines and opportunities ----------------------------------------------------------

async fn list_pipelines(State(shared): St, Query(q): Params) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, q.get("locationId").map(|l| json!(l)).as_ref()) {
        return r;
    }
    reply(StatusCode::OK, json!({ "pipelines": store.pipelines }))
}

fn check_stage(
    store: &Store,
    pipeline_id: Option<&Value>,
    stage_id: Option<&Value>,
) -> Result<(), Response> {
    let Some(pipeline) = store
        .pipelines
        .iter()
        .find(|p| Some(&p["id"]) == pipeline_id)
    else {
        return Err(bad_request("Pipeline not found"));
    };
    if let Some(stage) = stage_id.filter(|s| !s.is_null()) {
        if !pipeline["stages"]
            .as_array()
            .is_some_and(|stages| stages.iter().any(|s| &s["id"] == stage))
        {
            return Err(bad_request("Pipeline stage not found"));
        }
    }
    Ok(())
}

fn write_opportunity(
    store: &Store,
    record: &mut Map<String, Value>,
    map: &Map<String, Value>,
) -> Result<(), Response> {
    if let Some(status) = map.get("status").and_then(Value::as_str) {
        if !matches!(status, "open" | "won" | "lost" | "abandoned") {
            return Err(unprocessable(vec![
                "status must be one of the following values: open, won, lost, abandoned".into(),
            ]));
        }
    }
    for (k, v) in map {
        if k != "customFields" && k != "locationId" {
            record.insert(k.clone(), v.clone());
        }
    }
    let mut fields = record
        .get("customFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    apply_custom_fields(
        store,
        "opportunity",
        map.get("customFields"),
        &mut fields,
        "fieldValue",
    )?;
    record.insert("customFields".into(), Value::Array(fields));
    record.insert("updatedAt".into(), json!(now()));
    Ok(())
}

async fn create_opportunity(State(shared): St, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, OPPORTUNITY_CREATE).and_then(|m| {
        require(
            &m,
            &["pipelineId", "locationId", "name", "status", "contactId"],
        )
        .map(|_| m)
    }) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = check_location(&store, map.get("locationId"))
        .and_then(|_| check_stage(&store, map.get("pipelineId"), map.get("pipelineStageId")))
    {
        return r;
    }
    if !map["contactId"]
        .as_str()
        .is_some_and(|c| store.contacts.contains_key(c))
    {
        return not_found("Contact");
    }
    let id = new_id();
    let mut record = Map::new();
    record.insert("id".into(), json!(id));
    record.insert("locationId".into(), json!(store.location_id()));
    record.insert("createdAt".into(), json!(now()));
    if let Err(r) = write_opportunity(&store, &mut record, &map) {
        return r;
    }
    let record = Value::Object(record);
    store.opportunities.insert(id, record.clone());
    reply(StatusCode::CREATED, json!({ "opportunity": record }))
}

async fn get_opportunity(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).opportunities.get(&id) {
        Some(o) => reply(StatusCode::OK, json!({ "opportunity": o })),
        None => not_found("Opportunity"),
    }
}

async fn update_opportunity(State(shared): St, Path(id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse(&body, OPPORTUNITY_UPDATE) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(Value::Object(mut record)) = store.opportunities.get(&id).cloned() else {
        return not_found("Opportunity");
    };
    let pipeline = map
        .get("pipelineId")
        .or_else(|| record.get("pipelineId"))
        .cloned();
    if let Err(r) = check_stage(&store, pipeline.as_ref(), map.get("pipelineStageId")) {
        return r;
    }
    if let Err(r) = write_opportunity(&store, &mut record, &map) {
        return r;
    }
    let record = Value::Object(record);
    store.opportunities.insert(id, record.clone());
    reply(StatusCode::OK, json!({ "opportunity": record }))
}

async fn delete_opportunity(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).opportunities.remove(&id) {
        Some(_) => reply(StatusCode::OK, json!({ "succeded": true })),
        None => not_found("Opportunity"),
    }
}

async fn search_opportunities(State(shared): St, Query(q): Params) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, q.get("location_id").map(|l| json!(l)).as_ref()) {
        return r;
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20usize)
        .min(100);
    let page = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let hits: Vec<&Value> = store
        .opportunities
        .values()
        .filter(|o| {
            q.get("pipeline_id")
                .is_none_or(|p| o["pipelineId"] == p.as_str())
        })
        .filter(|o| {
            q.get("contact_id")
                .is_none_or(|c| o["contactId"] == c.as_str())
        })
        .filter(|o| {
            q.get("status")
                .is_none_or(|s| s == "all" || o["status"] == s.as_str())
        })
        .collect();
    let items: Vec<&Value> = hits
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .copied()
        .collect();
    reply(
        StatusCode::OK,
        json!({ "opportunities": items, "meta": { "total": hits.len(), "currentPage": page } }),
    )
}

// ---- calendars and appointments -------------------------------------------------------------

async fn list_calendars(State(shared): St, Query(q): Params) -> Response {
    let store = store(&shared);
    if let Err(r) = check_location(&store, q.get("locationId").map(|l| json!(l)).as_ref()) {
        return r;
    }
    reply(StatusCode::OK, json!({ "calendars": store.calendars }))
}

/// Calendars answer invalid requests with 400, not 422.
fn parse_calendar(bytes: &Bytes) -> Result<Map<String, Value>, Response> {
    parse(bytes, APPOINTMENT).map_err(|_| {
        bad_request("Invalid request: only AppointmentCreateSchema properties are allowed")
    })
}

async fn create_appointment(State(shared): St, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse_calendar(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let missing: Vec<&str> = ["calendarId", "locationId", "contactId", "startTime"]
        .into_iter()
        .filter(|f| {
            map.get(*f)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .collect();
    if !missing.is_empty() {
        return bad_request(format!("{} should not be empty", missing.join(", ")));
    }
    if let Err(r) = check_location(&store, map.get("locationId")) {
        return r;
    }
    if !store.calendars.iter().any(|c| c["id"] == map["calendarId"]) {
        return bad_request("Calendar not found");
    }
    if !map["contactId"]
        .as_str()
        .is_some_and(|c| store.contacts.contains_key(c))
    {
        return bad_request("Contact not found");
    }
    for time in ["startTime", "endTime"] {
        if let Some(t) = map.get(time).and_then(Value::as_str) {
            if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                return bad_request(format!("{time} must be an ISO 8601 date with offset"));
            }
        }
    }
    let id = new_id();
    let mut record = map.clone();
    record.insert("id".into(), json!(id));
    record.insert("isRecurring".into(), json!(false));
    record.entry("appointmentStatus").or_insert(json!("new"));
    record.insert("dateAdded".into(), json!(now()));
    let record = Value::Object(record);
    store.appointments.insert(id, record.clone());
    reply(StatusCode::OK, record)
}

async fn get_appointment(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).appointments.get(&id) {
        Some(a) => reply(StatusCode::OK, json!({ "event": a })),
        None => bad_request("Appointment not found"),
    }
}

async fn update_appointment(State(shared): St, Path(id): Path<String>, body: Bytes) -> Response {
    let mut store = store(&shared);
    let map = match parse_calendar(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(record) = store.appointments.get_mut(&id) else {
        return bad_request("Appointment not found");
    };
    for (k, v) in map {
        record[k.as_str()] = v;
    }
    let record = record.clone();
    reply(StatusCode::OK, record)
}

async fn delete_event(State(shared): St, Path(id): Path<String>) -> Response {
    match store(&shared).appointments.remove(&id) {
        Some(_) => reply(StatusCode::CREATED, json!({ "succeeded": true })),
        None => bad_request("Event not found"),
    }
}

async fn contact_appointments(State(shared): St, Path(contact_id): Path<String>) -> Response {
    let store = store(&shared);
    if !store.contacts.contains_key(&contact_id) {
        return not_found("Contact");
    }
    reply(
        StatusCode::OK,
        json!({ "events": child_list(&store.appointments, &contact_id) }),
    )
}

// ---- files ------------------------------------------------------------------------------------

const MAX_FILE_BYTES: usize = 50 * 1024 * 1024;

async fn upload_files(State(shared): St, Query(q): Params, mut multipart: Multipart) -> Response {
    let (Some(contact_id), Some(location_id)) =
        (q.get("contactId").cloned(), q.get("locationId").cloned())
    else {
        return bad_request("contactId and locationId are required");
    };
    let mut parts = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let file_name = field.file_name().unwrap_or("file").to_string();
                let mime = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                match field.bytes().await {
                    Ok(bytes) => parts.push((name, file_name, mime, bytes.len())),
                    Err(e) => return bad_request(format!("malformed multipart body: {e}")),
                }
            }
            Ok(None) => break,
            Err(e) => return bad_request(format!("malformed multipart body: {e}")),
        }
    }
    let base_url = shared.base_url.lock().expect("base url lock").clone();
    let mut store = store(&shared);
    if let Err(r) = check_location(&store, Some(&json!(location_id))) {
        return r;
    }
    let Some(Value::Object(mut contact)) = store.contacts.get(&contact_id).cloned() else {
        return not_found("Contact");
    };
    if parts.is_empty() {
        return bad_request("no file parts");
    }
    let mut fields = contact
        .get("customFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (name, file_name, mime, size) in parts {
        let Some((field_id, uuid)) = name.split_once('_') else {
            return bad_request(format!("part `{name}` is not <customFieldId>_<fileId>"));
        };
        let Some(field) = store.custom_fields.get(field_id) else {
            return bad_request(format!("custom field {field_id} not found"));
        };
        if field["dataType"] != "FILE_UPLOAD" {
            return bad_request(format!(
                "custom field {field_id} is not a FILE_UPLOAD field"
            ));
        }
        if size > MAX_FILE_BYTES {
            return bad_request("file exceeds 50 MB");
        }
        let document_id = new_id();
        let entry = json!({
            "meta": { "fieldname": name, "originalname": file_name, "encoding": "7bit", "mimetype": mime, "size": size, "uuid": uuid },
            "url": format!("{base_url}/documents/download/{document_id}"),
            "documentId": document_id,
        });
        store.documents.insert(
            document_id,
            json!({ "contactId": contact_id, "fieldId": field_id, "uuid": uuid, "size": size }),
        );
        match fields.iter_mut().find(|f| f["id"] == field_id) {
            Some(existing) => {
                if !existing["value"].is_object() {
                    existing["value"] = json!({});
                }
                existing["value"][uuid] = entry;
            }
            None => fields.push(json!({ "id": field_id, "value": { uuid: entry } })),
        }
    }
    contact.insert("customFields".into(), Value::Array(fields));
    let contact = Value::Object(contact);
    store.put_contact(contact_id, contact.clone());
    reply(StatusCode::OK, json!({ "contact": contact }))
}
