//! The emulator's state: the workspace's objects and fields (metadata), the
//! records of every object, and pending file uploads — with Twenty's rules on
//! writes: validated composite shapes, unknown fields refused, client UUIDs,
//! uniqueness that counts soft-deleted rows, batches all-or-nothing, relations
//! that must point at an existing record, and destroy cascading to link rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::filter::Filter;

/// A failed operation, shaped like Twenty's error bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        ApiError {
            status: 404,
            message: "Record not found".into(),
        }
    }

    pub fn body(&self) -> Value {
        let error = match self.status {
            400 => "BadRequestException",
            401 => "Unauthorized",
            404 => "NotFoundException",
            429 => "HttpException",
            _ => "InternalServerErrorException",
        };
        json!({"statusCode": self.status, "error": error, "messages": [self.message]})
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One page of `find_many`: rows with their cursors (creation sequence numbers).
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<(u64, Value)>,
    pub has_next: bool,
    pub total: usize,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub id: String,
    pub name: String,
    pub field_type: String,
    pub label: String,
    pub is_custom: bool,
    pub is_active: bool,
    pub is_unique: bool,
    pub options: Vec<Value>,
    /// Plural name of the object a RELATION / MORPH_RELATION points at.
    pub target: Option<String>,
    /// The other side of a relation (its field id): removed together.
    pub pair: Option<String>,
}

impl FieldDef {
    fn json(&self, object_id: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "type": self.field_type, "label": self.label,
            "isCustom": self.is_custom, "isActive": self.is_active, "isNullable": true, "isUnique": self.is_unique,
            "objectMetadataId": object_id,
            "options": if self.options.is_empty() { Value::Null } else { Value::Array(self.options.clone()) },
        })
    }

    fn is_relation(&self) -> bool {
        self.field_type == "RELATION" || self.field_type == "MORPH_RELATION"
    }
}

#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub id: String,
    pub name_singular: String,
    pub name_plural: String,
    pub label_singular: String,
    pub label_plural: String,
    pub is_custom: bool,
    pub is_active: bool,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "nameSingular": self.name_singular, "namePlural": self.name_plural,
            "labelSingular": self.label_singular, "labelPlural": self.label_plural,
            "isCustom": self.is_custom, "isActive": self.is_active,
            "fields": self.fields.iter().map(|f| f.json(&self.id)).collect::<Vec<_>>(),
        })
    }

    fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name && f.is_active)
    }
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub size: u64,
    pub bytes: Option<Vec<u8>>,
    pub completed: bool,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn uid() -> String {
    Uuid::new_v4().to_string()
}

fn field(name: &str, field_type: &str) -> FieldDef {
    FieldDef {
        id: uid(),
        name: name.into(),
        field_type: field_type.into(),
        label: name.into(),
        is_custom: false,
        is_active: true,
        is_unique: false,
        options: vec![],
        target: None,
        pair: None,
    }
}

fn rel(name: &str, kind: &str, target: &str) -> FieldDef {
    FieldDef {
        target: Some(target.into()),
        ..field(name, kind)
    }
}

fn select(name: &str, values: &[&str]) -> FieldDef {
    let options = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": uid(), "value": v, "label": v, "color": "gray", "position": i}))
        .collect();
    FieldDef {
        options,
        ..field(name, "SELECT")
    }
}

/// Composite types and the sub-keys each accepts (the server refuses any other).
fn composite_keys(field_type: &str) -> Option<&'static [&'static str]> {
    Some(match field_type {
        "FULL_NAME" => &["firstName", "lastName"],
        "EMAILS" => &["primaryEmail", "additionalEmails"],
        "PHONES" => &[
            "primaryPhoneNumber",
            "primaryPhoneCountryCode",
            "primaryPhoneCallingCode",
            "additionalPhones",
        ],
        "LINKS" => &["primaryLinkUrl", "primaryLinkLabel", "secondaryLinks"],
        "ADDRESS" => &[
            "addressStreet1",
            "addressStreet2",
            "addressCity",
            "addressPostcode",
            "addressState",
            "addressCountry",
            "addressLat",
            "addressLng",
        ],
        "CURRENCY" => &["amountMicros", "currencyCode"],
        "ACTOR" => &["source", "name", "workspaceMemberId", "context"],
        "RICH_TEXT" | "RICH_TEXT_V2" => &["markdown", "blocknote"],
        _ => return None,
    })
}

/// The sub-field a unique composite is matched on.
fn unique_path(field: &FieldDef) -> Option<String> {
    match field.field_type.as_str() {
        "EMAILS" => Some(format!("{}.primaryEmail", field.name)),
        "LINKS" => Some(format!("{}.primaryLinkUrl", field.name)),
        _ => Some(field.name.clone()),
    }
}

fn get_path<'a>(row: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = row.get(parts.next()?)?;
    for part in parts {
        current = current.get(part)?;
    }
    Some(current)
}

/// A row's value at a unique path, as the constraint compares it (empty is no value).
fn unique_value(row: &Map<String, Value>, path: &str) -> Option<String> {
    get_path(row, path)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_lowercase)
}

