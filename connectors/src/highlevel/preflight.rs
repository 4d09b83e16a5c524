//! Preflight: what a user runs against a real location before a production
//! migration. It writes one synthetic record of every kind the migration
//! writes (custom field, business, contact, link, opportunity, note, task,
//! appointment, file), reads each back, deletes it, and reports per endpoint
//! OK or failed — with the HTTP status and, for 401/403, the scope the token
//! probably lacks. It also checks the pipeline and its stages.
//!
//! It leaves nothing behind except the `Source_System_ID` contact and
//! opportunity fields, which the migration needs anyway (created if missing).

use cutover_engine::ports::{Destination, ReadDestination, SchemaSpec, WriteRequest};
use cutover_engine::DestError;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::client::ops;
use super::destination::HighLevelDestination;
use super::sandbox::store::PERIO_STAGES;
use crate::preflight_probe::probe_request;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreflightCheck {
    /// What was tried: `contact create`, `pipeline "Perio Treatment"`.
    pub step: String,
    /// The spec operation (`create-contact`).
    pub operation: String,
    pub ok: bool,
    pub status: Option<u16>,
    pub detail: String,
    /// For 401/403: the Private Integration scope that is probably missing.
    pub missing_scope: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PreflightReport {
    pub location_id: String,
    pub checks: Vec<PreflightCheck>,
}

impl PreflightReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The scope an operation needs (docs/oauth/Scopes.md).
pub fn scope_for(operation: &str) -> &'static str {
    match operation {
        "get-location" => "locations.readonly",
        "get-custom-fields" => "locations/customFields.readonly",
        "create-custom-field" | "delete-custom-field" => "locations/customFields.write",
        "get-contact"
        | "search-contacts-advanced"
        | "get-all-notes"
        | "get-note"
        | "get-all-tasks"
        | "get-task" => "contacts.readonly",
        "get-business" | "get-businesses-by-location" => "businesses.readonly",
        "create-business" | "update-business" | "delete-Business" => "businesses.write",
        "get-pipelines" | "get-opportunity" | "search-opportunity" => "opportunities.readonly",
        "create-opportunity" | "update-opportunity" | "delete-opportunity" => "opportunities.write",
        "get-calendars" => "calendars.readonly",
        "get-appointment" | "get-appointments-for-contact" => "calendars/events.readonly",
        "create-appointment" | "edit-appointment" | "delete-event" => "calendars/events.write",
        "upload-to-custom-fields" => "forms.write",
        _ => "contacts.write",
    }
}

fn status_of(error: &DestError) -> Option<u16> {
    match error {
        DestError::Rejected { status, .. } | DestError::Unauthorized { status, .. } => {
            Some(*status)
        }
        DestError::Transient { status, .. } => *status,
        DestError::RateLimited { .. } => Some(429),
        _ => None,
    }
}

struct Run<'a> {
    destination: &'a HighLevelDestination,
    report: PreflightReport,
    run_tag: String,
}

impl Run<'_> {
    fn record<T>(
        &mut self,
        step: &str,
        operation: &str,
        result: &Result<T, DestError>,
        detail_ok: impl FnOnce(&T) -> String,
    ) {
        let check = match result {
            Ok(value) => PreflightCheck {
                step: step.into(),
                operation: operation.into(),
                ok: true,
                status: None,
                detail: detail_ok(value),
                missing_scope: None,
            },
            Err(error) => {
                let status = status_of(error);
                let missing_scope =
                    matches!(status, Some(401 | 403)).then(|| scope_for(operation).to_string());
                PreflightCheck {
                    step: step.into(),
                    operation: operation.into(),
                    ok: false,
                    status,
                    detail: error.to_string(),
                    missing_scope,
                }
            }
        };
        self.report.checks.push(check);
    }

    fn request(&self, object: &str, body: Value) -> WriteRequest {
        probe_request(&self.run_tag, object, body)
    }

    /// create → get; returns the id when both worked.
    async fn write_and_read(
        &mut self,
        object: &str,
        create_op: &str,
        get_op: &str,
        body: Value,
    ) -> Option<String> {
        let request = self.request(object, body);
        let created = self.destination.create(&request).await;
        self.record(&format!("{object} create"), create_op, &created, |o| {
            format!("created {}", o.dest_id)
        });
        let id = created.ok()?.dest_id;
        let read = self.destination.get(object, &id).await;
        let read = read.and_then(|r| {
            r.ok_or_else(|| DestError::Mismatch {
                endpoint: get_op.into(),
                message: "created but not readable".into(),
            })
        });
        self.record(&format!("{object} read back"), get_op, &read, |_| {
            "read back".into()
        });
        Some(id)
    }

    async fn delete(&mut self, object: &str, operation: &str, id: &str) {
        let result = self.destination.delete(object, id).await;
        self.record(&format!("{object} delete"), operation, &result, |_| {
            "deleted".into()
        });
    }
}

