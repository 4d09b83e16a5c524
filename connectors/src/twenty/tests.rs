//! The client against the emulator over real HTTP on 127.0.0.1: batching, split
//! and read-back on failure, fault injection, the request budget, every object
//! kind of the migration, schema creation and removal, and secrets in output.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cutover_engine::{DestError, Destination, ReadDestination, SourceKey, WriteRequest};
use serde_json::{json, Map, Value};

use super::sandbox::{self, FaultSettings, RateLimitSettings, SandboxConfig, SandboxHandle};
use super::{perio_schema, ApiToken, TwentyClient, TwentyConfig, UPLOAD_KEY};
use crate::sandbox_common::SandboxAdmin;

const TOKEN: &str = "tw-test-SECRET-token-4f9a1c";

fn fast_config(base_url: &str) -> TwentyConfig {
    let mut config = TwentyConfig::new(base_url, ApiToken::new(TOKEN))
        .unwrap()
        .with_requests_per_minute(600_000)
        .unwrap();
    config.base_backoff = Duration::from_millis(2);
    config.max_backoff = Duration::from_millis(20);
    config
}

async fn setup(faults: FaultSettings) -> (SandboxHandle, TwentyClient) {
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: None,
        faults,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = TwentyClient::new(fast_config(&server.base_url())).unwrap();
    (server, client)
}

fn body(value: Value) -> Map<String, Value> {
    serde_json::from_value(value).unwrap()
}

fn request(object: &str, key: &str, fields: Value) -> WriteRequest {
    WriteRequest {
        object: object.into(),
        idempotency_key: format!("{object}:{key}"),
        entity: "Patient".into(),
        source_key: SourceKey::new(key),
        client_id: None,
        body: body(fields),
    }
}

fn person(i: usize) -> WriteRequest {
    request(
        "person",
        &i.to_string(),
        json!({
            "name": {"firstName": format!("Pat{i}"), "lastName": "Example"},
            "emails": {"primaryEmail": format!("pat{i}@example.test"), "additionalEmails": []},
            "phones": {"primaryPhoneNumber": "4155550100", "primaryPhoneCountryCode": "US", "primaryPhoneCallingCode": "+1"},
            "createdAt": "2019-05-01T10:00:00.000Z",
        }),
    )
}

/// `GET /_sandbox/{path}`.
async fn admin(server: &SandboxHandle, path: &str) -> Value {
    SandboxAdmin::new(server.base_url())
        .get(path)
        .await
        .unwrap()
}

async fn set_faults(server: &SandboxHandle, faults: Value) {
    let response = SandboxAdmin::new(server.base_url())
        .set_faults(&faults)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}

async fn records(server: &SandboxHandle, object: &str) -> Vec<Value> {
    admin(server, &format!("records?object={object}")).await["records"]
        .as_array()
        .cloned()
        .unwrap()
}

async fn requests_to(server: &SandboxHandle, method: &str, path_prefix: &str) -> usize {
    let log = admin(server, "requests").await;
    log.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().unwrap().starts_with(path_prefix))
        .count()
}

