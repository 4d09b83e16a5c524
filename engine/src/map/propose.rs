//! `map propose`: the default map rebound to whatever a source calls its
//! tables and columns (`tblPatient`, `pt_fname`, `cell_ph`, …).
//!
//! Tables are matched on name similarity (after synonyms and prefixes like
//! `tbl`) and on how many of their columns match; columns on name similarity,
//! type compatibility and sampled values (an e-mail column holds e-mails). Every
//! proposed line carries a confidence. Nothing is dropped silently: discovered
//! tables and columns the proposal could not place are listed as unmapped and
//! written into the map's `not_migrated` list for review, and default-map lines
//! whose source could not be found are listed as missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::format::{template_columns, MapFile, NotMigrated};
use crate::record::{Inventory, SourceRecord, TableInfo, Value};

/// Below this a table or column is not matched.
pub const MATCH_THRESHOLD: f64 = 0.55;

/// One proposed line: a source column (or derived value) to a destination field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalLine {
    pub source_table: String,
    /// The source columns read (empty for constants and derived values).
    pub source_columns: Vec<String>,
    pub target_object: String,
    pub target_field: String,
    pub transform: String,
    pub confidence: f64,
}

/// A discovered table or column that the proposal does not move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmapped {
    pub table: String,
    /// Absent: the whole table.
    pub column: Option<String>,
    pub reason: String,
}

/// A default-map line the source could not serve (its table or column was not found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub reference_table: String,
    pub reference_column: Option<String>,
    pub consequence: String,
}

/// A proposed map and what it says about each line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub map: MapFile,
    /// Reference table → (discovered table, confidence).
    pub tables: BTreeMap<String, (String, f64)>,
    pub lines: Vec<ProposalLine>,
    pub unmapped: Vec<Unmapped>,
    pub missing: Vec<Missing>,
}

const PREFIXES: &[&str] = &["tbl", "tb", "t", "dbo", "panda", "pp"];

/// Abbreviations and synonyms seen across installs, to the reference vocabulary.
const SYNONYMS: &[(&str, &str)] = &[
    ("pt", "patient"),
    ("pat", "patient"),
    ("patients", "patient"),
    ("client", "patient"),
    ("fname", "first name"),
    ("lname", "last name"),
    ("mname", "middle name"),
    ("first", "first"),
    ("given", "first"),
    ("surname", "last name"),
    ("family", "last"),
    ("nickname", "preferred name"),
    ("dob", "date of birth"),
    ("birthdate", "date of birth"),
    ("birth", "birth"),
    ("bday", "date of birth"),
    ("sex", "gender"),
    ("mail", "email"),
    ("e", "e"),
    ("cell", "mobile"),
    ("cellular", "mobile"),
    ("mob", "mobile"),
    ("ph", "phone"),
    ("tel", "phone"),
    ("telephone", "phone"),
    ("phn", "phone"),
    ("addr", "address"),
    ("add", "address"),
    ("street", "address"),
    ("zipcode", "zip"),
    ("postal", "zip"),
    ("postcode", "zip"),
    ("st", "state"),
    ("prov", "provider"),
    ("doc", "provider"),
    ("doctor", "provider"),
    ("dr", "dentist"),
    ("ref", "referring"),
    ("referral", "referring"),
    ("refdr", "referring dentist"),
    ("ins", "ins"),
    ("insurance", "ins"),
    ("pri", "primary"),
    ("prim", "primary"),
    ("sec", "secondary"),
    ("grp", "group"),
    ("pol", "policy"),
    ("num", "number"),
    ("no", "number"),
    ("nbr", "number"),
    ("pct", "pct"),
    ("percent", "pct"),
    ("appt", "appointment"),
    ("appts", "appointment"),
    ("visit", "appointment"),
    ("tx", "treatment"),
    ("txplan", "treatment plan"),
    ("plan", "plan"),
    ("exam", "exam"),
    ("chart", "chart"),
    ("dt", "date"),
    ("created", "created"),
    ("modified", "modified"),
    ("updated", "modified"),
    ("upd", "modified"),
    ("crt", "created"),
    ("notes", "notes"),
    ("note", "note"),
    ("id", "id"),
    ("key", "id"),
    ("active", "active"),
];

