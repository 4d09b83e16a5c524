//! The map file: its TOML form, its validation and its hash.
//!
//! A map is read from TOML into [`MapFile`], checked by [`MapFile::validate`]
//! (every error names the object rule and the field), and hashed from its
//! canonical form ([`MapFile::hash`]): BLAKE3 of the JSON encoding of the
//! parsed structure, so comments, spacing and key order in the file do not
//! change the hash, and any change of meaning does. See `docs/map-format.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ports::{FieldSpec, ObjectSpec, PipelineSpec, SchemaSpec};

/// The map format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A whole map: source entities to destination objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapFile {
    pub format: u32,
    /// `highlevel` or `twenty`.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the derived clinical values are read from.
    #[serde(default)]
    pub clinical: ClinicalSource,
    #[serde(default, rename = "object", skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectMap>,
    /// Custom objects the map writes (created by `schema apply`).
    #[serde(
        default,
        rename = "custom_object",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub custom_objects: Vec<ObjectSpec>,
    /// Custom fields the map writes (created by `schema apply`).
    #[serde(
        default,
        rename = "custom_field",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub custom_fields: Vec<FieldSpec>,
    /// Pipelines that must exist (HighLevel cannot create them over the API).
    #[serde(default, rename = "pipeline", skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<PipelineSpec>,
    /// Source tables and columns deliberately not moved as data, each with a reason.
    #[serde(
        default,
        rename = "not_migrated",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_migrated: Vec<NotMigrated>,
}

/// One rule: every row of `source` becomes one `target` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMap {
    /// Source entity (table) as the source names it.
    pub source: String,
    /// Destination object (`contact`, `person`, `perioExam`, `noteTarget`, …).
    pub target: String,
    /// Only rows where this column is not NULL (link records such as a contact's business).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_present: Option<String>,
    /// A rule that may fail alone: its blocking issues become flags and it is
    /// skipped, the record's other rules still move (a contact's business link).
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// How sure `map propose` was that `source` is the right table (absent in hand-written maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, rename = "field", skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldMap>,
}

/// Source column names: one, or several (concat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    One(String),
    Many(Vec<String>),
}

impl Columns {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Columns::One(c) => vec![c.as_str()],
            Columns::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }

    pub fn names_mut(&mut self) -> Vec<&mut String> {
        match self {
            Columns::One(c) => vec![c],
            Columns::Many(cs) => cs.iter_mut().collect(),
        }
    }
}

/// What a field rule does with its source value(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The value as it is (text as text, numbers as numbers, dates ISO 8601).
    #[default]
    Copy,
    /// Non-empty values of `from` joined with `separator` (default one space).
    Concat,
    /// A calendar date `YYYY-MM-DD` (from DATE, DATETIME2 or ISO text).
    Date,
    /// An instant `YYYY-MM-DDTHH:MM:SS.sssZ`.
    Datetime,
    /// A phone in E.164 under the cleaning region.
    Phone,
    /// A checked, normalised e-mail (duplicates per the cleaning policy).
    Email,
    /// Looked up in `values`; `default` when not listed (else a bad_value).
    Enum,
    /// Always `value`.
    Constant,
    /// The destination id of the record `from` refers to (`entity`, `object`), optionally `via` a hop.
    Lookup,
    /// A clinical value computed from the exams (`derive`).
    Derived,
    /// `template` with `{Column}` placeholders filled (NULL as empty).
    Template,
    /// A number (DECIMAL, INT, FLOAT or numeric text).
    Number,
    /// A BIT as true/false.
    Boolean,
}

/// A reference hop: `from` names a row of `entity`, whose `column` names the row looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Via {
    pub entity: String,
    pub column: String,
}

