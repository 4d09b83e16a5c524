//! The sandbox's state: one location with its settings, custom fields,
//! contacts, businesses, pipelines, opportunities, notes, tasks, calendars,
//! appointments and uploaded documents — stored in HighLevel's read shapes.

use std::collections::BTreeMap;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::SandboxConfig;

/// The stages a PANDA practice's "Perio Treatment" pipeline has (from TreatmentPhase).
pub const PERIO_STAGES: &[&str] = &[
    "Diagnosis",
    "Initial Therapy",
    "Re-evaluation",
    "Surgical Therapy",
    "Maintenance",
];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    pub location: Value,
    pub custom_fields: BTreeMap<String, Value>,
    pub contacts: BTreeMap<String, Value>,
    pub businesses: BTreeMap<String, Value>,
    pub pipelines: Vec<Value>,
    pub opportunities: BTreeMap<String, Value>,
    pub notes: BTreeMap<String, Value>,
    pub tasks: BTreeMap<String, Value>,
    pub calendars: Vec<Value>,
    pub appointments: BTreeMap<String, Value>,
    /// Uploaded files: meta and size (not the bytes).
    pub documents: BTreeMap<String, Value>,
}

/// A HighLevel-looking id (20 alphanumerics).
pub fn new_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    pub fn new(config: &SandboxConfig) -> Self {
        let location = json!({
            "id": config.location_id,
            "name": "Sandbox Perio Practice",
            "timezone": "America/Chicago",
            "settings": { "allowDuplicateContact": config.allow_duplicate_contact, "allowDuplicateOpportunity": false },
        });
        let mut store = Store {
            location,
            custom_fields: BTreeMap::new(),
            contacts: BTreeMap::new(),
            businesses: BTreeMap::new(),
            pipelines: Vec::new(),
            opportunities: BTreeMap::new(),
            notes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            calendars: Vec::new(),
            appointments: BTreeMap::new(),
            documents: BTreeMap::new(),
        };
        if config.seed_practice {
            store.pipelines.push(pipeline(
                "Perio Treatment",
                PERIO_STAGES,
                &config.location_id,
            ));
            store.calendars.push(json!({ "id": "sandboxCalendar0001", "name": "Hygiene", "locationId": config.location_id, "isActive": true }));
        }
        store
    }

    pub fn location_id(&self) -> &str {
        self.location["id"].as_str().unwrap_or_default()
    }

    pub fn allow_duplicates(&self) -> bool {
        self.location["settings"]["allowDuplicateContact"]
            .as_bool()
            .unwrap_or(false)
    }

    /// The field with this id or `fieldKey` on `model`.
    pub fn field(&self, model: &str, reference: &str) -> Option<&Value> {
        self.custom_fields.values().find(|f| {
            f["model"] == model
                && (f["id"] == reference
                    || f["fieldKey"] == reference
                    || f["fieldKey"].as_str() == Some(&format!("{model}.{reference}")))
        })
    }
}

/// A pipeline in HighLevel's read shape.
pub fn pipeline(name: &str, stages: &[&str], location_id: &str) -> Value {
    json!({
        "id": new_id(),
        "name": name,
        "locationId": location_id,
        "stages": stages.iter().enumerate().map(|(i, s)| json!({ "id": new_id(), "name": s, "position": i })).collect::<Vec<_>>(),
        "showInFunnel": true,
        "showInPieChart": true,
    })
}

/// `+` and digits; ten digits become a US number (HighLevel normalises to E.164).
pub fn normalise_phone(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if raw.trim_start().starts_with('+') {
        format!("+{digits}")
    } else if digits.len() == 10 {
        format!("+1{digits}")
    } else {
        format!("+{digits}")
    }
}

/// The accepted `dateOfBirth` forms, stored as `YYYY-MM-DD`.
pub fn normalise_date(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| if matches!(c, '/' | '.' | '_') { '-' } else { c })
        .collect();
    chrono::NaiveDate::parse_from_str(&cleaned, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(&cleaned, "%m-%d-%Y"))
        .ok()
        .map(|d| d.format("%Y-%m-%d").to_string())
}

/// `last_exam_date` from `Last Exam Date`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_highlevel() {
        assert_eq!(normalise_phone("(415) 555-0100"), "+14155550100");
        assert_eq!(normalise_phone("+44 20 7946 0958"), "+442079460958");
        assert_eq!(normalise_date("04/02/1980").as_deref(), Some("1980-04-02"));
        assert_eq!(normalise_date("1980.04.02").as_deref(), Some("1980-04-02"));
        assert_eq!(normalise_date("1980-13-02"), None);
        assert_eq!(snake("Last Exam Date"), "last_exam_date");
        assert_eq!(snake("Source_System_ID"), "source_system_id");
    }
}
