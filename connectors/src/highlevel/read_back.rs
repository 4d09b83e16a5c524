//! HighLevel records read back in the vocabulary of what was sent
//! (`ReadDestination::read_as_sent`).
//!
//! What differs between a body we send and the record HighLevel returns:
//!
//! - custom fields are sent as `customFields.<name or key or id>` and stored as
//!   an array `[{id, value | fieldValue}]` (contacts say `value`, opportunities
//!   `fieldValue`); an empty value is not stored at all;
//! - `DATE` custom fields may come back as an instant or epoch milliseconds;
//! - an opportunity's `stage` is sent by name and stored as `pipelineStageId`;
//! - businesses, notes, tasks and appointments carry our `cutover-ref:` marker
//!   line in their free text (`description` / `body`);
//! - phones come back in E.164, e-mails in lower case, `dateOfBirth` as
//!   `YYYY-MM-DD`, instants in any RFC 3339 offset;
//! - a file is an entry of a FILE_UPLOAD custom field: its name, type and size
//!   are held, its bytes are not returned (the content is compared by size).
//!
//! A held value that is the sent one up to these normalisations is returned as
//! sent; anything else is returned as held, so the comparison shows it.

use base64::Engine as _;
use cutover_engine::ports::{flatten_paths, lookup_path, DestRecord};
use serde_json::{Map, Value};

use super::destination::{same_value, FieldInfo};

/// Removes our `cutover-ref:` marker line (and the blank line before it).
pub(super) fn strip_marker(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("cutover-ref: "))
        .collect();
    kept.join("\n").trim_end().to_string()
}

/// The custom field a sent reference (id, `fieldKey`, key without the model
/// prefix, or name) names on `model`, the way the destination resolves it on write.
pub(super) fn find_field<'a>(
    fields: &'a [FieldInfo],
    model: &str,
    reference: &str,
) -> Option<&'a FieldInfo> {
    fields.iter().find(|f| {
        f.model == model
            && (f.id == reference
                || f.field_key == reference
                || f.field_key.strip_prefix(&format!("{model}.")) == Some(reference)
                || f.name.eq_ignore_ascii_case(reference))
    })
}

fn held_custom_value(record: &Value, field_id: &str) -> Option<Value> {
    record
        .get("customFields")?
        .as_array()?
        .iter()
        .find(|f| f.get("id").and_then(Value::as_str) == Some(field_id))
        .and_then(|f| {
            f.get("value")
                .or_else(|| f.get("fieldValue"))
                .or_else(|| f.get("field_value"))
        })
        .cloned()
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A held DATE value as `YYYY-MM-DD` (from a date, an instant or epoch milliseconds).
fn held_date(held: &Value) -> Option<String> {
    match held {
        Value::String(s) => {
            let s = s.trim();
            chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                .ok()
                .map(|d| d.format("%Y-%m-%d").to_string())
        }
        Value::Number(n) => chrono::DateTime::from_timestamp_millis(n.as_f64()? as i64)
            .map(|t| t.date_naive().format("%Y-%m-%d").to_string()),
        _ => None,
    }
}

/// A custom field's held value in the sent vocabulary.
fn custom_value(field: Option<&FieldInfo>, sent: &Value, record: &Value) -> Value {
    let Some(field) = field else {
        return Value::Null;
    };
    let held = held_custom_value(record, &field.id).unwrap_or(Value::Null);
    if is_empty(sent) && is_empty(&held) {
        // HighLevel does not keep empty values.
        return sent.clone();
    }
    if field.data_type == "DATE" {
        if let (Some(s), Some(h)) = (sent.as_str(), held_date(&held)) {
            if s.trim().get(..10) == Some(h.as_str()) {
                return sent.clone();
            }
        }
    }
    if same_value("customField", sent, Some(&held)) {
        return sent.clone();
    }
    held
}

/// The model whose custom fields an object's `customFields` names.
fn model_of(object: &str) -> &str {
    match object {
        "opportunity" => "opportunity",
        _ => "contact",
    }
}

/// See the module documentation.
pub(super) fn read_as_sent(
    fields: &[FieldInfo],
    stages: &[(String, String)],
    sent: &Map<String, Value>,
    record: &DestRecord,
) -> Map<String, Value> {
    let mut out = Map::new();
    let object = record.object.as_str();
    let body = &record.body;
    if object == "file" {
        return read_file(fields, sent, record);
    }
    let model = model_of(object);
    flatten_paths("", &Value::Object(sent.clone()), &mut |path, sent_value| {
        let value = if let Some(reference) = path.strip_prefix("customFields.") {
            custom_value(find_field(fields, model, reference), sent_value, body)
        } else if path == "customFields" {
            // Sent as the write-shape array: each item's value replaced by the held one.
            match sent_value {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|item| {
                            let reference = ["id", "key", "name"]
                                .iter()
                                .find_map(|k| item.get(*k).and_then(Value::as_str))
                                .unwrap_or("");
                            let given = item
                                .get("field_value")
                                .or_else(|| item.get("value"))
                                .cloned()
                                .unwrap_or(Value::Null);
                            let mut copy = item.clone();
                            let held =
                                custom_value(find_field(fields, model, reference), &given, body);
                            if let Some(map) = copy.as_object_mut() {
                                let key = if map.contains_key("value") {
                                    "value"
                                } else {
                                    "field_value"
                                };
                                map.insert(key.into(), held);
                            }
                            copy
                        })
                        .collect(),
                ),
                other => lookup_path(body, path).cloned().unwrap_or(other.clone()),
            }
        } else if object == "opportunity" && path == "stage" {
            let held_stage = body.get("pipelineStageId").and_then(Value::as_str);
            match held_stage {
                Some(id) => stages
                    .iter()
                    .find(|(stage_id, _)| stage_id == id)
                    .map(|(_, name)| {
                        if sent_value
                            .as_str()
                            .is_some_and(|s| s.trim().eq_ignore_ascii_case(name))
                        {
                            sent_value.clone()
                        } else {
                            Value::String(name.clone())
                        }
                    })
                    .unwrap_or_else(|| Value::String(id.to_string())),
                None => Value::Null,
            }
        } else {
            let held = lookup_path(body, path).cloned().unwrap_or(Value::Null);
            let held = match (&held, path) {
                (Value::String(text), "description" | "body") => Value::String(strip_marker(text)),
                _ => held,
            };
            if same_value(path, sent_value, Some(&held)) {
                sent_value.clone()
            } else {
                held
            }
        };
        out.insert(path.to_string(), value);
    });
    out
}

