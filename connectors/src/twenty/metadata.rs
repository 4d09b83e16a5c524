//! What the workspace says about itself: objects and fields read from
//! `GET /rest/metadata/objects`, and the name mapping built on it.
//!
//! Field names differ across Twenty versions (2.x `targetPersonId` vs 1.x
//! `personId`, `bodyV2` vs `body`), so every body the client sends is translated
//! to the names this instance reports, and a key the instance does not know
//! fails fast with the object and field named instead of a 400 mid-run.

use serde_json::{Map, Value};

use cutover_engine::DestError;

/// System fields every record accepts on create, whether or not metadata lists them
/// (`createdBy` is not one: link objects such as noteTarget have none).
const SYSTEM_FIELDS: &[&str] = &["id", "createdAt"];

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMeta {
    pub id: String,
    pub name: String,
    pub field_type: String,
    pub label: String,
    pub is_custom: bool,
    pub is_active: bool,
    /// Option values of SELECT / MULTI_SELECT fields, in order.
    pub options: Vec<Value>,
}

impl FieldMeta {
    pub fn is_relation(&self) -> bool {
        self.field_type == "RELATION" || self.field_type == "MORPH_RELATION"
    }

    pub fn option_values(&self) -> Vec<String> {
        self.options
            .iter()
            .filter_map(|o| o.get("value").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    pub id: String,
    pub name_singular: String,
    pub name_plural: String,
    pub is_custom: bool,
    pub is_active: bool,
    pub fields: Vec<FieldMeta>,
}

impl ObjectMeta {
    pub fn field(&self, name: &str) -> Option<&FieldMeta> {
        self.fields.iter().find(|f| f.name == name && f.is_active)
    }

    /// True when `key` can be written: a field, a relation's join column (`companyId`
    /// for relation `company`) or a system field.
    pub fn accepts(&self, key: &str) -> bool {
        if SYSTEM_FIELDS.contains(&key) || self.field(key).is_some_and(|f| !f.is_relation()) {
            return true;
        }
        key.strip_suffix("Id")
            .and_then(|base| self.field(base))
            .is_some_and(FieldMeta::is_relation)
    }

    /// The key this instance uses for `key`, trying the other version's spelling.
    pub fn resolve_key(&self, key: &str) -> Option<String> {
        if self.accepts(key) {
            return Some(key.to_string());
        }
        aliases(key).into_iter().find(|alias| self.accepts(alias))
    }
}

/// The other spellings a field has had across Twenty versions.
fn aliases(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rest) = key
        .strip_prefix("target")
        .filter(|r| r.ends_with("Id") && r.len() > 2)
    {
        // 2.x targetPersonId → 1.x personId
        let mut chars = rest.chars();
        if let Some(first) = chars.next() {
            out.push(format!("{}{}", first.to_ascii_lowercase(), chars.as_str()));
        }
    } else if key.ends_with("Id") && key.len() > 2 {
        // 1.x personId → 2.x targetPersonId
        let mut chars = key.chars();
        if let Some(first) = chars.next() {
            out.push(format!(
                "target{}{}",
                first.to_ascii_uppercase(),
                chars.as_str()
            ));
        }
    }
    match key {
        "bodyV2" => out.push("body".into()),
        "body" => out.push("bodyV2".into()),
        _ => {}
    }
    out
}

fn field_from(f: &Value) -> FieldMeta {
    FieldMeta {
        id: text(f, "id"),
        name: text(f, "name"),
        field_type: text(f, "type"),
        label: text(f, "label"),
        is_custom: flag(f, "isCustom", false),
        is_active: flag(f, "isActive", true),
        options: f
            .get("options")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// All objects of one workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub objects: Vec<ObjectMeta>,
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn flag(value: &Value, key: &str, default: bool) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// Lists under `key` either as a plain array or as a GraphQL connection (`edges[].node`).
fn list<'a>(value: &'a Value, key: &str) -> Vec<&'a Value> {
    match value.get(key) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(conn @ Value::Object(_)) => conn
            .get("edges")
            .and_then(Value::as_array)
            .map(|edges| edges.iter().filter_map(|e| e.get("node")).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl Catalog {
    /// Parses a `GET /rest/metadata/objects` body (`{data: {objects: […]}}`, `{data: […]}`
    /// or a bare array), each object carrying its `fields`.
    pub fn from_response(body: &Value) -> Result<Catalog, String> {
        let data = body.get("data").unwrap_or(body);
        let objects: Vec<&Value> = match data {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => list(data, "objects"),
            _ => Vec::new(),
        };
        if objects.is_empty() {
            return Err("the metadata answer lists no objects (expected data.objects[])".into());
        }
        let mut catalog = Catalog::default();
        for object in objects {
            catalog.objects.push(Catalog::object_from(object)?);
        }
        Ok(catalog)
    }

    pub(crate) fn object_from(object: &Value) -> Result<ObjectMeta, String> {
        let name_singular = text(object, "nameSingular");
        let name_plural = text(object, "namePlural");
        if name_singular.is_empty() || name_plural.is_empty() {
            return Err(format!(
                "a metadata object lacks nameSingular/namePlural: id {:?}",
                text(object, "id")
            ));
        }
        let fields = list(object, "fields").into_iter().map(field_from).collect();
        Ok(ObjectMeta {
            id: text(object, "id"),
            name_singular,
            name_plural,
            is_custom: flag(object, "isCustom", false),
            is_active: flag(object, "isActive", true),
            fields,
        })
    }

    /// Attaches fields from a `GET /rest/metadata/fields` body (`{data: {fields: […]}}`),
    /// each naming its object by `objectMetadataId`, to objects listed without fields.
    pub fn attach_fields(&mut self, body: &Value) -> Result<(), String> {
        let data = body.get("data").unwrap_or(body);
        let fields: Vec<&Value> = match data {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => list(data, "fields"),
            _ => Vec::new(),
        };
        if fields.is_empty() {
            return Err("the metadata answer lists no fields (expected data.fields[])".into());
        }
        for field in fields {
            let owner = text(field, "objectMetadataId");
            if let Some(object) = self
                .objects
                .iter_mut()
                .find(|o| o.id == owner && !o.fields.iter().any(|f| f.id == text(field, "id")))
            {
                object.fields.push(field_from(field));
            }
        }
        Ok(())
    }

    /// An object by singular or plural name (`person`, `people`, `perioExam`).
    pub fn object(&self, name: &str) -> Option<&ObjectMeta> {
        self.objects
            .iter()
            .filter(|o| o.is_active)
            .find(|o| o.name_singular == name || o.name_plural == name)
            .or_else(|| {
                self.objects.iter().filter(|o| o.is_active).find(|o| {
                    o.name_singular.eq_ignore_ascii_case(name)
                        || o.name_plural.eq_ignore_ascii_case(name)
                })
            })
    }

    pub fn require(&self, name: &str) -> Result<&ObjectMeta, DestError> {
        self.object(name).ok_or_else(|| {
            DestError::Precondition(format!(
                "object {name:?} does not exist in the Twenty workspace (run `cutover schema apply` for custom objects)"
            ))
        })
    }

    /// Renames the keys of `body` to this instance's field names; a key it has no
    /// field for is an error naming the object and the key.
    pub fn translate(
        &self,
        object: &ObjectMeta,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DestError> {
        let mut out = Map::with_capacity(body.len());
        for (key, value) in body {
            let Some(resolved) = object.resolve_key(key) else {
                return Err(DestError::Precondition(format!(
                    "object {} in this Twenty workspace has no field {key:?} (checked against /rest/metadata/objects)",
                    object.name_singular
                )));
            };
            out.insert(resolved, value.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(note_target_fields: Value) -> Catalog {
        Catalog::from_response(&json!({"data": {"objects": [
            {"id": "o1", "nameSingular": "noteTarget", "namePlural": "noteTargets", "fields": note_target_fields},
            {"id": "o2", "nameSingular": "person", "namePlural": "people", "fields": {"edges": [
                {"node": {"id": "f1", "name": "name", "type": "FULL_NAME"}},
                {"node": {"id": "f2", "name": "company", "type": "RELATION"}},
                {"node": {"id": "f3", "name": "city", "type": "TEXT", "isActive": false}}
            ]}}
        ]}}))
        .unwrap()
    }

    #[test]
    fn translates_between_versions() {
        let v2 = catalog(
            json!([{"name": "note", "type": "RELATION"}, {"name": "targetPerson", "type": "MORPH_RELATION"}]),
        );
        let v1 = catalog(
            json!([{"name": "note", "type": "RELATION"}, {"name": "person", "type": "RELATION"}]),
        );
        let body: Map<String, Value> =
            serde_json::from_value(json!({"noteId": "n", "targetPersonId": "p"})).unwrap();
        let out = v2
            .translate(v2.require("noteTargets").unwrap(), &body)
            .unwrap();
        assert_eq!(out.get("targetPersonId"), Some(&json!("p")));
        let out = v1
            .translate(v1.require("noteTarget").unwrap(), &body)
            .unwrap();
        assert_eq!(out.get("personId"), Some(&json!("p")));
        assert_eq!(out.get("noteId"), Some(&json!("n")));
    }

    #[test]
    fn fields_listed_separately_are_attached_to_their_objects() {
        let mut c = Catalog::from_response(&json!({"data": {"objects": [
            {"id": "o1", "nameSingular": "person", "namePlural": "people"},
            {"id": "o2", "nameSingular": "company", "namePlural": "companies"}
        ]}}))
        .unwrap();
        c.attach_fields(&json!({"data": {"fields": [
            {"id": "f1", "name": "name", "type": "FULL_NAME", "objectMetadataId": "o1"},
            {"id": "f2", "name": "company", "type": "RELATION", "objectMetadataId": "o1"},
            {"id": "f3", "name": "domainName", "type": "LINKS", "objectMetadataId": "o2"}
        ]}}))
        .unwrap();
        assert!(c.require("person").unwrap().accepts("companyId"));
        assert!(c.require("company").unwrap().accepts("domainName"));
        assert!(!c.require("company").unwrap().accepts("name"));
        assert!(c.attach_fields(&json!({"data": {"fields": []}})).is_err());
    }

    #[test]
    fn unknown_or_inactive_fields_fail_naming_the_place() {
        let c = catalog(json!([]));
        let person = c.require("people").unwrap();
        assert!(person.accepts("companyId") && person.accepts("name") && person.accepts("id"));
        assert!(
            !person.accepts("company"),
            "a relation is written through its join column"
        );
        let body: Map<String, Value> = serde_json::from_value(json!({"city": "Austin"})).unwrap();
        let err = c.translate(person, &body).unwrap_err().to_string();
        assert!(err.contains("person") && err.contains("\"city\""), "{err}");
        assert!(c
            .require("perioExam")
            .unwrap_err()
            .to_string()
            .contains("perioExam"));
        assert!(Catalog::from_response(&json!({"data": {}})).is_err());
    }
}
