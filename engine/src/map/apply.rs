//! Applying a map to source records: one [`WriteRequest`] per matching rule,
//! or the record quarantined with its reasons.
//!
//! References resolve through a [`Resolve`] — the engine backs it with the
//! ledger's source-key → destination-id index (`Ledger::dest_id`); tests and
//! small lookups use [`MemoryResolver`]. Cleaning (phones, e-mails and their
//! duplicates) runs inside the transforms through a [`Cleaner`].

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map as JsonMap, Value as Json};

use super::clinical::ClinicalIndex;
use super::format::{Derived, FieldMap, MapFile, ObjectMap, Transform};
use crate::clean::{check_length, Checked, Cleaner, Issue, ReasonCode, Severity};
use crate::ports::WriteRequest;
use crate::record::{SourceRecord, Value};

/// How references and hops are resolved.
pub trait Resolve {
    /// The destination id the source row `key` of `entity` became as `object`.
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String>;
    /// A column of another source row (for `via` hops, e.g. a dentist's practice).
    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value>;
}

/// A [`Resolve`] held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryResolver {
    ids: HashMap<(String, String, String), String>,
    rows: HashMap<(String, String, String), Value>,
}

impl MemoryResolver {
    pub fn insert_id(&mut self, entity: &str, key: &str, object: &str, dest_id: &str) {
        self.ids.insert(
            (entity.to_ascii_lowercase(), key.into(), object.into()),
            dest_id.into(),
        );
    }

    /// Keeps the columns of a row that hops read.
    pub fn insert_row(&mut self, record: &SourceRecord) {
        for (column, value) in &record.fields {
            self.rows.insert(
                (
                    record.entity.to_ascii_lowercase(),
                    record.key.0.clone(),
                    column.clone(),
                ),
                value.clone(),
            );
        }
    }
}

impl Resolve for MemoryResolver {
    fn dest_id(&self, entity: &str, key: &str, object: &str) -> Option<String> {
        self.ids
            .get(&(entity.to_ascii_lowercase(), key.into(), object.into()))
            .cloned()
    }

    fn source_value(&self, entity: &str, key: &str, column: &str) -> Option<Value> {
        self.rows
            .get(&(entity.to_ascii_lowercase(), key.into(), column.into()))
            .cloned()
    }
}

/// What applying needs besides the record.
pub struct ApplyContext<'a> {
    pub resolver: &'a dyn Resolve,
    pub clinical: &'a ClinicalIndex,
    /// "Today" for future-date checks (a parameter so tests and reruns are stable).
    pub today: NaiveDate,
}

/// The result for one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// The writes to make, with the flags raised on the way.
    Ready {
        requests: Vec<WriteRequest>,
        flags: Vec<Issue>,
    },
    /// Held back; `issues` has at least one blocking issue (flags included).
    Quarantined { issues: Vec<Issue> },
}

impl RecordOutcome {
    pub fn requests(&self) -> &[WriteRequest] {
        match self {
            RecordOutcome::Ready { requests, .. } => requests,
            RecordOutcome::Quarantined { .. } => &[],
        }
    }

    pub fn issues(&self) -> &[Issue] {
        match self {
            RecordOutcome::Ready { flags, .. } => flags,
            RecordOutcome::Quarantined { issues } => issues,
        }
    }
}

/// The idempotency key of a (target object, source entity, source key).
pub fn idempotency_key(target: &str, entity: &str, key: &str) -> String {
    format!("{target}:{entity}:{key}")
}

impl MapFile {
    /// Applies every rule whose source is the record's entity. A record with no
    /// rule gives no requests (its table is listed as not migrated or unmapped).
    pub fn apply(
        &self,
        record: &SourceRecord,
        ctx: &ApplyContext<'_>,
        cleaner: &mut Cleaner,
    ) -> RecordOutcome {
        self.apply_rules(record, ctx, cleaner, |_| true)
    }