/// One destination field and where its value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// Destination field; dots nest (`name.firstName`, `customFields.BOP_Percentage`).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Columns>,
    #[serde(default, skip_serializing_if = "is_copy")]
    pub transform: Transform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// Enum table: source value → destination value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Number: multiply by this first (Twenty currency amounts are in micros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    /// Constant value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Lookup: the source entity referred to and the destination object it became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<Derived>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// An empty result quarantines the record (required_missing / orphan_reference).
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Phones: the value must be unique per target object (duplicates follow
    /// the cleaning duplicate policy, like e-mails): phone_duplicate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// A date that must not lie in the future (birth dates): future_date.
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_future: bool,
    /// Longest text the destination takes (characters): too_long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Set by `map propose`: how sure it is of this line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

fn is_copy(t: &Transform) -> bool {
    *t == Transform::Copy
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl FieldMap {
    /// A plain rename: `to` ← `from`.
    pub fn rename(to: &str, from: &str) -> FieldMap {
        FieldMap {
            to: to.into(),
            from: Some(Columns::One(from.into())),
            transform: Transform::Copy,
            separator: None,
            values: BTreeMap::new(),
            default: None,
            scale: None,
            value: None,
            entity: None,
            object: None,
            via: None,
            derive: None,
            template: None,
            required: false,
            unique: false,
            not_future: false,
            max_len: None,
            confidence: None,
        }
    }

    /// Source columns this rule reads (`from` and the template's placeholders).
    pub fn source_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .from
            .as_ref()
            .map(|c| c.names().into_iter().map(String::from).collect())
            .unwrap_or_default();
        if let Some(template) = &self.template {
            out.extend(template_columns(template));
        }
        out
    }
}

/// The `{Column}` placeholders of a template, in order.
pub fn template_columns(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push(after[..close].to_string());
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// The derived clinical values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Derived {
    /// Of the patient's latest exam by ExamDate (the row's key is the patient).
    LatestClassification,
    LatestGrade,
    LatestBopPercent,
    LatestProbingSummary,
    LatestSitesFiveMmPlus,
    LatestExamDate,
    /// From the active RecallRule matching the latest exam's classification.
    RecallIntervalMonths,
    /// Of this exam (the row's key is the exam).
    ExamBopPercent,
    ExamProbingSummary,
    ExamSitesFiveMmPlus,
}

/// Where the clinical index reads exams, sites and recall rules; reference names by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClinicalSource {
    pub exam_table: String,
    pub exam_id: String,
    pub exam_patient: String,
    pub exam_date: String,
    pub exam_classification: String,
    pub exam_grade: String,
    pub exam_bop: String,
    pub site_table: String,
    pub site_exam: String,
    pub site_tooth: String,
    pub site_depth: String,
    pub site_bleeding: String,
    pub recall_table: String,
    pub recall_classification: String,
    pub recall_interval: String,
    pub recall_active: String,
}

impl Default for ClinicalSource {
    fn default() -> Self {
        let s = |v: &str| v.to_string();
        ClinicalSource {
            exam_table: s("PerioExam"),
            exam_id: s("ExamID"),
            exam_patient: s("PatientID"),
            exam_date: s("ExamDate"),
            exam_classification: s("Classification"),
            exam_grade: s("Grade"),
            exam_bop: s("BOPPercent"),
            site_table: s("PerioExamSite"),
            site_exam: s("ExamID"),
            site_tooth: s("ToothNumber"),
            site_depth: s("ProbingDepth"),
            site_bleeding: s("Bleeding"),
            recall_table: s("RecallRule"),
            recall_classification: s("Classification"),
            recall_interval: s("IntervalMonths"),
            recall_active: s("IsActive"),
        }
    }
}