/// The whole emulated workspace.
#[derive(Debug)]
pub struct Store {
    pub objects: Vec<ObjectDef>,
    /// plural → seq → row (creation order = seq order).
    rows: HashMap<String, BTreeMap<u64, Map<String, Value>>>,
    /// (plural, id) → seq
    index: HashMap<(String, String), u64>,
    /// (plural, unique path) → lowercased value → how many stored rows (soft-deleted
    /// included) hold it. Built the first time a path is checked, kept in step by every
    /// later write, dropped when the schema changes: a scan of every row per create made a
    /// 50,000-patient run quadratic.
    unique_values: HashMap<(String, String), HashMap<String, usize>>,
    next_seq: u64,
    pub uploads: HashMap<String, Upload>,
    /// Twenty's QUERY_MAX_RECORDS.
    pub max_batch: usize,
}

impl Store {
    /// A workspace with the standard objects the migration writes (2.x field names).
    pub fn new(max_batch: usize) -> Self {
        let system = || {
            vec![
                field("id", "UUID"),
                field("createdAt", "DATE_TIME"),
                field("updatedAt", "DATE_TIME"),
                field("deletedAt", "DATE_TIME"),
                field("createdBy", "ACTOR"),
                field("position", "POSITION"),
            ]
        };
        let object = |singular: &str, plural: &str, fields: Vec<FieldDef>| {
            let mut all = system();
            all.extend(fields);
            ObjectDef {
                id: uid(),
                name_singular: singular.into(),
                name_plural: plural.into(),
                label_singular: singular.into(),
                label_plural: plural.into(),
                is_custom: false,
                is_active: true,
                fields: all,
            }
        };
        // Link objects (noteTarget, taskTarget) carry no createdBy / position.
        let link = |singular: &str, plural: &str, fields: Vec<FieldDef>| {
            let mut def = object(singular, plural, fields);
            def.fields
                .retain(|f| f.name != "createdBy" && f.name != "position");
            def
        };
        let targets = |mut fields: Vec<FieldDef>| {
            for (name, target) in [
                ("targetPerson", "people"),
                ("targetCompany", "companies"),
                ("targetOpportunity", "opportunities"),
            ] {
                fields.push(rel(name, "MORPH_RELATION", target));
            }
            fields
        };
        let unique = |f: FieldDef| FieldDef {
            is_unique: true,
            ..f
        };
        let objects = vec![
            object(
                "company",
                "companies",
                vec![
                    field("name", "TEXT"),
                    unique(field("domainName", "LINKS")),
                    field("address", "ADDRESS"),
                    field("employees", "NUMBER"),
                    field("linkedinLink", "LINKS"),
                    field("xLink", "LINKS"),
                    field("annualRecurringRevenue", "CURRENCY"),
                    field("idealCustomerProfile", "BOOLEAN"),
                ],
            ),
            object(
                "person",
                "people",
                vec![
                    field("name", "FULL_NAME"),
                    unique(field("emails", "EMAILS")),
                    field("phones", "PHONES"),
                    field("jobTitle", "TEXT"),
                    field("city", "TEXT"),
                    field("avatarUrl", "TEXT"),
                    field("linkedinLink", "LINKS"),
                    field("xLink", "LINKS"),
                    rel("company", "RELATION", "companies"),
                ],
            ),
            object(
                "opportunity",
                "opportunities",
                vec![
                    field("name", "TEXT"),
                    field("amount", "CURRENCY"),
                    field("closeDate", "DATE_TIME"),
                    select(
                        "stage",
                        &["NEW", "SCREENING", "MEETING", "PROPOSAL", "CUSTOMER"],
                    ),
                    rel("pointOfContact", "RELATION", "people"),
                    rel("company", "RELATION", "companies"),
                ],
            ),
            object(
                "note",
                "notes",
                vec![field("title", "TEXT"), field("bodyV2", "RICH_TEXT")],
            ),
            link(
                "noteTarget",
                "noteTargets",
                targets(vec![rel("note", "RELATION", "notes")]),
            ),
            object(
                "task",
                "tasks",
                vec![
                    field("title", "TEXT"),
                    field("bodyV2", "RICH_TEXT"),
                    field("dueAt", "DATE_TIME"),
                    select("status", &["TODO", "IN_PROGRESS", "DONE"]),
                ],
            ),
            link(
                "taskTarget",
                "taskTargets",
                targets(vec![rel("task", "RELATION", "tasks")]),
            ),
            object(
                "attachment",
                "attachments",
                targets(vec![
                    field("name", "TEXT"),
                    field("file", "FILES"),
                    field("fullPath", "TEXT"),
                    select(
                        "fileCategory",
                        &[
                            "ARCHIVE",
                            "AUDIO",
                            "IMAGE",
                            "PRESENTATION",
                            "SPREADSHEET",
                            "TEXT_DOCUMENT",
                            "VIDEO",
                            "OTHER",
                        ],
                    ),
                    rel("targetNote", "MORPH_RELATION", "notes"),
                    rel("targetTask", "MORPH_RELATION", "tasks"),
                ]),
            ),
        ];
        Store {
            objects,
            rows: HashMap::new(),
            index: HashMap::new(),
            unique_values: HashMap::new(),
            next_seq: 1,
            uploads: HashMap::new(),
            max_batch,
        }
    }

