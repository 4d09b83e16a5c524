use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::defaults::default_map;
use super::*;
use crate::clean::{CleanConfig, Cleaner, ReasonCode, Severity};
use crate::record::{SourceKey, SourceRecord, Value};

fn record(entity: &str, key: &str, fields: &[(&str, Value)]) -> SourceRecord {
    SourceRecord {
        entity: entity.into(),
        key: SourceKey::new(key),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        modified_at: None,
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn patient(id: &str, extra: &[(&str, Value)]) -> SourceRecord {
    let mut fields = vec![
        ("PatientID", Value::Int(id.parse().unwrap())),
        ("FirstName", text("Ada")),
        ("LastName", text("Lovelace")),
        (
            "DateOfBirth",
            Value::Date(NaiveDate::from_ymd_opt(1970, 5, 4).unwrap()),
        ),
        ("Email", text("ada@example.com")),
        ("MobilePhone", text("(512) 555-0134")),
        ("PracticeID", Value::Int(1)),
        ("IsActive", Value::Bool(true)),
        ("Gender", text("F")),
        (
            "CreatedAt",
            Value::DateTime(Utc.with_ymd_and_hms(2015, 1, 2, 3, 4, 5).unwrap()),
        ),
    ];
    fields.extend(extra.iter().cloned());
    record("Patient", id, &fields)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

fn exam_index() -> ClinicalIndex {
    let mut index = ClinicalIndex::new(ClinicalSource::default());
    let exam = |id: i64, patient: i64, day: u32, class: &str, bop: Option<&str>| {
        record(
            "PerioExam",
            &id.to_string(),
            &[
                ("ExamID", Value::Int(id)),
                ("PatientID", Value::Int(patient)),
                (
                    "ExamDate",
                    Value::DateTime(Utc.with_ymd_and_hms(2024, 3, day, 9, 0, 0).unwrap()),
                ),
                ("Classification", text(class)),
                ("Grade", text("B")),
                (
                    "BOPPercent",
                    bop.map(|b| Value::Decimal(b.parse::<Decimal>().unwrap()))
                        .unwrap_or(Value::Null),
                ),
            ],
        )
    };
    // Older exam streamed after the newer one: latest is by ExamDate, not by order.
    index.add(&exam(11, 1001, 20, "Stage III", None));
    index.add(&exam(10, 1001, 1, "Stage I", Some("40.0")));
    let site = |exam: i64, tooth: i64, site: &str, depth: Option<i64>, bleeding: bool| {
        record(
            "PerioExamSite",
            &format!("{exam}/{tooth}/{site}"),
            &[
                ("ExamID", Value::Int(exam)),
                ("ToothNumber", Value::Int(tooth)),
                ("Site", text(site)),
                ("ProbingDepth", depth.map(Value::Int).unwrap_or(Value::Null)),
                ("Bleeding", Value::Bool(bleeding)),
            ],
        )
    };
    for (tooth, depth, bleeding) in [
        (3, 7, true),
        (5, 4, false),
        (8, 4, false),
        (14, 5, true),
        (19, 8, true),
        (24, 3, false),
        (30, 5, false),
        (31, 2, false),
    ] {
        index.add(&site(11, tooth, "MB", Some(depth), bleeding));
    }
    index.add(&site(11, 2, "DB", None, true)); // not charted: counts nowhere
    index.add(&site(10, 3, "MB", Some(9), true));
    for (class, months, active) in [
        ("Stage III", 3, true),
        ("Stage III", 1, false),
        ("Stage I", 6, true),
    ] {
        index.add(&record(
            "RecallRule",
            class,
            &[
                ("Classification", text(class)),
                ("IntervalMonths", Value::Int(months)),
                ("IsActive", Value::Bool(active)),
            ],
        ));
    }
    index
}

#[test]
fn default_maps_parse_validate_and_fit_their_destination() {
    for kind in ["highlevel", "twenty"] {
        let map = default_map(kind).unwrap();
        map.validate_for_destination(kind).unwrap();
        assert!(map.objects.len() >= 7, "{kind}");
        // Every custom field a rule writes in customFields (HighLevel) is declared.
        if kind == "highlevel" {
            for rule in &map.objects {
                for field in &rule.fields {
                    if let Some(name) = field.to.strip_prefix("customFields.") {
                        assert!(
                            map.custom_fields
                                .iter()
                                .any(|f| f.object == rule.target && f.name == name),
                            "{}.{} not declared",
                            rule.target,
                            name
                        );
                    }
                }
            }
        }
    }
    assert!(default_map("twenty")
        .unwrap()
        .validate_for_destination("highlevel")
        .is_err());
    let mut undeclared = default_map("highlevel").unwrap();
    undeclared
        .custom_fields
        .retain(|f| f.name != "BOP_Percentage");
    let err = undeclared
        .validate_for_destination("highlevel")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("BOP_Percentage") && err.contains("(Patient → contact)"),
        "{err}"
    );
}

#[test]
fn the_hash_follows_meaning_not_layout() {
    let map = default_map("highlevel").unwrap();
    let reformatted = MapFile::from_toml(&map.to_toml()).unwrap();
    assert_eq!(map.hash(), reformatted.hash());
    let commented = format!("# a comment\n\n{}", super::defaults::HIGHLEVEL_TOML);
    assert_eq!(MapFile::from_toml(&commented).unwrap().hash(), map.hash());
    let mut changed = map.clone();
    changed.objects[0].fields[0].required = false;
    assert_ne!(changed.hash(), map.hash());
    assert_eq!(map.hash_hex().len(), 64);
}

#[test]
fn invalid_maps_name_the_place() {
    let bad = r#"
format = 1
destination = "highlevel"
[[object]]
source = "Patient"
target = "contact"
field = [ { to = "email", from = ["Email", "Email2"], transform = "email" } ]
"#;
    let err = MapFile::from_toml(bad).unwrap_err().to_string();
    assert!(
        err.contains("object #1 (Patient → contact)") && err.contains("\"email\""),
        "{err}"
    );
    let err =
        MapFile::from_toml("format = 1\ndestination = \"highlevel\"\n[[object]]\nsource = 3\n")
            .unwrap_err();
    assert!(matches!(err, MapError::Syntax(_)), "{err}");
    let twice = r#"
format = 1
destination = "twenty"
[[object]]
source = "Patient"
target = "person"
[[object]]
source = "patient"
target = "person"
"#;
    assert!(MapFile::from_toml(twice)
        .unwrap_err()
        .to_string()
        .contains("idempotency"));
    let unknown_target = r#"
format = 1
destination = "highlevel"
[[object]]
source = "Patient"
target = "perioExam"
"#;
    let err = MapFile::from_toml(unknown_target)
        .unwrap()
        .validate_for_destination("highlevel")
        .unwrap_err();
    assert!(err.to_string().contains("no object \"perioExam\""), "{err}");
}

#[test]
fn a_patient_becomes_a_highlevel_contact_with_its_clinical_summary() {
    let map = default_map("highlevel").unwrap();
    let index = exam_index();
    let resolver = MemoryResolver::default();
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let outcome = map.apply(&patient("1001", &[]), &ctx, &mut cleaner);
    let RecordOutcome::Ready { requests, flags } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(flags.is_empty(), "{flags:?}");
    assert_eq!(requests.len(), 1, "no referring dentist: no business link");
    let contact = &requests[0];
    assert_eq!(contact.object, "contact");
    assert_eq!(contact.idempotency_key, "contact:Patient:1001");
    assert_eq!(contact.client_id, None);
    let body = serde_json::Value::Object(contact.body.clone());
    assert_eq!(body["firstName"], "Ada");
    assert_eq!(body["phone"], "+15125550134");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["dateOfBirth"], "1970-05-04");
    let custom = &body["customFields"];
    assert_eq!(custom["Last_Perio_Classification"], "Stage III");
    assert_eq!(
        custom["Last_Probing_Summary"],
        "UR 7 · UA 4 · UL 5 · LL 8 · LA 3 · LR 5"
    );
    assert_eq!(custom["Sites_5mm_Plus"], 4);
    // BOP NULL on the latest exam: bleeding 3 of 8 charted sites.
    assert_eq!(custom["BOP_Percentage"], json!(37.5));
    assert_eq!(custom["Last_Exam_Date"], "2024-03-20");
    assert_eq!(custom["Recall_Interval_Months"], 3);
    assert_eq!(custom["Gender"], "Female");
    assert_eq!(custom["Source_Created_At"], "2015-01-02");
}

#[test]
fn a_patient_without_exams_gets_no_clinical_fields() {
    let map = default_map("highlevel").unwrap();
    let index = exam_index();
    let resolver = MemoryResolver::default();
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let outcome = map.apply(&patient("2002", &[]), &ctx, &mut cleaner);
    let custom = &outcome.requests()[0].body["customFields"];
    for field in [
        "Last_Perio_Classification",
        "Last_Probing_Summary",
        "BOP_Percentage",
        "Last_Exam_Date",
        "Sites_5mm_Plus",
        "Recall_Interval_Months",
    ] {
        assert!(
            custom.get(field).is_none(),
            "{field} present for a patient without exams"
        );
    }
}

#[test]
fn recorded_bop_wins_and_exam_rows_get_their_own_values() {
    let index = exam_index();
    let older = index.exam("10").unwrap();
    assert_eq!(older.bop_percent(), Some("40".parse().unwrap()));
    assert_eq!(older.probing_summary().as_deref(), Some("UR 9"));
    let map = default_map("twenty").unwrap();
    let resolver = {
        let mut r = MemoryResolver::default();
        r.insert_id("Patient", "1001", "person", "p-1");
        r
    };
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let exam = record(
        "PerioExam",
        "11",
        &[
            ("ExamID", Value::Int(11)),
            ("PatientID", Value::Int(1001)),
            (
                "ExamDate",
                Value::DateTime(Utc.with_ymd_and_hms(2024, 3, 20, 9, 0, 0).unwrap()),
            ),
            ("Classification", text("Stage III")),
            ("Grade", text("B")),
            ("IsBaseline", Value::Bool(false)),
        ],
    );
    let outcome = map.apply(&exam, &ctx, &mut cleaner);
    let request = &outcome.requests()[0];
    assert_eq!(request.object, "perioExam");
    assert_eq!(
        request.client_id,
        Some(crate::ports::WriteRequest::uuid_for_key(
            "perioExam:PerioExam:11"
        ))
    );
    assert_eq!(request.body["patientId"], "p-1");
    assert_eq!(request.body["classification"], "STAGE_III");
    assert_eq!(
        request.body["probingSummary"],
        "UR 7 · UA 4 · UL 5 · LL 8 · LA 3 · LR 5"
    );
    assert_eq!(request.body["bopPercentage"], json!(37.5));
    assert!(request.body.get("providerId").is_none());
}

#[test]
fn bad_records_are_quarantined_with_bounded_reasons_and_no_values() {
    let map = default_map("highlevel").unwrap();
    let index = ClinicalIndex::default();
    let resolver = MemoryResolver::default();
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let future = patient(
        "3003",
        &[
            (
                "DateOfBirth",
                Value::Date(NaiveDate::from_ymd_opt(2031, 1, 1).unwrap()),
            ),
            ("MobilePhone", text("call cell")),
        ],
    );
    let RecordOutcome::Quarantined { issues } = map.apply(&future, &ctx, &mut cleaner) else {
        panic!()
    };
    let codes: Vec<_> = issues.iter().map(|i| i.code).collect();
    assert!(
        codes.contains(&ReasonCode::FutureDate) && codes.contains(&ReasonCode::PhoneInvalid),
        "{codes:?}"
    );
    let reasons = crate::clean::quarantine_reasons(&issues);
    assert!(reasons
        .iter()
        .any(|r| r.detail.contains("Patient.DateOfBirth")));
    assert!(reasons
        .iter()
        .all(|r| !r.detail.contains("call cell") && !r.detail.contains("2031")));

    // A note whose contact did not migrate is an orphan; a note over the limit is too long.
    let note = |id: &str, body: String| {
        record(
            "ProgressNote",
            id,
            &[
                ("NoteID", Value::Int(1)),
                ("PatientID", Value::Int(9)),
                ("NoteType", text("Progress")),
                ("Body", Value::Text(body)),
            ],
        )
    };
    let RecordOutcome::Quarantined { issues } =
        map.apply(&note("1", "fine".into()), &ctx, &mut cleaner)
    else {
        panic!()
    };
    assert_eq!(issues[0].code, ReasonCode::OrphanReference);
    let mut known = MemoryResolver::default();
    known.insert_id("Patient", "9", "contact", "c-9");
    let ctx = ApplyContext {
        resolver: &known,
        clinical: &index,
        today: today(),
    };
    let RecordOutcome::Quarantined { issues } =
        map.apply(&note("2", "x".repeat(70_000)), &ctx, &mut cleaner)
    else {
        panic!()
    };
    assert_eq!(issues[0].code, ReasonCode::TooLong);
    let ok = map.apply(&note("3", "fine".into()), &ctx, &mut cleaner);
    assert_eq!(ok.requests()[0].body["contactId"], "c-9");

    // Required field empty.
    let RecordOutcome::Quarantined { issues } = map.apply(
        &record(
            "ReferringPractice",
            "4",
            &[("ReferringPracticeID", Value::Int(4)), ("Name", text("  "))],
        ),
        &ctx,
        &mut cleaner,
    ) else {
        panic!()
    };
    assert_eq!(issues[0].code, ReasonCode::RequiredMissing);
}

#[test]
fn family_emails_keep_the_first_and_flag_the_rest() {
    let map = default_map("highlevel").unwrap();
    let index = ClinicalIndex::default();
    let resolver = MemoryResolver::default();
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let first = map.apply(&patient("1", &[]), &ctx, &mut cleaner);
    let second = map.apply(
        &patient("2", &[("Email", text("ADA@example.com"))]),
        &ctx,
        &mut cleaner,
    );
    assert_eq!(first.requests()[0].body["email"], "ada@example.com");
    let RecordOutcome::Ready { requests, flags } = second else {
        panic!()
    };
    assert!(requests[0].body.get("email").is_none());
    assert_eq!(flags[0].code, ReasonCode::EmailDuplicate);
    assert_eq!(flags[0].severity, Severity::Flag);
}

#[test]
fn the_business_link_hops_through_the_dentist_and_an_orphan_only_flags() {
    let map = default_map("highlevel").unwrap();
    let index = ClinicalIndex::default();
    let mut resolver = MemoryResolver::default();
    resolver.insert_row(&record(
        "ReferringDentist",
        "7",
        &[
            ("ReferringDentistID", Value::Int(7)),
            ("ReferringPracticeID", Value::Int(70)),
        ],
    ));
    resolver.insert_id("ReferringPractice", "70", "business", "b-70");
    resolver.insert_id("Patient", "1", "contact", "c-1");
    resolver.insert_id("Patient", "2", "contact", "c-2");
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let linked = map.apply(
        &patient("1", &[("ReferringDentistID", Value::Int(7))]),
        &ctx,
        &mut cleaner,
    );
    let link = linked
        .requests()
        .iter()
        .find(|r| r.object == "contact_business_link")
        .unwrap();
    assert_eq!(link.body["businessId"], "b-70");
    assert_eq!(link.body["contactId"], "c-1");
    assert_eq!(link.idempotency_key, "contact_business_link:Patient:1");

    let orphan = map.apply(
        &patient(
            "2",
            &[
                ("ReferringDentistID", Value::Int(999)),
                ("Email", text("other@example.com")),
            ],
        ),
        &ctx,
        &mut cleaner,
    );
    let RecordOutcome::Ready { requests, flags } = orphan else {
        panic!("{orphan:?}")
    };
    assert_eq!(requests.len(), 1, "the contact moves, the link does not");
    assert_eq!(requests[0].object, "contact");
    // The family shares the mobile number: flagged and left off the second contact.
    assert!(requests[0].body.get("phone").is_none());
    let codes: Vec<_> = flags.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        [ReasonCode::PhoneDuplicate, ReasonCode::OrphanReference]
    );
    assert!(flags.iter().all(|f| f.severity == Severity::Flag));
}