#[tokio::test]
async fn people_and_notes_go_in_batches_of_sixty() {
    let (server, client) = setup(FaultSettings::default()).await;
    let people: Vec<WriteRequest> = (0..150).map(person).collect();
    let results = client.create_batch(&people).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let notes: Vec<WriteRequest> = (0..100)
        .map(|i| {
            request(
                "note",
                &i.to_string(),
                json!({"title": format!("Visit {i}"), "bodyV2": {"markdown": "**SRP** UR"}}),
            )
        })
        .collect();
    assert!(client.create_batch(&notes).await.iter().all(Result::is_ok));
    // 150 people → 3 requests, 100 notes → 2: ≤ 1 request per 50 records.
    assert_eq!(requests_to(&server, "POST", "/rest/batch/people").await, 3);
    assert_eq!(requests_to(&server, "POST", "/rest/batch/notes").await, 2);
    assert_eq!(requests_to(&server, "POST", "/rest/people").await, 0);
    let stored = records(&server, "people").await;
    assert_eq!(stored.len(), 150);
    let first = stored
        .iter()
        .find(|r| r["id"] == WriteRequest::uuid_for_key("person:0").to_string())
        .unwrap();
    assert_eq!(first["createdBy"]["source"], "IMPORT");
    assert_eq!(first["createdAt"], "2019-05-01T10:00:00.000Z");
    let notes = records(&server, "notes").await;
    assert!(
        notes[0]["bodyV2"]["blocknote"].is_string(),
        "the server derives blocknote from markdown"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_record_fails_alone_and_the_rest_of_its_batch_is_confirmed() {
    let (server, client) = setup(FaultSettings::default()).await;
    let mut people: Vec<WriteRequest> = (0..60).map(person).collect();
    people[37].body.insert(
        "phones".into(),
        json!({"primaryPhoneNumber": "1", "bogus": true}),
    );
    let results = client.create_batch(&people).await;
    for (i, result) in results.iter().enumerate() {
        if i == 37 {
            let error = result.as_ref().unwrap_err();
            assert!(
                matches!(error, DestError::Rejected { status: 400, .. }),
                "{error:?}"
            );
            assert!(
                error.to_string().contains("bogus"),
                "the reason names the field: {error}"
            );
        } else {
            assert_eq!(
                result.as_ref().unwrap().dest_id,
                WriteRequest::uuid_for_key(&people[i].idempotency_key).to_string()
            );
        }
    }
    assert_eq!(records(&server, "people").await.len(), 59);
    // Split in halves: far fewer than 60 single retries.
    assert!(requests_to(&server, "POST", "/rest/batch/people").await <= 12);
    // Halving ends with the bad record and at most one neighbour sent alone.
    assert!(requests_to(&server, "POST", "/rest/people").await <= 2);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_batch_answer_is_settled_by_reading_ids_back() {
    let (server, client) = setup(FaultSettings {
        fail_after: 1,
        ..Default::default()
    })
    .await;
    let people: Vec<WriteRequest> = (0..40).map(person).collect();
    let results = client.create_batch(&people).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let stored = records(&server, "people").await;
    assert_eq!(stored.len(), 40, "committed once, never duplicated");
    server.stop().await;
}

#[tokio::test]
async fn under_random_faults_nothing_acknowledged_is_lost_or_duplicated() {
    let faults = FaultSettings {
        before_rate: 0.15,
        after_rate: 0.15,
        seed: Some(7),
        status: Some(502),
        ..Default::default()
    };
    let (server, _) = setup(faults).await;
    let client =
        TwentyClient::new(fast_config(&server.base_url()).with_batch_size(10).unwrap()).unwrap();
    let people: Vec<WriteRequest> = (0..300).map(person).collect();
    let results = client.create_batch(&people).await;
    let confirmed: HashSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|o| o.dest_id.clone())
        .collect();
    for result in &results {
        if let Err(error) = result {
            // Allowed only as an explicit, retryable state; never silent.
            assert_eq!(
                error.class(),
                cutover_engine::ErrorClass::Transient,
                "{error}"
            );
        }
    }
    let stored = records(&server, "people").await;
    let ids: Vec<String> = stored
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates in the sandbox");
    for id in &confirmed {
        assert!(unique.contains(id), "confirmed {id} must be stored");
    }
    assert!(
        confirmed.len() >= 295,
        "with 6 attempts nearly all succeed: {}",
        confirmed.len()
    );
    let stats = admin(&server, "stats").await;
    assert!(
        stats["by_status"]["502"].as_u64().unwrap_or(0) >= 5,
        "faults were injected: {stats}"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_object_kind_round_trips_and_rolls_back_children_first() {
    let (server, client) = setup(FaultSettings::default()).await;
    let changes = client.ensure_schema(&perio_schema()).await.unwrap();
    assert_eq!(
        changes
            .iter()
            .filter(|c| c.kind == "object" && c.created)
            .count(),
        3
    );
    assert!(changes
        .iter()
        .any(|c| c.name == "perioComparison.baselineExam" && c.created));
    // Idempotent: a second run creates nothing.
    assert!(client
        .ensure_schema(&perio_schema())
        .await
        .unwrap()
        .iter()
        .all(|c| !c.created));

    let company = client.create(&request("company", "P1", json!({"name": "Smile Dental", "domainName": {"primaryLinkUrl": "https://smile.example", "primaryLinkLabel": "", "secondaryLinks": []}, "address": {"addressCity": "Austin"}}))).await.unwrap();
    let mut patient = person(1);
    patient
        .body
        .insert("companyId".into(), json!(company.dest_id));
    let patient = client.create(&patient).await.unwrap();
    assert_eq!(
        patient.stored["legacyCreatedAt"], "2019-05-01T10:00:00.000Z",
        "original createdAt kept in the legacy field"
    );
    let pid = patient.dest_id.clone();
    let note = client
        .create(&request(
            "note",
            "N1",
            json!({"title": "Progress", "bodyV2": {"markdown": "ok"}}),
        ))
        .await
        .unwrap();
    let note_target = client
        .create(&request(
            "noteTarget",
            "N1",
            json!({"noteId": note.dest_id, "targetPersonId": pid}),
        ))
        .await
        .unwrap();
    let task = client
        .create(&request(
            "task",
            "A1",
            json!({"title": "Recall", "status": "DONE", "dueAt": "2024-03-15T10:00:00Z"}),
        ))
        .await
        .unwrap();
    let task_target = client
        .create(&request(
            "taskTarget",
            "A1",
            json!({"taskId": task.dest_id, "targetPersonId": pid}),
        ))
        .await
        .unwrap();
    let exam1 = client.create(&request("perioExam", "E1", json!({"examDate": "2024-01-10", "classification": "STAGE_III", "bopPercentage": 23.5, "patientId": pid}))).await.unwrap();
    let exam2 = client
        .create(&request(
            "perioExam",
            "E2",
            json!({"examDate": "2024-06-10", "classification": "STAGE_II", "patientId": pid}),
        ))
        .await
        .unwrap();
    let plan = client.create(&request("treatmentPlan", "T1", json!({"planName": "SRP", "stage": "ACCEPTED", "estimatedValue": {"amountMicros": 1_280_000_000i64, "currencyCode": "USD"}, "patientId": pid, "referringPracticeId": company.dest_id}))).await.unwrap();
    let comparison = client.create(&request("perioComparison", "C1", json!({"summary": "improved", "patientId": pid, "baselineExamId": exam1.dest_id, "followUpExamId": exam2.dest_id}))).await.unwrap();
    let pdf = b"%PDF-1.4 perio chart".to_vec();
    let attachment = client
        .create(&request("attachment", "F1", json!({"name": "chart.pdf", "targetPersonId": pid, UPLOAD_KEY: {"filename": "chart.pdf", "contentBase64": base64::engine::general_purpose::STANDARD.encode(&pdf)}})))
        .await
        .unwrap();
    assert_eq!(attachment.stored["file"][0]["label"], "chart.pdf");

    // Read back, find by key, patch a before-image back.
    let read = client
        .get("perioExam", &exam1.dest_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.body["classification"], "STAGE_III");
    assert_eq!(
        client
            .find_by_key("person", "person:1")
            .await
            .unwrap()
            .unwrap()
            .id,
        pid
    );
    assert!(client
        .find_by_key("person", "person:404")
        .await
        .unwrap()
        .is_none());
    client
        .update("person", &pid, &body(json!({"jobTitle": "changed"})))
        .await
        .unwrap();
    let restored = client
        .update("person", &pid, &body(json!({"jobTitle": null})))
        .await
        .unwrap();
    assert_eq!(restored.stored["jobTitle"], Value::Null);

    let all = vec![
        ("company".to_string(), company.dest_id.clone()),
        ("person".into(), pid.clone()),
        ("perioExam".into(), exam1.dest_id.clone()),
        ("perioExam".into(), exam2.dest_id.clone()),
        ("treatmentPlan".into(), plan.dest_id),
        ("perioComparison".into(), comparison.dest_id),
        ("note".into(), note.dest_id),
        ("noteTarget".into(), note_target.dest_id),
        ("task".into(), task.dest_id),
        ("taskTarget".into(), task_target.dest_id),
        ("attachment".into(), attachment.dest_id),
    ];
    client.delete_children_first(all).await.unwrap();
    for object in [
        "companies",
        "people",
        "perioExams",
        "treatmentPlans",
        "perioComparisons",
        "notes",
        "noteTargets",
        "tasks",
        "taskTargets",
        "attachments",
    ] {
        assert!(
            records(&server, object).await.is_empty(),
            "{object} destroyed, not soft-deleted"
        );
    }
    // Deleting again is fine (404 = done).
    client.delete("person", &pid).await.unwrap();

    for change in changes.iter().rev().filter(|c| c.created) {
        client.drop_schema(change).await.unwrap();
    }
    let inventory = client.inventory().await.unwrap();
    assert!(!inventory.objects.contains(&"perioExam".to_string()));
    assert!(!inventory
        .fields
        .iter()
        .any(|f| f.name == "person.legacyCreatedAt"));
    server.stop().await;
}

#[tokio::test]
async fn find_by_key_sees_soft_deleted_rows_and_rejects_unknown_fields() {
    let (server, client) = setup(FaultSettings::default()).await;
    let created = client.create(&person(5)).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/rest/people/{}?soft_delete=true",
        server.base_url(),
        created.dest_id
    );
    assert_eq!(
        http.delete(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(client
        .get("person", &created.dest_id)
        .await
        .unwrap()
        .is_none());
    let found = client
        .find_by_key("person", "person:5")
        .await
        .unwrap()
        .unwrap();
    assert!(found.body["deletedAt"].is_string());
    let mut bad = person(6);
    bad.body.insert("favourite".into(), json!("x"));
    let error = client.create(&bad).await.unwrap_err().to_string();
    assert!(
        error.contains("person") && error.contains("favourite"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_budget_keeps_under_the_server_window_and_429s_are_absorbed() {
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: Some(RateLimitSettings {
            requests: 20,
            window_ms: 1000,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let config = fast_config(&server.base_url())
        .with_requests_per_minute(1200)
        .unwrap();
    let client = TwentyClient::new(config).unwrap();
    let start = Instant::now();
    for i in 0..40 {
        client.create(&person(i)).await.unwrap();
    }
    // 41 requests (metadata + 40) at 20/s, the bucket starting full: about a second at least.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        client.budget().stats().rate_limited,
        0,
        "paced requests are never refused"
    );
    set_faults(&server, json!({"force_429": 2})).await;
    client.create(&person(99)).await.unwrap();
    assert_eq!(client.budget().stats().rate_limited, 2);
    let stats = admin(&server, "stats").await;
    assert_eq!(stats["by_status"]["429"], 2);
    server.stop().await;
}

/// Captures everything `tracing` emits while the guard lives.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_reaches_logs_errors_or_results() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (server, client) = setup(FaultSettings {
        fail_before: 2,
        force_429: 1,
        ..Default::default()
    })
    .await;
    let mut produced = Vec::new();
    produced.push(format!("{client:?} {:?}", client.config()));
    let ok = client
        .create_batch(&(0..3).map(person).collect::<Vec<_>>())
        .await;
    produced.push(format!("{ok:?}"));
    // What the engine would put in the ledger: schema changes, inventory, records read back.
    produced.push(format!(
        "{:?}",
        client.ensure_schema(&perio_schema()).await.unwrap()
    ));
    produced.push(format!("{:?}", client.inventory().await.unwrap()));
    produced.push(format!(
        "{:?}",
        client.find_by_key("person", "person:0").await.unwrap()
    ));
    let mut bad = person(9);
    bad.body.insert(
        "emails".into(),
        json!({"primaryEmail": "pat0@example.test"}),
    );
    let duplicate = client.create(&bad).await.unwrap_err();
    assert!(duplicate.to_string().to_lowercase().contains("duplicate"));
    produced.push(format!("{duplicate} {duplicate:?}"));
    set_faults(&server, json!({"fail_before": 50})).await;
    let transient = client.create(&person(10)).await.unwrap_err();
    assert_eq!(transient.class(), cutover_engine::ErrorClass::Transient);
    produced.push(format!("{transient} {transient:?}"));
    // Wrong key: the server's 401 must not echo anything secret either.
    let wrong = TwentyClient::new(TwentyConfig {
        token: ApiToken::new("wrong-SECRET-key-77"),
        ..fast_config(&server.base_url())
    })
    .unwrap();
    set_faults(&server, json!({})).await;
    let unauthorized = wrong.get("person", "x").await.unwrap_err();
    assert!(
        matches!(unauthorized, DestError::Unauthorized { status: 401, .. }),
        "{unauthorized:?}"
    );
    produced.push(format!("{unauthorized} {unauthorized:?}"));
    // A dead server: network errors carry no URL secrets either.
    let address = server.base_url();
    server.stop().await;
    let gone = TwentyClient::new(TwentyConfig {
        max_attempts: 2,
        ..fast_config(&address)
    })
    .unwrap();
    let network = gone.get("person", "x").await.unwrap_err();
    produced.push(format!("{network} {network:?}"));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("rate limited") && logs.contains("transient failure"),
        "logs were captured: {logs}"
    );
    for text in produced.iter().chain(std::iter::once(&logs)) {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(
            !text.contains("wrong-SECRET-key-77"),
            "token leaked: {text}"
        );
    }
    assert!(
        !logs.contains("pat0@example.test") && !logs.contains("Pat0"),
        "PHI leaked into logs: {logs}"
    );
}

#[tokio::test]
async fn sandbox_keeps_soft_deleted_rows_unique_caps_pages_and_batches() {
    let server = sandbox::start(SandboxConfig {
        rate_limit: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = server.base_url();
    let alice = json!({"name": {"firstName": "A"}, "emails": {"primaryEmail": "a@x.test"}});
    let created: Value = http
        .post(format!("{base}/rest/people"))
        .json(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["createPerson"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    http.delete(format!("{base}/rest/people/{id}?soft_delete=true"))
        .send()
        .await
        .unwrap();
    let again = http
        .post(format!("{base}/rest/people"))
        .json(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        400,
        "a soft-deleted row still holds its e-mail"
    );
    let error: Value = again.json().await.unwrap();
    assert!(error["messages"][0]
        .as_str()
        .unwrap()
        .contains("Duplicate entry"));
    let restored = http
        .patch(format!("{base}/rest/restore/people/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    assert_eq!(
        http.get(format!("{base}/rest/people/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    http.delete(format!("{base}/rest/people/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.get(format!("{base}/rest/people/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.post(format!("{base}/rest/people"))
            .json(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        201,
        "destroyed frees the value"
    );

    // Batch all-or-nothing and the cap.
    let mut batch: Vec<Value> = (0..10)
        .map(|i| json!({"name": {"firstName": format!("B{i}")}}))
        .collect();
    batch.push(json!({"name": {"firstName": "bad", "middle": "x"}}));
    let refused = http
        .post(format!("{base}/rest/batch/people"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        records(&server, "people").await.len(),
        1,
        "nothing of a refused batch is kept"
    );
    let too_many: Vec<Value> = (0..61)
        .map(|i| json!({"name": {"firstName": format!("C{i}")}}))
        .collect();
    let refused: Value = http
        .post(format!("{base}/rest/batch/people"))
        .json(&too_many)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused["messages"][0],
        "Maximum number of records to upsert is 60."
    );
    for chunk in (0..250).collect::<Vec<_>>().chunks(50) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"name": {"firstName": format!("D{i}")}}))
            .collect();
        assert_eq!(
            http.post(format!("{base}/rest/batch/people"))
                .json(&items)
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let page: Value = http
        .get(format!("{base}/rest/people?limit=500"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"]["people"].as_array().unwrap().len(),
        200,
        "limit is capped at 200"
    );
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let cursor = page["pageInfo"]["endCursor"].as_str().unwrap();
    let next: Value = http
        .get(format!(
            "{base}/rest/people?limit=200&starting_after={cursor}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"]["people"].as_array().unwrap().len(), 51);
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    let missing = http
        .post(format!("{base}/rest/noteTargets"))
        .json(&json!({"targetPersonId": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        400,
        "a relation must point at an existing record"
    );
    server.stop().await;
}

#[tokio::test]
async fn preflight_round_trips_every_kind_and_leaves_nothing_behind() {
    let (server, client) = setup(FaultSettings::default()).await;
    let report = super::preflight::run(&client).await;
    assert!(
        report.ok(),
        "{:#?}",
        report.steps.iter().filter(|s| !s.ok).collect::<Vec<_>>()
    );
    let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
    for expected in [
        "create person",
        "update person",
        "find person by key",
        "read noteTarget",
        "create cutoverPreflightProbe",
        "read attachment",
        "batch create notes",
        "destroy company",
    ] {
        assert!(
            steps.contains(&expected),
            "missing step {expected}: {steps:?}"
        );
    }
    let counts = admin(&server, "records").await;
    assert!(
        counts["counts"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "left behind: {counts}"
    );
    assert!(client
        .catalog()
        .await
        .unwrap()
        .object(super::preflight::PROBE_OBJECT)
        .is_none());

    // Nothing of the probe object's relations is left on person: a second run works too.
    let catalog = client.refresh_catalog().await.unwrap();
    assert!(!catalog
        .object("person")
        .unwrap()
        .fields
        .iter()
        .any(|f| f.name.starts_with("cutoverPreflight")));
    assert!(
        super::preflight::run(&client).await.ok(),
        "preflight can run again"
    );
    // A broken endpoint shows up as a failed step, not a success.
    set_faults(&server, json!({"fail_before": 1000})).await;
    let report = super::preflight::run(&client).await;
    assert!(!report.ok());
    assert!(!report.steps[0].ok && report.steps[0].endpoint == "GET /rest/metadata/objects");
    server.stop().await;
}

#[tokio::test]
async fn field_names_follow_what_a_1x_workspace_reports() {
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: None,
        v1_names: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = TwentyClient::new(fast_config(&server.base_url())).unwrap();
    let pid = client.create(&person(1)).await.unwrap().dest_id;
    let note = client
        .create(&request("note", "1", json!({"title": "t"})))
        .await
        .unwrap()
        .dest_id;
    // The engine speaks 2.x (`targetPersonId`); this workspace calls it `personId`.
    let link = client
        .create(&request(
            "noteTarget",
            "1",
            json!({"noteId": note, "targetPersonId": pid}),
        ))
        .await
        .unwrap();
    assert_eq!(link.stored["personId"], json!(pid));
    assert!(link.stored.get("targetPersonId").is_none());
    let upload = json!({"name": "c.pdf", "targetPersonId": pid, UPLOAD_KEY: {"filename": "c.pdf", "contentBase64": "JVBERi0="}});
    let error = client
        .create(&request("attachment", "1", upload))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DestError::Precondition(_)) && error.to_string().contains("1.x"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_lower_server_batch_cap_is_learnt_and_nothing_is_lost() {
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: None,
        max_batch: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = TwentyClient::new(fast_config(&server.base_url())).unwrap();
    let results = client
        .create_batch(&(0..200).map(person).collect::<Vec<_>>())
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(client.effective_batch_size(), 20);
    assert_eq!(server.records("people").len(), 200);
    let batches = server
        .requests()
        .iter()
        .filter(|r| r.path == "/rest/batch/people")
        .count();
    assert!(
        batches <= 14,
        "after the first refusal every batch fits: {batches}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_before_image_is_patched_back_including_its_soft_deleted_state() {
    let (server, client) = setup(FaultSettings::default()).await;
    let created = client.create(&person(3)).await.unwrap();
    let id = created.dest_id.clone();
    // The record as it stood before a migration touched it: soft-deleted, with a job title.
    let mut before = created.stored.as_object().unwrap().clone();
    before.insert("jobTitle".into(), json!("Hygienist"));
    before.insert("deletedAt".into(), json!("2024-01-01T00:00:00.000Z"));
    client
        .update(
            "person",
            &id,
            &body(json!({"jobTitle": "changed by migration"})),
        )
        .await
        .unwrap();
    let restored = client.update("person", &id, &before).await.unwrap();
    assert_eq!(restored.stored["jobTitle"], "Hygienist");
    assert!(
        restored.stored["deletedAt"].is_string(),
        "soft-deleted again: {}",
        restored.stored
    );
    assert!(client.get("person", &id).await.unwrap().is_none());
    let revived = client.restore("person", &id).await.unwrap();
    assert!(revived.stored["deletedAt"].is_null());
    // A validation refusal is not read back (it cannot have landed): one request only.
    let before_count = server.requests().len();
    let mut bad = person(4);
    bad.body.insert("jobTitle".into(), json!(42));
    assert!(client.create(&bad).await.is_err());
    assert_eq!(server.requests().len(), before_count + 1);
    server.stop().await;
}

#[tokio::test]
async fn a_budget_set_above_the_servers_limit_costs_few_429s() {
    // The server takes 40/s; the client was told 80/s. Without slowing down on 429,
    // about a third of its requests would be refused once the bucket is empty.
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: Some(RateLimitSettings {
            requests: 40,
            window_ms: 1000,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = fast_config(&server.base_url())
        .with_requests_per_minute(4800)
        .unwrap();
    config.base_backoff = Duration::from_millis(25);
    let client = TwentyClient::new(config).unwrap();
    for i in 0..200 {
        client.create(&person(i)).await.unwrap();
    }
    let stats = client.budget().stats();
    let refused = stats.rate_limited as f64 / stats.requests as f64;
    assert!(stats.rate_limited > 0, "the server's limit was reached");
    assert!(
        refused < 0.15,
        "{} of {} requests refused",
        stats.rate_limited,
        stats.requests
    );
    assert!(
        stats.current_per_window < 4800,
        "the pace came down: {stats:?}"
    );
    assert_eq!(server.records("people").len(), 200);
    server.stop().await;
}

#[tokio::test]
async fn select_options_are_added_with_the_full_list_and_removed_exactly() {
    let (server, client) = setup(FaultSettings::default()).await;
    client.ensure_schema(&perio_schema()).await.unwrap();
    let mut spec = perio_schema();
    let stage = spec
        .fields
        .iter_mut()
        .find(|f| f.object == "treatmentPlan" && f.name == "stage")
        .unwrap();
    stage.options.push("On hold".into());
    let changes = client.ensure_schema(&spec).await.unwrap();
    let added: Vec<_> = changes.iter().filter(|c| c.created).collect();
    assert_eq!(added.len(), 1, "{changes:?}");
    assert_eq!(added[0].kind, "field_options");
    assert_eq!(added[0].name, "treatmentPlan.stage+ON_HOLD");
    let values = |catalog: &super::metadata::Catalog| {
        catalog
            .object("treatmentPlan")
            .unwrap()
            .field("stage")
            .unwrap()
            .option_values()
    };
    let catalog = client.refresh_catalog().await.unwrap();
    assert_eq!(
        values(&catalog),
        [
            "PROPOSED",
            "ACCEPTED",
            "IN_PROGRESS",
            "COMPLETED",
            "DECLINED",
            "ON_HOLD"
        ]
    );
    // The full list was sent (a partial list would have dropped the others).
    let patch = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.body["options"].as_array().unwrap().len(), 6);
    client.drop_schema(added[0]).await.unwrap();
    let catalog = client.refresh_catalog().await.unwrap();
    assert_eq!(
        values(&catalog),
        [
            "PROPOSED",
            "ACCEPTED",
            "IN_PROGRESS",
            "COMPLETED",
            "DECLINED"
        ]
    );
    // Something cutover did not create is never removed.
    let standard = cutover_engine::SchemaChange {
        kind: "object".into(),
        name: "person".into(),
        dest_id: "x".into(),
        created: false,
    };
    assert!(matches!(
        client.drop_schema(&standard).await,
        Err(DestError::Precondition(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (server, client) = setup(FaultSettings::default()).await;
    client.catalog().await.unwrap();
    set_faults(&server, json!({"force_429": 1, "retry_after_s": 1})).await;
    let start = Instant::now();
    client.create(&person(1)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(client.budget().stats().rate_limited, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_one_client_without_loss_or_duplicates() {
    let faults = FaultSettings {
        before_rate: 0.1,
        after_rate: 0.1,
        seed: Some(11),
        ..Default::default()
    };
    let (server, _) = setup(faults).await;
    let client = Arc::new(
        TwentyClient::new(fast_config(&server.base_url()).with_batch_size(25).unwrap()).unwrap(),
    );
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let people: Vec<WriteRequest> =
                (worker * 100..worker * 100 + 100).map(person).collect();
            client.create_batch(&people).await
        }));
    }
    let mut confirmed = HashSet::new();
    for task in tasks {
        for result in task.await.unwrap() {
            confirmed.insert(result.expect("each write settles").dest_id);
        }
    }
    assert_eq!(confirmed.len(), 400);
    let stored: Vec<String> = server
        .records("people")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored.len(), 400, "no duplicates");
    assert!(stored.iter().all(|id| confirmed.contains(id)));
    server.stop().await;
}

#[tokio::test]
async fn sandbox_error_shapes_match_twenty() {
    let server = sandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        rate_limit: Some(RateLimitSettings {
            requests: 3,
            window_ms: 60_000,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = server.base_url();
    let unauthorized: Value = http
        .get(format!("{base}/rest/people"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        unauthorized,
        json!({"statusCode": 401, "message": "Token invalid.", "error": "Unauthorized"})
    );
    let missing = http
        .get(format!("{base}/rest/people/{}", uuid::Uuid::new_v4()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(
        missing,
        json!({"statusCode": 404, "error": "NotFoundException", "messages": ["Record not found"]})
    );
    let unknown: Value = http
        .post(format!("{base}/rest/people"))
        .bearer_auth(TOKEN)
        .json(&json!({"foo": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["statusCode"], 400);
    assert_eq!(unknown["error"], "BadRequestException");
    assert_eq!(
        unknown["messages"][0],
        "Object person doesn't have any \"foo\" field."
    );
    // Unauthenticated requests are not counted against the workspace: this is the third.
    let third = http
        .get(format!("{base}/rest/people"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    let limited = http
        .get(format!("{base}/rest/people"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429, "the fourth request in the window");
    let limited: Value = limited.json().await.unwrap();
    assert_eq!(
        limited,
        json!({"statusCode": 429, "error": "HttpException", "messages": ["Limit reached (3 tokens per 60000 ms)"]})
    );
    // GraphQL answers the same limit inside a 200.
    let graphql = http
        .post(format!("{base}/metadata"))
        .bearer_auth(TOKEN)
        .json(&json!({"query": "mutation { x }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(graphql.status(), 200);
    let graphql: Value = graphql.json().await.unwrap();
    assert_eq!(graphql["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(graphql["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Limit reached"));
    server.stop().await;
}

#[tokio::test]
async fn a_retried_attachment_does_not_upload_its_file_twice() {
    let (server, client) = setup(FaultSettings::default()).await;
    let pid = client.create(&person(1)).await.unwrap().dest_id;
    let attachment = request(
        "attachment",
        "F1",
        json!({"name": "c.pdf", "targetPersonId": pid, UPLOAD_KEY: {"filename": "c.pdf", "contentBase64": "JVBERi0xLjQ="}}),
    );
    let first = client.create(&attachment).await.unwrap();
    let again = client.create(&attachment).await.unwrap();
    assert_eq!(first.dest_id, again.dest_id);
    assert_eq!(server.records("attachments").len(), 1);
    let uploads = server
        .requests()
        .iter()
        .filter(|r| r.path == "/metadata")
        .count();
    assert_eq!(
        uploads, 2,
        "one createFileUpload + one completeFileUpload, not two of each"
    );
    server.stop().await;
}

#[tokio::test]
async fn rollback_deletes_in_bulk_children_first_and_tolerates_gone_ids() {
    let (server, client) = setup(FaultSettings::default()).await;
    let people: Vec<String> = client
        .create_batch(&(0..250).map(person).collect::<Vec<_>>())
        .await
        .into_iter()
        .map(|r| r.unwrap().dest_id)
        .collect();
    let mut ids = people.clone();
    ids.push(uuid::Uuid::new_v4().to_string()); // never existed: counts as deleted
    let before = server.requests().len();
    let results = client.delete_batch("person", &ids).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        server.requests().len() - before,
        3,
        "251 ids in 3 requests of ≤ 100"
    );
    assert!(
        server.records("people").is_empty(),
        "destroyed, not soft-deleted"
    );
    server.stop().await;
}
