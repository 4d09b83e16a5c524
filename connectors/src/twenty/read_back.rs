//! Twenty records read back in the vocabulary of what was sent
//! (`ReadDestination::read_as_sent`).
//!
//! What differs between a body we send and the record Twenty returns:
//!
//! - field names: the client translates each key to this workspace's spelling
//!   (`targetPersonId` on 2.x, `personId` on 1.x; `bodyV2` / `body`), so the
//!   held value is read under the translated name;
//! - composite fields (`name.firstName`, `emails.primaryEmail`,
//!   `phones.primaryPhoneNumber`, `address.addressCity`, `estimatedValue.amountMicros`,
//!   `bodyV2.markdown`) are read by their dotted path; a phone may come back split
//!   into `primaryPhoneCallingCode` + national number, e-mails in lower case;
//! - instants (`createdAt`, `dueAt`, date-time custom fields) in any RFC 3339 form;
//! - an attachment's `$upload` is not a field: the record holds the uploaded file
//!   as `file: [{fileId, label}]`. The file name is the label; the bytes and type
//!   are not returned by the record (the upload's size was checked when it was
//!   completed), so they count as held when the record names an uploaded file.
//!
//! A held value that is the sent one up to these normalisations is returned as
//! sent; anything else is returned as held, so the comparison shows it.

use cutover_engine::ports::{flatten_paths, lookup_path, DestRecord};
use serde_json::{Map, Value};

use super::client::UPLOAD_KEY;
use super::metadata::ObjectMeta;

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `held` is `sent` up to Twenty's normalisations.
fn equivalent(path: &str, sent: &Value, held: &Value, record: &Value, held_path: &str) -> bool {
    if is_empty(sent) && is_empty(held) {
        return true;
    }
    if cutover_engine::compare::values_match(sent, held) {
        return true;
    }
    let (Some(a), Some(b)) = (sent.as_str(), held.as_str()) else {
        return false;
    };
    let (a, b) = (a.trim(), b.trim());
    if let (Ok(x), Ok(y)) = (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        return x == y;
    }
    if path.ends_with("Email") || path.ends_with("Emails") {
        return a.eq_ignore_ascii_case(b);
    }
    if path.ends_with("PhoneNumber") {
        // Held as national number plus calling code (`+1`, `4155550100`).
        let prefix = held_path.trim_end_matches("PhoneNumber");
        let calling = lookup_path(record, &format!("{prefix}PhoneCallingCode"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let whole = format!("{}{}", digits(calling), digits(b));
        return !digits(a).is_empty() && (digits(a) == digits(b) || digits(a) == whole);
    }
    false
}

/// The path under which this workspace holds a sent path (its first segment
/// translated the way the client translated it on write).
fn held_path(meta: Option<&ObjectMeta>, path: &str) -> String {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let translated = meta
        .and_then(|m| m.resolve_key(first))
        .unwrap_or_else(|| first.to_string());
    match rest {
        Some(rest) => format!("{translated}.{rest}"),
        None => translated,
    }
}

/// See the module documentation.
pub(super) fn read_as_sent(
    meta: Option<&ObjectMeta>,
    sent: &Map<String, Value>,
    record: &DestRecord,
) -> Map<String, Value> {
    let body = &record.body;
    let upload_prefix = format!("{UPLOAD_KEY}.");
    let file = body
        .get("file")
        .and_then(Value::as_array)
        .and_then(|files| files.first())
        .filter(|f| f.get("fileId").and_then(Value::as_str).is_some());
    let mut out = Map::new();
    flatten_paths("", &Value::Object(sent.clone()), &mut |path, sent_value| {
        let value = if let Some(part) = path.strip_prefix(&upload_prefix) {
            match (part, file) {
                ("filename", Some(f)) => f.get("label").cloned().unwrap_or(Value::Null),
                (_, Some(_)) => sent_value.clone(),
                (_, None) => Value::Null,
            }
        } else {
            let at = held_path(meta, path);
            let held = lookup_path(body, &at).cloned().unwrap_or(Value::Null);
            if equivalent(path, sent_value, &held, body, &at) {
                sent_value.clone()
            } else {
                held
            }
        };
        out.insert(path.to_string(), value);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twenty::metadata::Catalog;
    use cutover_engine::compare::field_differences;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn composite_fields_translated_names_and_normalisations_read_back_as_sent() {
        let catalog = Catalog::from_response(&json!({"data": {"objects": [
            {"id": "o1", "nameSingular": "noteTarget", "namePlural": "noteTargets", "fields": [
                {"name": "note", "type": "RELATION"}, {"name": "person", "type": "RELATION"}]},
        ]}}))
        .unwrap();
        let v1_note_target = catalog.require("noteTarget").unwrap();
        let sent = map(json!({"noteId": "n1", "targetPersonId": "p1"}));
        let held = DestRecord {
            object: "noteTarget".into(),
            id: "t1".into(),
            body: json!({"id": "t1", "noteId": "n1", "personId": "p1"}),
        };
        let read = read_as_sent(Some(v1_note_target), &sent, &held);
        assert!(field_differences(&sent, &read).is_empty(), "{read:?}");

        let sent = map(json!({
            "name": {"firstName": "Ann", "lastName": "Lee"},
            "emails": {"primaryEmail": "Ann@Example.com"},
            "phones": {"primaryPhoneNumber": "+14155550100"},
            "createdAt": "2016-11-08T03:53:00.000Z",
            "middleName": ""
        }));
        let held = DestRecord {
            object: "person".into(),
            id: "p1".into(),
            body: json!({
                "name": {"firstName": "Ann", "lastName": "Lee"},
                "emails": {"primaryEmail": "ann@example.com", "additionalEmails": null},
                "phones": {"primaryPhoneNumber": "4155550100", "primaryPhoneCallingCode": "+1"},
                "createdAt": "2016-11-08T03:53:00Z",
            }),
        };
        let read = read_as_sent(None, &sent, &held);
        assert!(field_differences(&sent, &read).is_empty(), "{read:?}");

        let mut altered = held.clone();
        altered.body["name"]["lastName"] = json!("Leigh");
        altered.body["phones"]["primaryPhoneNumber"] = json!("4155550199");
        let read = read_as_sent(None, &sent, &altered);
        let paths: Vec<String> = field_differences(&sent, &read)
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(paths, vec!["name.lastName", "phones.primaryPhoneNumber"]);
    }

    #[test]
    fn an_attachment_reads_back_through_its_uploaded_file() {
        let sent = map(json!({"name": "a.pdf", "targetPersonId": "p1",
            "$upload": {"filename": "a.pdf", "contentType": "application/pdf", "contentBase64": "JVBERg=="}}));
        let held = DestRecord {
            object: "attachment".into(),
            id: "a1".into(),
            body: json!({"name": "a.pdf", "targetPersonId": "p1", "file": [{"fileId": "f1", "label": "a.pdf"}]}),
        };
        assert!(field_differences(&sent, &read_as_sent(None, &sent, &held)).is_empty());
        let without = DestRecord {
            body: json!({"name": "a.pdf", "targetPersonId": "p1"}),
            ..held
        };
        assert_eq!(
            field_differences(&sent, &read_as_sent(None, &sent, &without)).len(),
            3
        );
    }
}
