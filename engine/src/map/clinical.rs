//! The derived clinical values: the clinical summary of each patient's latest
//! exam (classification, grade, BOP %, probing summary per sextant, sites
//! ≥ 5 mm, exam date) and the recall interval of the matching RecallRule.
//!
//! Built in one pass over the exam, site and recall tables ([`ClinicalIndex::add`]);
//! memory is a few dozen bytes per exam (sites are folded into per-exam
//! aggregates as they stream by), never the sites themselves.

use std::collections::HashMap;

use chrono::{DateTime, NaiveTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::format::ClinicalSource;
use crate::record::{SourceRecord, Value};

/// Sextants in Universal numbering: UR 1–5, UA 6–11, UL 12–16, LL 17–21, LA 22–27, LR 28–32.
pub const SEXTANTS: [(&str, u8, u8); 6] = [
    ("UR", 1, 5),
    ("UA", 6, 11),
    ("UL", 12, 16),
    ("LL", 17, 21),
    ("LA", 22, 27),
    ("LR", 28, 32),
];

/// The sextant of a tooth (Universal 1–32), if it is one.
pub fn sextant_of(tooth: i64) -> Option<usize> {
    SEXTANTS
        .iter()
        .position(|(_, first, last)| (*first as i64..=*last as i64).contains(&tooth))
}

/// What one exam contributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExamFacts {
    pub patient: String,
    pub date: Option<DateTime<Utc>>,
    pub classification: Option<String>,
    pub grade: Option<String>,
    pub bop_recorded: Option<Decimal>,
    /// Deepest probing depth per sextant, None where no site was charted.
    pub sextant_max: [Option<i64>; 6],
    pub sites_five_plus: u32,
    /// Sites with a probing depth.
    pub charted: u32,
    pub bleeding: u32,
}

