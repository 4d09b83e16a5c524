//! Generator tests: determinism, the shape of the clinical content, and the
//! presence of every documented kind of dirt. They read the output through
//! the export-folder source, so they also exercise it end to end.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, TimeZone, Utc};
use cutover_engine::{Source, SourceItem, SourceRecord, Value};
use futures::StreamExt;

use super::*;
use crate::panda::export::ExportSource;

fn generate_into(dir: &Path, patients: u32, seed: u64, sqlite: bool) -> GenerateSummary {
    generate(
        dir,
        &GenerateOptions {
            patients,
            seed,
            sqlite,
        },
    )
    .expect("generation succeeds")
}

async fn records(source: &ExportSource, table: &str) -> Vec<SourceRecord> {
    let mut stream = source.stream(table, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            SourceItem::Record(r) => out.push(r),
            SourceItem::Unreadable { place, reason, .. } => {
                panic!("generated data must be readable: {place}: {reason}")
            }
        }
    }
    out
}

fn text<'a>(r: &'a SourceRecord, column: &str) -> Option<&'a str> {
    r.get(column).and_then(Value::as_str)
}

fn int(r: &SourceRecord, column: &str) -> Option<i64> {
    r.get(column).and_then(Value::as_i64)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_byte_identical_output_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate_into(a.path(), 30, 42, true);
    generate_into(b.path(), 30, 42, true);
    generate_into(c.path(), 30, 43, false);
    let (fa, fb, fc) = (
        files(&a.path().join("export")),
        files(&b.path().join("export")),
        files(&c.path().join("export")),
    );
    assert_eq!(
        fa.len(),
        reference_tables().len() + 1,
        "one CSV per table plus manifest.json"
    );
    assert_eq!(fa, fb);
    assert_eq!(
        std::fs::read(a.path().join("panda.sqlite3")).unwrap(),
        std::fs::read(b.path().join("panda.sqlite3")).unwrap()
    );
    assert_ne!(fa["Patient.csv"], fc["Patient.csv"]);
    assert!(
        !c.path().join("panda.sqlite3").exists(),
        "no database when not asked for"
    );
}

#[tokio::test]
async fn every_dirt_kind_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_into(dir.path(), 60, 9, false);
    let source = ExportSource::open(&summary.export_dir).unwrap();
    let patients = records(&source, "Patient").await;
    assert_eq!(patients.len(), 60);
    let mut found: BTreeSet<&str> = BTreeSet::new();

    let mut by_email: BTreeMap<&str, Vec<&SourceRecord>> = BTreeMap::new();
    for p in &patients {
        if let Some(email) = text(p, "Email") {
            by_email.entry(email).or_default().push(p);
        }
    }
    for group in by_email.values().filter(|g| g.len() > 1) {
        if group
            .iter()
            .map(|p| text(p, "FirstName"))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
        {
            found.insert("family e-mail");
        }
    }
    type Person<'a> = (Option<&'a str>, Option<&'a str>, Option<String>);
    let mut people: BTreeMap<Person, i64> = BTreeMap::new();
    for p in &patients {
        let person = (
            text(p, "FirstName"),
            text(p, "LastName"),
            p.get("DateOfBirth")
                .filter(|v| !v.is_null())
                .map(Value::to_string),
        );
        if person.0.is_some()
            && person.2.is_some()
            && people
                .insert(person, int(p, "PatientID").unwrap())
                .is_some()
        {
            found.insert("true duplicate");
        }
    }
    let phones: Vec<&str> = patients
        .iter()
        .flat_map(|p| ["HomePhone", "MobilePhone", "WorkPhone"].map(|c| text(p, c)))
        .flatten()
        .collect();
    let valid = |phone: &str| {
        let main = phone.split(" ext.").next().unwrap();
        let digits: String = main.chars().filter(char::is_ascii_digit).collect();
        let letters = main.chars().any(|c| c.is_ascii_alphabetic());
        !letters
            && (digits.len() == 10 || (digits.len() == 11 && digits.starts_with('1')))
            && !digits.starts_with("000")
    };
    if phones.iter().any(|p| !valid(p)) {
        found.insert("invalid phone");
    }
    let formats: BTreeSet<String> = phones
        .iter()
        .filter(|p| valid(p))
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect::<String>()
        })
        .collect();
    assert!(
        formats.len() >= 5,
        "phones come in many valid formats: {formats:?}"
    );
    if patients
        .iter()
        .any(|p| p.get("FirstName") == Some(&Value::Null))
    {
        found.insert("missing first name");
    }
    if patients
        .iter()
        .any(|p| p.get("LastName") == Some(&Value::Null))
    {
        found.insert("missing last name");
    }
    if patients.iter().any(|p| {
        ["FirstName", "LastName"]
            .iter()
            .any(|c| text(p, c).map(|t| !t.is_ascii()).unwrap_or(false))
    }) {
        found.insert("non-ASCII name");
    }
    let is_emoji = |s: &str| {
        s.chars()
            .any(|c| (c as u32) >= 0x1F300 || matches!(c, '⭐' | '❤'))
    };
    if patients
        .iter()
        .any(|p| text(p, "PreferredName").map(is_emoji).unwrap_or(false))
    {
        found.insert("emoji");
    }
    let as_of_date = NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
    if patients
        .iter()
        .any(|p| matches!(p.get("DateOfBirth"), Some(Value::Date(d)) if *d > as_of_date))
    {
        found.insert("future birth date");
    }
    let dentists: BTreeSet<i64> = records(&source, "ReferringDentist")
        .await
        .iter()
        .map(|d| int(d, "ReferringDentistID").unwrap())
        .collect();
    if patients
        .iter()
        .filter_map(|p| int(p, "ReferringDentistID"))
        .any(|id| !dentists.contains(&id))
    {
        found.insert("orphan referral");
    }
    if patients.iter().any(|p| {
        p.get("ModifiedAt")
            .zip(p.get("CreatedAt"))
            .map(|(m, c)| match (m, c) {
                (Value::DateTime(m), Value::DateTime(c)) => m < c,
                _ => false,
            })
            == Some(true)
    }) {
        found.insert("modified before created");
    }
    let notes = records(&source, "ProgressNote").await;
    if notes.iter().any(|n| {
        text(n, "Body")
            .map(|b| b.len() > 64 * 1024)
            .unwrap_or(false)
    }) {
        found.insert("long note");
    }
    assert_eq!(
        found,
        BTreeSet::from([
            "family e-mail",
            "true duplicate",
            "invalid phone",
            "missing first name",
            "missing last name",
            "non-ASCII name",
            "emoji",
            "future birth date",
            "orphan referral",
            "modified before created",
            "long note"
        ]),
        "every documented dirt kind ({} kinds) must appear",
        Dirt::ALL.len()
    );
}

