//! A client for an emulator's `/_sandbox/*` admin endpoints (state, faults,
//! settings, stats), for tests and rehearsals. It only moves JSON: what a fault
//! plan or a record listing contains is each emulator's own.

use reqwest::StatusCode;
use serde_json::Value;

/// What a `POST /_sandbox/…` answered, kept whole so callers judge it themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminReply {
    pub status: StatusCode,
    pub body: String,
}

/// The admin endpoints of one running emulator.
#[derive(Debug, Clone)]
pub struct SandboxAdmin {
    http: reqwest::Client,
    base_url: String,
}

impl SandboxAdmin {
    /// `base_url` is the emulator's root (`http://127.0.0.1:PORT`).
    pub fn new(base_url: impl Into<String>) -> Self {
        SandboxAdmin {
            http: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
        }
    }

    /// `GET /_sandbox/{path}` (`records`, `records?object=people`, `stats`) as JSON.
    pub async fn get(&self, path: &str) -> reqwest::Result<Value> {
        self.http
            .get(self.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// `POST /_sandbox/{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Result<AdminReply> {
        let response = self.http.post(self.url(path)).json(body).send().await?;
        Ok(AdminReply {
            status: response.status(),
            body: response.text().await?,
        })
    }

    /// `POST /_sandbox/faults`: replaces the emulator's fault plan.
    pub async fn set_faults(&self, faults: &Value) -> reqwest::Result<AdminReply> {
        self.post("faults", faults).await
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/_sandbox/{}",
            self.base_url,
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox_common::{bind_local, BackgroundServer};
    use axum::extract::RawQuery;
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::json;

    fn emulator() -> Router {
        Router::new()
            .route(
                "/_sandbox/records",
                get(|RawQuery(query): RawQuery| async move { Json(json!({ "query": query })) }),
            )
            .route(
                "/_sandbox/faults",
                post(|Json(body): Json<Value>| async move {
                    if body.get("bad").is_some() {
                        (AxumStatus::BAD_REQUEST, Json(json!({ "message": "bad" })))
                    } else {
                        (AxumStatus::OK, Json(json!({ "faults": body })))
                    }
                }),
            )
    }

    #[tokio::test]
    async fn reads_state_and_sets_faults_over_http() {
        let server = BackgroundServer::spawn(bind_local(0).await.unwrap(), emulator()).unwrap();
        let admin = SandboxAdmin::new(format!("{}/", server.base_url()));
        assert_eq!(
            admin.get("records?object=people").await.unwrap()["query"],
            "object=people"
        );
        let reply = admin.set_faults(&json!({ "force_429": 1 })).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.contains("force_429"), "{}", reply.body);
        let refused = admin.set_faults(&json!({ "bad": true })).await.unwrap();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            admin.get("nothing-here").await.is_err(),
            "a 404 is an error, not JSON"
        );
        server.stop().await;
    }
}