#[test]
fn plan_order_puts_parents_first() {
    for kind in ["highlevel", "twenty"] {
        let map = default_map(kind).unwrap();
        let order: Vec<(String, String)> = map
            .plan_order()
            .iter()
            .map(|r| (r.source.clone(), r.target.clone()))
            .collect();
        assert_eq!(order.len(), map.objects.len());
        let position = |source: &str, target: &str| {
            order
                .iter()
                .position(|(s, t)| s == source && t == target)
                .unwrap_or_else(|| panic!("{kind}: {source} → {target} missing"))
        };
        for rule in &map.objects {
            for field in &rule.fields {
                if let (Some(entity), Some(object)) = (&field.entity, &field.object) {
                    if entity == &rule.source && object == &rule.target {
                        continue;
                    }
                    assert!(
                        position(entity, object) < position(&rule.source, &rule.target),
                        "{kind}: {} → {} before its parent {entity} → {object}",
                        rule.source,
                        rule.target
                    );
                }
            }
        }
    }
}

#[test]
fn a_template_with_no_source_values_writes_no_field() {
    let map = MapFile::from_toml(
        r#"
format = 1
destination = "twenty"
[[object]]
source = "Letter"
target = "noteTarget"
field = [ { to = "letterTemplate", transform = "template", template = "LetterTemplate/{TemplateID}" } ]
"#,
    )
    .unwrap();
    let index = ClinicalIndex::default();
    let resolver = MemoryResolver::default();
    let ctx = ApplyContext {
        resolver: &resolver,
        clinical: &index,
        today: today(),
    };
    let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
    let with = map.apply(
        &record("Letter", "1", &[("TemplateID", Value::Int(4))]),
        &ctx,
        &mut cleaner,
    );
    assert_eq!(
        with.requests()[0].body["letterTemplate"],
        "LetterTemplate/4"
    );
    let without = map.apply(
        &record("Letter", "2", &[("TemplateID", Value::Null)]),
        &ctx,
        &mut cleaner,
    );
    assert!(without.requests()[0].body.get("letterTemplate").is_none());
}

