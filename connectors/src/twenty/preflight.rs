//! Preflight: before a migration touches a workspace, round-trip one synthetic
//! record of every kind the migration writes — company, person, note and note
//! target, task and task target, a custom-object record (on a temporary custom
//! object created and removed through the metadata API), a batch, and an
//! attachment through the upload flow — read each back, destroy it, and report
//! every step with its endpoint and timing. The data is synthetic, never PHI.

use std::time::Instant;

use base64::Engine as _;
use cutover_engine::ports::{FieldSpec, FieldType, ObjectSpec, SchemaSpec};
use cutover_engine::{Destination, ReadDestination, WriteRequest};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::client::{TwentyClient, UPLOAD_KEY};
use crate::preflight_probe::{probe_key, probe_request};

/// The temporary custom object preflight creates and removes.
pub const PROBE_OBJECT: &str = "cutoverPreflightProbe";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PreflightStep {
    pub step: String,
    pub endpoint: String,
    pub ok: bool,
    pub millis: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PreflightReport {
    pub steps: Vec<PreflightStep>,
}

impl PreflightReport {
    pub fn ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }
}

struct Run<'a> {
    client: &'a TwentyClient,
    tag: String,
    report: PreflightReport,
    /// (object, id) created so far, destroyed at the end whatever happened.
    created: Vec<(String, String)>,
}

impl Run<'_> {
    fn record<T>(
        &mut self,
        step: &str,
        endpoint: &str,
        started: Instant,
        result: &Result<T, cutover_engine::DestError>,
        detail: impl FnOnce(&T) -> String,
    ) {
        let (ok, detail) = match result {
            Ok(value) => (true, detail(value)),
            Err(error) => (false, error.to_string()),
        };
        self.report.steps.push(PreflightStep {
            step: step.into(),
            endpoint: endpoint.into(),
            ok,
            millis: started.elapsed().as_millis() as u64,
            detail,
        });
    }

    fn request(&self, object: &str, fields: Value) -> WriteRequest {
        probe_request(&self.tag, object, fields)
    }

    /// Creates then reads back; returns the id when both worked.
    async fn round_trip(&mut self, object: &str, plural: &str, fields: Value) -> Option<String> {
        let request = self.request(object, fields);
        let started = Instant::now();
        let created = self.client.create(&request).await;
        self.record(
            &format!("create {object}"),
            &format!("POST /rest/{plural}"),
            started,
            &created,
            |o| format!("id {}", o.dest_id),
        );
        let id = created.ok()?.dest_id;
        self.created.push((object.to_string(), id.clone()));
        let started = Instant::now();
        let read = self.client.get(object, &id).await.and_then(|r| {
            r.ok_or_else(|| cutover_engine::DestError::Mismatch {
                endpoint: format!("GET /rest/{plural}/{{id}}"),
                message: "created record not found".into(),
            })
        });
        self.record(
            &format!("read {object}"),
            &format!("GET /rest/{plural}/{{id}}"),
            started,
            &read,
            |_| "found".into(),
        );
        Some(id)
    }
}

