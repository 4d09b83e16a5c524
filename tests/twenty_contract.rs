//! Contract test: every request the Twenty client sends, in every kind of write it
//! makes, is validated against the official core OpenAPI description
//! (`tests/contracts/twenty/core-openapi.yaml`, patched as listed in the README next
//! to it) by an independent validator (Node + ajv, installed by scripts/setup-tools).

use std::path::PathBuf;
use std::process::Command;

use cutover_connectors::twenty::sandbox::{self, SandboxConfig};
use cutover_connectors::twenty::{perio_schema, ApiToken, TwentyClient, TwentyConfig, UPLOAD_KEY};
use cutover_engine::{Destination, ReadDestination, SourceKey, WriteRequest};
use serde_json::{json, Value};

const TOKEN: &str = "contract-test-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node_modules() -> PathBuf {
    let dir = root().join(".tools/node/node_modules");
    assert!(
        dir.join("ajv").is_dir() && dir.join("yaml").is_dir() && dir.join("ajv-formats").is_dir(),
        "the OpenAPI validator is not installed in {}: run scripts/setup-tools",
        dir.display()
    );
    dir
}

/// Runs the validator on a request log; returns (exit code, summary JSON).
fn validate(log: &Value) -> (i32, Value) {
    let modules = node_modules();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("requests.json");
    std::fs::write(&log_path, serde_json::to_vec(log).unwrap()).unwrap();
    let contracts = root().join("tests/contracts/twenty");
    let output = Command::new("node")
        .arg(contracts.join("validate-requests.mjs"))
        .arg(contracts.join("core-openapi.yaml"))
        .arg(&log_path)
        .env("CUTOVER_NODE_MODULES", modules)
        .output()
        .expect("node must be installed (Node 20): see scripts/setup-tools");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "validator output is not JSON: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), summary)
}

fn request(object: &str, key: &str, body: Value) -> WriteRequest {
    WriteRequest {
        object: object.into(),
        idempotency_key: format!("{object}:{key}"),
        entity: "Contract".into(),
        source_key: SourceKey::new(key),
        client_id: None,
        body: serde_json::from_value(body).unwrap(),
    }
}

fn person(i: usize) -> WriteRequest {
    request(
        "person",
        &i.to_string(),
        json!({
            "name": {"firstName": format!("Pat{i}"), "lastName": "Example"},
            "emails": {"primaryEmail": format!("pat{i}@example.test"), "additionalEmails": []},
            "phones": {"primaryPhoneNumber": "4155550100", "primaryPhoneCountryCode": "US", "primaryPhoneCallingCode": "+1", "additionalPhones": []},
            "jobTitle": "Patient", "createdAt": "2019-05-01T10:00:00.000Z",
        }),
    )
}