mod ledgered_tests {
    use cutover_ledger::{Digest, EventBody, Ledger, WriteOp};

    use super::super::ledgered::*;
    use super::*;

    #[test]
    fn run_refuses_an_unconfirmed_or_changed_map_and_reads_the_confirmed_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(dir.path().join("l")).unwrap();
        let map = default_map("twenty").unwrap();
        assert!(matches!(
            require_confirmed(&ledger, &map),
            Err(MapGateError::NotConfirmed)
        ));
        assert!(matches!(
            load_confirmed(&ledger),
            Err(MapGateError::NotConfirmed)
        ));

        let hash = confirm_map(&mut ledger, &map, "map:test").unwrap();
        assert_eq!(hash, Digest(map.hash()));
        assert_eq!(require_confirmed(&ledger, &map).unwrap(), hash);
        assert_eq!(load_confirmed(&ledger).unwrap(), map);

        let mut changed = map.clone();
        changed.objects[0].fields.pop();
        let err = require_confirmed(&ledger, &changed).unwrap_err();
        assert!(matches!(err, MapGateError::Changed { .. }), "{err}");
        assert!(err.to_string().contains(&hash.to_hex()));
        ledger.verify().unwrap();
    }

    #[test]
    fn quarantine_reasons_reach_the_ledger_and_a_clean_retry_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(dir.path().join("l")).unwrap();
        let map = default_map("highlevel").unwrap();
        let map_hash = confirm_map(&mut ledger, &map, "map:test").unwrap();
        let index = ClinicalIndex::default();
        let bad = patient("5005", &[("MobilePhone", text("n/a"))]);
        let fixed = patient("5005", &[]);
        let (issues, request) = {
            let resolver = LedgerResolver::new(&ledger);
            let ctx = ApplyContext {
                resolver: &resolver,
                clinical: &index,
                today: today(),
            };
            let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
            let RecordOutcome::Quarantined { issues } = map.apply(&bad, &ctx, &mut cleaner) else {
                panic!()
            };
            // Fixed at the source: on the next pass the record transforms cleanly.
            let mut cleaner = Cleaner::new(CleanConfig::default()).unwrap();
            let request = map.apply(&fixed, &ctx, &mut cleaner).requests()[0].clone();
            assert!(resolver.take_error().is_none());
            (issues, request)
        };
        let reasons = crate::clean::quarantine_reasons(&issues);
        let run = ledger
            .start_run(
                cutover_ledger::RunKind::Full,
                "test",
                "highlevel",
                Some(map_hash),
            )
            .unwrap();
        ledger
            .append(
                run,
                [
                    EventBody::Extracted {
                        entity: "Patient".into(),
                        key: "5005".into(),
                        content_hash: Digest(bad.content_hash()),
                        modified_at: None,
                    },
                    EventBody::Quarantined {
                        entity: "Patient".into(),
                        key: "5005".into(),
                        reasons,
                    },
                ],
            )
            .unwrap();
        let listed = quarantined(&ledger).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "5005");
        assert_eq!(listed[0].reasons[0].code, "phone_invalid");
        assert!(!listed[0].reasons[0].detail.contains("n/a"));

        // The retry: it is written; the list empties and the ledger resolves the contact for its children.
        let payload = ledger
            .put_blob(&serde_json::to_vec(&request.body).unwrap())
            .unwrap();
        let intent = ledger
            .append(
                run,
                [
                    EventBody::Transformed {
                        entity: "Patient".into(),
                        key: "5005".into(),
                        object: "contact".into(),
                        payload_hash: payload,
                        map_hash,
                    },
                    EventBody::WriteIntended {
                        op: WriteOp::Create,
                        object: "contact".into(),
                        entity: "Patient".into(),
                        key: "5005".into(),
                        idempotency_key: request.idempotency_key.clone(),
                        payload_hash: payload,
                        before_image: None,
                        dest_id: None,
                    },
                ],
            )
            .unwrap()
            + 1;
        ledger
            .append(
                run,
                [EventBody::WriteConfirmed {
                    intent,
                    dest_id: "c-5005".into(),
                    response_hash: payload,
                }],
            )
            .unwrap();
        assert!(quarantined(&ledger).unwrap().is_empty());
        let resolver = LedgerResolver::new(&ledger);
        assert_eq!(
            resolver.dest_id("Patient", "5005", "contact").as_deref(),
            Some("c-5005")
        );
        assert_eq!(resolver.dest_id("Patient", "5006", "contact"), None);
    }
}

