//! The Twenty side of the perio data model: the custom objects `perioExam`,
//! `treatmentPlan` and `perioComparison`, their fields, relations to person and
//! company, select options, and the `legacyCreatedAt` field that keeps each
//! record's original creation time whatever the server does with `createdAt`.

use cutover_engine::ports::{FieldSpec, FieldType, ObjectSpec, SchemaSpec};
use serde_json::{json, Value};

/// Custom DATE_TIME field holding the source's original creation time.
pub const LEGACY_CREATED_AT: &str = "legacyCreatedAt";

/// Universal identifier of the standard `attachment.file` field (twenty-client-sdk 2.43).
pub const ATTACHMENT_FILE_FIELD_UID: &str = "20202020-15db-460e-8166-c7b5d87ad4be";

fn field(object: &str, name: &str, label: &str, field_type: FieldType) -> FieldSpec {
    FieldSpec {
        object: object.into(),
        name: name.into(),
        label: label.into(),
        field_type,
        options: vec![],
        relation_to: None,
    }
}

fn select(object: &str, name: &str, label: &str, options: &[&str]) -> FieldSpec {
    FieldSpec {
        options: options.iter().map(|o| o.to_string()).collect(),
        ..field(object, name, label, FieldType::Select)
    }
}

fn relation(object: &str, name: &str, label: &str, to: &str) -> FieldSpec {
    FieldSpec {
        relation_to: Some(to.into()),
        ..field(object, name, label, FieldType::Relation)
    }
}

/// The default schema the perio migration needs in a Twenty workspace.
pub fn perio_schema() -> SchemaSpec {
    let objects = vec![
        ObjectSpec {
            name: "perioExam".into(),
            label_singular: "Perio exam".into(),
            label_plural: "Perio exams".into(),
        },
        ObjectSpec {
            name: "treatmentPlan".into(),
            label_singular: "Treatment plan".into(),
            label_plural: "Treatment plans".into(),
        },
        ObjectSpec {
            name: "perioComparison".into(),
            label_singular: "Perio comparison".into(),
            label_plural: "Perio comparisons".into(),
        },
    ];
    let mut fields = vec![
        field("person", "chartNumber", "Chart number", FieldType::Text),
        field(
            "person",
            "insuranceCarrier",
            "Insurance carrier",
            FieldType::Text,
        ),
        field(
            "person",
            "referralSource",
            "Referral source",
            FieldType::Text,
        ),
        field(
            "person",
            "sourceSystemId",
            "Source system ID",
            FieldType::Text,
        ),
        field(
            "company",
            "sourceSystemId",
            "Source system ID",
            FieldType::Text,
        ),
        field("perioExam", "examDate", "Exam date", FieldType::Date),
        select(
            "perioExam",
            "classification",
            "Classification",
            &["Stage I", "Stage II", "Stage III", "Stage IV"],
        ),
        select("perioExam", "grade", "Grade", &["A", "B", "C"]),
        field("perioExam", "bopPercentage", "BOP %", FieldType::Number),
        field(
            "perioExam",
            "probingSummary",
            "Probing summary",
            FieldType::Text,
        ),
        field(
            "perioExam",
            "sitesFiveMmPlus",
            "Sites ≥ 5 mm",
            FieldType::Number,
        ),
        field("perioExam", "chart", "Tooth chart", FieldType::LargeText),
        relation("perioExam", "patient", "Patient", "person"),
        relation("perioExam", "provider", "Provider", "person"),
        field("treatmentPlan", "planName", "Plan name", FieldType::Text),
        select(
            "treatmentPlan",
            "stage",
            "Stage",
            &[
                "Proposed",
                "Accepted",
                "In progress",
                "Completed",
                "Declined",
            ],
        ),
        field(
            "treatmentPlan",
            "estimatedValue",
            "Estimated value",
            FieldType::Currency,
        ),
        field("treatmentPlan", "cdtCodes", "CDT codes", FieldType::Text),
        field("treatmentPlan", "phases", "Phases", FieldType::LargeText),
        relation("treatmentPlan", "patient", "Patient", "person"),
        relation(
            "treatmentPlan",
            "referringPractice",
            "Referring practice",
            "company",
        ),
        field(
            "perioComparison",
            "summary",
            "Summary",
            FieldType::LargeText,
        ),
        relation("perioComparison", "patient", "Patient", "person"),
        relation(
            "perioComparison",
            "baselineExam",
            "Baseline exam",
            "perioExam",
        ),
        relation(
            "perioComparison",
            "followUpExam",
            "Follow-up exam",
            "perioExam",
        ),
    ];
    for object in [
        "person",
        "company",
        "note",
        "task",
        "perioExam",
        "treatmentPlan",
        "perioComparison",
    ] {
        fields.push(field(
            object,
            LEGACY_CREATED_AT,
            "Legacy created at",
            FieldType::DateTime,
        ));
    }
    SchemaSpec {
        objects,
        fields,
        pipelines: vec![],
    }
}

/// Twenty's field type for ours.
pub fn twenty_type(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::Text | FieldType::LargeText => "TEXT",
        FieldType::Number => "NUMBER",
        FieldType::Currency => "CURRENCY",
        FieldType::Date => "DATE",
        FieldType::DateTime => "DATE_TIME",
        FieldType::Boolean => "BOOLEAN",
        FieldType::Select => "SELECT",
        FieldType::MultiSelect => "MULTI_SELECT",
        FieldType::File => "FILES",
        FieldType::Relation => "RELATION",
    }
}

/// An option value in Twenty's UPPER_SNAKE_CASE (`Stage III` → `STAGE_III`).
pub fn option_value(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

const COLORS: &[&str] = &[
    "green",
    "turquoise",
    "sky",
    "blue",
    "purple",
    "pink",
    "red",
    "orange",
    "yellow",
    "gray",
];

/// Select options as Twenty wants them, positions from `start`.
pub fn options_json(labels: &[String], start: usize) -> Vec<Value> {
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            json!({"value": option_value(label), "label": label, "color": COLORS[(start + i) % COLORS.len()], "position": start + i})
        })
        .collect()
}

/// The plural Twenty derives for a custom object name we create.
pub fn plural_of(singular: &str) -> String {
    if singular.ends_with('s') || singular.ends_with('x') || singular.ends_with("ch") {
        format!("{singular}es")
    } else if let Some(stem) = singular
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        format!("{stem}ies")
    } else {
        format!("{singular}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_options() {
        assert_eq!(option_value("Stage III"), "STAGE_III");
        assert_eq!(option_value("In progress"), "IN_PROGRESS");
        assert_eq!(plural_of("perioExam"), "perioExams");
        assert_eq!(plural_of("perioComparison"), "perioComparisons");
        assert_eq!(plural_of("category"), "categories");
        let spec = perio_schema();
        assert_eq!(spec.objects.len(), 3);
        assert!(spec.fields.iter().any(
            |f| f.object == "perioComparison" && f.relation_to.as_deref() == Some("perioExam")
        ));
    }
}