#[tokio::test]
async fn every_request_the_client_sends_matches_the_official_spec() {
    node_modules();
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = TwentyConfig::new(&server.base_url(), ApiToken::new(TOKEN))
        .unwrap()
        .with_requests_per_minute(600_000)
        .unwrap();
    config.base_backoff = std::time::Duration::from_millis(1);
    let client = TwentyClient::new(config).unwrap();

    client.ensure_schema(&perio_schema()).await.unwrap();
    let company = client
        .create(&request("company", "P1", json!({"name": "Smile Dental", "domainName": {"primaryLinkUrl": "https://smile.example", "primaryLinkLabel": "", "secondaryLinks": []}, "address": {"addressStreet1": "1 Main St", "addressCity": "Austin", "addressPostcode": "78701", "addressState": "TX", "addressCountry": "United States"}, "createdAt": "2015-01-01T00:00:00Z"})))
        .await
        .unwrap();
    let mut people: Vec<WriteRequest> = (0..70).map(person).collect();
    people[3]
        .body
        .insert("companyId".into(), json!(company.dest_id));
    // One record the server refuses (an e-mail already taken): the batch is split, the rest confirmed.
    people[50].body.insert(
        "emails".into(),
        json!({"primaryEmail": "pat49@example.test", "additionalEmails": []}),
    );
    let results = client.create_batch(&people).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    let pid = results[0].as_ref().unwrap().dest_id.clone();
    let notes: Vec<WriteRequest> = (0..3).map(|i| request("note", &i.to_string(), json!({"title": "Progress", "bodyV2": {"markdown": "**SRP** UR"}, "createdAt": "2020-02-02T00:00:00Z"}))).collect();
    let notes = client.create_batch(&notes).await;
    let note_id = notes[0].as_ref().unwrap().dest_id.clone();
    client
        .create(&request(
            "noteTarget",
            "1",
            json!({"noteId": note_id, "targetPersonId": pid}),
        ))
        .await
        .unwrap();
    let task = client.create(&request("task", "1", json!({"title": "Recall", "status": "TODO", "dueAt": "2024-03-15T10:00:00.000Z", "bodyV2": {"markdown": "call"}}))).await.unwrap();
    client
        .create(&request(
            "taskTarget",
            "1",
            json!({"taskId": task.dest_id, "targetPersonId": pid}),
        ))
        .await
        .unwrap();
    client
        .create(&request(
            "perioExam",
            "1",
            json!({"examDate": "2024-01-10", "classification": "STAGE_III", "patientId": pid}),
        ))
        .await
        .unwrap();
    let attachment = client
        .create(&request("attachment", "1", json!({"name": "chart.pdf", "fileCategory": "TEXT_DOCUMENT", "targetPersonId": pid, UPLOAD_KEY: {"filename": "chart.pdf", "contentBase64": "JVBERi0xLjQ="}})))
        .await
        .unwrap();
    client
        .update(
            "person",
            &pid,
            &serde_json::from_value(
                json!({"jobTitle": null, "name": {"firstName": "Pat0", "lastName": "Restored"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    // A soft-deleted before-image put back, then restored.
    let before: serde_json::Map<String, Value> =
        serde_json::from_value(json!({"jobTitle": "Patient", "deletedAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z"})).unwrap();
    client.update("person", &pid, &before).await.unwrap();
    client.restore("person", &pid).await.unwrap();
    assert!(client.get("person", &pid).await.unwrap().is_some());
    assert!(client
        .find_by_key("person", "person:0")
        .await
        .unwrap()
        .is_some());
    assert!(client
        .find_by_key("person", "person:missing")
        .await
        .unwrap()
        .is_none());
    client
        .delete("attachment", &attachment.dest_id)
        .await
        .unwrap();
    let ids: Vec<String> = results
        .iter()
        .skip(1)
        .filter_map(|r| r.as_ref().ok())
        .map(|o| o.dest_id.clone())
        .take(20)
        .collect();
    assert_eq!(client.delete_many("person", &ids).await.unwrap(), 20);

    let log: Vec<Value> = server
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    server.stop().await;
    let (code, summary) = validate(&Value::Array(log.clone()));
    assert_eq!(
        code, 0,
        "requests outside the contract: {:#}",
        summary["failures"]
    );
    let answers = summary["responses_validated"].as_u64().unwrap();
    assert!(
        answers >= 25,
        "the sandbox's answers are checked against the declared responses too: {summary}"
    );
    let validated = summary["validated"].as_u64().unwrap();
    assert!(validated >= 25, "too few requests were checked: {summary}");
    // Only what the core spec does not describe is skipped: metadata, uploads, custom objects.
    for skipped in summary["skipped"].as_array().unwrap() {
        let path = skipped["path"].as_str().unwrap();
        assert!(
            path.starts_with("/rest/metadata/")
                || path == "/metadata"
                || path.starts_with("/rest/perioExams")
                || path.starts_with("/rest/batch/perioExams"),
            "unexpectedly skipped: {skipped}"
        );
    }
    for operation in [
        "POST /rest/batch/people",
        "POST /rest/noteTargets",
        "PATCH /rest/people/",
        "PATCH /rest/restore/people/",
        "DELETE /rest/people",
        "GET /rest/people",
    ] {
        let (method, path) = operation.split_once(' ').unwrap();
        assert!(
            log.iter()
                .any(|r| r["method"] == method && r["path"].as_str().unwrap().starts_with(path)),
            "{operation} was exercised"
        );
    }
}

#[test]
fn the_validator_rejects_what_the_server_would() {
    let id = "6f1b8d1e-2f8c-4f6a-9d7e-1c2b3a4d5e6f";
    let bad = json!([
        {"method": "POST", "path": "/rest/batch/people", "query": [["depth", "0"]], "body": [{"id": id, "name": {"firstName": "A", "middle": "x"}}]},
        {"method": "POST", "path": "/rest/noteTargets", "query": [], "body": {"noteId": id, "personId": id}},
        {"method": "GET", "path": "/rest/people", "query": [["depth", "2"]], "body": null},
        {"method": "DELETE", "path": "/rest/people/not-a-uuid", "query": [["soft_delete", "maybe"]], "body": null},
        {"method": "POST", "path": "/rest/people", "query": [["upsert_all", "true"]], "body": {"createdBy": {"source": "ROBOT"}}},
        {"method": "GET", "path": "/rest/people", "query": [], "body": null, "status": 200,
         "response": {"data": {"people": [{"id": "not-a-uuid", "createdAt": "yesterday"}]}, "totalCount": "many"}}
    ]);
    let (code, summary) = validate(&bad);
    assert_eq!(code, 1);
    assert_eq!(
        summary["failures"].as_array().unwrap().len(),
        6,
        "{summary:#}"
    );
    assert_eq!(summary["validated"], 0);
}