/// Runs the whole preflight; never leaves its synthetic records behind when the
/// server lets it delete them (failures to clean up are reported as steps).
pub async fn run(client: &TwentyClient) -> PreflightReport {
    let mut run = Run {
        client,
        tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        report: PreflightReport::default(),
        created: Vec::new(),
    };
    let started = Instant::now();
    let catalog = client.refresh_catalog().await;
    run.record(
        "read metadata",
        "GET /rest/metadata/objects",
        started,
        &catalog,
        |c| format!("{} objects", c.objects.len()),
    );
    if catalog.is_err() {
        return run.report;
    }

    let spec = SchemaSpec {
        objects: vec![ObjectSpec {
            name: PROBE_OBJECT.into(),
            label_singular: "Cutover preflight probe".into(),
            label_plural: "Cutover preflight probes".into(),
        }],
        fields: vec![
            FieldSpec {
                object: PROBE_OBJECT.into(),
                name: "note".into(),
                label: "Note".into(),
                field_type: FieldType::Text,
                options: vec![],
                relation_to: None,
            },
            FieldSpec {
                object: PROBE_OBJECT.into(),
                name: "probePerson".into(),
                label: "Probe person".into(),
                field_type: FieldType::Relation,
                options: vec![],
                relation_to: Some("person".into()),
            },
        ],
        pipelines: vec![],
    };
    let started = Instant::now();
    let schema = client.ensure_schema(&spec).await;
    run.record(
        "create custom object",
        "POST /rest/metadata/objects, /rest/metadata/fields",
        started,
        &schema,
        |c| format!("{} created", c.iter().filter(|c| c.created).count()),
    );
    let schema = schema.unwrap_or_default();

    let tag = run.tag.clone();
    let company = run
        .round_trip("company", "companies", json!({"name": format!("Cutover preflight {tag}"), "domainName": {"primaryLinkUrl": format!("https://preflight-{tag}.invalid"), "primaryLinkLabel": "", "secondaryLinks": []}}))
        .await;
    let mut person_fields = json!({
        "name": {"firstName": "Preflight", "lastName": format!("Probe {tag}")},
        "emails": {"primaryEmail": format!("preflight+{tag}@cutover.invalid"), "additionalEmails": []},
        "createdAt": "2020-01-02T03:04:05.000Z",
        "createdBy": {"source": "IMPORT", "name": "cutover preflight"},
    });
    if let Some(company) = &company {
        person_fields["companyId"] = json!(company);
    }
    let person = run.round_trip("person", "people", person_fields).await;
    if let Some(person) = person.clone() {
        // The two other calls a migration relies on: PATCH (updates, rollback of
        // updates) and the lookup by idempotency key (resume).
        let started = Instant::now();
        let patch: Map<String, Value> = [("jobTitle".to_string(), json!("Cutover preflight"))]
            .into_iter()
            .collect();
        let updated = client.update("person", &person, &patch).await;
        run.record(
            "update person",
            "PATCH /rest/people/{id}",
            started,
            &updated,
            |o| {
                format!(
                    "jobTitle now {}",
                    o.stored.get("jobTitle").cloned().unwrap_or(Value::Null)
                )
            },
        );
        let started = Instant::now();
        let key = probe_key(&tag, "person");
        let found = client
            .find_by_key("person", &key)
            .await
            .and_then(|found| match found {
                Some(record) if record.id == person => Ok(record),
                _ => Err(cutover_engine::DestError::Mismatch {
                    endpoint: "GET /rest/people?filter=id[eq]:…".into(),
                    message: "the record was not found by its idempotency key".into(),
                }),
            });
        run.record(
            "find person by key",
            "GET /rest/people?filter=id[eq]:…",
            started,
            &found,
            |_| "found".into(),
        );
        if let Some(note) = run
            .round_trip(
                "note",
                "notes",
                json!({"title": "Cutover preflight", "bodyV2": {"markdown": "synthetic"}}),
            )
            .await
        {
            run.round_trip(
                "noteTarget",
                "noteTargets",
                json!({"noteId": note, "targetPersonId": person}),
            )
            .await;
        }
        if let Some(task) = run
            .round_trip(
                "task",
                "tasks",
                json!({"title": "Cutover preflight", "status": "TODO"}),
            )
            .await
        {
            run.round_trip(
                "taskTarget",
                "taskTargets",
                json!({"taskId": task, "targetPersonId": person}),
            )
            .await;
        }
        if schema.iter().any(|c| c.name == PROBE_OBJECT) {
            run.round_trip(
                PROBE_OBJECT,
                "cutoverPreflightProbes",
                json!({"name": "probe", "note": "synthetic", "probePersonId": person}),
            )
            .await;
        }
        let bytes = format!("%PDF-1.4\n% cutover preflight {tag}\n").into_bytes();
        run.round_trip(
            "attachment",
            "attachments",
            json!({"name": "cutover-preflight.pdf", "targetPersonId": person, UPLOAD_KEY: {"filename": "cutover-preflight.pdf", "contentBase64": base64::engine::general_purpose::STANDARD.encode(bytes)}}),
        )
        .await;
        // The batch endpoint, with two records.
        let batch: Vec<WriteRequest> = (0..2)
            .map(|i| {
                let mut r = run.request(
                    "note",
                    json!({"title": format!("Cutover preflight batch {i}")}),
                );
                r.idempotency_key = format!("{}:{i}", r.idempotency_key);
                r
            })
            .collect();
        let started = Instant::now();
        let results = client.create_batch(&batch).await;
        let ok: Result<usize, cutover_engine::DestError> =
            match results.iter().find_map(|r| r.as_ref().err()) {
                Some(error) => Err(cutover_engine::DestError::Mismatch {
                    endpoint: "POST /rest/batch/notes".into(),
                    message: error.to_string(),
                }),
                None => Ok(results.len()),
            };
        run.record(
            "batch create notes",
            "POST /rest/batch/notes",
            started,
            &ok,
            |n| format!("{n} created"),
        );
        for outcome in results.into_iter().flatten() {
            run.created.push(("note".into(), outcome.dest_id));
        }
    }

    // Clean up, children first, then confirm each is gone.
    let mut created = std::mem::take(&mut run.created);
    created.sort_by_key(|(object, _)| super::client::rollback_rank(object));
    for (object, id) in created {
        let started = Instant::now();
        let deleted = async {
            client.delete(&object, &id).await?;
            match client.get(&object, &id).await? {
                None => Ok(()),
                Some(_) => Err(cutover_engine::DestError::Mismatch {
                    endpoint: format!("DELETE {object}"),
                    message: "still there after delete".into(),
                }),
            }
        }
        .await;
        run.record(
            &format!("destroy {object}"),
            &format!("DELETE /rest/{{plural}}/{{id}} ({object})"),
            started,
            &deleted,
            |_| "gone".into(),
        );
    }
    for change in schema.iter().rev().filter(|c| c.created) {
        let started = Instant::now();
        let dropped = client.drop_schema(change).await;
        run.record(
            &format!("remove {} {}", change.kind, change.name),
            "PATCH+DELETE /rest/metadata/…",
            started,
            &dropped,
            |_| "removed".into(),
        );
    }
    run.report
}
