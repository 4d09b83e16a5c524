//! Field-level diff reports (the sample's): one row per field of each record
//! written, with the source value, the value sent and the value the destination
//! holds, and a verdict; written as CSV ([`write_csv`]) and as one
//! self-contained HTML page ([`write_html`]: inline CSS and script, no external
//! URL of any kind, sortable, filterable by object and verdict).
//!
//! The values are patient data: they go into these files only, never into logs
//! or errors.

mod html;

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

pub use html::write_html;

/// What a field's comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The destination holds exactly what was sent.
    Match,
    /// Equal after the comparison's normalisation (numbers as numbers, surrounding
    /// whitespace; the connector's read-back already normalises phones and dates).
    Normalised,
    /// The destination holds another value.
    Differs,
    /// Sent, but the destination holds nothing there (or the record is gone).
    MissingAtDestination,
    /// The source has a value the map's cleaning left out of the body (a dropped
    /// duplicate e-mail, an invalid value under the drop-field policy).
    NotSent,
    /// The record did not move: held back with its reasons.
    Quarantined,
    /// The record's write failed or is unresolved (the note says which).
    NotWritten,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Normalised => "normalised",
            Verdict::Differs => "differs",
            Verdict::MissingAtDestination => "missing at destination",
            Verdict::NotSent => "not sent",
            Verdict::Quarantined => "quarantined",
            Verdict::NotWritten => "not written",
        }
    }

    /// A mismatch between what was sent and what the destination holds.
    pub fn is_mismatch(self) -> bool {
        matches!(self, Verdict::Differs | Verdict::MissingAtDestination)
    }

    pub const ALL: [Verdict; 7] = [
        Verdict::Match,
        Verdict::Normalised,
        Verdict::Differs,
        Verdict::MissingAtDestination,
        Verdict::NotSent,
        Verdict::Quarantined,
        Verdict::NotWritten,
    ];
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffRow {
    /// Destination object (`contact`, `person`, `task`, …).
    pub object: String,
    /// Source entity and key.
    pub entity: String,
    pub key: String,
    /// Destination id ("" when the record did not move).
    pub dest_id: String,
    /// Destination field path (`customFields.Chart_Number`); "" for a whole-record line.
    pub field: String,
    /// The source column(s) the map line reads (`FirstName`, `Address1+City`).
    pub source_columns: String,
    pub source_value: String,
    pub sent_value: String,
    pub dest_value: String,
    pub verdict: Verdict,
    /// Quarantine reasons, failure kind, why the patient was sampled.
    pub note: String,
}

/// The CSV columns, in order.
pub const COLUMNS: [&str; 11] = [
    "object",
    "entity",
    "key",
    "dest_id",
    "field",
    "source_columns",
    "source_value",
    "sent_value",
    "dest_value",
    "verdict",
    "note",
];

impl DiffRow {
    fn cells(&self) -> [&str; 11] {
        [
            &self.object,
            &self.entity,
            &self.key,
            &self.dest_id,
            &self.field,
            &self.source_columns,
            &self.source_value,
            &self.sent_value,
            &self.dest_value,
            self.verdict.as_str(),
            &self.note,
        ]
    }
}

/// Records and field verdicts of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectSummary {
    pub object: String,
    /// Distinct source records with a line.
    pub records: u64,
    /// Lines per verdict (`match`, `normalised`, …).
    pub verdicts: BTreeMap<String, u64>,
}

/// Per object, in name order.
pub fn summarise(rows: &[DiffRow]) -> Vec<ObjectSummary> {
    type Records<'r> = std::collections::HashSet<(&'r str, &'r str)>;
    let mut by: BTreeMap<&str, (Records<'_>, BTreeMap<String, u64>)> = BTreeMap::new();
    for row in rows {
        let (records, verdicts) = by.entry(&row.object).or_default();
        records.insert((&row.entity, &row.key));
        *verdicts
            .entry(row.verdict.as_str().to_string())
            .or_insert(0) += 1;
    }
    by.into_iter()
        .map(|(object, (records, verdicts))| ObjectSummary {
            object: object.to_string(),
            records: records.len() as u64,
            verdicts,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the report")]
    Io(#[from] std::io::Error),
    #[error("writing the CSV report")]
    Csv(#[from] csv::Error),
}

/// The rows as CSV (RFC 4180, header first, UTF-8).
pub fn write_csv(rows: &[DiffRow], out: impl Write) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(COLUMNS)?;
    for row in rows {
        writer.write_record(row.cells())?;
    }
    writer.flush()?;
    Ok(())
}

/// Longest value a cell shows whole (file contents and long notes are cut).
pub const CELL_LIMIT: usize = 400;

/// A JSON value as a report cell: text as is, `null` as empty, anything else
/// as JSON; cut to [`CELL_LIMIT`] characters.
pub fn cell(value: &serde_json::Value) -> String {
    shorten(match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Text cut to [`CELL_LIMIT`] characters: `first 200… (N characters in all)`.
pub fn shorten(text: String) -> String {
    let count = text.chars().count();
    if count <= CELL_LIMIT {
        return text;
    }
    let head: String = text.chars().take(200).collect();
    format!("{head}… ({count} characters in all)")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(object: &str, key: &str, verdict: Verdict, value: &str) -> DiffRow {
        DiffRow {
            object: object.into(),
            entity: "Patient".into(),
            key: key.into(),
            dest_id: format!("id-{key}"),
            field: "firstName".into(),
            source_columns: "FirstName".into(),
            source_value: value.into(),
            sent_value: value.into(),
            dest_value: value.into(),
            verdict,
            note: String::new(),
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_summary_counts() {
        let rows = vec![
            row("contact", "1", Verdict::Match, "Zoë, \"Z\"\nline"),
            row("contact", "1", Verdict::Normalised, "x"),
            row("note", "2", Verdict::Quarantined, ""),
        ];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let back: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(back.len(), 3);
        assert_eq!(&back[0][6], "Zoë, \"Z\"\nline");
        assert_eq!(&back[2][9], "quarantined");
        assert_eq!(
            cell(&serde_json::json!("x".repeat(1000))).chars().count(),
            201 + " (1000 characters in all)".len()
        );
        assert_eq!(cell(&serde_json::json!(12)), "12");
        let summary = summarise(&rows);
        assert_eq!(summary[0].object, "contact");
        assert_eq!(summary[0].records, 1);
        assert_eq!(summary[0].verdicts["match"], 1);
        assert_eq!(summary[1].verdicts["quarantined"], 1);
    }
}