    /// Applies only the rules `wanted` accepts: the run loop applies one target
    /// object at a time, in [`MapFile::plan_order`], so a record's later rules
    /// can look up what its earlier ones created (a contact, then its business link).
    pub fn apply_rules(
        &self,
        record: &SourceRecord,
        ctx: &ApplyContext<'_>,
        cleaner: &mut Cleaner,
        wanted: impl Fn(&ObjectMap) -> bool,
    ) -> RecordOutcome {
        let mut requests = Vec::new();
        let mut issues = Vec::new();
        for rule in self.rules_for(&record.entity).filter(|r| wanted(r)) {
            if let Some(column) = &rule.when_present {
                if absent(record.get(column)) {
                    continue;
                }
            }
            if let Some(body) = self.body(rule, record, ctx, cleaner, &mut issues) {
                let key = idempotency_key(&rule.target, &record.entity, record.key.as_str());
                requests.push(WriteRequest {
                    object: rule.target.clone(),
                    client_id: (self.destination == "twenty")
                        .then(|| WriteRequest::uuid_for_key(&key)),
                    idempotency_key: key,
                    entity: record.entity.clone(),
                    source_key: record.key.clone(),
                    body,
                });
            }
        }
        if issues.iter().any(|i| i.severity == Severity::Block) {
            RecordOutcome::Quarantined { issues }
        } else {
            RecordOutcome::Ready {
                requests,
                flags: issues,
            }
        }
    }

    fn body(
        &self,
        rule: &ObjectMap,
        record: &SourceRecord,
        ctx: &ApplyContext<'_>,
        cleaner: &mut Cleaner,
        issues: &mut Vec<Issue>,
    ) -> Option<JsonMap<String, Json>> {
        let mut body = JsonMap::new();
        let before = issues.len();
        for field in &rule.fields {
            let place = place(record, rule, field);
            let value = field_value(field, rule, record, ctx, cleaner, &place, issues);
            let value = match value {
                Some(Json::String(s)) => {
                    if let Some(limit) = field.max_len {
                        if let Some(issue) = check_length(&s, limit, &place) {
                            issues.push(issue);
                        }
                    }
                    Some(Json::String(s))
                }
                other => other,
            };
            match value {
                Some(v) => insert_path(&mut body, &field.to, v),
                None if field.required => {
                    let already = issues[before..].iter().any(|i| i.place == place);
                    if !already {
                        issues.push(Issue::new(
                            ReasonCode::RequiredMissing,
                            Severity::Block,
                            place,
                        ));
                    }
                }
                None => {}
            }
        }
        let blocked = issues[before..]
            .iter()
            .any(|i| i.severity == Severity::Block);
        if blocked && rule.optional {
            for issue in &mut issues[before..] {
                issue.severity = Severity::Flag;
            }
            return None;
        }
        (!blocked).then_some(body)
    }
}

fn place(record: &SourceRecord, rule: &ObjectMap, field: &FieldMap) -> String {
    let columns = field.source_columns();
    let from = if columns.is_empty() {
        match field.derive {
            Some(d) => format!(
                "derived {}",
                serde_json::to_value(d)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            ),
            None => "constant".to_string(),
        }
    } else {
        format!("{}.{}", record.entity, columns.join("+"))
    };
    format!("{from} → {}.{}", rule.target, field.to)
}

fn absent(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Text(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn one<'r>(field: &FieldMap, record: &'r SourceRecord) -> Option<&'r Value> {
    let column = field.from.as_ref()?.names().into_iter().next()?;
    let value = record.get(column)?;
    (!absent(Some(value))).then_some(value)
}

fn decimal_json(d: Decimal) -> Json {
    let d = d.normalize();
    if d.scale() == 0 {
        if let Some(i) = d.to_i64() {
            return json!(i);
        }
    }
    d.to_f64().map(|f| json!(f)).unwrap_or(Json::Null)
}