impl ClinicalSource {
    /// `(table, column)` pairs the clinical index reads.
    pub fn columns(&self) -> Vec<(&str, &str)> {
        vec![
            (&self.exam_table, &self.exam_id),
            (&self.exam_table, &self.exam_patient),
            (&self.exam_table, &self.exam_date),
            (&self.exam_table, &self.exam_classification),
            (&self.exam_table, &self.exam_grade),
            (&self.exam_table, &self.exam_bop),
            (&self.site_table, &self.site_exam),
            (&self.site_table, &self.site_tooth),
            (&self.site_table, &self.site_depth),
            (&self.site_table, &self.site_bleeding),
            (&self.recall_table, &self.recall_classification),
            (&self.recall_table, &self.recall_interval),
            (&self.recall_table, &self.recall_active),
        ]
        .into_iter()
        .map(|(t, c)| (t.as_str(), c.as_str()))
        .collect()
    }
}

/// A source table or column deliberately left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotMigrated {
    pub table: String,
    /// Absent: the whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
}

/// A map that cannot be used, with the place named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("map is not valid TOML: {0}")]
    Syntax(String),
    #[error("map {place}: {message}")]
    Invalid { place: String, message: String },
}

impl MapError {
    fn invalid(place: impl Into<String>, message: impl Into<String>) -> MapError {
        MapError::Invalid {
            place: place.into(),
            message: message.into(),
        }
    }
}

/// A 32-byte BLAKE3 of a map's canonical form.
pub type MapHash = [u8; 32];

impl MapFile {
    /// Parses and validates a map.
    pub fn from_toml(text: &str) -> Result<MapFile, MapError> {
        let map: MapFile = toml::from_str(text).map_err(|e| MapError::Syntax(e.to_string()))?;
        map.validate()?;
        Ok(map)
    }

    /// The TOML form (what `map propose --out` writes).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a map always serialises: no NULL constants")
    }

    /// The canonical bytes: the parsed structure as JSON, fields in declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a map always serialises")
    }

    /// BLAKE3 of [`Self::canonical_bytes`].
    pub fn hash(&self) -> MapHash {
        *blake3::hash(&self.canonical_bytes()).as_bytes()
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }

    /// Everything the map needs at the destination.
    pub fn schema(&self) -> SchemaSpec {
        SchemaSpec {
            objects: self.custom_objects.clone(),
            fields: self.custom_fields.clone(),
            pipelines: self.pipelines.clone(),
        }
    }

    /// The rules whose source is `entity` (case-insensitive, as sources name tables).
    pub fn rules_for<'a>(&'a self, entity: &'a str) -> impl Iterator<Item = &'a ObjectMap> + 'a {
        self.objects
            .iter()
            .filter(move |o| o.source.eq_ignore_ascii_case(entity))
    }

    /// The rules in dependency order: a rule comes after every rule whose
    /// records it looks up (`entity` + `object` of its lookups), so parents are
    /// written first (companies → people → plans, exams → notes, tasks, links).
    /// Rules in a cycle keep their file order after the rest (and their
    /// lookups of each other will be orphans, flagged or quarantined).
    pub fn plan_order(&self) -> Vec<&ObjectMap> {
        let n = self.objects.len();
        let provides = |i: usize, entity: &str, object: &str| {
            self.objects[i].source.eq_ignore_ascii_case(entity) && self.objects[i].target == object
        };
        let depends: Vec<Vec<usize>> = self
            .objects
            .iter()
            .enumerate()
            .map(|(me, rule)| {
                let mut deps = Vec::new();
                for field in rule
                    .fields
                    .iter()
                    .filter(|f| f.transform == Transform::Lookup)
                {
                    if let (Some(entity), Some(object)) = (&field.entity, &field.object) {
                        deps.extend((0..n).filter(|&i| i != me && provides(i, entity, object)));
                    }
                }
                deps
            })
            .collect();
        let mut placed = vec![false; n];
        let mut order = Vec::with_capacity(n);
        loop {
            let ready: Vec<usize> = (0..n)
                .filter(|&i| !placed[i] && depends[i].iter().all(|&d| placed[d]))
                .collect();
            if ready.is_empty() {
                break;
            }
            for i in ready {
                placed[i] = true;
                order.push(&self.objects[i]);
            }
        }
        order.extend((0..n).filter(|&i| !placed[i]).map(|i| &self.objects[i]));
        order
    }

    /// Checks the map's own consistency: format, transforms and their parameters,
    /// no two rules for the same (source, target), no two fields to the same place.
    pub fn validate(&self) -> Result<(), MapError> {
        if self.format != FORMAT_VERSION {
            return Err(MapError::invalid(
                "format",
                format!(
                    "version {} is not supported (this build reads {FORMAT_VERSION})",
                    self.format
                ),
            ));
        }
        if !["highlevel", "twenty"].contains(&self.destination.as_str()) {
            return Err(MapError::invalid(
                "destination",
                format!("{:?} is not highlevel or twenty", self.destination),
            ));
        }
        let mut pairs = std::collections::BTreeSet::new();
        for (i, rule) in self.objects.iter().enumerate() {
            let place = format!("object #{} ({} → {})", i + 1, rule.source, rule.target);
            if rule.source.trim().is_empty() || rule.target.trim().is_empty() {
                return Err(MapError::invalid(place, "source and target must be named"));
            }
            if !pairs.insert((rule.source.to_ascii_lowercase(), rule.target.clone())) {
                return Err(MapError::invalid(
                    place,
                    "a second rule for the same source and target would share idempotency keys",
                ));
            }
            let mut targets = std::collections::BTreeSet::new();
            for field in &rule.fields {
                let fplace = format!("{place} field {:?}", field.to);
                if field.to.is_empty() || field.to.split('.').any(str::is_empty) {
                    return Err(MapError::invalid(
                        fplace,
                        "`to` must be a field name or dotted path",
                    ));
                }
                if !targets.insert(field.to.as_str()) {
                    return Err(MapError::invalid(fplace, "written twice"));
                }
                validate_field(field).map_err(|m| MapError::invalid(&fplace, m))?;
            }
        }
        for (i, n) in self.not_migrated.iter().enumerate() {
            if n.reason.trim().is_empty() {
                return Err(MapError::invalid(
                    format!("not_migrated #{} ({})", i + 1, n.table),
                    "a reason is required",
                ));
            }
        }
        Ok(())
    }
}

