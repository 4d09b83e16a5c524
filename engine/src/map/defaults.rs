//! The default maps shipped with cutover (`engine/maps/*.toml`), from the
//! seeds' object tables (DESIGN §7), and the object kinds each destination writes.

use super::format::{MapError, MapFile};

pub const HIGHLEVEL_TOML: &str = include_str!("../../maps/highlevel.toml");
pub const TWENTY_TOML: &str = include_str!("../../maps/twenty.toml");

/// Objects a HighLevel map may target (the HighLevel destination's kinds).
pub const HIGHLEVEL_OBJECTS: &[&str] = &[
    "contact",
    "business",
    "contact_business_link",
    "opportunity",
    "note",
    "task",
    "appointment",
    "file",
];

/// Fields every Twenty object has (custom objects included); custom fields must not reuse them.
const TWENTY_STANDARD_FIELDS: &[&str] = &[
    "id",
    "name",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "position",
    "createdBy",
    "searchVector",
];

/// Standard Twenty objects a map may target (custom objects are declared in the map).
pub const TWENTY_OBJECTS: &[&str] = &[
    "person",
    "company",
    "opportunity",
    "note",
    "noteTarget",
    "task",
    "taskTarget",
    "attachment",
];

/// The default map for `highlevel` or `twenty`.
pub fn default_map(destination: &str) -> Result<MapFile, MapError> {
    match destination {
        "highlevel" => MapFile::from_toml(HIGHLEVEL_TOML),
        "twenty" => MapFile::from_toml(TWENTY_TOML),
        other => Err(MapError::Invalid {
            place: "destination".into(),
            message: format!("{other:?} is not highlevel or twenty"),
        }),
    }
}

impl MapFile {
    /// Checks the map against its destination kind: every target object is one
    /// the destination writes or a custom object the map declares, and every
    /// custom field belongs to such an object.
    pub fn validate_for_destination(&self, kind: &str) -> Result<(), MapError> {
        self.validate()?;
        if self.destination != kind {
            return Err(MapError::Invalid {
                place: "destination".into(),
                message: format!("the map is for {}, not {kind}", self.destination),
            });
        }
        let standard = if kind == "highlevel" {
            HIGHLEVEL_OBJECTS
        } else {
            TWENTY_OBJECTS
        };
        let known = |object: &str| {
            standard.contains(&object) || self.custom_objects.iter().any(|o| o.name == object)
        };
        for (i, rule) in self.objects.iter().enumerate() {
            if !known(&rule.target) {
                return Err(MapError::Invalid {
                    place: format!("object #{} ({} → {})", i + 1, rule.source, rule.target),
                    message: format!(
                        "{kind} has no object {:?} (known: {}, or declare a custom_object)",
                        rule.target,
                        standard.join(", ")
                    ),
                });
            }
        }
        for field in &self.custom_fields {
            if !known(&field.object) {
                return Err(MapError::Invalid {
                    place: format!("custom_field {}.{}", field.object, field.name),
                    message: format!("{kind} has no object {:?}", field.object),
                });
            }
            // Every Twenty object already has these; a custom field of the same
            // name would write into the system field (e.g. `position` is the record order).
            if kind == "twenty" && TWENTY_STANDARD_FIELDS.contains(&field.name.as_str()) {
                return Err(MapError::Invalid {
                    place: format!("custom_field {}.{}", field.object, field.name),
                    message: format!(
                        "{:?} is a standard field of every Twenty object ({}); name the custom field differently",
                        field.name,
                        TWENTY_STANDARD_FIELDS.join(", ")
                    ),
                });
            }
        }
        if kind == "highlevel" {
            // HighLevel resolves custom fields by name at write time: an undeclared
            // one would only fail mid-run, after schema apply could have made it.
            for (i, rule) in self.objects.iter().enumerate() {
                for field in &rule.fields {
                    let Some(name) = field.to.strip_prefix("customFields.") else {
                        continue;
                    };
                    let declared = name == "Source_System_ID"
                        || self
                            .custom_fields
                            .iter()
                            .any(|f| f.object == rule.target && f.name == name);
                    if !declared {
                        return Err(MapError::Invalid {
                            place: format!(
                                "object #{} ({} → {}) field {:?}",
                                i + 1,
                                rule.source,
                                rule.target,
                                field.to
                            ),
                            message: format!(
                                "custom field {name:?} is not declared: add a [[custom_field]] for object {:?}",
                                rule.target
                            ),
                        });
                    }
                }
            }
        }
        if kind == "highlevel" && !self.custom_objects.is_empty() {
            return Err(MapError::Invalid {
                place: "custom_object".into(),
                message: "HighLevel custom objects are not supported by this tool".into(),
            });
        }
        Ok(())
    }
}