/// A file entry (`record.id` = `contactId/fieldId/uuid`, body = the entry with `meta`).
fn read_file(
    fields: &[FieldInfo],
    sent: &Map<String, Value>,
    record: &DestRecord,
) -> Map<String, Value> {
    let parts: Vec<&str> = record.id.split('/').collect();
    let meta = record.body.get("meta").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    flatten_paths("", &Value::Object(sent.clone()), &mut |path, sent_value| {
        let value = match path {
            "contactId" => parts
                .first()
                .map(|c| Value::String(c.to_string()))
                .unwrap_or(Value::Null),
            "field" => {
                let held_id = parts.get(1).copied().unwrap_or("");
                let same = sent_value
                    .as_str()
                    .and_then(|r| find_field(fields, "contact", r))
                    .is_some_and(|f| f.id == held_id);
                if same {
                    sent_value.clone()
                } else {
                    Value::String(held_id.to_string())
                }
            }
            "fileName" => meta.get("originalname").cloned().unwrap_or(Value::Null),
            "contentType" => meta.get("mimetype").cloned().unwrap_or(Value::Null),
            "contentBase64" => {
                // HighLevel returns a download URL, not the bytes: compared by size.
                let sent_len = sent_value.as_str().and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                        .map(|bytes| bytes.len() as u64)
                });
                match (meta.get("size").and_then(Value::as_u64), sent_len) {
                    (Some(held), Some(len)) if held == len => sent_value.clone(),
                    (Some(held), _) => Value::String(format!("<{held} bytes>")),
                    (None, _) => Value::Null,
                }
            }
            other => lookup_path(&record.body, other)
                .cloned()
                .unwrap_or(Value::Null),
        };
        out.insert(path.to_string(), value);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> Vec<FieldInfo> {
        vec![
            FieldInfo {
                id: "f1".into(),
                name: "Chart_Number".into(),
                field_key: "contact.chart_number".into(),
                data_type: "TEXT".into(),
                model: "contact".into(),
            },
            FieldInfo {
                id: "f2".into(),
                name: "Last_Exam_Date".into(),
                field_key: "contact.last_exam_date".into(),
                data_type: "DATE".into(),
                model: "contact".into(),
            },
            FieldInfo {
                id: "f3".into(),
                name: "Treatment_Stage".into(),
                field_key: "opportunity.treatment_stage".into(),
                data_type: "TEXT".into(),
                model: "opportunity".into(),
            },
            FieldInfo {
                id: "f4".into(),
                name: "Patient_Documents".into(),
                field_key: "contact.patient_documents".into(),
                data_type: "FILE_UPLOAD".into(),
                model: "contact".into(),
            },
            FieldInfo {
                id: "f5".into(),
                name: "Middle_Name".into(),
                field_key: "contact.middle_name".into(),
                data_type: "TEXT".into(),
                model: "contact".into(),
            },
        ]
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn record(object: &str, id: &str, body: Value) -> DestRecord {
        DestRecord {
            object: object.into(),
            id: id.into(),
            body,
        }
    }

    #[test]
    fn contacts_read_back_through_custom_field_arrays_and_normalisations() {
        let sent = map(json!({
            "firstName": "Ann", "phone": "(415) 555-0100", "email": "Ann@Example.com",
            "dateOfBirth": "04/02/1980",
            "customFields": {"Chart_Number": "C1", "Last_Exam_Date": "2024-01-05", "Middle_Name": ""}
        }));
        let held = record(
            "contact",
            "c1",
            json!({
                "id": "c1", "firstName": "Ann", "phone": "+14155550100", "email": "ann@example.com",
                "dateOfBirth": "1980-04-02",
                "customFields": [{"id": "f1", "value": "C1"}, {"id": "f2", "value": 1704412800000u64}]
            }),
        );
        let read = read_as_sent(&fields(), &[], &sent, &held);
        assert_eq!(read["customFields.Chart_Number"], json!("C1"));
        assert!(
            cutover_engine::compare::field_differences(&sent, &read).is_empty(),
            "{read:?}"
        );

        // An altered and a dropped custom field are differences.
        let changed = record(
            "contact",
            "c1",
            json!({"firstName": "Ann", "phone": "+14155550100", "email": "ann@example.com",
                   "dateOfBirth": "1980-04-02", "customFields": [{"id": "f1", "value": "C2"}]}),
        );
        let read = read_as_sent(&fields(), &[], &sent, &changed);
        let diffs: Vec<String> = cutover_engine::compare::field_differences(&sent, &read)
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(
            diffs,
            vec!["customFields.Chart_Number", "customFields.Last_Exam_Date"]
        );
    }

    #[test]
    fn opportunities_notes_and_files_read_back_as_sent() {
        let stages = vec![("s1".to_string(), "Diagnosis".to_string())];
        let sent = map(
            json!({"contactId": "c1", "name": "Plan", "stage": "Diagnosis",
                              "customFields": {"Treatment_Stage": "Proposed"}}),
        );
        let held = record(
            "opportunity",
            "o1",
            json!({"contactId": "c1", "name": "Plan", "pipelineStageId": "s1",
                   "customFields": [{"id": "f3", "fieldValue": "Proposed"}]}),
        );
        let read = read_as_sent(&fields(), &stages, &sent, &held);
        assert!(cutover_engine::compare::field_differences(&sent, &read).is_empty());

        let sent = map(json!({"contactId": "c1", "title": "T", "body": "Hello"}));
        let held = record(
            "note",
            "c1/n1",
            json!({"contactId": "c1", "title": "T", "body": "Hello\n\ncutover-ref: note:ProgressNote:1"}),
        );
        assert!(cutover_engine::compare::field_differences(
            &sent,
            &read_as_sent(&fields(), &stages, &sent, &held)
        )
        .is_empty());

        let content = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 x");
        let sent = map(
            json!({"contactId": "c1", "field": "Patient_Documents", "fileName": "a.pdf",
                              "contentType": "application/pdf", "contentBase64": content}),
        );
        let held = record(
            "file",
            "c1/f4/u1",
            json!({"meta": {"originalname": "a.pdf", "mimetype": "application/pdf", "size": 10}, "url": "x"}),
        );
        let read = read_as_sent(&fields(), &stages, &sent, &held);
        assert!(
            cutover_engine::compare::field_differences(&sent, &read).is_empty(),
            "{read:?}"
        );
        let short = record(
            "file",
            "c1/f4/u1",
            json!({"meta": {"originalname": "a.pdf", "mimetype": "application/pdf", "size": 9}}),
        );
        let read = read_as_sent(&fields(), &stages, &sent, &short);
        assert_eq!(read["contentBase64"], json!("<9 bytes>"));
    }
}