fn validate_field(field: &FieldMap) -> Result<(), String> {
    let from_count = field.from.as_ref().map(|c| c.names().len()).unwrap_or(0);
    let needs_one = |what: &str| -> Result<(), String> {
        if from_count == 1 {
            Ok(())
        } else {
            Err(format!("transform {what} needs exactly one `from` column"))
        }
    };
    match field.transform {
        Transform::Copy
        | Transform::Date
        | Transform::Datetime
        | Transform::Phone
        | Transform::Email
        | Transform::Number
        | Transform::Boolean => needs_one(&format!("{:?}", field.transform).to_lowercase())?,
        Transform::Concat => {
            if from_count < 1 {
                return Err("transform concat needs `from` columns".into());
            }
        }
        Transform::Enum => {
            needs_one("enum")?;
            if field.values.is_empty() {
                return Err("transform enum needs a `values` table".into());
            }
        }
        Transform::Constant => match &field.value {
            None | Some(serde_json::Value::Null) => {
                return Err("transform constant needs a `value`".into())
            }
            Some(_) => {}
        },
        Transform::Lookup => {
            needs_one("lookup")?;
            if field.entity.is_none() || field.object.is_none() {
                return Err("transform lookup needs `entity` and `object`".into());
            }
        }
        Transform::Derived => {
            if field.derive.is_none() {
                return Err("transform derived needs `derive`".into());
            }
        }
        Transform::Template => {
            if field.template.is_none() {
                return Err("transform template needs `template`".into());
            }
        }
    }
    if field.template.is_some() && field.transform != Transform::Template {
        return Err("`template` is only for transform = \"template\"".into());
    }
    if field.derive.is_some() && field.transform != Transform::Derived {
        return Err("`derive` is only for transform = \"derived\"".into());
    }
    Ok(())
}