/// Splits `pt_fname`, `FirstName`, `cell-ph` into tokens, lower-cased.
fn tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let boundary = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase()
                || (chars.get(i + 1).is_some_and(|n| n.is_lowercase())
                    && chars[i - 1].is_uppercase()));
        if boundary && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The name in the reference vocabulary: tokens through the synonyms, joined.
fn canonical(name: &str, strip_prefix: bool) -> String {
    let mut toks = tokens(name);
    if strip_prefix && toks.len() > 1 && PREFIXES.contains(&toks[0].as_str()) {
        toks.remove(0);
    }
    toks.iter()
        .map(|t| {
            SYNONYMS
                .iter()
                .find(|(from, _)| from == t)
                .map(|(_, to)| to.to_string())
                .unwrap_or_else(|| t.clone())
        })
        .collect::<Vec<_>>()
        .join(" ")
        .split(' ')
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("")
}

fn name_similarity(a: &str, b: &str, strip: bool) -> f64 {
    let (a, b) = (canonical(a, strip), canonical(b, strip));
    if a == b {
        return 1.0;
    }
    strsim::jaro_winkler(&a, &b).max(strsim::normalized_levenshtein(&a, &b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeClass {
    Int,
    Number,
    Date,
    DateTime,
    Bool,
    Text,
    Bytes,
    Unknown,
}

fn type_class(sql_type: &str) -> TypeClass {
    let t = sql_type.to_ascii_uppercase();
    let name = t.split('(').next().unwrap_or("").trim();
    match name {
        "INT" | "INTEGER" | "TINYINT" | "SMALLINT" | "BIGINT" => TypeClass::Int,
        "DECIMAL" | "NUMERIC" | "MONEY" | "SMALLMONEY" | "FLOAT" | "REAL" => TypeClass::Number,
        "DATE" => TypeClass::Date,
        "DATETIME" | "DATETIME2" | "SMALLDATETIME" | "DATETIMEOFFSET" => TypeClass::DateTime,
        "BIT" => TypeClass::Bool,
        "CHAR" | "VARCHAR" | "NCHAR" | "NVARCHAR" | "TEXT" | "NTEXT" => TypeClass::Text,
        "VARBINARY" | "BINARY" | "IMAGE" => TypeClass::Bytes,
        _ => TypeClass::Unknown,
    }
}

fn type_compat(a: TypeClass, b: TypeClass) -> f64 {
    use TypeClass::*;
    match (a, b) {
        _ if a == b => 1.0,
        (Unknown, _) | (_, Unknown) => 0.6,
        (Int, Number) | (Number, Int) | (Int, Bool) | (Bool, Int) => 0.7,
        (Date, DateTime) | (DateTime, Date) => 0.8,
        (Text, _) | (_, Text) => 0.4,
        _ => 0.1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Email,
    Phone,
    Other,
}

fn expected_kind(reference_column: &str) -> ValueKind {
    let lower = reference_column.to_ascii_lowercase();
    if lower.contains("email") {
        ValueKind::Email
    } else if lower.contains("phone") {
        ValueKind::Phone
    } else {
        ValueKind::Other
    }
}

fn looks_like(kind: ValueKind, text: &str) -> bool {
    match kind {
        ValueKind::Email => {
            let t = text.trim();
            t.contains('@') && t.rsplit('@').next().is_some_and(|d| d.contains('.'))
        }
        ValueKind::Phone => {
            let digits = text.chars().filter(char::is_ascii_digit).count();
            let letters = text.chars().filter(|c| c.is_alphabetic()).count();
            digits >= 7 && letters <= 4
        }
        ValueKind::Other => false,
    }
}

/// Share of non-empty sampled values of `column` that look like `kind` (None: no samples).
fn sample_share(samples: &[SourceRecord], column: &str, kind: ValueKind) -> Option<f64> {
    let texts: Vec<&str> = samples
        .iter()
        .filter_map(|r| match r.get(column) {
            Some(Value::Text(s)) if !s.trim().is_empty() => Some(s.as_str()),
            _ => None,
        })
        .collect();
    if texts.is_empty() {
        return None;
    }
    Some(texts.iter().filter(|t| looks_like(kind, t)).count() as f64 / texts.len() as f64)
}

fn column_score(
    reference: &crate::record::ColumnInfo,
    discovered: &crate::record::ColumnInfo,
    samples: &[SourceRecord],
) -> f64 {
    let name = name_similarity(&reference.name, &discovered.name, false);
    let types = type_compat(
        type_class(&reference.sql_type),
        type_class(&discovered.sql_type),
    );
    let mut score = 0.75 * name + 0.25 * types;
    let kind = expected_kind(&reference.name);
    if kind != ValueKind::Other {
        match sample_share(samples, &discovered.name, kind) {
            Some(share) if share >= 0.5 => score += 0.15 * share,
            Some(_) => score -= 0.2,
            None => {}
        }
    } else if [ValueKind::Email, ValueKind::Phone]
        .iter()
        .any(|k| sample_share(samples, &discovered.name, *k).is_some_and(|s| s >= 0.8))
        && types >= 0.99
        && name < 0.9
    {
        // A column full of e-mails or phones is not some other text column.
        score -= 0.15;
    }
    score.clamp(0.0, 1.0)
}

/// Greedy best-first assignment of reference columns to discovered columns.
fn match_columns(
    reference: &TableInfo,
    discovered: &TableInfo,
    samples: &[SourceRecord],
) -> HashMap<String, (String, f64)> {
    let mut candidates = Vec::new();
    for r in &reference.columns {
        for d in &discovered.columns {
            let score = column_score(r, d, samples);
            if score >= MATCH_THRESHOLD {
                candidates.push((score, r.name.clone(), d.name.clone()));
            }
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut used_ref = BTreeSet::new();
    let mut used_disc = BTreeSet::new();
    let mut out = HashMap::new();
    for (score, r, d) in candidates {
        if used_ref.contains(&r) || used_disc.contains(&d) {
            continue;
        }
        used_ref.insert(r.clone());
        used_disc.insert(d.clone());
        out.insert(r, (d, (score * 100.0).round() / 100.0));
    }
    out
}

fn table_score(reference: &TableInfo, discovered: &TableInfo, samples: &[SourceRecord]) -> f64 {
    let name = name_similarity(&reference.name, &discovered.name, true);
    let matched = match_columns(reference, discovered, samples);
    let overlap = if reference.columns.is_empty() {
        0.0
    } else {
        matched.len() as f64 / reference.columns.len() as f64
    };
    let extra = if discovered.columns.is_empty() {
        0.0
    } else {
        matched.len() as f64 / discovered.columns.len() as f64
    };
    0.45 * name + 0.4 * overlap + 0.15 * extra
}

/// Proposes a map for `discovered`, starting from `default` (written against
/// `reference`, the reference schema's inventory). `samples` holds a few rows
/// per discovered table (by table name) for value-based evidence.
pub fn propose(
    discovered: &Inventory,
    reference: &Inventory,
    samples: &HashMap<String, Vec<SourceRecord>>,
    default: &MapFile,
) -> Proposal {
    let no_samples = Vec::new();
    let samples_of = |table: &str| samples.get(table).unwrap_or(&no_samples);

    // Tables: best pairs first.
    let mut pairs = Vec::new();
    for r in &reference.tables {
        for d in &discovered.tables {
            let score = table_score(r, d, samples_of(&d.name));
            if score >= MATCH_THRESHOLD {
                pairs.push((score, r.name.clone(), d.name.clone()));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut tables: BTreeMap<String, (String, f64)> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for (score, r, d) in pairs {
        if tables.contains_key(&r) || taken.contains(&d) {
            continue;
        }
        taken.insert(d.clone());
        tables.insert(r, (d, (score.min(1.0) * 100.0).round() / 100.0));
    }

    // Columns within matched tables.
    let mut columns: HashMap<String, HashMap<String, (String, f64)>> = HashMap::new();
    for (r, (d, _)) in &tables {
        if let (Some(rt), Some(dt)) = (reference.table(r), discovered.table(d)) {
            columns.insert(r.to_ascii_lowercase(), match_columns(rt, dt, samples_of(d)));
        }
    }
    let table_of = |r: &str| {
        tables.get(r).or_else(|| {
            tables
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(r))
                .map(|(_, v)| v)
        })
    };
    let column_of = |table: &str, column: &str| -> Option<(String, f64)> {
        columns
            .get(&table.to_ascii_lowercase())?
            .get(column)
            .cloned()
    };

    let mut map = default.clone();
    map.description = Some(format!(
        "Proposed by `cutover map propose` from the {} default map; review every line, then `cutover map confirm`.",
        default.destination
    ));
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();

    let mut objects = Vec::new();
    for rule in &default.objects {
        let Some((table, table_conf)) = table_of(&rule.source).cloned() else {
            missing.push(Missing {
                reference_table: rule.source.clone(),
                reference_column: None,
                consequence: format!(
                    "no table found: {} → {} is not proposed",
                    rule.source, rule.target
                ),
            });
            continue;
        };
        let mut rule = rule.clone();
        let reference_source = std::mem::replace(&mut rule.source, table.clone());
        rule.confidence = Some(table_conf);
        if let Some(column) = rule.when_present.clone() {
            match column_of(&reference_source, &column) {
                Some((c, _)) => rule.when_present = Some(c),
                None => {
                    missing.push(Missing {
                        reference_table: reference_source.clone(),
                        reference_column: Some(column),
                        consequence: format!(
                            "{} → {} is not proposed",
                            reference_source, rule.target
                        ),
                    });
                    continue;
                }
            }
        }
        let mut fields = Vec::new();
        'field: for mut field in rule.fields.clone() {
            let mut confidence = table_conf;
            let mut read = Vec::new();
            let wanted = field.source_columns();
            let mut renames = HashMap::new();
            for column in &wanted {
                match column_of(&reference_source, column) {
                    Some((c, conf)) => {
                        confidence = confidence.min(conf);
                        renames.insert(column.clone(), c.clone());
                        read.push(c);
                    }
                    None => {
                        missing.push(Missing {
                            reference_table: reference_source.clone(),
                            reference_column: Some(column.clone()),
                            consequence: format!("{}.{} is not written", rule.target, field.to),
                        });
                        continue 'field;
                    }
                }
            }
            if let Some(from) = field.from.as_mut() {
                for name in from.names_mut() {
                    *name = renames[name.as_str()].clone();
                }
            }
            if let Some(template) = field.template.as_mut() {
                for column in template_columns(&template.clone()) {
                    *template = template.replace(
                        &format!("{{{column}}}"),
                        &format!("{{{}}}", renames[&column]),
                    );
                }
            }
            if let Some(via) = field.via.as_mut() {
                match (
                    table_of(&via.entity).cloned(),
                    column_of(&via.entity, &via.column),
                ) {
                    (Some((t, _)), Some((c, conf))) => {
                        confidence = confidence.min(conf);
                        via.entity = t;
                        via.column = c;
                    }
                    _ => {
                        missing.push(Missing {
                            reference_table: via.entity.clone(),
                            reference_column: Some(via.column.clone()),
                            consequence: format!("{}.{} is not written", rule.target, field.to),
                        });
                        continue 'field;
                    }
                }
            }
            if let Some(entity) = field.entity.as_mut() {
                match table_of(entity) {
                    Some((t, _)) => *entity = t.clone(),
                    None => {
                        missing.push(Missing {
                            reference_table: entity.clone(),
                            reference_column: None,
                            consequence: format!(
                                "{}.{} (a reference) is not written",
                                rule.target, field.to
                            ),
                        });
                        continue 'field;
                    }
                }
            }
            for c in &read {
                used.insert((table.to_ascii_lowercase(), c.clone()));
            }
            let confidence = (confidence * 100.0).round() / 100.0;
            field.confidence = Some(confidence);
            lines.push(ProposalLine {
                source_table: table.clone(),
                source_columns: read,
                target_object: rule.target.clone(),
                target_field: field.to.clone(),
                transform: serde_json::to_value(field.transform)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                confidence,
            });
            fields.push(field);
        }
        rule.fields = fields;
        objects.push(rule);
    }
    map.objects = objects;

    // The clinical index's columns.
    let mut clinical = default.clinical.clone();
    {
        let c = &mut clinical;
        let mut rebind = |table: &mut String, cols: Vec<&mut String>| {
            let reference_table = table.clone();
            if let Some((t, _)) = table_of(&reference_table) {
                *table = t.clone();
            }
            for col in cols {
                if let Some((d, _)) = column_of(&reference_table, col) {
                    used.insert((table.to_ascii_lowercase(), d.clone()));
                    *col = d;
                } else {
                    missing.push(Missing {
                        reference_table: reference_table.clone(),
                        reference_column: Some(col.clone()),
                        consequence: "a derived clinical value may be missing".into(),
                    });
                }
            }
        };
        rebind(
            &mut c.exam_table,
            vec![
                &mut c.exam_id,
                &mut c.exam_patient,
                &mut c.exam_date,
                &mut c.exam_classification,
                &mut c.exam_grade,
                &mut c.exam_bop,
            ],
        );
        rebind(
            &mut c.site_table,
            vec![
                &mut c.site_exam,
                &mut c.site_tooth,
                &mut c.site_depth,
                &mut c.site_bleeding,
            ],
        );
        rebind(
            &mut c.recall_table,
            vec![
                &mut c.recall_classification,
                &mut c.recall_interval,
                &mut c.recall_active,
            ],
        );
    }
    map.clinical = clinical;

    // Deliberate omissions carry over, renamed.
    let mut not_migrated = Vec::new();
    for n in &default.not_migrated {
        let Some((table, _)) = table_of(&n.table).cloned() else {
            continue;
        };
        match &n.column {
            None => {
                for column in discovered
                    .table(&table)
                    .map(|t| t.columns.clone())
                    .unwrap_or_default()
                {
                    used.insert((table.to_ascii_lowercase(), column.name));
                }
                not_migrated.push(NotMigrated {
                    table,
                    column: None,
                    reason: n.reason.clone(),
                });
            }
            Some(column) => {
                if let Some((c, _)) = column_of(&n.table, column) {
                    used.insert((table.to_ascii_lowercase(), c.clone()));
                    not_migrated.push(NotMigrated {
                        table,
                        column: Some(c),
                        reason: n.reason.clone(),
                    });
                }
            }
        }
    }

    // Everything discovered and not placed: listed, never silently left behind.
    let mut unmapped = Vec::new();
    for t in &discovered.tables {
        if !taken.contains(&t.name) {
            unmapped.push(Unmapped {
                table: t.name.clone(),
                column: None,
                reason: "no reference table matched; review and map by hand".into(),
            });
            continue;
        }
        for c in &t.columns {
            if !used.contains(&(t.name.to_ascii_lowercase(), c.name.clone())) {
                unmapped.push(Unmapped {
                    table: t.name.clone(),
                    column: Some(c.name.clone()),
                    reason: "no reference column matched; review and map by hand".into(),
                });
            }
        }
    }
    for u in &unmapped {
        not_migrated.push(NotMigrated {
            table: u.table.clone(),
            column: u.column.clone(),
            reason: format!("unmapped by map propose: {}", u.reason),
        });
    }
    map.not_migrated = not_migrated;

    Proposal {
        map,
        tables,
        lines,
        unmapped,
        missing,
    }
}