impl ExamFacts {
    /// `UR 7 · UA 4 · UL 5 · LL 8 · LA 3 · LR 5`, sextants without a charted site left out.
    pub fn probing_summary(&self) -> Option<String> {
        let parts: Vec<String> = SEXTANTS
            .iter()
            .zip(self.sextant_max.iter())
            .filter_map(|((name, _, _), max)| max.map(|m| format!("{name} {m}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" · "))
    }

    /// BOP % as recorded, else bleeding ÷ charted sites (two decimals); None without charted sites.
    pub fn bop_percent(&self) -> Option<Decimal> {
        if let Some(recorded) = self.bop_recorded {
            return Some(recorded.normalize());
        }
        if self.charted == 0 {
            return None;
        }
        let pct = Decimal::from(self.bleeding) * Decimal::from(100) / Decimal::from(self.charted);
        Some(pct.round_dp(2).normalize())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct RecallRule {
    classification: Option<String>,
    interval_months: i64,
}

/// Exams, their site aggregates and the active recall rules, by key.
#[derive(Debug, Default)]
pub struct ClinicalIndex {
    source: ClinicalSource,
    exams: HashMap<String, ExamFacts>,
    /// Sites may stream before their exam: folded here, merged on read.
    orphan_sites: HashMap<String, ExamFacts>,
    latest: HashMap<String, String>,
    recall: Vec<RecallRule>,
}

fn text(record: &SourceRecord, column: &str) -> Option<String> {
    match record.get(column)? {
        Value::Null => None,
        Value::Text(s) if s.trim().is_empty() => None,
        Value::Text(s) => Some(s.trim().to_string()),
        other => Some(other.to_string()),
    }
}

fn int(record: &SourceRecord, column: &str) -> Option<i64> {
    match record.get(column)? {
        Value::Int(i) => Some(*i),
        Value::Decimal(d) => d.to_i64(),
        Value::Text(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

fn truthy(record: &SourceRecord, column: &str) -> bool {
    match record.get(column) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(i)) => *i != 0,
        Some(Value::Text(s)) => matches!(s.trim(), "1" | "true" | "True" | "Y" | "y"),
        _ => false,
    }
}

fn instant(record: &SourceRecord, column: &str) -> Option<DateTime<Utc>> {
    match record.get(column)? {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => Some(d.and_time(NaiveTime::MIN).and_utc()),
        Value::Text(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

fn decimal(record: &SourceRecord, column: &str) -> Option<Decimal> {
    match record.get(column)? {
        Value::Decimal(d) => Some(*d),
        Value::Int(i) => Some(Decimal::from(*i)),
        Value::Float(f) => Decimal::try_from(*f).ok(),
        Value::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ClinicalIndex {
    pub fn new(source: ClinicalSource) -> ClinicalIndex {
        ClinicalIndex {
            source,
            ..ClinicalIndex::default()
        }
    }

    /// The tables this index wants to see (exams, sites, recall rules).
    pub fn tables(&self) -> [&str; 3] {
        [
            &self.source.exam_table,
            &self.source.site_table,
            &self.source.recall_table,
        ]
    }

    /// Folds one row in; rows of other tables are ignored.
    pub fn add(&mut self, record: &SourceRecord) {
        let s = &self.source;
        if record.entity.eq_ignore_ascii_case(&s.exam_table) {
            let Some(exam) = text(record, &s.exam_id) else {
                return;
            };
            let Some(patient) = text(record, &s.exam_patient) else {
                return;
            };
            let mut facts = self.orphan_sites.remove(&exam).unwrap_or_default();
            facts.patient = patient.clone();
            facts.date = instant(record, &s.exam_date);
            facts.classification = text(record, &s.exam_classification);
            facts.grade = text(record, &s.exam_grade);
            facts.bop_recorded = decimal(record, &s.exam_bop);
            let newer = match self
                .latest
                .get(&patient)
                .and_then(|k| self.exams.get(k).map(|f| (k, f)))
            {
                None => true,
                // Latest by ExamDate; equal dates: the higher exam key (entered later).
                Some((key, current)) => {
                    (facts.date, exam_order(&exam)) > (current.date, exam_order(key))
                }
            };
            if newer {
                self.latest.insert(patient, exam.clone());
            }
            self.exams.insert(exam, facts);
        } else if record.entity.eq_ignore_ascii_case(&s.site_table) {
            let Some(exam) = text(record, &s.site_exam) else {
                return;
            };
            let tooth = int(record, &s.site_tooth);
            let depth = int(record, &s.site_depth);
            let bleeding = truthy(record, &s.site_bleeding);
            let facts = match self.exams.get_mut(&exam) {
                Some(f) => f,
                None => self.orphan_sites.entry(exam).or_default(),
            };
            if let Some(depth) = depth {
                facts.charted += 1;
                if bleeding {
                    facts.bleeding += 1;
                }
                if depth >= 5 {
                    facts.sites_five_plus += 1;
                }
                if let Some(sextant) = tooth.and_then(sextant_of) {
                    let slot = &mut facts.sextant_max[sextant];
                    *slot = Some(slot.map_or(depth, |m| m.max(depth)));
                }
            }
        } else if record.entity.eq_ignore_ascii_case(&s.recall_table) {
            if !truthy(record, &s.recall_active) {
                return;
            }
            if let Some(interval_months) = int(record, &s.recall_interval) {
                self.recall.push(RecallRule {
                    classification: text(record, &s.recall_classification),
                    interval_months,
                });
            }
        }
    }

    /// One exam's facts by exam key.
    pub fn exam(&self, exam: &str) -> Option<&ExamFacts> {
        self.exams.get(exam)
    }

    /// The patient's latest exam by ExamDate; None for a patient without exams.
    pub fn latest_exam(&self, patient: &str) -> Option<&ExamFacts> {
        self.latest.get(patient).and_then(|k| self.exams.get(k))
    }

    /// The interval of the active rule for this classification (a rule without
    /// classification applies when no specific one does).
    pub fn recall_interval(&self, classification: Option<&str>) -> Option<i64> {
        let specific = classification.and_then(|c| {
            self.recall.iter().find(|r| {
                r.classification
                    .as_deref()
                    .is_some_and(|rc| rc.eq_ignore_ascii_case(c))
            })
        });
        specific
            .or_else(|| self.recall.iter().find(|r| r.classification.is_none()))
            .map(|r| r.interval_months)
    }
}

/// Numeric keys compare as numbers (`9` < `10`), others as text.
fn exam_order(key: &str) -> (i64, String) {
    (key.parse::<i64>().unwrap_or(i64::MIN), key.to_string())
}