    /// A workspace named the 1.x way: link and attachment targets are plain
    /// relations `person`, `company`, … (join columns `personId`, …) and
    /// attachments have `fullPath` but no FILES field.
    pub fn new_v1(max_batch: usize) -> Self {
        let mut store = Store::new(max_batch);
        for object in &mut store.objects {
            if object.name_singular == "attachment" {
                object.fields.retain(|f| f.name != "file");
            }
            for field in &mut object.fields {
                if let Some(rest) = field
                    .name
                    .strip_prefix("target")
                    .filter(|_| field.field_type == "MORPH_RELATION")
                {
                    let mut chars = rest.chars();
                    let first = chars
                        .next()
                        .map(|c| c.to_ascii_lowercase())
                        .unwrap_or_default();
                    field.name = format!("{first}{}", chars.as_str());
                    field.field_type = "RELATION".into();
                }
            }
        }
        store
    }

    // ---- metadata -------------------------------------------------------------------

    pub fn object(&self, plural: &str) -> ApiResult<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.is_active && o.name_plural == plural)
            .ok_or_else(|| ApiError::bad(format!("object '{plural}' not found")))
    }

    pub fn create_object(&mut self, input: &Value) -> ApiResult<Value> {
        self.unique_values.clear();
        let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(singular), Some(plural), Some(label_singular), Some(label_plural)) = (
            text("nameSingular"),
            text("namePlural"),
            text("labelSingular"),
            text("labelPlural"),
        ) else {
            return Err(ApiError::bad(
                "nameSingular, namePlural, labelSingular and labelPlural are required",
            ));
        };
        let camel = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && s.chars().all(|c| c.is_ascii_alphanumeric())
        };
        if !camel(&singular) || !camel(&plural) || singular == plural {
            return Err(ApiError::bad(format!(
                "names must be distinct camelCase: {singular:?} / {plural:?}"
            )));
        }
        if self
            .objects
            .iter()
            .any(|o| o.name_singular == singular || o.name_plural == plural)
        {
            return Err(ApiError::bad(format!("Object already exists: {singular}")));
        }
        let mut fields = Store::new(0).objects[0].fields[..6].to_vec();
        for f in &mut fields {
            f.id = uid();
        }
        fields.push(field("name", "TEXT"));
        let object = ObjectDef {
            id: uid(),
            name_singular: singular,
            name_plural: plural,
            label_singular,
            label_plural,
            is_custom: true,
            is_active: true,
            fields,
        };
        let out = object.json();
        self.objects.push(object);
        Ok(out)
    }

    pub fn update_object(&mut self, id: &str, input: &Value) -> ApiResult<Value> {
        self.unique_values.clear();
        let object = self
            .objects
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or_else(ApiError::not_found)?;
        if let Some(active) = input.get("isActive").and_then(Value::as_bool) {
            object.is_active = active;
        }
        Ok(object.json())
    }

    pub fn delete_object(&mut self, id: &str) -> ApiResult<Value> {
        self.unique_values.clear();
        let position = self
            .objects
            .iter()
            .position(|o| o.id == id)
            .ok_or_else(ApiError::not_found)?;
        if !self.objects[position].is_custom {
            return Err(ApiError::bad("Standard objects cannot be deleted"));
        }
        if self.objects[position].is_active {
            return Err(ApiError::bad("Object must be deactivated before deletion"));
        }
        let object = self.objects.remove(position);
        // Relations to and from it go with it, on both sides.
        let gone: HashSet<String> = object
            .fields
            .iter()
            .filter_map(|f| f.pair.clone())
            .collect();
        for other in &mut self.objects {
            other.fields.retain(|f| {
                !gone.contains(&f.id) && f.target.as_deref() != Some(object.name_plural.as_str())
            });
        }
        self.rows.remove(&object.name_plural);
        self.index
            .retain(|(plural, _), _| plural != &object.name_plural);
        Ok(json!({"id": id}))
    }

    pub fn fields_json(&self) -> Vec<Value> {
        self.objects
            .iter()
            .flat_map(|o| o.fields.iter().map(|f| f.json(&o.id)))
            .collect()
    }

    pub fn create_field(&mut self, input: &Value) -> ApiResult<Value> {
        self.unique_values.clear();
        let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(field_type), Some(name), Some(label), Some(object_id)) = (
            text("type"),
            text("name"),
            text("label"),
            text("objectMetadataId"),
        ) else {
            return Err(ApiError::bad(
                "type, name, label and objectMetadataId are required",
            ));
        };
        const TYPES: &[&str] = &[
            "ACTOR",
            "ADDRESS",
            "ARRAY",
            "BOOLEAN",
            "CURRENCY",
            "DATE",
            "DATE_TIME",
            "EMAILS",
            "FILES",
            "FULL_NAME",
            "LINKS",
            "MORPH_RELATION",
            "MULTI_SELECT",
            "NUMBER",
            "NUMERIC",
            "PHONES",
            "POSITION",
            "RATING",
            "RAW_JSON",
            "RELATION",
            "RICH_TEXT",
            "SELECT",
            "TEXT",
            "UUID",
        ];
        if !TYPES.contains(&field_type.as_str()) {
            return Err(ApiError::bad(format!("Unknown field type {field_type}")));
        }
        let owner_index = self
            .objects
            .iter()
            .position(|o| o.id == object_id)
            .ok_or_else(|| ApiError::bad(format!("Object {object_id} not found")))?;
        if self.objects[owner_index]
            .fields
            .iter()
            .any(|f| f.name == name)
        {
            return Err(ApiError::bad(format!("Field already exists: {name}")));
        }
        let mut def = field(&name, &field_type);
        def.label = label.clone();
        def.is_custom = true;
        def.is_unique = input
            .get("isUnique")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if field_type == "SELECT" || field_type == "MULTI_SELECT" {
            let options = input
                .get("options")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Store::check_options(&options)?;
            def.options = options;
        }
        let mut inverse = None;
        if field_type == "RELATION" {
            let payload = input
                .get("relationCreationPayload")
                .ok_or_else(|| ApiError::bad("relationCreationPayload is required for RELATION"))?;
            let target_id = payload
                .get("targetObjectMetadataId")
                .and_then(Value::as_str)
                .unwrap_or("");
            let target_label = payload
                .get("targetFieldLabel")
                .and_then(Value::as_str)
                .unwrap_or("");
            if payload.get("type").and_then(Value::as_str) != Some("MANY_TO_ONE")
                && payload.get("type").and_then(Value::as_str) != Some("ONE_TO_MANY")
            {
                return Err(ApiError::bad(
                    "relationCreationPayload.type must be MANY_TO_ONE or ONE_TO_MANY",
                ));
            }
            let target_index = self
                .objects
                .iter()
                .position(|o| o.id == target_id)
                .ok_or_else(|| ApiError::bad(format!("Target object {target_id} not found")))?;
            def.target = Some(self.objects[target_index].name_plural.clone());
            let inverse_name = camel_case(target_label);
            if inverse_name.is_empty()
                || self.objects[target_index]
                    .fields
                    .iter()
                    .any(|f| f.name == inverse_name)
            {
                return Err(ApiError::bad(format!(
                    "Inverse field name {inverse_name:?} from targetFieldLabel is empty or taken"
                )));
            }
            let mut back = field(&inverse_name, "RELATION");
            back.label = target_label.into();
            back.is_custom = true;
            inverse = Some((target_index, back));
        }
        if let Some((_, back)) = &mut inverse {
            def.pair = Some(back.id.clone());
            back.pair = Some(def.id.clone());
        }
        let out = def.json(&object_id);
        self.objects[owner_index].fields.push(def);
        if let Some((index, back)) = inverse {
            // ONE_TO_MANY side: listed, never written (no join column, no target).
            self.objects[index].fields.push(back);
        }
        Ok(out)
    }

    fn check_options(options: &[Value]) -> ApiResult<()> {
        let mut seen = HashSet::new();
        for option in options {
            let value = option.get("value").and_then(Value::as_str).unwrap_or("");
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(ApiError::bad(format!(
                    "Option value {value:?} must be UPPER_SNAKE_CASE"
                )));
            }
            if !seen.insert(value.to_string()) {
                return Err(ApiError::bad(format!("Duplicate option value {value}")));
            }
        }
        Ok(())
    }

    pub fn update_field(&mut self, id: &str, input: &Value) -> ApiResult<Value> {
        self.unique_values.clear();
        for object in &mut self.objects {
            if let Some(f) = object.fields.iter_mut().find(|f| f.id == id) {
                if let Some(options) = input.get("options").and_then(Value::as_array) {
                    Store::check_options(options)?;
                    f.options = options.clone();
                }
                if let Some(active) = input.get("isActive").and_then(Value::as_bool) {
                    f.is_active = active;
                }
                if let Some(label) = input.get("label").and_then(Value::as_str) {
                    f.label = label.into();
                }
                return Ok(f.json(&object.id));
            }
        }
        Err(ApiError::not_found())
    }

    pub fn delete_field(&mut self, id: &str) -> ApiResult<Value> {
        self.unique_values.clear();
        for object in &mut self.objects {
            if let Some(position) = object.fields.iter().position(|f| f.id == id) {
                let f = &object.fields[position];
                if !f.is_custom {
                    return Err(ApiError::bad("Standard fields cannot be deleted"));
                }
                if f.is_active {
                    return Err(ApiError::bad("Field must be deactivated before deletion"));
                }
                let removed = object.fields.remove(position);
                let plural = object.name_plural.clone();
                if let Some(pair) = &removed.pair {
                    for other in &mut self.objects {
                        other.fields.retain(|f| &f.id != pair);
                    }
                }
                if let Some(rows) = self.rows.get_mut(&plural) {
                    for row in rows.values_mut() {
                        row.remove(&removed.name);
                        row.remove(&format!("{}Id", removed.name));
                    }
                }
                return Ok(json!({"id": id}));
            }
        }
        Err(ApiError::not_found())
    }

    // ---- records --------------------------------------------------------------------

    fn validate_value(&self, object: &ObjectDef, key: &str, value: &Value) -> ApiResult<Value> {
        let singular = &object.name_singular;
        let unknown = || {
            ApiError::bad(format!(
                "Object {singular} doesn't have any \"{key}\" field."
            ))
        };
        if key == "id" {
            let text = value.as_str().unwrap_or("");
            return Uuid::parse_str(text)
                .map(|u| Value::String(u.to_string()))
                .map_err(|_| ApiError::bad(format!("Invalid UUID for id: {value}")));
        }
        if let Some(base) = key.strip_suffix("Id") {
            if let Some(f) = object.field(base).filter(|f| f.is_relation()) {
                let Some(target) = f.target.as_deref() else {
                    return Err(unknown());
                };
                if value.is_null() {
                    return Ok(Value::Null);
                }
                let text = value
                    .as_str()
                    .filter(|t| Uuid::parse_str(t).is_ok())
                    .ok_or_else(|| ApiError::bad(format!("Invalid UUID for {key}: {value}")))?;
                if !self
                    .index
                    .contains_key(&(target.to_string(), text.to_string()))
                {
                    return Err(ApiError::bad(format!("insert or update on {singular} violates foreign key constraint on {key}: {text} not found in {target}")));
                }
                return Ok(value.clone());
            }
        }
        let f = object
            .field(key)
            .filter(|f| !f.is_relation())
            .ok_or_else(unknown)?;
        if value.is_null() {
            return Ok(Value::Null);
        }
        let wrong = |what: &str| {
            ApiError::bad(format!(
                "Invalid value for field {key} of {singular}: expected {what}"
            ))
        };
        if let Some(keys) = composite_keys(&f.field_type) {
            let map = value.as_object().ok_or_else(|| wrong("an object"))?;
            for sub in map.keys() {
                if !keys.contains(&sub.as_str()) {
                    return Err(ApiError::bad(format!(
                        "Invalid sub-field \"{sub}\" for {key} ({})",
                        f.field_type
                    )));
                }
            }
            let mut out = map.clone();
            match f.field_type.as_str() {
                "RICH_TEXT" | "RICH_TEXT_V2" => {
                    if let Some(markdown) = map.get("markdown").and_then(Value::as_str) {
                        let blocks: Vec<Value> = markdown
                            .lines()
                            .map(|l| json!({"type": "paragraph", "content": l}))
                            .collect();
                        out.insert(
                            "blocknote".into(),
                            Value::String(Value::Array(blocks).to_string()),
                        );
                    }
                }
                "CURRENCY"
                    if map
                        .get("amountMicros")
                        .is_some_and(|a| !a.is_null() && !a.is_i64() && !a.is_string()) =>
                {
                    return Err(wrong("amountMicros as an integer"));
                }
                "ACTOR" => {
                    const SOURCES: &[&str] = &[
                        "IMPORT", "API", "MANUAL", "WORKFLOW", "SYSTEM", "EMAIL", "CALENDAR",
                        "WEBHOOK",
                    ];
                    if !map
                        .get("source")
                        .and_then(Value::as_str)
                        .is_some_and(|s| SOURCES.contains(&s))
                    {
                        return Err(wrong("createdBy.source one of IMPORT, API, MANUAL, …"));
                    }
                }
                "EMAILS"
                    if map.get("additionalEmails").is_some_and(|a| {
                        !a.is_null()
                            && !a.as_array().is_some_and(|v| v.iter().all(Value::is_string))
                    }) =>
                {
                    return Err(wrong("additionalEmails as an array of strings"));
                }
                _ => {}
            }
            return Ok(Value::Object(out));
        }
        match f.field_type.as_str() {
            "TEXT" | "UUID" if !value.is_string() => Err(wrong("a string")),
            "NUMBER" | "NUMERIC" | "POSITION" | "RATING" if !value.is_number() => {
                Err(wrong("a number"))
            }
            "BOOLEAN" if !value.is_boolean() => Err(wrong("a boolean")),
            "DATE_TIME" => match value.as_str().map(chrono::DateTime::parse_from_rfc3339) {
                Some(Ok(_)) => Ok(value.clone()),
                _ => Err(wrong("an ISO 8601 date-time (2024-03-15T10:00:00.000Z)")),
            },
            "DATE" => match value
                .as_str()
                .map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"))
            {
                Some(Ok(_)) => Ok(value.clone()),
                _ => Err(wrong("a date YYYY-MM-DD")),
            },
            "SELECT" => {
                let allowed: Vec<&str> = f
                    .options
                    .iter()
                    .filter_map(|o| o.get("value").and_then(Value::as_str))
                    .collect();
                match value.as_str() {
                    Some(v) if allowed.contains(&v) => Ok(value.clone()),
                    _ => Err(ApiError::bad(format!("Value {value} is not a valid option for {key}; expected one of {allowed:?}"))),
                }
            }
            "FILES" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| wrong("an array of {fileId, label}"))?;
                for item in items {
                    let file_id = item.get("fileId").and_then(Value::as_str).unwrap_or("");
                    if item.as_object().is_none_or(|m| {
                        m.keys()
                            .any(|k| !["fileId", "label", "extension"].contains(&k.as_str()))
                    }) {
                        return Err(wrong("items {fileId, label}"));
                    }
                    if !self.uploads.get(file_id).is_some_and(|u| u.completed) {
                        return Err(ApiError::bad(format!(
                            "File {file_id} not found or upload not completed"
                        )));
                    }
                }
                Ok(value.clone())
            }
            _ => Ok(value.clone()),
        }
    }

    /// A full new row from a create body, validated (uniqueness is checked separately).
    fn build_row(&self, object: &ObjectDef, body: &Value) -> ApiResult<Map<String, Value>> {
        let input = body
            .as_object()
            .ok_or_else(|| ApiError::bad("A record must be a JSON object"))?;
        let mut row = Map::new();
        for (key, value) in input {
            row.insert(key.clone(), self.validate_value(object, key, value)?);
        }
        let stamp = now();
        row.entry("id").or_insert_with(|| Value::String(uid()));
        if row.get("createdAt").is_none_or(Value::is_null) {
            row.insert("createdAt".into(), Value::String(stamp.clone()));
        }
        row.insert("updatedAt".into(), Value::String(stamp));
        row.insert("deletedAt".into(), Value::Null);
        if object.field("createdBy").is_some() {
            match row.get_mut("createdBy") {
                Some(Value::Object(actor)) if actor.get("name").is_some_and(|n| !n.is_null()) => {
                    actor.entry("workspaceMemberId").or_insert(Value::Null);
                    actor.entry("context").or_insert(json!({}));
                }
                _ => {
                    // Without a name the server stamps the API key's own identity.
                    row.insert(
                        "createdBy".into(),
                        json!({"source": "API", "name": "sandbox key", "workspaceMemberId": null, "context": {}}),
                    );
                }
            }
        }
        if object.field("position").is_some() {
            row.entry("position").or_insert(json!(self.next_seq as f64));
        }
        for f in object.fields.iter().filter(|f| f.is_active) {
            if f.is_relation() {
                if f.target.is_some() {
                    row.entry(format!("{}Id", f.name)).or_insert(Value::Null);
                }
            } else {
                row.entry(f.name.clone()).or_insert(Value::Null);
            }
        }
        Ok(row)
    }

    /// Checks `rows` against each other and against every stored row (soft-deleted
    /// included) but `replacing`, the stored version of a row being updated.
    fn check_unique(
        &mut self,
        object: &ObjectDef,
        rows: &[&Map<String, Value>],
        replacing: Option<&Map<String, Value>>,
    ) -> ApiResult<()> {
        let mut paths = vec!["id".to_string()];
        paths.extend(
            object
                .fields
                .iter()
                .filter(|f| f.is_unique && f.is_active)
                .filter_map(unique_path),
        );
        for path in &paths {
            let replaced = replacing.and_then(|row| unique_value(row, path));
            let stored = self.stored_unique_values(&object.name_plural, path);
            let mut batch: HashSet<String> = HashSet::new();
            for row in rows {
                let Some(value) = unique_value(row, path) else {
                    continue;
                };
                let held = stored.get(&value).copied().unwrap_or(0)
                    - usize::from(replaced.as_ref() == Some(&value));
                if held > 0 || !batch.insert(value) {
                    return Err(ApiError::bad(format!(
                        "Duplicate entry on {}.{path}: unique constraint violated (soft-deleted records count)",
                        object.name_singular
                    )));
                }
            }
        }
        Ok(())
    }

    fn stored_unique_values(&mut self, plural: &str, path: &str) -> &HashMap<String, usize> {
        let rows = &self.rows;
        self.unique_values
            .entry((plural.to_string(), path.to_string()))
            .or_insert_with(|| {
                let mut values = HashMap::new();
                for row in rows.get(plural).into_iter().flat_map(BTreeMap::values) {
                    if let Some(value) = unique_value(row, path) {
                        *values.entry(value).or_insert(0) += 1;
                    }
                }
                values
            })
    }

    /// Counts `row`'s values in (`stored`) or out of the unique values known for `plural`.
    fn track_unique(&mut self, plural: &str, row: &Map<String, Value>, stored: bool) {
        for ((of, path), values) in &mut self.unique_values {
            if of != plural {
                continue;
            }
            let Some(value) = unique_value(row, path) else {
                continue;
            };
            if stored {
                *values.entry(value).or_insert(0) += 1;
            } else if let Some(held) = values.get_mut(&value) {
                *held -= 1;
                if *held == 0 {
                    values.remove(&value);
                }
            }
        }
    }

    fn insert(&mut self, plural: &str, row: Map<String, Value>) -> Value {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = row
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.index.insert((plural.to_string(), id), seq);
        self.track_unique(plural, &row, true);
        self.rows
            .entry(plural.to_string())
            .or_default()
            .insert(seq, row.clone());
        Value::Object(row)
    }

    pub fn create_many(&mut self, plural: &str, bodies: &[Value]) -> ApiResult<Vec<Value>> {
        if bodies.len() > self.max_batch {
            return Err(ApiError::bad(format!(
                "Maximum number of records to upsert is {}.",
                self.max_batch
            )));
        }
        let object = self.object(plural)?.clone();
        let mut rows = Vec::with_capacity(bodies.len());
        for body in bodies {
            rows.push(self.build_row(&object, body)?);
        }
        self.check_unique(&object, &rows.iter().collect::<Vec<_>>(), None)?;
        Ok(rows
            .into_iter()
            .map(|row| self.insert(plural, row))
            .collect())
    }

    fn seq_of(&self, plural: &str, id: &str) -> Option<u64> {
        self.index
            .get(&(plural.to_string(), id.to_string()))
            .copied()
    }

    /// The position of the record a cursor (its id) names, soft-deleted or not.
    pub fn cursor_seq(&self, plural: &str, id: &str) -> Option<u64> {
        self.seq_of(plural, id)
    }

    pub fn find_one(&self, plural: &str, id: &str) -> ApiResult<Value> {
        self.object(plural)?;
        let seq = self.seq_of(plural, id).ok_or_else(ApiError::not_found)?;
        let row = &self.rows[plural][&seq];
        if !row.get("deletedAt").is_none_or(Value::is_null) {
            return Err(ApiError::not_found());
        }
        Ok(Value::Object(row.clone()))
    }

    /// Rows matching `filter` (soft-deleted only when the filter reads `deletedAt`),
    /// in creation order, after the cursor, at most `limit`; plus whether more follow.
    pub fn find_many(
        &self,
        plural: &str,
        filter: Option<&Filter>,
        after: Option<u64>,
        limit: usize,
    ) -> ApiResult<Page> {
        self.object(plural)?;
        let with_deleted = filter.is_some_and(Filter::mentions_deleted_at);
        let Some(rows) = self.rows.get(plural) else {
            return Ok(Page {
                rows: vec![],
                has_next: false,
                total: 0,
            });
        };
        let by_id: Option<BTreeMap<u64, &Map<String, Value>>> =
            filter.and_then(Filter::only_ids).map(|ids| {
                ids.iter()
                    .filter_map(|id| self.seq_of(plural, id))
                    .filter_map(|seq| rows.get(&seq).map(|row| (seq, row)))
                    .collect()
            });
        let candidates: Box<dyn Iterator<Item = (&u64, &Map<String, Value>)>> = match &by_id {
            Some(found) => Box::new(found.iter().map(|(seq, row)| (seq, *row))),
            None => Box::new(rows.iter()),
        };
        let matching: Vec<(u64, &Map<String, Value>)> = candidates
            .filter(|(_, row)| with_deleted || row.get("deletedAt").is_none_or(Value::is_null))
            .filter(|(_, row)| filter.is_none_or(|f| f.matches(row)))
            .map(|(seq, row)| (*seq, row))
            .collect();
        let total = matching.len();
        let page: Vec<(u64, Value)> = matching
            .iter()
            .filter(|(seq, _)| after.is_none_or(|a| *seq > a))
            .take(limit + 1)
            .map(|(seq, row)| (*seq, Value::Object((*row).clone())))
            .collect();
        let has_next = page.len() > limit;
        Ok(Page {
            rows: page.into_iter().take(limit).collect(),
            has_next,
            total,
        })
    }

    pub fn update(&mut self, plural: &str, id: &str, body: &Value) -> ApiResult<Value> {
        let object = self.object(plural)?.clone();
        let seq = self.seq_of(plural, id).ok_or_else(ApiError::not_found)?;
        let input = body
            .as_object()
            .ok_or_else(|| ApiError::bad("A record must be a JSON object"))?;
        let stored = self.rows[plural][&seq].clone();
        let mut row = stored.clone();
        if !row.get("deletedAt").is_none_or(Value::is_null) {
            return Err(ApiError::not_found());
        }
        for (key, value) in input {
            if key == "id" {
                return Err(ApiError::bad("id cannot be updated"));
            }
            row.insert(key.clone(), self.validate_value(&object, key, value)?);
        }
        row.insert("updatedAt".into(), Value::String(now()));
        self.check_unique(&object, &[&row], Some(&stored))?;
        self.track_unique(plural, &stored, false);
        self.track_unique(plural, &row, true);
        self.rows
            .get_mut(plural)
            .expect("rows exist")
            .insert(seq, row.clone());
        Ok(Value::Object(row))
    }

    pub fn soft_delete(&mut self, plural: &str, id: &str) -> ApiResult<Value> {
        self.object(plural)?;
        let seq = self.seq_of(plural, id).ok_or_else(ApiError::not_found)?;
        let row = self
            .rows
            .get_mut(plural)
            .and_then(|r| r.get_mut(&seq))
            .ok_or_else(ApiError::not_found)?;
        row.insert("deletedAt".into(), Value::String(now()));
        Ok(json!({"id": id}))
    }

    pub fn restore(&mut self, plural: &str, id: &str) -> ApiResult<Value> {
        self.object(plural)?;
        let seq = self.seq_of(plural, id).ok_or_else(ApiError::not_found)?;
        let row = self
            .rows
            .get_mut(plural)
            .and_then(|r| r.get_mut(&seq))
            .ok_or_else(ApiError::not_found)?;
        if row.get("deletedAt").is_none_or(Value::is_null) {
            return Err(ApiError::not_found());
        }
        row.insert("deletedAt".into(), Value::Null);
        Ok(Value::Object(row.clone()))
    }

    /// Destroys a row (live or soft-deleted): link rows pointing at it through a
    /// morph target go with it; other references are set to null (ON DELETE SET NULL).
    pub fn destroy(&mut self, plural: &str, id: &str) -> ApiResult<Value> {
        self.object(plural)?;
        let seq = self.seq_of(plural, id).ok_or_else(ApiError::not_found)?;
        if let Some(row) = self.rows.get_mut(plural).expect("rows exist").remove(&seq) {
            self.track_unique(plural, &row, false);
        }
        self.index.remove(&(plural.to_string(), id.to_string()));
        let referencing: Vec<(String, String, bool)> = self
            .objects
            .iter()
            .flat_map(|o| {
                o.fields
                    .iter()
                    .filter(|f| f.target.as_deref() == Some(plural))
                    .map(move |f| {
                        (
                            o.name_plural.clone(),
                            format!("{}Id", f.name),
                            is_link_object(&o.name_singular),
                        )
                    })
            })
            .collect();
        let mut cascade = Vec::new();
        for (other, column, is_link) in referencing {
            if let Some(rows) = self.rows.get_mut(&other) {
                for row in rows.values_mut() {
                    if row.get(&column).and_then(Value::as_str) == Some(id) {
                        if is_link {
                            cascade.push((
                                other.clone(),
                                row.get("id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                            ));
                        } else {
                            row.insert(column.clone(), Value::Null);
                            self.unique_values.retain(|(of, _), _| of != &other);
                        }
                    }
                }
            }
        }
        for (other, child) in cascade {
            let _ = self.destroy(&other, &child);
        }
        Ok(json!({"id": id}))
    }

    /// Every row of `plural`, soft-deleted included (admin view).
    pub fn all_rows(&self, plural: &str) -> Vec<Value> {
        self.rows
            .get(plural)
            .map(|rows| rows.values().map(|r| Value::Object(r.clone())).collect())
            .unwrap_or_default()
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.rows
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }
}

/// Objects whose rows only link two records (destroyed with what they point at).
fn is_link_object(singular: &str) -> bool {
    matches!(singular, "noteTarget" | "taskTarget" | "attachment")
}

/// `Perio exams (Patient)` → `perioExamsPatient`.
fn camel_case(label: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            if out.is_empty() {
                out.push(c.to_ascii_lowercase());
            } else if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn person(store: &mut Store, email: &str) -> ApiResult<String> {
        let created = store.create_many(
            "people",
            &[json!({"name": {"firstName": "P"}, "emails": {"primaryEmail": email}})],
        )?;
        Ok(created[0]["id"].as_str().unwrap().to_string())
    }

    fn set_email(store: &mut Store, id: &str, email: &str) -> ApiResult<Value> {
        store.update("people", id, &json!({"emails": {"primaryEmail": email}}))
    }

    /// The unique values are learned once and then kept in step by creates, updates and
    /// destroys; every answer matches what a scan of the stored rows would give.
    #[test]
    fn the_unique_index_follows_every_write() {
        let mut store = Store::new(60);
        let a = person(&mut store, "a@x.test").unwrap();
        let b = person(&mut store, "b@x.test").unwrap();
        assert!(person(&mut store, "A@X.test").is_err(), "case-insensitive");
        assert!(set_email(&mut store, &b, "a@x.test").is_err());
        set_email(&mut store, &b, "B@x.test").expect("a row keeps its own value");
        set_email(&mut store, &a, "c@x.test").unwrap();
        set_email(&mut store, &b, "a@x.test").expect("a's old value was released");
        assert!(person(&mut store, "c@x.test").is_err());
        store.soft_delete("people", &a).unwrap();
        assert!(
            person(&mut store, "c@x.test").is_err(),
            "soft-deleted rows keep their value"
        );
        store.destroy("people", &a).unwrap();
        person(&mut store, "c@x.test").expect("a destroyed row releases its value");
        assert!(
            store
                .create_many(
                    "people",
                    &[
                        json!({"emails": {"primaryEmail": "d@x.test"}}),
                        json!({"emails": {"primaryEmail": "D@x.test"}}),
                    ],
                )
                .is_err(),
            "duplicates inside one batch"
        );
        person(&mut store, "d@x.test").expect("a refused batch stores nothing");
    }

    /// A filter on ids reads the rows through the id index and answers as the scan
    /// does: creation order, soft-deleted rows left out, other conditions still applied.
    #[test]
    fn a_filter_on_ids_answers_as_a_scan_would() {
        let mut store = Store::new(60);
        let ids: Vec<String> = (0..6)
            .map(|i| person(&mut store, &format!("{i}@x.test")).unwrap())
            .collect();
        store.soft_delete("people", &ids[2]).unwrap();
        let found = |store: &Store, text: &str| -> Vec<String> {
            let filter = Filter::parse(text).unwrap();
            assert!(filter.only_ids().is_some(), "{text} goes through the index");
            store
                .find_many("people", Some(&filter), None, 60)
                .unwrap()
                .rows
                .iter()
                .map(|(_, row)| row["id"].as_str().unwrap().to_string())
                .collect()
        };
        let list = |picked: &[usize]| {
            picked
                .iter()
                .map(|i| format!("\"{}\"", ids[*i]))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            found(&store, &format!("id[in]:[{}]", list(&[4, 0, 2, 1]))),
            vec![ids[0].clone(), ids[1].clone(), ids[4].clone()]
        );
        assert_eq!(
            found(&store, &format!("id[eq]:{}", ids[3])),
            vec![ids[3].clone()]
        );
        assert_eq!(
            found(
                &store,
                &format!(
                    "and(id[in]:[{}],emails.primaryEmail[eq]:1@x.test)",
                    list(&[0, 1])
                )
            ),
            vec![ids[1].clone()]
        );
        assert!(found(&store, "id[in]:[\"no-such-id\"]").is_empty());
        let or = Filter::parse(&format!("or(id[eq]:{},id[eq]:{})", ids[0], ids[1])).unwrap();
        assert!(
            or.only_ids().is_none(),
            "an or is not limited to one id list"
        );
    }
}
