//! The sandbox's state: one location with its settings, custom fields,
//! contacts, businesses, pipelines, opportunities, notes, tasks, calendars,
//! appointments and uploaded documents — stored in HighLevel's read shapes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Written through [`Store::put_contact`] and [`Store::remove_contact`], which keep
    /// `contact_keys` in step.
    pub contacts: BTreeMap<String, Value>,
    /// `email:<lowercased>` / `phone:<stored>` → ids of the contacts holding it: the
    /// duplicate check reads this instead of every contact (a scan per create made
    /// the sandbox the bottleneck of a 5,000-patient run).
    #[serde(skip)]
    contact_keys: HashMap<String, BTreeSet<String>>,
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
            contact_keys: HashMap::new(),
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

/// The duplicate-check keys of a stored contact.
fn contact_keys_of(contact: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(email) = contact["email"].as_str().filter(|e| !e.is_empty()) {
        keys.push(format!("email:{}", email.to_lowercase()));
    }
    if let Some(phone) = contact["phone"].as_str().filter(|p| !p.is_empty()) {
        keys.push(format!("phone:{phone}"));
    }
    keys
}

impl Store {
    /// Stores (or replaces) a contact.
    pub fn put_contact(&mut self, id: String, contact: Value) {
        self.remove_contact(&id);
        for key in contact_keys_of(&contact) {
            self.contact_keys.entry(key).or_default().insert(id.clone());
        }
        self.contacts.insert(id, contact);
    }

    pub fn remove_contact(&mut self, id: &str) -> Option<Value> {
        let contact = self.contacts.remove(id)?;
        for key in contact_keys_of(&contact) {
            if let Some(ids) = self.contact_keys.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.contact_keys.remove(&key);
                }
            }
        }
        Some(contact)
    }

    /// Contacts holding `key` (`email:<lowercased>` or `phone:<stored form>`), by id.
    pub fn contacts_with(&self, key: &str) -> impl Iterator<Item = &Value> {
        self.contact_keys
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.contacts.get(id))
    }
}

#[cfg(test)]
mod contact_key_tests {
    use super::*;

    fn ids(store: &Store, key: &str) -> Vec<String> {
        store
            .contacts_with(key)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The duplicate-check keys follow every put, replace and remove.
    #[test]
    fn contact_keys_follow_every_write() {
        let mut store = Store::new(&SandboxConfig::default());
        let contact = |id: &str, email: &str, phone: &str| json!({"id": id, "email": email, "phone": phone, "contactName": id});
        store.put_contact("a".into(), contact("a", "Ann@X.test", "+15125550100"));
        store.put_contact("b".into(), contact("b", "b@x.test", "+15125550100"));
        assert_eq!(ids(&store, "email:ann@x.test"), ["a"]);
        assert_eq!(ids(&store, "phone:+15125550100"), ["a", "b"]);
        // Replacing a contact releases its old keys.
        store.put_contact("a".into(), contact("a", "new@x.test", ""));
        assert!(ids(&store, "email:ann@x.test").is_empty());
        assert_eq!(ids(&store, "email:new@x.test"), ["a"]);
        assert_eq!(ids(&store, "phone:+15125550100"), ["b"]);
        assert_eq!(store.remove_contact("b").unwrap()["id"], "b");
        assert!(ids(&store, "phone:+15125550100").is_empty());
        assert!(store.remove_contact("b").is_none());
        assert_eq!(store.contacts.len(), 1);
    }
}
