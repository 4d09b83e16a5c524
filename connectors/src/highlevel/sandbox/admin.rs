//! `/_sandbox/*`: outside the emulated API, never rate limited or faulted.
//! `GET records` (all state), `GET|POST faults`, `POST settings`
//! (duplicate rule, pipelines), `GET stats`, `POST reset`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::Faults;
use super::store::{pipeline, Store};
use super::Shared;

type St = State<Arc<Shared>>;

pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sandbox/records", get(records))
        .route("/_sandbox/faults", get(get_faults).post(set_faults))
        .route("/_sandbox/settings", post(settings))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/reset", post(reset))
        .with_state(shared)
}

async fn records(State(shared): St) -> Json<Value> {
    let store = shared.store.lock().expect("store lock").clone();
    Json(serde_json::to_value(store).unwrap_or(Value::Null))
}

async fn get_faults(State(shared): St) -> Json<Faults> {
    Json(shared.faults.lock().expect("faults lock").clone())
}

async fn set_faults(State(shared): St, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "message": format!("faults: {e}") })),
            )
                .into_response()
        }
    };
    if let Err(message) = faults.validate() {
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response();
    }
    *shared.faults.lock().expect("faults lock") = faults.clone();
    Json(faults).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    allow_duplicate_contact: Option<bool>,
    /// Replaces the pipelines: `[{name, stages: [..]}]`.
    pipelines: Option<Vec<PipelineSetting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineSetting {
    name: String,
    stages: Vec<String>,
}

async fn settings(State(shared): St, body: axum::body::Bytes) -> Response {
    let settings: Settings = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "message": format!("settings: {e}") })),
            )
                .into_response()
        }
    };
    let mut store = shared.store.lock().expect("store lock");
    if let Some(allow) = settings.allow_duplicate_contact {
        store.location["settings"]["allowDuplicateContact"] = json!(allow);
    }
    if let Some(pipelines) = settings.pipelines {
        let location = store.location_id().to_string();
        store.pipelines = pipelines
            .iter()
            .map(|p| {
                pipeline(
                    &p.name,
                    &p.stages.iter().map(String::as_str).collect::<Vec<_>>(),
                    &location,
                )
            })
            .collect();
    }
    Json(json!({ "location": store.location, "pipelines": store.pipelines })).into_response()
}

async fn stats(State(shared): St) -> Json<Value> {
    let windows = shared.limits.lock().expect("limits lock");
    Json(json!({ "served": windows.served, "throttled": windows.throttled }))
}

async fn reset(State(shared): St) -> Json<Value> {
    *shared.store.lock().expect("store lock") = Store::new(&shared.config);
    *shared.faults.lock().expect("faults lock") = Faults::default();
    super::limits::reset(&shared);
    Json(json!({ "reset": true }))
}