/// Runs the preflight. `stages` are the pipeline stages the map needs (PANDA's phases by default).
pub async fn preflight(
    destination: &HighLevelDestination,
    stages: Option<&[String]>,
) -> PreflightReport {
    let config = destination.client().config().clone();
    let mut run = Run {
        destination,
        report: PreflightReport {
            location_id: config.location_id.clone(),
            checks: Vec::new(),
        },
        run_tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
    };
    let client = destination.client();

    let location = client
        .call_json(
            &ops::GET_LOCATION,
            &ops::GET_LOCATION.path_with(&[&config.location_id]),
            &[],
            None,
        )
        .await;
    run.record("location", ops::GET_LOCATION.operation, &location, |l| {
        let allow = l
            .pointer("/location/settings/allowDuplicateContact")
            .and_then(Value::as_bool);
        format!(
            "allowDuplicateContact = {}",
            allow
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".into())
        )
    });

    // The fields the migration needs, plus two temporary ones this preflight removes again.
    let temp_text = format!("cutover preflight {}", run.run_tag);
    let temp_file = format!("cutover preflight file {}", run.run_tag);
    let spec: SchemaSpec = serde_json::from_value(json!({
        "objects": [],
        "fields": [
            { "object": "contact", "name": temp_text, "label": temp_text, "field_type": "text" },
            { "object": "contact", "name": temp_file, "label": temp_file, "field_type": "file" },
        ],
        "pipelines": [],
    }))
    .expect("static schema spec");
    let schema = destination.ensure_schema(&spec).await;
    run.record(
        "custom fields (list, create)",
        ops::CREATE_CUSTOM_FIELD.operation,
        &schema,
        |changes| {
            let created: Vec<&str> = changes
                .iter()
                .filter(|c| c.created)
                .map(|c| c.name.as_str())
                .collect();
            format!("created {}", created.join(", "))
        },
    );
    let temp_fields: Vec<_> = schema
        .as_ref()
        .map(|c| {
            c.iter()
                .filter(|c| c.created && c.name.contains(&run.run_tag))
                .cloned()
                .collect()
        })
        .unwrap_or_default();

    let stages: Vec<String> = stages
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| PERIO_STAGES.iter().map(|s| s.to_string()).collect());
    let pipeline_spec: SchemaSpec = SchemaSpec {
        pipelines: vec![cutover_engine::ports::PipelineSpec {
            name: config.pipeline_name.clone(),
            stages: stages.clone(),
        }],
        ..Default::default()
    };
    let pipeline = destination.ensure_schema(&pipeline_spec).await;
    let pipeline_ok = pipeline.is_ok();
    run.record(
        &format!(
            "pipeline \"{}\" and its {} stages",
            config.pipeline_name,
            stages.len()
        ),
        ops::GET_PIPELINES.operation,
        &pipeline,
        |_| "present".into(),
    );

    let email = format!("preflight+{}@example.invalid", run.run_tag);
    let business = run
        .write_and_read(
            "business",
            "create-business",
            "get-business",
            json!({ "name": format!("cutover preflight {}", run.run_tag) }),
        )
        .await;
    let contact = run
        .write_and_read("contact", "create-contact", "get-contact", json!({ "firstName": "Preflight", "lastName": run.run_tag, "email": email, "customFields": [{ "name": temp_text, "field_value": "preflight" }] }))
        .await;

    let mut link = None;
    if let (Some(contact), Some(business)) = (&contact, &business) {
        link = run
            .write_and_read(
                "contact_business_link",
                "add-remove-contact-from-business",
                "get-contact",
                json!({ "contactId": contact, "businessId": business }),
            )
            .await;
    }
    let mut children: Vec<(&str, &str, String)> = Vec::new();
    if let Some(contact) = &contact {
        if pipeline_ok {
            if let Some(id) = run.write_and_read("opportunity", "create-opportunity", "get-opportunity", json!({ "contactId": contact, "name": "cutover preflight", "stage": stages[0], "monetaryValue": 1 })).await {
                children.push(("opportunity", "delete-opportunity", id));
            }
        }
        if let Some(id) = run
            .write_and_read(
                "note",
                "create-note",
                "get-note",
                json!({ "contactId": contact, "body": "cutover preflight note" }),
            )
            .await
        {
            children.push(("note", "delete-note", id));
        }
        if let Some(id) = run.write_and_read("task", "create-task", "get-task", json!({ "contactId": contact, "title": "cutover preflight task", "dueDate": "2020-01-01T10:00:00Z", "completed": true })).await {
            children.push(("task", "delete-task", id));
        }
        let calendar = destination.calendar().await;
        run.record("calendar", ops::LIST_CALENDARS.operation, &calendar, |c| {
            format!("using {c}")
        });
        if let Ok(calendar) = calendar {
            let body = json!({ "contactId": contact, "calendarId": calendar, "title": "cutover preflight", "startTime": "2020-01-01T10:00:00+00:00", "endTime": "2020-01-01T10:30:00+00:00", "appointmentStatus": "showed" });
            if let Some(id) = run
                .write_and_read("appointment", "create-appointment", "get-appointment", body)
                .await
            {
                children.push(("appointment", "delete-event", id));
            }
        }
        if temp_fields.iter().any(|f| f.name.contains("file")) {
            let pdf = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                b"%PDF-1.4\n% cutover preflight\n%%EOF\n",
            );
            let body = json!({ "contactId": contact, "field": temp_file, "fileName": "cutover-preflight.pdf", "contentType": "application/pdf", "contentBase64": pdf });
            if let Some(id) = run
                .write_and_read("file", "upload-to-custom-fields", "get-contact", body)
                .await
            {
                children.push(("file", "update-contact", id));
            }
        }
    }
    for (object, operation, id) in children.into_iter().rev() {
        run.delete(object, operation, &id).await;
    }
    if let Some(link) = link {
        run.delete(
            "contact_business_link",
            "add-remove-contact-from-business",
            &link,
        )
        .await;
    }
    if let Some(contact) = contact {
        run.delete("contact", "delete-contact", &contact).await;
    }
    if let Some(business) = business {
        run.delete("business", "delete-Business", &business).await;
    }
    for field in temp_fields {
        let result = destination.drop_schema(&field).await;
        run.record(
            &format!("custom field {} delete", field.name),
            ops::DELETE_CUSTOM_FIELD.operation,
            &result,
            |_| "deleted".into(),
        );
    }
    run.report
}

/// A body map from JSON (callers building synthetic records).
pub fn body(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}
