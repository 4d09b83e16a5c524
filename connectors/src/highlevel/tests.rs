//! Tests of the client against the sandbox over real HTTP on 127.0.0.1:
//! every object kind written, read back, updated and deleted; the duplicate
//! rule; refused properties; silently dropped fields; faults that must not
//! lose or duplicate records; rate limits; tokens kept out of logs and errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use cutover_engine::ports::{
    Destination, FieldSpec, FieldType, PipelineSpec, ReadDestination, SchemaSpec, WriteRequest,
};
use cutover_engine::{DestError, SourceKey};
use serde_json::{json, Value};

use super::config::{HighLevelConfig, Token};
use super::destination::HighLevelDestination;
use super::retry::Backoff;
use super::sandbox::{self, SandboxConfig, SandboxHandle};
use crate::sandbox_common::SandboxAdmin;

const TOKEN: &str = "pit-test-7f3c9a1e5b2d4c68";

/// A sandbox whose window is wide enough that functional tests run at full speed.
fn fast() -> SandboxConfig {
    SandboxConfig {
        requests_per_window: 10_000,
        ..Default::default()
    }
}

async fn start(config: SandboxConfig) -> SandboxHandle {
    sandbox::start(config, 0)
        .await
        .expect("sandbox starts on 127.0.0.1")
}

fn destination_for(sandbox: &SandboxHandle, token: &str) -> HighLevelDestination {
    let mut config = HighLevelConfig::new(
        sandbox.base_url(),
        sandbox.shared.config.location_id.clone(),
        Token::new(token),
    );
    config.calendar_id = Some("sandboxCalendar0001".into());
    // Functional tests are not about pacing: match the fast sandbox below.
    config.requests_per_window = sandbox.shared.config.requests_per_window;
    config.window = sandbox.shared.config.window;
    config.max_attempts = 12;
    config.timeout = Duration::from_secs(5);
    let client = super::HighLevelClient::new(config)
        .unwrap()
        .with_backoff(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        });
    HighLevelDestination::from_client(client)
}

fn schema() -> SchemaSpec {
    let field = |object: &str, name: &str, field_type| FieldSpec {
        object: object.into(),
        name: name.into(),
        label: name.into(),
        field_type,
        options: vec![],
        relation_to: None,
    };
    SchemaSpec {
        objects: vec![],
        fields: vec![
            field("contact", "Last_Exam_Date", FieldType::Date),
            field("contact", "BOP_Percentage", FieldType::Number),
            field("contact", "Last_Perio_Classification", FieldType::Text),
            field("contact", "Perio Chart PDFs", FieldType::File),
            field("opportunity", "Treatment_Stage", FieldType::Text),
        ],
        pipelines: vec![PipelineSpec {
            name: "Perio Treatment".into(),
            stages: vec!["Diagnosis".into(), "Maintenance".into()],
        }],
    }
}

fn request(object: &str, key: &str, body: Value) -> WriteRequest {
    WriteRequest {
        object: object.into(),
        idempotency_key: key.into(),
        entity: "Test".into(),
        source_key: SourceKey::new(key),
        client_id: None,
        body: body.as_object().cloned().unwrap(),
    }
}

fn admin(sandbox: &SandboxHandle) -> SandboxAdmin {
    SandboxAdmin::new(sandbox.base_url())
}

async fn records(sandbox: &SandboxHandle) -> Value {
    admin(sandbox).get("records").await.unwrap()
}

async fn set_faults(sandbox: &SandboxHandle, faults: Value) {
    let response = admin(sandbox).set_faults(&faults).await.unwrap();
    assert!(
        response.status.is_success(),
        "faults refused: {}",
        response.body
    );
}

async fn served(sandbox: &SandboxHandle) -> u64 {
    let stats: Value = admin(sandbox).get("stats").await.unwrap();
    stats["served"].as_u64().unwrap()
}

