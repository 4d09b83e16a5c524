//! Contract tests: every request the HighLevel client sends is validated
//! against HighLevel's official OpenAPI files by Prism (mock mode, request
//! validation), while a tee proxy hands the same request to the stateful
//! sandbox so the client sees real outcomes and runs its whole flow.
//!
//! Specs: `tests/contracts/highlevel/` (test-only copies, patches listed in
//! its README). Prism comes from `scripts/setup-tools` (`.tools/node`).

use std::collections::BTreeSet;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use cutover_connectors::highlevel::client::ops;
use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use cutover_connectors::highlevel::{preflight, HighLevelConfig, HighLevelDestination, Token};
use cutover_engine::ports::{
    Destination, FieldSpec, FieldType, ReadDestination, SchemaSpec, WriteRequest,
};
use cutover_engine::SourceKey;
use serde_json::{json, Value};

const SPEC_FILES: &[&str] = &[
    "contacts",
    "businesses",
    "opportunities",
    "locations",
    "calendars",
    "forms",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prism_binary() -> PathBuf {
    let prism = root().join(".tools/node/node_modules/.bin/prism");
    assert!(prism.exists(), "Prism is missing at {}: run scripts/setup-tools first (it installs @stoplight/prism-cli into .tools/node)", prism.display());
    prism
}

/// Prism processes this test started; killed (by their own handles) when dropped.
struct Prisms(Vec<(String, u16, Child)>);

impl Drop for Prisms {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prisms() -> Prisms {
    let prism = prism_binary();
    let mut prisms = Prisms(Vec::new());
    for name in SPEC_FILES {
        let port = free_port();
        let spec = root().join(format!("tests/contracts/highlevel/apps/{name}.json"));
        let child = Command::new(&prism)
            .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start Prism ({e}); run scripts/setup-tools (needs Node 20)")
            });
        prisms.0.push((name.to_string(), port, child));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (name, port, child) in &mut prisms.0 {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("Prism for {name}.json exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "Prism for {name}.json did not start listening within 90 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    prisms
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    prism_status: u16,
    violations: Option<String>,
}

struct Tee {
    http: reqwest::Client,
    prism_ports: Vec<(String, u16)>,
    sandbox: String,
    seen: Mutex<Vec<Seen>>,
}

fn spec_for(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "contacts" => "contacts",
        "businesses" => "businesses",
        "opportunities" => "opportunities",
        "locations" => "locations",
        "calendars" => "calendars",
        "forms" => "forms",
        other => panic!("the client called /{other}, which no copied spec covers"),
    }
}

async fn forward(
    http: &reqwest::Client,
    base: &str,
    parts: &axum::http::request::Parts,
    body: &axum::body::Bytes,
) -> reqwest::Response {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut request = http
        .request(parts.method.clone(), format!("{base}{path_and_query}"))
        .body(body.clone());
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    request.send().await.expect("forwarding to 127.0.0.1")
}

async fn tee(State(tee): State<Arc<Tee>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let spec = spec_for(parts.uri.path());
    let port = tee.prism_ports.iter().find(|(n, _)| n == spec).unwrap().1;
    let prism = forward(
        &tee.http,
        &format!("http://127.0.0.1:{port}"),
        &parts,
        &body,
    )
    .await;
    let prism_status = prism.status().as_u16();
    let problem = prism
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("problem+json"));
    // Only request violations count: Prism also flags its own response examples
    // where the spec contradicts itself (`indexVersion`, `isRecurring`; README).
    let header: Vec<Value> = prism
        .headers()
        .get("sl-violations")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let request_violations: Vec<&Value> = header
        .iter()
        .filter(|v| v.pointer("/location/0").and_then(Value::as_str) == Some("request"))
        .collect();
    let prism_body = prism.text().await.unwrap_or_default();
    let violations = if problem {
        Some(prism_body)
    } else if !request_violations.is_empty() {
        Some(serde_json::to_string(&request_violations).unwrap())
    } else {
        None
    };
    tee.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        prism_status,
        violations,
    });

    let answer = forward(&tee.http, &tee.sandbox, &parts, &body).await;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap_or_default()))
        .unwrap()
}