#[test]
fn a_twenty_custom_field_named_like_a_standard_field_is_refused() {
    let mut map = crate::map::defaults::default_map("twenty").unwrap();
    assert!(map.validate_for_destination("twenty").is_ok());
    let field = map
        .custom_fields
        .iter_mut()
        .find(|f| f.object == "perioComparisonExam")
        .unwrap();
    field.name = "position".into();
    let err = map
        .validate_for_destination("twenty")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("position") && err.contains("standard field"),
        "{err}"
    );
}

/// The compact exam store gives back exactly what was folded in: sites that stream
/// before their exam, equal exam dates (the higher key wins), labels shared by
/// several patients, and sextants without a charted site.
#[test]
fn exam_facts_come_back_whole_from_the_compact_index() {
    let mut index = ClinicalIndex::new(ClinicalSource::default());
    let when = Utc.with_ymd_and_hms(2024, 5, 2, 9, 0, 0).unwrap();
    let exam = |id: i64, patient: i64, class: &str| {
        record(
            "PerioExam",
            &id.to_string(),
            &[
                ("ExamID", Value::Int(id)),
                ("PatientID", Value::Int(patient)),
                ("ExamDate", Value::DateTime(when)),
                ("Classification", text(class)),
                ("Grade", Value::Null),
                ("BOPPercent", Value::Null),
            ],
        )
    };
    let site = |exam: i64, tooth: i64, depth: i64, bleeding: bool| {
        record(
            "PerioExamSite",
            &format!("{exam}/{tooth}"),
            &[
                ("ExamID", Value::Int(exam)),
                ("ToothNumber", Value::Int(tooth)),
                ("Site", text("MB")),
                ("ProbingDepth", Value::Int(depth)),
                ("Bleeding", Value::Bool(bleeding)),
            ],
        )
    };
    // Sites of exam 21 arrive before the exam itself.
    index.add(&site(21, 3, 6, true));
    index.add(&site(21, 30, 2, false));
    index.add(&exam(9, 2001, "Stage II"));
    index.add(&exam(21, 2001, "Stage IV"));
    index.add(&exam(22, 2002, "Stage II"));
    index.add(&site(22, 12, 5, false));

    let expected = ExamFacts {
        patient: "2001".into(),
        date: Some(when),
        classification: Some("Stage IV".into()),
        grade: None,
        bop_recorded: None,
        sextant_max: [Some(6), None, None, None, None, Some(2)],
        sites_five_plus: 1,
        charted: 2,
        bleeding: 1,
    };
    assert_eq!(index.exam("21"), Some(expected.clone()));
    assert_eq!(
        index.latest_exam("2001"),
        Some(expected),
        "same date: the higher exam key is the latest"
    );
    let other = index.latest_exam("2002").unwrap();
    assert_eq!(other.classification.as_deref(), Some("Stage II"));
    assert_eq!(other.sextant_max, [None, None, Some(5), None, None, None]);
    assert_eq!(other.bop_percent(), Some(Decimal::ZERO));
    assert_eq!(index.exam("9").unwrap().charted, 0);
    assert_eq!(index.latest_exam("2003"), None);
    assert_eq!(index.exam("404"), None);
}