#[tokio::test]
async fn every_object_kind_is_written_read_back_updated_and_deleted() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    let changes = dest.ensure_schema(&schema()).await.unwrap();
    assert!(changes
        .iter()
        .any(|c| c.name == "contact.Source_System_ID" && c.created));
    assert!(changes.iter().any(|c| c.kind == "pipeline" && !c.created));
    // Idempotent: the second run creates nothing.
    assert!(dest
        .ensure_schema(&schema())
        .await
        .unwrap()
        .iter()
        .all(|c| !c.created));

    let before = served(&sandbox).await;
    let contact = dest
        .create(&request("contact", "contact:1001", json!({
            "firstName": "Ada", "lastName": "Lovelace", "email": "Ada@Example.com", "phone": "(415) 555-0100",
            "dateOfBirth": "1980-04-02", "tags": ["Migrated"],
            "customFields": [{ "name": "BOP_Percentage", "field_value": 23.5 }, { "key": "last_exam_date", "field_value": "2024-03-01" }],
        })))
        .await
        .unwrap();
    assert_eq!(
        served(&sandbox).await - before,
        1,
        "a contact with inline custom fields costs one request"
    );
    let business = dest
        .create(&request(
            "business",
            "business:7",
            json!({ "name": "Downtown Dental", "city": "Austin" }),
        ))
        .await
        .unwrap();
    let link = dest
        .create(&request(
            "contact_business_link",
            "link:1001",
            json!({ "contactId": contact.dest_id, "businessId": business.dest_id }),
        ))
        .await
        .unwrap();
    assert_eq!(link.stored["previousBusinessId"], Value::Null);
    let opportunity = dest
        .create(&request("opportunity", "plan:31", json!({ "contactId": contact.dest_id, "name": "SRP, 4 quadrants", "stage": "diagnosis", "monetaryValue": 1280, "customFields": [{ "name": "Treatment_Stage", "field_value": "Diagnosis" }] })))
        .await
        .unwrap();
    let note = dest
        .create(&request(
            "note",
            "note:5",
            json!({ "contactId": contact.dest_id, "body": "2024-03-01: re-evaluation" }),
        ))
        .await
        .unwrap();
    let task = dest.create(&request("task", "visit:9", json!({ "contactId": contact.dest_id, "title": "Perio maintenance", "dueDate": "2024-03-15T14:00:00Z", "completed": true }))).await.unwrap();
    let appointment = dest
        .create(&request("appointment", "appt:4", json!({ "contactId": contact.dest_id, "startTime": "2024-03-15T14:00:00+00:00", "endTime": "2024-03-15T15:00:00+00:00", "title": "SRP", "appointmentStatus": "showed" })))
        .await
        .unwrap();
    let pdf = b"%PDF-1.4\nchart\n%%EOF\n";
    let file = dest
        .create(&request("file", "chart:1001", json!({ "contactId": contact.dest_id, "field": "Perio Chart PDFs", "fileName": "chart.pdf", "contentType": "application/pdf", "contentBase64": base64::engine::general_purpose::STANDARD.encode(pdf) })))
        .await
        .unwrap();
    assert_eq!(file.stored["meta"]["size"], json!(pdf.len()));

    let state = records(&sandbox).await;
    let stored_contact = &state["contacts"][&contact.dest_id];
    assert_eq!(stored_contact["phone"], "+14155550100");
    assert_eq!(stored_contact["businessId"], json!(business.dest_id));
    let appointment_stored = &state["appointments"][&appointment.dest_id];
    assert_eq!(
        appointment_stored["toNotify"],
        json!(false),
        "history must not notify"
    );
    assert_eq!(
        state["opportunities"][&opportunity.dest_id]["pipelineStageId"],
        state["pipelines"][0]["stages"][0]["id"]
    );

    // Read back and find by key / by request, for every kind.
    for (object, outcome, key) in [
        ("contact", &contact, "contact:1001"),
        ("business", &business, "business:7"),
        ("opportunity", &opportunity, "plan:31"),
    ] {
        assert!(
            dest.get(object, &outcome.dest_id).await.unwrap().is_some(),
            "{object} readable"
        );
        assert_eq!(
            dest.find_by_key(object, key).await.unwrap().map(|r| r.id),
            Some(outcome.dest_id.clone()),
            "{object} found by key"
        );
    }
    for (object, outcome, key, body) in [
        (
            "note",
            &note,
            "note:5",
            json!({ "contactId": contact.dest_id }),
        ),
        (
            "task",
            &task,
            "visit:9",
            json!({ "contactId": contact.dest_id }),
        ),
        (
            "appointment",
            &appointment,
            "appt:4",
            json!({ "contactId": contact.dest_id }),
        ),
        (
            "file",
            &file,
            "chart:1001",
            json!({ "contactId": contact.dest_id, "field": "Perio Chart PDFs" }),
        ),
        (
            "contact_business_link",
            &link,
            "link:1001",
            json!({ "contactId": contact.dest_id, "businessId": business.dest_id }),
        ),
    ] {
        assert!(
            dest.get(object, &outcome.dest_id).await.unwrap().is_some(),
            "{object} readable"
        );
        assert_eq!(
            dest.find_existing(&request(object, key, body))
                .await
                .unwrap()
                .map(|r| r.id),
            Some(outcome.dest_id.clone()),
            "{object} found by request"
        );
    }
    assert!(dest
        .find_by_key("contact", "contact:nope")
        .await
        .unwrap()
        .is_none());
    let by_identity = dest
        .find_contact_by_identity(
            &json!({ "email": "ada@example.com" })
                .as_object()
                .cloned()
                .unwrap(),
            "contact:1001",
        )
        .await
        .unwrap();
    assert_eq!(
        by_identity.map(|(id, _)| id),
        Some(contact.dest_id.clone()),
        "the duplicate lookup finds our contact"
    );
    let someone_else = dest
        .find_contact_by_identity(
            &json!({ "email": "ada@example.com" })
                .as_object()
                .cloned()
                .unwrap(),
            "contact:other",
        )
        .await
        .unwrap();
    assert!(
        someone_else.is_none(),
        "a contact with another Source_System_ID is not ours"
    );

    // Update with a before-image in read shape (`value`), as rollback does.
    let before_image = dest
        .get("contact", &contact.dest_id)
        .await
        .unwrap()
        .unwrap()
        .body;
    dest.update(
        "contact",
        &contact.dest_id,
        &json!({ "firstName": "Augusta" })
            .as_object()
            .cloned()
            .unwrap(),
    )
    .await
    .unwrap();
    let restored = dest
        .update(
            "contact",
            &contact.dest_id,
            before_image.as_object().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(restored.stored["firstName"], "Ada");
    dest.update(
        "opportunity",
        &opportunity.dest_id,
        &json!({ "stage": "Maintenance", "status": "won" })
            .as_object()
            .cloned()
            .unwrap(),
    )
    .await
    .unwrap();

    // With the schema caches warm, every object costs exactly one request.
    let before = served(&sandbox).await;
    let second = dest
        .create(&request(
            "contact",
            "contact:1002",
            json!({ "firstName": "Ben", "email": "ben@example.com" }),
        ))
        .await
        .unwrap();
    assert_eq!(served(&sandbox).await - before, 1, "contact");
    let pdf64 = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n%%EOF\n");
    for (object, key, body) in [
        ("business", "business:8", json!({ "name": "Uptown Perio" })),
        (
            "opportunity",
            "plan:32",
            json!({ "contactId": second.dest_id, "name": "Maintenance", "stage": "Maintenance" }),
        ),
        (
            "note",
            "note:6",
            json!({ "contactId": second.dest_id, "body": "n" }),
        ),
        (
            "task",
            "visit:10",
            json!({ "contactId": second.dest_id, "title": "t", "dueDate": "2024-01-01T10:00:00Z", "completed": true }),
        ),
        (
            "appointment",
            "appt:5",
            json!({ "contactId": second.dest_id, "startTime": "2024-01-01T10:00:00+00:00", "title": "a" }),
        ),
        (
            "file",
            "chart:1002",
            json!({ "contactId": second.dest_id, "field": "Perio Chart PDFs", "fileName": "c.pdf", "contentType": "application/pdf", "contentBase64": pdf64 }),
        ),
    ] {
        let before = served(&sandbox).await;
        let outcome = dest.create(&request(object, key, body)).await.unwrap();
        assert_eq!(
            served(&sandbox).await - before,
            1,
            "{object} costs one request"
        );
        dest.delete(object, &outcome.dest_id).await.unwrap();
    }
    dest.delete("contact", &second.dest_id).await.unwrap();

    // Rollback order: children first, then the link, contact, business.
    for (object, id) in [
        ("file", &file.dest_id),
        ("appointment", &appointment.dest_id),
        ("task", &task.dest_id),
        ("note", &note.dest_id),
        ("opportunity", &opportunity.dest_id),
        ("contact_business_link", &link.dest_id),
    ] {
        dest.delete(object, id).await.unwrap();
        assert!(dest.get(object, id).await.unwrap().is_none_or(|r| object == "contact_business_link" && r.body["businessId"].is_null()), "{object} gone");
    }
    dest.delete("contact", &contact.dest_id).await.unwrap();
    dest.delete("business", &business.dest_id).await.unwrap();
    // Deleting twice is already done, not an error.
    dest.delete("contact", &contact.dest_id).await.unwrap();
    let state = records(&sandbox).await;
    for collection in [
        "contacts",
        "businesses",
        "opportunities",
        "notes",
        "tasks",
        "appointments",
    ] {
        assert_eq!(
            state[collection].as_object().unwrap().len(),
            0,
            "{collection} left behind"
        );
    }
    for change in dest.ensure_schema(&SchemaSpec::default()).await.unwrap() {
        assert!(
            matches!(
                dest.drop_schema(&change).await,
                Err(DestError::Precondition(_))
            ),
            "fields we did not create this call are never dropped"
        );
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn schema_mismatches_and_a_missing_pipeline_are_preconditions_that_say_what_to_fix() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    let text = |name: &str, field_type| SchemaSpec {
        fields: vec![FieldSpec {
            object: "contact".into(),
            name: name.into(),
            label: name.into(),
            field_type,
            options: vec![],
            relation_to: None,
        }],
        ..Default::default()
    };
    dest.ensure_schema(&text("BOP_Percentage", FieldType::Text))
        .await
        .unwrap();
    let error = dest
        .ensure_schema(&text("bop_percentage", FieldType::Number))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("BOP_Percentage exists as TEXT but the map needs NUMERICAL"),
        "{error}"
    );
    let error = dest
        .ensure_schema(&text("Provider", FieldType::Relation))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("relation fields do not exist in HighLevel"),
        "{error}"
    );

    admin(&sandbox)
        .post("settings", &json!({ "pipelines": [] }))
        .await
        .unwrap();
    let error = dest.ensure_schema(&schema()).await.unwrap_err().to_string();
    assert!(
        error.contains("pipeline \"Perio Treatment\" with stages \"Diagnosis\", \"Maintenance\""),
        "{error}"
    );
    let contact = dest
        .create(&request(
            "contact",
            "contact:1",
            json!({ "firstName": "A" }),
        ))
        .await
        .unwrap();
    let error = dest
        .create(&request(
            "opportunity",
            "plan:1",
            json!({ "contactId": contact.dest_id, "name": "SRP", "stage": "Diagnosis" }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DestError::Precondition(m) if m.contains("Perio Treatment") && m.contains("create it")),
        "{error}"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn a_duplicate_contact_is_rejected_naming_the_matching_contact() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    let first = dest
        .create(&request(
            "contact",
            "contact:1",
            json!({ "firstName": "Parent", "email": "family@example.com" }),
        ))
        .await
        .unwrap();
    let error = dest
        .create(&request(
            "contact",
            "contact:2",
            json!({ "firstName": "Child", "email": "FAMILY@example.com" }),
        ))
        .await
        .unwrap_err();
    match &error {
        DestError::Rejected {
            status: 400,
            message,
            ..
        } => {
            assert!(
                message.contains(&first.dest_id) && message.contains("email"),
                "{message}"
            )
        }
        other => panic!("expected a 400 rejection, got {other:?}"),
    }
    assert_eq!(
        records(&sandbox).await["contacts"]
            .as_object()
            .unwrap()
            .len(),
        1
    );

    // With duplicates allowed, the same create goes through.
    admin(&sandbox)
        .post("settings", &json!({ "allowDuplicateContact": true }))
        .await
        .unwrap();
    dest.create(&request(
        "contact",
        "contact:2",
        json!({ "firstName": "Child", "email": "family@example.com" }),
    ))
    .await
    .unwrap();
    sandbox.stop().await;
}

#[tokio::test]
async fn unknown_properties_are_refused_before_sending_and_by_the_sandbox_with_a_message_array() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    let before = served(&sandbox).await;
    let error = dest
        .create(&request(
            "contact",
            "contact:1",
            json!({ "firstName": "A", "dateAdded": "2011-06-14" }),
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("dateAdded"), "{error}");
    assert_eq!(served(&sandbox).await, before, "nothing was sent");

    let response = reqwest::Client::new()
        .post(format!("{}/contacts/", sandbox.base_url()))
        .bearer_auth(TOKEN)
        .header("Version", "2021-07-28")
        .json(&json!({ "locationId": sandbox.shared.config.location_id, "dateAdded": "x", "additionalEmails": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let mut messages: Vec<&str> = body["message"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "property additionalEmails should not exist",
            "property dateAdded should not exist"
        ]
    );
    assert_eq!(body["error"], "Unprocessable Entity");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_2xx_that_dropped_the_phone_is_a_failure_not_a_success() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    set_faults(&sandbox, json!({ "drop_fields": ["phone", "dateOfBirth"] })).await;
    let error = dest
        .create(&request(
            "contact",
            "contact:0",
            json!({ "firstName": "A", "dateOfBirth": "04/02/1980" }),
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("dateOfBirth dropped"), "{error}");
    let error = dest
        .create(&request(
            "contact",
            "contact:1",
            json!({ "firstName": "A", "phone": "+14155550100" }),
        ))
        .await
        .unwrap_err();
    match error {
        DestError::Mismatch { message, .. } => {
            assert!(message.contains("phone dropped"), "{message}")
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn faults_neither_lose_nor_duplicate_acknowledged_records() {
    let sandbox = start(fast()).await;
    let dest = Arc::new(destination_for(&sandbox, TOKEN));
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    set_faults(
        &sandbox,
        json!({ "error_rate": 0.2, "drop_rate": 0.15, "after_commit": 0.5 }),
    )
    .await;
    let mut acknowledged = Vec::new();
    for i in 0..25 {
        let contact = dest
            .create(&request(
                "contact",
                &format!("contact:{i}"),
                json!({ "firstName": format!("P{i}"), "email": format!("p{i}@example.com") }),
            ))
            .await
            .expect("create survives faults");
        let note = dest
            .create(&request(
                "note",
                &format!("note:{i}"),
                json!({ "contactId": contact.dest_id, "body": format!("note {i}") }),
            ))
            .await
            .expect("note survives faults");
        acknowledged.push((contact.dest_id, note.dest_id));
    }
    set_faults(&sandbox, json!({})).await;
    let state = records(&sandbox).await;
    let contacts = state["contacts"].as_object().unwrap();
    let notes = state["notes"].as_object().unwrap();
    assert_eq!(contacts.len(), 25, "one contact per key, none duplicated");
    assert_eq!(notes.len(), 25, "one note per key, none duplicated");
    for (contact, note) in &acknowledged {
        assert!(
            contacts.contains_key(contact),
            "acknowledged contact {contact} lost"
        );
        let note_id = note.split('/').nth(1).unwrap();
        assert!(
            notes.contains_key(note_id),
            "acknowledged note {note_id} lost"
        );
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn a_lost_acknowledgement_then_a_duplicate_refusal_resolves_to_our_contact() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    // The contact is stored, the answer is lost; the client's look-up finds it, or a re-send
    // is refused as a duplicate of it — either way the outcome is that one contact.
    set_faults(&sandbox, json!({ "error_rate": 1.0, "after_commit": 1.0 })).await;
    let body = json!({ "firstName": "Lost", "email": "lost@example.com" });
    let first = dest
        .create(&request("contact", "contact:lost", body.clone()))
        .await;
    assert!(
        first.is_err(),
        "every answer is a 500 while the fault is on"
    );
    set_faults(&sandbox, json!({})).await;
    let outcome = dest
        .create(&request("contact", "contact:lost", body))
        .await
        .unwrap();
    let contacts = records(&sandbox).await["contacts"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(contacts.len(), 1);
    assert!(contacts.contains_key(&outcome.dest_id));
    // Someone else's contact with the same e-mail is still a refusal naming it.
    let other = dest
        .create(&request(
            "contact",
            "contact:other",
            json!({ "firstName": "Other", "email": "lost@example.com" }),
        ))
        .await
        .unwrap_err();
    assert!(other.to_string().contains(&outcome.dest_id), "{other}");
    sandbox.stop().await;
}

#[tokio::test]
async fn the_sandbox_keeps_exactly_the_records_it_acknowledged_under_faults() {
    let sandbox = start(fast()).await;
    set_faults(
        &sandbox,
        json!({ "error_rate": 0.25, "drop_rate": 0.25, "after_commit": 0.5, "latency_ms": 1 }),
    )
    .await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut answered_error = 0;
    for i in 0..80 {
        let sent = client
            .post(format!("{}/businesses/", sandbox.base_url()))
            .bearer_auth(TOKEN)
            .header("Version", "2021-07-28")
            .json(&json!({ "name": format!("B{i}"), "locationId": sandbox.shared.config.location_id }))
            .send()
            .await;
        let body = match sent {
            Ok(response) if response.status() == 201 => response.json::<Value>().await.ok(),
            Ok(_) => None,
            Err(_) => None,
        };
        match body {
            Some(b) => acknowledged.push(b["buiseness"]["id"].as_str().unwrap().to_string()),
            None => answered_error += 1,
        }
    }
    set_faults(&sandbox, json!({})).await;
    let stored = records(&sandbox).await["businesses"]
        .as_object()
        .unwrap()
        .clone();
    assert!(
        answered_error > 10 && acknowledged.len() > 10,
        "faults were on: {answered_error} errors, {} acks",
        acknowledged.len()
    );
    for id in &acknowledged {
        assert!(stored.contains_key(id), "acknowledged business {id} lost");
    }
    let names: std::collections::BTreeSet<&str> = stored
        .values()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), stored.len(), "a request was stored twice");
    assert!(stored.len() < 80, "faults before commit stored nothing");
    sandbox.stop().await;
}

#[tokio::test]
async fn rate_limits_are_respected_and_429s_retried() {
    let sandbox = start(SandboxConfig {
        requests_per_window: 20,
        window: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut config = HighLevelConfig::new(
        sandbox.base_url(),
        sandbox.shared.config.location_id.clone(),
        Token::new(TOKEN),
    );
    config.requests_per_window = 20;
    config.window = Duration::from_secs(1);
    let dest = Arc::new(HighLevelDestination::from_client(
        super::HighLevelClient::new(config).unwrap(),
    ));
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let dest = dest.clone();
        tasks.push(tokio::spawn(async move {
            dest.create(&request(
                "business",
                &format!("b:{i}"),
                json!({ "name": format!("Practice {i}") }),
            ))
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (sent, limited) = dest.client().stats();
    assert!(
        limited <= 1,
        "{limited} of {sent} requests were answered 429"
    );
    // A forced 429 is waited out and retried.
    set_faults(&sandbox, json!({ "force_429": 2 })).await;
    dest.create(&request(
        "business",
        "b:forced",
        json!({ "name": "Forced" }),
    ))
    .await
    .unwrap();
    assert_eq!(dest.client().stats().1 - limited, 2);
    assert_eq!(
        records(&sandbox).await["businesses"]
            .as_object()
            .unwrap()
            .len(),
        41
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn a_422_that_still_created_the_record_is_found_not_resent() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    // The create is stored but answered 422 (#64): only a look-up can tell it landed.
    set_faults(
        &sandbox,
        json!({ "fail_next_after_commit": 1, "error_status": 422 }),
    )
    .await;
    let before = served(&sandbox).await;
    let outcome = dest
        .create(&request("business", "b:422", json!({ "name": "Landed" })))
        .await
        .unwrap();
    assert_eq!(
        served(&sandbox).await - before,
        2,
        "the create and one look-up; nothing re-sent"
    );
    let stored = records(&sandbox).await["businesses"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(stored.len(), 1);
    assert!(stored.contains_key(&outcome.dest_id));
    sandbox.stop().await;
}

#[tokio::test]
async fn retry_after_on_a_429_is_honoured() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    set_faults(&sandbox, json!({ "force_429": 1, "retry_after_s": 1 })).await;
    let started = std::time::Instant::now();
    dest.create(&request(
        "business",
        "b:1",
        json!({ "name": "Patient practice" }),
    ))
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_eq!(dest.client().stats().1, 1);
    sandbox.stop().await;
}

#[tokio::test]
async fn the_daily_cap_stops_requests_before_they_are_sent() {
    let sandbox = start(fast()).await;
    let mut config = HighLevelConfig::new(
        sandbox.base_url(),
        sandbox.shared.config.location_id.clone(),
        Token::new(TOKEN),
    );
    config.daily_limit = 2;
    let dest = HighLevelDestination::from_client(super::HighLevelClient::new(config).unwrap());
    dest.create(&request("business", "b:1", json!({ "name": "One" })))
        .await
        .unwrap();
    dest.create(&request("business", "b:2", json!({ "name": "Two" })))
        .await
        .unwrap();
    let error = dest
        .create(&request("business", "b:3", json!({ "name": "Three" })))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DestError::RateLimited {
                retry_after_ms: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(served(&sandbox).await, 2);
    sandbox.stop().await;
}

/// Captures everything `tracing` writes, at every level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_never_reach_logs_errors_or_debug_output() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = start(SandboxConfig {
        token: Some(TOKEN.into()),
        ..fast()
    })
    .await;
    let mut produced = Vec::new();
    // A token the server refuses: the 401 error must not carry it.
    let wrong = "pit-wrong-0d9e8f7a6b5c4d3e";
    let refused = destination_for(&sandbox, wrong);
    let error = refused
        .create(&request("business", "b:1", json!({ "name": "X" })))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DestError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    produced.push(error.to_string());
    produced.push(format!("{error:?}"));
    produced.push(format!("{refused:?}"));
    let report = super::preflight(&refused, None).await;
    produced.push(serde_json::to_string(&report).unwrap());
    // The right token: successes, failures and faults all traced.
    let dest = destination_for(&sandbox, TOKEN);
    dest.ensure_schema(&SchemaSpec::default()).await.unwrap();
    set_faults(
        &sandbox,
        json!({ "error_rate": 0.3, "drop_rate": 0.2, "after_commit": 0.5 }),
    )
    .await;
    for i in 0..5 {
        let outcome = dest
            .create(&request(
                "contact",
                &format!("c:{i}"),
                json!({ "firstName": "T" }),
            ))
            .await;
        produced.push(format!("{outcome:?}"));
    }
    set_faults(&sandbox, json!({})).await;
    produced.push(format!(
        "{:?}",
        dest.create(&request("contact", "c:bad", json!({ "bogus": 1 })))
            .await
    ));
    produced.push(format!("{dest:?}"));
    sandbox.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("highlevel request"),
        "the capture saw the client's traces"
    );
    for text in produced.iter().chain(std::iter::once(&logs)) {
        for token in [TOKEN, wrong] {
            assert!(
                !text.contains(token),
                "token leaked into: {}",
                &text[..text.len().min(400)]
            );
        }
    }
}

#[tokio::test]
async fn preflight_passes_on_a_configured_location_and_leaves_nothing_behind() {
    let sandbox = start(fast()).await;
    let dest = destination_for(&sandbox, TOKEN);
    let report = super::preflight(&dest, None).await;
    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for step in [
        "contact create",
        "business create",
        "contact_business_link create",
        "opportunity create",
        "note create",
        "task create",
        "appointment create",
        "file create",
        "file delete",
        "contact delete",
    ] {
        assert!(
            report.checks.iter().any(|c| c.step == step && c.ok),
            "no OK check for {step}"
        );
    }
    let state = records(&sandbox).await;
    for collection in [
        "contacts",
        "businesses",
        "opportunities",
        "notes",
        "tasks",
        "appointments",
    ] {
        assert_eq!(
            state[collection].as_object().unwrap().len(),
            0,
            "{collection} left behind"
        );
    }
    let fields: Vec<String> = state["customFields"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fields.len(),
        2,
        "only the two Source_System_ID fields stay: {fields:?}"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn preflight_lists_a_missing_pipeline_stage_and_a_missing_scope() {
    let sandbox = start(SandboxConfig {
        token: Some(TOKEN.into()),
        ..fast()
    })
    .await;
    admin(&sandbox)
        .post("settings", &json!({ "pipelines": [{ "name": "Perio Treatment", "stages": ["Diagnosis", "Initial Therapy"] }] }))
        .await
        .unwrap();
    let report = super::preflight(&destination_for(&sandbox, TOKEN), None).await;
    let pipeline = report
        .checks
        .iter()
        .find(|c| c.step.starts_with("pipeline"))
        .unwrap();
    assert!(
        !pipeline.ok
            && pipeline.detail.contains("Re-evaluation")
            && pipeline.detail.contains("Maintenance"),
        "{pipeline:?}"
    );
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.step == "contact create" && c.ok),
        "other checks still run"
    );

    let refused =
        super::preflight(&destination_for(&sandbox, "pit-other-token-000000"), None).await;
    let location = &refused.checks[0];
    assert_eq!(
        (
            location.ok,
            location.status,
            location.missing_scope.as_deref()
        ),
        (false, Some(401), Some("locations.readonly"))
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn the_sandbox_answers_with_rate_limit_headers_and_429_past_the_window() {
    let sandbox = start(SandboxConfig {
        requests_per_window: 3,
        window: Duration::from_secs(5),
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/opportunities/pipelines?locationId={}",
        sandbox.base_url(),
        sandbox.shared.config.location_id
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client
            .get(&url)
            .bearer_auth(TOKEN)
            .header("Version", "2021-07-28")
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status().as_u16(),
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        ));
        assert_eq!(response.headers()["x-ratelimit-max"], "3");
        assert_eq!(
            response.headers()["x-ratelimit-interval-milliseconds"],
            "5000"
        );
    }
    assert_eq!(
        statuses,
        vec![
            (200, "2".into()),
            (200, "1".into()),
            (200, "0".into()),
            (429, "0".into())
        ]
    );
    let wrong_version = client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("Version", "2021-04-15")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_version.status(), 400);
    sandbox.stop().await;
}