#[tokio::test]
async fn the_clinical_content_is_realistic_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_into(dir.path(), 80, 3, false);
    let source = ExportSource::open(&summary.export_dir).unwrap();

    // 6 sites on every present tooth, none on a missing one, per exam.
    let teeth = records(&source, "PerioExamTooth").await;
    let sites = records(&source, "PerioExamSite").await;
    let exams = records(&source, "PerioExam").await;
    assert!(exams.len() > 80, "most patients have several exams");
    let mut sites_per_tooth: BTreeMap<(i64, i64), BTreeSet<String>> = BTreeMap::new();
    for s in &sites {
        sites_per_tooth
            .entry((int(s, "ExamID").unwrap(), int(s, "ToothNumber").unwrap()))
            .or_default()
            .insert(text(s, "Site").unwrap().to_string());
        if let (Some(pd), Some(cal), Some(rec)) = (
            int(s, "ProbingDepth"),
            int(s, "AttachmentLevel"),
            int(s, "Recession"),
        ) {
            assert!(
                (1..=12).contains(&pd) && cal == pd + rec,
                "CAL = probing depth + recession"
            );
        }
    }
    assert_eq!(
        teeth.len(),
        exams.len() * 32,
        "a tooth row for all 32 teeth per exam"
    );
    for t in &teeth {
        let key = (int(t, "ExamID").unwrap(), int(t, "ToothNumber").unwrap());
        let missing = t.get("Missing") == Some(&Value::Bool(true));
        match sites_per_tooth.get(&key) {
            Some(s) => {
                assert!(!missing, "no sites on a missing tooth {key:?}");
                assert_eq!(
                    s.iter().map(String::as_str).collect::<Vec<_>>(),
                    ["B", "DB", "DL", "L", "MB", "ML"]
                );
            }
            None => assert!(missing, "a present tooth without sites {key:?}"),
        }
    }
    // Rows come in primary-key order (what the SQL Server source's ORDER BY gives).
    let keys: Vec<(i64, i64, String)> = sites
        .iter()
        .map(|s| {
            (
                int(s, "ExamID").unwrap(),
                int(s, "ToothNumber").unwrap(),
                text(s, "Site").unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "PerioExamSite is in key order"
    );

    let classes: BTreeSet<&str> = exams
        .iter()
        .filter_map(|e| text(e, "Classification"))
        .collect();
    assert!(
        classes.len() >= 5,
        "healthy, gingivitis and AAP stages: {classes:?}"
    );
    assert!(exams
        .iter()
        .filter_map(|e| text(e, "Grade"))
        .all(|g| ["A", "B", "C"].contains(&g)));
    assert!(exams
        .iter()
        .any(|e| matches!(e.get("BOPPercent"), Some(Value::Decimal(_)))));

    let comparisons = records(&source, "ChartComparisonExam").await;
    let mut per_comparison: BTreeMap<i64, i64> = BTreeMap::new();
    for c in &comparisons {
        *per_comparison
            .entry(int(c, "ComparisonID").unwrap())
            .or_default() += 1;
    }
    assert!(!per_comparison.is_empty() && per_comparison.values().all(|n| (2..=5).contains(n)));

    let statuses: BTreeSet<&str> = records(&source, "Appointment")
        .await
        .iter()
        .map(|a| text(a, "Status").unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|s| {
            vocab::APPOINTMENT_STATUSES
                .iter()
                .copied()
                .find(|x| *x == s)
                .expect("known status")
        })
        .collect();
    assert_eq!(statuses.len(), 5, "every appointment outcome: {statuses:?}");

    let procedures = records(&source, "PlannedProcedure").await;
    let codes: BTreeSet<&str> = procedures
        .iter()
        .filter_map(|p| text(p, "AdaCode"))
        .collect();
    assert!(
        codes.contains("D4341")
            && codes.contains("D4910")
            && codes.iter().all(|c| c.len() == 5 && c.starts_with('D'))
    );
    assert!(records(&source, "TreatmentPhase")
        .await
        .iter()
        .any(|p| text(p, "PhaseName") == Some("Surgical Therapy")));

    let letters = records(&source, "Letter").await;
    assert!(!letters.is_empty());
    for letter in &letters {
        let body = text(letter, "Body").unwrap();
        assert!(
            !body.contains("{{"),
            "letters are rendered from their templates"
        );
    }
    assert!(records(&source, "LetterTemplate")
        .await
        .iter()
        .all(|t| text(t, "Body").unwrap().contains("{{")));
    assert!(records(&source, "ProgressNote")
        .await
        .iter()
        .any(|n| text(n, "NoteType") == Some("InstaNote")));
    assert!(records(&source, "RecallRule")
        .await
        .iter()
        .any(|r| int(r, "IntervalMonths") == Some(3)));

    let documents = records(&source, "Document").await;
    assert!(!documents.is_empty());
    for d in &documents {
        let Some(Value::Bytes(pdf)) = d.get("Content") else {
            panic!("Content is bytes")
        };
        assert!(pdf.starts_with(b"%PDF-1.4") && pdf.ends_with(b"%%EOF\n") && pdf.len() < 4096);
    }
    let at = Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap();
    assert!(
        exams
            .iter()
            .all(|e| matches!(e.get("ExamDate"), Some(Value::DateTime(t)) if *t < at)),
        "exams are in the past"
    );
}

#[test]
fn the_manifest_matches_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_into(dir.path(), 10, 1, false);
    let on_disk: Manifest =
        serde_json::from_slice(&std::fs::read(summary.export_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, summary.manifest);
    let patient_csv = std::fs::read(summary.export_dir.join("Patient.csv")).unwrap();
    assert_eq!(
        on_disk.tables["Patient"].blake3,
        blake3::hash(&patient_csv).to_hex().to_string()
    );
    assert_eq!(on_disk.tables["Patient"].rows, 10);
    assert_eq!(on_disk.tables["Practice"].rows, 1);
}

#[tokio::test]
async fn the_common_dirt_kinds_occur_near_their_documented_rates() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_into(dir.path(), 300, 21, false);
    let source = ExportSource::open(&summary.export_dir).unwrap();
    let patients = records(&source, "Patient").await;
    let share = |hits: usize| hits as f64 / patients.len() as f64;
    // Families and duplicates copy names and e-mails, so counts cluster: a wide band.
    let near = |measured: f64, documented: f64, what: &str| {
        assert!(
            (documented * 0.5..=documented * 2.0).contains(&measured),
            "{what}: measured {measured:.3}, documented {documented}"
        );
    };
    let non_ascii = patients
        .iter()
        .filter(|p| {
            ["FirstName", "LastName"]
                .iter()
                .any(|c| text(p, c).map(|t| !t.is_ascii()).unwrap_or(false))
        })
        .count();
    near(share(non_ascii), rates::NON_ASCII_NAME, "non-ASCII names");
    let no_email = patients
        .iter()
        .filter(|p| p.get("Email") == Some(&Value::Null))
        .count();
    near(
        share(no_email),
        rates::EMAIL_MISSING * (1.0 - rates::FAMILY_EMAIL),
        "e-mail missing",
    );
    let mut emails: BTreeMap<String, usize> = BTreeMap::new();
    for p in &patients {
        if let Some(e) = text(p, "Email") {
            *emails.entry(e.to_string()).or_default() += 1;
        }
    }
    let sharing = emails
        .values()
        .filter(|n| **n > 1)
        .map(|n| n - 1)
        .sum::<usize>();
    near(
        share(sharing),
        rates::FAMILY_EMAIL + rates::TRUE_DUPLICATE / 2.0,
        "patients sharing an earlier patient's e-mail",
    );
}