fn instant_text(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn plain(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Decimal(d) => decimal_json(*d),
        Value::Float(f) => json!(f),
        Value::Text(s) => json!(s.trim()),
        Value::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(t) => json!(instant_text(t)),
        Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn as_date(value: &Value) -> Option<NaiveDate> {
    match value {
        Value::Date(d) => Some(*d),
        Value::DateTime(t) => Some(t.date_naive()),
        Value::Text(s) => {
            let s = s.trim();
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))
        }
        _ => None,
    }
}

fn as_instant(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => Some(d.and_time(NaiveTime::MIN).and_utc()),
        Value::Text(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

fn bad(place: &str, issues: &mut Vec<Issue>) -> Option<Json> {
    issues.push(Issue::new(ReasonCode::BadValue, Severity::Block, place));
    None
}

fn field_value(
    field: &FieldMap,
    rule: &ObjectMap,
    record: &SourceRecord,
    ctx: &ApplyContext<'_>,
    cleaner: &mut Cleaner,
    place: &str,
    issues: &mut Vec<Issue>,
) -> Option<Json> {
    match field.transform {
        Transform::Copy => one(field, record).map(plain),
        Transform::Concat => {
            let separator = field.separator.as_deref().unwrap_or(" ");
            let parts: Vec<String> = field
                .from
                .as_ref()?
                .names()
                .into_iter()
                .filter_map(|c| record.get(c))
                .filter(|v| !absent(Some(v)))
                .map(|v| v.to_string().trim().to_string())
                .collect();
            (!parts.is_empty()).then(|| json!(parts.join(separator)))
        }
        Transform::Date => {
            let value = one(field, record)?;
            let Some(date) = as_date(value) else {
                return bad(place, issues);
            };
            if field.not_future && date > ctx.today {
                issues.push(Issue::new(ReasonCode::FutureDate, Severity::Block, place));
                return None;
            }
            Some(json!(date.format("%Y-%m-%d").to_string()))
        }
        Transform::Datetime => {
            let value = one(field, record)?;
            match as_instant(value) {
                Some(t) => {
                    if field.not_future && t.date_naive() > ctx.today {
                        issues.push(Issue::new(ReasonCode::FutureDate, Severity::Block, place));
                        return None;
                    }
                    Some(json!(instant_text(&t)))
                }
                None => bad(place, issues),
            }
        }
        Transform::Phone | Transform::Email => {
            let raw = one(field, record)?.to_string();
            let checked = if field.transform == Transform::Phone && field.unique {
                cleaner.unique_phone(&raw, &rule.target, place)
            } else if field.transform == Transform::Phone {
                cleaner.phone(&raw, place)
            } else {
                cleaner.email(&raw, &rule.target, place)
            };
            match checked {
                Checked::Keep(v, flags) => {
                    issues.extend(flags);
                    Some(json!(v))
                }
                Checked::Drop(issue) | Checked::Block(issue) => {
                    issues.push(issue);
                    None
                }
            }
        }
        Transform::Enum => {
            let raw = one(field, record)?.to_string();
            let raw = raw.trim();
            let mapped = field.values.get(raw).or_else(|| {
                field
                    .values
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(raw))
                    .map(|(_, v)| v)
            });
            match mapped.or(field.default.as_ref()) {
                Some(v) => Some(v.clone()),
                None => bad(place, issues),
            }
        }
        Transform::Constant => field.value.clone(),
        Transform::Lookup => {
            let mut key = one(field, record)?.to_string();
            let severity = if field.required {
                Severity::Block
            } else {
                Severity::Flag
            };
            if let Some(via) = &field.via {
                match ctx.resolver.source_value(&via.entity, &key, &via.column) {
                    Some(v) if !absent(Some(&v)) => key = v.to_string(),
                    // The intermediate row exists but points nowhere: no reference, not an orphan.
                    Some(_) => return None,
                    None => {
                        issues.push(Issue::new(ReasonCode::OrphanReference, severity, place));
                        return None;
                    }
                }
            }
            let entity = field.entity.as_deref()?;
            let object = field.object.as_deref()?;
            match ctx.resolver.dest_id(entity, &key, object) {
                Some(id) => Some(json!(id)),
                None => {
                    issues.push(Issue::new(ReasonCode::OrphanReference, severity, place));
                    None
                }
            }
        }
        Transform::Derived => derived(field.derive?, record, ctx),
        Transform::Template => {
            let template = field.template.as_deref()?;
            let mut out = template.to_string();
            let placeholders = super::format::template_columns(template);
            let all_empty = !placeholders.is_empty()
                && placeholders
                    .iter()
                    .all(|c| record.get(c).is_none_or(|v| absent(Some(v))));
            if all_empty {
                // Nothing from the source: no field, rather than a bare label.
                return None;
            }
            for column in placeholders {
                let text = record
                    .get(&column)
                    .filter(|v| !absent(Some(v)))
                    .map(|v| match v {
                        Value::DateTime(t) => t.format("%Y-%m-%d %H:%M").to_string(),
                        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
                        other => other.to_string().trim().to_string(),
                    })
                    .unwrap_or_default();
                out = out.replace(&format!("{{{column}}}"), &text);
            }
            let out = out.trim().to_string();
            (!out.is_empty()).then(|| json!(out))
        }
        Transform::Number => {
            let number = match one(field, record)? {
                Value::Int(i) => Decimal::from(*i),
                Value::Decimal(d) => *d,
                Value::Float(f) => match Decimal::try_from(*f) {
                    Ok(d) => d,
                    Err(_) => return bad(place, issues),
                },
                Value::Text(s) => match s.trim().parse::<Decimal>() {
                    Ok(d) => d,
                    Err(_) => return bad(place, issues),
                },
                _ => return bad(place, issues),
            };
            let scaled = match field.scale {
                Some(factor) => number.checked_mul(Decimal::from(factor)),
                None => Some(number),
            };
            match scaled {
                Some(d) => Some(decimal_json(d)),
                None => bad(place, issues),
            }
        }
        Transform::Boolean => match one(field, record)? {
            Value::Bool(b) => Some(json!(b)),
            Value::Int(i) => Some(json!(*i != 0)),
            _ => bad(place, issues),
        },
    }
}

fn derived(which: Derived, record: &SourceRecord, ctx: &ApplyContext<'_>) -> Option<Json> {
    let key = record.key.as_str();
    let clinical = ctx.clinical;
    match which {
        Derived::ExamBopPercent => clinical.exam(key)?.bop_percent().map(decimal_json),
        Derived::ExamProbingSummary => clinical.exam(key)?.probing_summary().map(|s| json!(s)),
        Derived::ExamSitesFiveMmPlus => {
            let exam = clinical.exam(key)?;
            (exam.charted > 0).then(|| json!(exam.sites_five_plus))
        }
        _ => {
            let latest = clinical.latest_exam(key)?;
            match which {
                Derived::LatestClassification => latest.classification.clone().map(Json::String),
                Derived::LatestGrade => latest.grade.clone().map(Json::String),
                Derived::LatestBopPercent => latest.bop_percent().map(decimal_json),
                Derived::LatestProbingSummary => latest.probing_summary().map(Json::String),
                Derived::LatestSitesFiveMmPlus => {
                    (latest.charted > 0).then(|| json!(latest.sites_five_plus))
                }
                Derived::LatestExamDate => latest
                    .date
                    .map(|d| json!(d.date_naive().format("%Y-%m-%d").to_string())),
                Derived::RecallIntervalMonths => clinical
                    .recall_interval(latest.classification.as_deref())
                    .map(|m| json!(m)),
                _ => None,
            }
        }
    }
}

/// Sets `path` (dot-separated) in `body`, creating nested objects.
fn insert_path(body: &mut JsonMap<String, Json>, path: &str, value: Json) {
    let mut parts = path.split('.').peekable();
    let mut current = body;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let next = current
            .entry(part.to_string())
            .or_insert_with(|| Json::Object(JsonMap::new()));
        if !next.is_object() {
            *next = Json::Object(JsonMap::new());
        }
        current = next.as_object_mut().expect("just made an object");
    }
}
