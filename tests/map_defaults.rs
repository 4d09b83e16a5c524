//! The default maps against the reference schema, and `map propose` against an
//! inventory named like a different install.

use std::collections::{BTreeSet, HashMap};

use chrono::{TimeZone, Utc};
use cutover_connectors::panda::reference::reference_tables;
use cutover_engine::map::defaults::default_map;
use cutover_engine::map::{propose, MapFile};
use cutover_engine::{ColumnInfo, Inventory, SourceKey, SourceRecord, TableInfo, Value};

fn reference_inventory() -> Inventory {
    Inventory {
        tables: reference_tables()
            .iter()
            .map(|t| TableInfo {
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        sql_type: c.sql_type.to_string(),
                        nullable: c.nullable,
                    })
                    .collect(),
                row_count: 0,
                primary_key: t.primary_key.clone(),
                modified_column: None,
            })
            .collect(),
    }
}

/// (table, column) pairs the map reads or explicitly leaves out, lower-cased.
fn covered(map: &MapFile) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |t: &str, c: &str| {
        out.insert((t.to_ascii_lowercase(), c.to_ascii_lowercase()));
    };
    for rule in &map.objects {
        for field in &rule.fields {
            for column in field.source_columns() {
                add(&rule.source, &column);
            }
            if let Some(via) = &field.via {
                add(&via.entity, &via.column);
            }
        }
        if let Some(column) = &rule.when_present {
            add(&rule.source, column);
        }
    }
    for (table, column) in map.clinical.columns() {
        add(table, column);
    }
    for n in &map.not_migrated {
        match &n.column {
            Some(c) => add(&n.table, c),
            None => {
                if let Some(t) = reference_tables().iter().find(|t| t.name == n.table) {
                    for c in &t.columns {
                        add(&n.table, &c.name);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_reference_column_is_mapped_or_listed_as_not_migrated() {
    for kind in ["highlevel", "twenty"] {
        let map = default_map(kind).unwrap();
        let covered = covered(&map);
        let mut uncovered = Vec::new();
        for table in reference_tables() {
            for column in &table.columns {
                if !covered.contains(&(
                    table.name.to_ascii_lowercase(),
                    column.name.to_ascii_lowercase(),
                )) {
                    uncovered.push(format!("{}.{}", table.name, column.name));
                }
            }
        }
        assert!(
            uncovered.is_empty(),
            "{kind}: not mapped and not listed: {uncovered:?}"
        );
        // And the map names no table or column the reference does not have.
        for (table, column) in &covered {
            let t = reference_tables()
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(table))
                .unwrap_or_else(|| panic!("{kind}: unknown table {table}"));
            assert!(
                t.column(column).is_some(),
                "{kind}: unknown column {table}.{column}"
            );
        }
    }
}

#[test]
fn every_seed_object_row_has_a_rule() {
    let targets = |kind: &str| -> BTreeSet<(String, String)> {
        default_map(kind)
            .unwrap()
            .objects
            .iter()
            .map(|o| (o.source.clone(), o.target.clone()))
            .collect()
    };
    let hl = targets("highlevel");
    for pair in [
        ("Patient", "contact"),
        ("ReferringPractice", "business"),
        ("Patient", "contact_business_link"),
        ("TreatmentPlan", "opportunity"),
        ("Appointment", "task"),
        ("ProgressNote", "note"),
        ("Document", "file"),
    ] {
        assert!(
            hl.contains(&(pair.0.into(), pair.1.into())),
            "highlevel lacks {pair:?}"
        );
    }
    let tw = targets("twenty");
    for pair in [
        ("Patient", "person"),
        ("Provider", "person"),
        ("Practice", "company"),
        ("ReferringPractice", "company"),
        ("PerioExam", "perioExam"),
        ("TreatmentPlan", "treatmentPlan"),
        ("ProgressNote", "note"),
        ("ProgressNote", "noteTarget"),
        ("Letter", "note"),
        ("Appointment", "task"),
        ("Appointment", "taskTarget"),
        ("ChartComparison", "perioComparison"),
    ] {
        assert!(
            tw.contains(&(pair.0.into(), pair.1.into())),
            "twenty lacks {pair:?}"
        );
    }
    let hl_map = default_map("highlevel").unwrap();
    assert_eq!(hl_map.pipelines[0].name, "Perio Treatment");
}

/// Renames like another install: `tblPatient`, `pt_fname`, `cell_ph`, …
fn other_install() -> (Inventory, HashMap<String, Vec<SourceRecord>>) {
    let table_names: HashMap<&str, &str> = [
        ("Patient", "tblPatient"),
        ("Appointment", "tblAppt"),
        ("ProgressNote", "tbl_pt_notes"),
        ("TreatmentPlan", "TxPlan"),
        ("ReferringPractice", "tblRefPractice"),
    ]
    .into_iter()
    .collect();
    let column_names: HashMap<(&str, &str), &str> = [
        (("Patient", "PatientID"), "pt_id"),
        (("Patient", "FirstName"), "pt_fname"),
        (("Patient", "LastName"), "pt_lname"),
        (("Patient", "DateOfBirth"), "pt_dob"),
        (("Patient", "Email"), "pt_email_addr"),
        (("Patient", "MobilePhone"), "cell_ph"),
        (("Patient", "HomePhone"), "home_tel"),
        (("Patient", "WorkPhone"), "work_ph"),
        (("Patient", "Zip"), "postal_code"),
        (("Patient", "InsPrimaryCarrier"), "ins_pri_carrier"),
        (("Appointment", "StartTime"), "appt_start_time"),
        (("Appointment", "PatientID"), "pt_id"),
        (("ProgressNote", "PatientID"), "pt_id"),
        (("ProgressNote", "Body"), "note_body"),
        (("TreatmentPlan", "EstimatedValue"), "est_value"),
        (("TreatmentPlan", "PatientID"), "pt_id"),
    ]
    .into_iter()
    .collect();
    let mut inventory = reference_inventory();
    for table in &mut inventory.tables {
        let reference = table.name.clone();
        for column in &mut table.columns {
            if let Some(new) = column_names.get(&(reference.as_str(), column.name.as_str())) {
                column.name = new.to_string();
            }
        }
        if let Some(new) = table_names.get(reference.as_str()) {
            table.name = new.to_string();
        }
    }
    // A practice-specific table and column no reference knows.
    inventory.tables.push(TableInfo {
        name: "tblInsuranceVerification".into(),
        columns: vec![ColumnInfo {
            name: "verif_code".into(),
            sql_type: "NVARCHAR(20)".into(),
            nullable: true,
        }],
        row_count: 3,
        primary_key: vec![],
        modified_column: None,
    });
    let patient = inventory
        .tables
        .iter_mut()
        .find(|t| t.name == "tblPatient")
        .unwrap();
    patient.columns.push(ColumnInfo {
        name: "zz_legacy_flag".into(),
        sql_type: "INT".into(),
        nullable: true,
    });

    let samples = (0..5)
        .map(|i| SourceRecord {
            entity: "tblPatient".into(),
            key: SourceKey::new(i.to_string()),
            fields: [
                ("pt_id", Value::Int(i)),
                ("pt_fname", Value::Text("Ada".into())),
                ("pt_email_addr", Value::Text(format!("p{i}@example.com"))),
                ("cell_ph", Value::Text("(512) 555-0134".into())),
                ("home_tel", Value::Text("512.555.0199".into())),
                (
                    "pt_dob",
                    Value::Date(
                        Utc.with_ymd_and_hms(1980, 1, 1, 0, 0, 0)
                            .unwrap()
                            .date_naive(),
                    ),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            modified_at: None,
        })
        .collect::<Vec<_>>();
    (
        inventory,
        [("tblPatient".to_string(), samples)].into_iter().collect(),
    )
}

#[test]
fn propose_rebinds_a_differently_named_install_with_confidences() {
    let (inventory, samples) = other_install();
    let default = default_map("highlevel").unwrap();
    let proposal = propose(&inventory, &reference_inventory(), &samples, &default);

    assert_eq!(proposal.tables["Patient"].0, "tblPatient");
    assert_eq!(proposal.tables["Appointment"].0, "tblAppt");
    assert_eq!(proposal.tables["ProgressNote"].0, "tbl_pt_notes");
    assert_eq!(proposal.tables["TreatmentPlan"].0, "TxPlan");
    assert_eq!(proposal.tables["ReferringPractice"].0, "tblRefPractice");

    let line = |object: &str, field: &str| {
        proposal
            .lines
            .iter()
            .find(|l| l.target_object == object && l.target_field == field)
            .unwrap_or_else(|| {
                panic!(
                    "no line for {object}.{field}: missing {:?}",
                    proposal.missing
                )
            })
    };
    assert_eq!(line("contact", "firstName").source_columns, ["pt_fname"]);
    assert_eq!(line("contact", "lastName").source_columns, ["pt_lname"]);
    assert_eq!(line("contact", "dateOfBirth").source_columns, ["pt_dob"]);
    assert_eq!(line("contact", "email").source_columns, ["pt_email_addr"]);
    assert_eq!(line("contact", "phone").source_columns, ["cell_ph"]);
    assert_eq!(
        line("contact", "customFields.Home_Phone").source_columns,
        ["home_tel"]
    );
    assert_eq!(
        line("contact", "postalCode").source_columns,
        ["postal_code"]
    );
    assert_eq!(
        line("contact", "customFields.Insurance_Primary_Carrier").source_columns,
        ["ins_pri_carrier"]
    );
    assert_eq!(line("task", "dueDate").source_columns, ["appt_start_time"]);
    assert_eq!(line("note", "body").source_table, "tbl_pt_notes");
    assert_eq!(
        line("opportunity", "monetaryValue").source_columns,
        ["est_value"]
    );
    // Every line carries a confidence; renamed lines are less sure than exact ones.
    assert!(proposal
        .lines
        .iter()
        .all(|l| (0.0..=1.0).contains(&l.confidence) && l.confidence >= 0.55));
    assert!(line("contact", "firstName").confidence < 1.0);
    assert_eq!(
        line("contact", "city").confidence,
        1.0_f64.min(proposal.tables["Patient"].1)
    );

    // Nothing dropped silently: the unknown table and column are listed and carried into the map.
    let unmapped: Vec<_> = proposal
        .unmapped
        .iter()
        .map(|u| format!("{}.{}", u.table, u.column.as_deref().unwrap_or("*")))
        .collect();
    assert!(
        unmapped.contains(&"tblInsuranceVerification.*".to_string()),
        "{unmapped:?}"
    );
    assert!(
        unmapped.contains(&"tblPatient.zz_legacy_flag".to_string()),
        "{unmapped:?}"
    );
    assert!(proposal
        .map
        .not_migrated
        .iter()
        .any(|n| n.table == "tblPatient" && n.column.as_deref() == Some("zz_legacy_flag")));

    // The proposed map is a valid map for the destination, written in the install's names.
    let map = MapFile::from_toml(&proposal.map.to_toml()).unwrap();
    map.validate_for_destination("highlevel").unwrap();
    let link = map
        .objects
        .iter()
        .find(|o| o.target == "contact_business_link")
        .unwrap();
    assert_eq!(link.source, "tblPatient");
    assert_eq!(link.fields[0].from.as_ref().unwrap().names(), ["pt_id"]);
    assert_eq!(link.fields[0].entity.as_deref(), Some("tblPatient"));
    let note = map
        .objects
        .iter()
        .find(|o| o.source == "tbl_pt_notes")
        .unwrap();
    assert_eq!(note.fields[0].entity.as_deref(), Some("tblPatient"));
}

#[test]
fn propose_on_the_reference_itself_is_the_default_map_with_full_confidence() {
    let reference = reference_inventory();
    for kind in ["highlevel", "twenty"] {
        let default = default_map(kind).unwrap();
        let proposal = propose(&reference, &reference, &HashMap::new(), &default);
        assert!(
            proposal.unmapped.is_empty(),
            "{kind}: {:?}",
            proposal.unmapped
        );
        assert!(
            proposal.missing.is_empty(),
            "{kind}: {:?}",
            proposal.missing
        );
        assert_eq!(proposal.map.objects.len(), default.objects.len());
        assert!(proposal.lines.iter().all(|l| l.confidence == 1.0), "{kind}");
    }
}