fn matches_template(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

fn request(object: &str, key: &str, body: Value) -> WriteRequest {
    WriteRequest {
        object: object.into(),
        idempotency_key: key.into(),
        entity: "Contract".into(),
        source_key: SourceKey::new(key),
        client_id: None,
        body: body.as_object().cloned().unwrap(),
    }
}

/// Drives every operation in `ops::ALL` through the client.
async fn exercise(dest: &HighLevelDestination) {
    let report = preflight(dest, None).await;
    assert!(
        report.ok(),
        "preflight through the tee failed: {:#?}",
        report.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
    );

    let field = |object: &str, name: &str, field_type| FieldSpec {
        object: object.into(),
        name: name.into(),
        label: name.into(),
        field_type,
        options: vec![],
        relation_to: None,
    };
    let mut select = field("contact", "Last_Perio_Classification", FieldType::Select);
    select.options = vec!["Stage I".into(), "Stage II".into()];
    let spec = SchemaSpec {
        fields: vec![
            field("contact", "BOP_Percentage", FieldType::Number),
            field("contact", "Last_Exam_Date", FieldType::Date),
            select,
            field("contact", "Charts", FieldType::File),
        ],
        ..Default::default()
    };
    dest.ensure_schema(&spec).await.unwrap();
    let contact = dest
        .create(&request("contact", "c:1", json!({
            "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "phone": "+14155550100", "dateOfBirth": "1980-04-02",
            "address1": "1 Main St", "city": "Austin", "state": "TX", "postalCode": "78701", "country": "US", "tags": ["migrated"],
            "customFields": [{ "name": "BOP_Percentage", "field_value": 23.5 }, { "name": "Last_Exam_Date", "field_value": "2024-03-01" }, { "name": "Last_Perio_Classification", "field_value": "Stage II" }],
        })))
        .await
        .unwrap();
    let business = dest
        .create(&request(
            "business",
            "b:1",
            json!({ "name": "Downtown Dental", "phone": "+15125550100", "city": "Austin" }),
        ))
        .await
        .unwrap();
    dest.create(&request(
        "contact_business_link",
        "l:1",
        json!({ "contactId": contact.dest_id, "businessId": business.dest_id }),
    ))
    .await
    .unwrap();
    let opportunity = dest.create(&request("opportunity", "o:1", json!({ "contactId": contact.dest_id, "name": "SRP", "stage": "Diagnosis", "monetaryValue": 1280 }))).await.unwrap();
    let note = dest
        .create(&request(
            "note",
            "n:1",
            json!({ "contactId": contact.dest_id, "body": "note" }),
        ))
        .await
        .unwrap();
    let task = dest.create(&request("task", "t:1", json!({ "contactId": contact.dest_id, "title": "Visit", "dueDate": "2024-03-15T14:00:00Z", "completed": true }))).await.unwrap();
    let appointment = dest.create(&request("appointment", "a:1", json!({ "contactId": contact.dest_id, "startTime": "2024-03-15T14:00:00+00:00", "endTime": "2024-03-15T15:00:00+00:00", "title": "SRP", "appointmentStatus": "showed" }))).await.unwrap();

    // Look-ups an interrupted run uses, and read-backs.
    assert!(dest.find_by_key("contact", "c:1").await.unwrap().is_some());
    // A key the search does not know falls back to the duplicate lookup by e-mail and phone.
    assert!(dest
        .find_existing(&request(
            "contact",
            "c:unknown",
            json!({ "email": "ada@example.com", "phone": "+14155550100" })
        ))
        .await
        .unwrap()
        .is_none());
    assert!(dest.find_by_key("business", "b:1").await.unwrap().is_some());
    assert!(dest
        .find_by_key("opportunity", "o:1")
        .await
        .unwrap()
        .is_some());
    for (object, key) in [("note", "n:1"), ("task", "t:1"), ("appointment", "a:1")] {
        assert!(
            dest.find_existing(&request(
                object,
                key,
                json!({ "contactId": contact.dest_id })
            ))
            .await
            .unwrap()
            .is_some(),
            "{object}"
        );
    }
    // Updates, as rollback restores before-images.
    let before = dest
        .get("contact", &contact.dest_id)
        .await
        .unwrap()
        .unwrap()
        .body;
    dest.update("contact", &contact.dest_id, before.as_object().unwrap())
        .await
        .unwrap();
    let business_before = dest
        .get("business", &business.dest_id)
        .await
        .unwrap()
        .unwrap()
        .body;
    dest.update(
        "business",
        &business.dest_id,
        business_before.as_object().unwrap(),
    )
    .await
    .unwrap();
    dest.update(
        "opportunity",
        &opportunity.dest_id,
        json!({ "stage": "Maintenance", "status": "won", "monetaryValue": 1300 })
            .as_object()
            .unwrap(),
    )
    .await
    .unwrap();
    dest.update(
        "note",
        &note.dest_id,
        json!({ "body": "note, edited" }).as_object().unwrap(),
    )
    .await
    .unwrap();
    dest.update(
        "task",
        &task.dest_id,
        json!({ "title": "Visit", "completed": false })
            .as_object()
            .unwrap(),
    )
    .await
    .unwrap();
    dest.update(
        "appointment",
        &appointment.dest_id,
        json!({ "title": "SRP follow-up", "appointmentStatus": "confirmed" })
            .as_object()
            .unwrap(),
    )
    .await
    .unwrap();
    for (object, id) in [
        ("appointment", &appointment.dest_id),
        ("task", &task.dest_id),
        ("note", &note.dest_id),
        ("opportunity", &opportunity.dest_id),
        ("contact_business_link", &contact.dest_id),
        ("contact", &contact.dest_id),
        ("business", &business.dest_id),
    ] {
        dest.delete(object, id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_client_sends_matches_the_official_spec() {
    let prisms = start_prisms();
    let sandbox = sandbox::start(
        SandboxConfig {
            requests_per_window: 10_000,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let tee_state = Arc::new(Tee {
        http: reqwest::Client::new(),
        prism_ports: prisms.0.iter().map(|(n, p, _)| (n.clone(), *p)).collect(),
        sandbox: sandbox.base_url(),
        seen: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tee_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(tee)
        .with_state(tee_state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = HighLevelConfig::new(
        tee_url,
        sandbox.shared.config.location_id.clone(),
        Token::new("contract-test-token"),
    );
    config.requests_per_window = 10_000;
    let dest = HighLevelDestination::new(config).unwrap();
    exercise(&dest).await;

    // Control: the validator is live — a request without locationId and Version is flagged.
    let client_requests = tee_state.seen.lock().unwrap().len();
    reqwest::Client::new()
        .post(format!("{}/contacts/", dest.client().config().base_url))
        .bearer_auth("x")
        .json(&json!({ "firstName": "x" }))
        .send()
        .await
        .unwrap();
    let control = tee_state.seen.lock().unwrap().pop().unwrap();
    assert!(
        control.violations.is_some(),
        "Prism did not flag an invalid request: {control:?}"
    );
    assert_eq!(tee_state.seen.lock().unwrap().len(), client_requests);
    server.abort();
    sandbox.stop().await;
    drop(prisms);

    let seen = tee_state.seen.lock().unwrap().clone();
    let bad: Vec<String> = seen
        .iter()
        .filter(|s| s.violations.is_some())
        .map(|s| {
            format!(
                "{} {} → Prism {}: {}",
                s.method,
                s.path,
                s.prism_status,
                s.violations.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests violate the spec:\n{}",
        bad.len(),
        seen.len(),
        bad.join("\n")
    );
    let uncovered: BTreeSet<&str> = ops::ALL
        .iter()
        .filter(|op| {
            !seen
                .iter()
                .any(|s| s.method == op.method.as_str() && matches_template(op.path, &s.path))
        })
        .map(|op| op.operation)
        .collect();
    assert!(
        uncovered.is_empty(),
        "operations the client can send but this test never validated: {uncovered:?}"
    );
}
