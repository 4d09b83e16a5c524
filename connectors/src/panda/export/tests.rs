//! Export-folder source tests: equivalence with the SQLite layout on a
//! generated practice, and every bad input the folder can bring.

use std::path::Path;

use chrono::{TimeZone, Utc};
use cutover_engine::{ErrorClass, Source, SourceError, SourceItem, SourceKey, Value, Watermark};
use futures::StreamExt;

use super::ExportSource;
use crate::panda::gaps::gap_report;
use crate::panda::generator::{generate, GenerateOptions};
use crate::panda::reference::reference_tables;
use crate::panda::sqlite::read_records;

async fn items(source: &ExportSource, table: &str) -> Vec<Result<SourceItem, SourceError>> {
    source.stream(table, None).await.unwrap().collect().await
}

fn write(dir: &Path, file: &str, content: &[u8]) {
    std::fs::write(dir.join(file), content).unwrap();
}

fn practice(patients: u32, sqlite: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenerateOptions {
            patients,
            seed: 11,
            sqlite,
        },
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn a_generated_practice_reads_the_same_as_its_sqlite_database() {
    let dir = practice(25, true);
    let source = ExportSource::open(&dir.path().join("export")).unwrap();
    assert!(source.has_manifest());
    let conn = rusqlite::Connection::open(dir.path().join("panda.sqlite3")).unwrap();
    let inventory = source.discover().await.unwrap();
    assert!(gap_report(&inventory).is_empty());
    for table in reference_tables() {
        let from_sqlite = read_records(&conn, table).unwrap();
        let from_export: Vec<_> = items(&source, &table.name)
            .await
            .into_iter()
            .map(|item| match item.unwrap() {
                SourceItem::Record(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            from_export.len() as u64,
            inventory.table(&table.name).unwrap().row_count
        );
        assert_eq!(from_export.len(), from_sqlite.len(), "{}", table.name);
        for (e, s) in from_export.iter().zip(&from_sqlite) {
            assert_eq!(
                (&e.entity, &e.key, e.modified_at),
                (&s.entity, &s.key, s.modified_at)
            );
            assert_eq!(
                e.content_hash(),
                s.content_hash(),
                "{} {}",
                table.name,
                e.key
            );
        }
    }
    let site = items(&source, "PerioExamSite").await.remove(0).unwrap();
    let SourceItem::Record(site) = site else {
        panic!()
    };
    let parts = ["ExamID", "ToothNumber", "Site"].map(|c| site.get(c).unwrap().to_string());
    assert_eq!(
        site.key,
        SourceKey::from_parts(parts),
        "composite keys join the key columns in key order"
    );
}

const RECALL_HEADER: &str =
    "RuleID,Name,Classification,IntervalMonths,AppointmentType,IsActive,Color\n";

#[tokio::test]
async fn null_empty_string_bom_lf_and_extra_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"\xEF\xBB\xBF".to_vec();
    csv.extend_from_slice(RECALL_HEADER.as_bytes());
    csv.extend_from_slice(
        b"1,\"Stage III, 3 months\",,3,\"\",true,blue\n2,Default,Stage I,6,Recall,0,\"\"\n",
    );
    write(dir.path(), "RecallRule.csv", &csv);
    let source = ExportSource::open(dir.path()).unwrap();
    assert!(!source.has_manifest());
    let rows: Vec<_> = items(&source, "recallrule")
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    let SourceItem::Record(first) = &rows[0] else {
        panic!("{:?}", rows[0])
    };
    assert_eq!(first.key.as_str(), "1");
    assert_eq!(
        first.get("Name"),
        Some(&Value::Text("Stage III, 3 months".into()))
    );
    assert_eq!(first.get("Classification"), Some(&Value::Null));
    assert_eq!(
        first.get("AppointmentType"),
        Some(&Value::Text(String::new()))
    );
    assert_eq!(first.get("IsActive"), Some(&Value::Bool(true)));
    assert_eq!(
        first.get("Color"),
        Some(&Value::Text("blue".into())),
        "extra columns are carried as text"
    );
    assert_eq!(first.modified_at, None);
    let SourceItem::Record(second) = &rows[1] else {
        panic!()
    };
    assert_eq!(second.get("Color"), Some(&Value::Text(String::new())));
    assert_eq!(second.get("IsActive"), Some(&Value::Bool(false)));

    let inventory = source.discover().await.unwrap();
    let table = inventory.table("RecallRule").unwrap();
    assert_eq!(
        (table.row_count, table.primary_key.clone()),
        (2, vec!["RuleID".to_string()])
    );
    assert_eq!(table.columns.last().unwrap().sql_type, "NVARCHAR(MAX)");
    let gaps = gap_report(&inventory);
    assert_eq!(gaps.missing_tables.len(), reference_tables().len() - 1);
    assert_eq!(gaps.tables[0].extra_columns, ["Color"]);
}

#[tokio::test]
async fn a_value_that_does_not_fit_is_quarantined_with_its_place_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = format!("{RECALL_HEADER}1,Rule,,three,x,maybe,\n2,Rule,,6,x,1,\n3,Rule,,99999999999,x,1,\n,Nameless,,6,x,1,\n").into_bytes();
    csv.extend_from_slice(b"5,\xC3bad,,6,x,1,\n");
    write(dir.path(), "RecallRule.csv", &csv);
    let source = ExportSource::open(dir.path()).unwrap();
    let rows: Vec<_> = items(&source, "RecallRule")
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(rows.len(), 5, "every row comes out, readable or not");
    match &rows[0] {
        SourceItem::Unreadable {
            entity,
            key,
            place,
            reason,
        } => {
            assert_eq!(entity, "RecallRule");
            assert_eq!(key.as_ref().map(SourceKey::as_str), Some("1"));
            assert_eq!(
                place,
                "RecallRule.csv line 2 column IntervalMonths, IsActive"
            );
            assert!(
                reason.contains("IntervalMonths: not an integer")
                    && reason.contains("IsActive: BIT"),
                "{reason}"
            );
            assert!(
                !reason.contains("three") && !reason.contains("maybe"),
                "reasons never repeat values: {reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&rows[1], SourceItem::Record(r) if r.key.as_str() == "2"));
    assert!(
        matches!(&rows[2], SourceItem::Unreadable { reason, .. } if reason.contains("out of range for INT"))
    );
    assert!(
        matches!(&rows[3], SourceItem::Unreadable { key: None, reason, .. } if reason.contains("RuleID: empty (NULL) in a NOT NULL column"))
    );
    assert!(
        matches!(&rows[4], SourceItem::Unreadable { place, reason, .. } if place.ends_with("line 6 column Name") && reason.contains("UTF-8"))
    );
}

#[tokio::test]
async fn a_malformed_line_stops_the_stream_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "RecallRule.csv",
        format!("{RECALL_HEADER}1,Rule,,3,x,1,\n2,Rule,,6,x\n3,Rule,,6,x,1,\n").as_bytes(),
    );
    let source = ExportSource::open(dir.path()).unwrap();
    let rows = items(&source, "RecallRule").await;
    assert_eq!(rows.len(), 2, "the good row, then the error, then nothing");
    assert!(rows[0].is_ok());
    let error = rows[1].as_ref().unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SourceError::Malformed { .. }));
    assert!(
        message.contains("RecallRule.csv line 3 column IsActive"),
        "{message}"
    );
    assert!(
        message.contains("5 fields where the header has 7"),
        "{message}"
    );

    write(
        dir.path(),
        "RecallRule.csv",
        format!("{RECALL_HEADER}1,Rule,,3,x,1,\n2,\"Rule,,6,x,1,\n3,Rule,,6,x,1,\n").as_bytes(),
    );
    let error = ExportSource::open(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("RecallRule.csv")
            && error
                .to_string()
                .contains("opened on line 3 is never closed"),
        "{error}"
    );
}

#[tokio::test]
async fn manifest_mismatches_are_caught_before_anything_is_read() {
    let dir = practice(5, false);
    let export = dir.path().join("export");
    ExportSource::open(&export).unwrap();

    let original = std::fs::read(export.join("Patient.csv")).unwrap();
    let mut altered = original.clone();
    let at = altered.iter().rposition(|b| *b == b'1').unwrap();
    altered[at] = b'2';
    write(&export, "Patient.csv", &altered);
    let error = ExportSource::open(&export).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("Patient.csv") && message.contains("does not match manifest.json"),
        "{message}"
    );
    assert_eq!(error.class(), ErrorClass::Terminal);

    let last_line = original[..original.len() - 2]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    write(&export, "Patient.csv", &original[..last_line]);
    let message = ExportSource::open(&export).unwrap_err().to_string();
    assert!(
        message.contains("the manifest says 5 rows") && message.contains("the file has 4 rows"),
        "{message}"
    );

    write(&export, "Patient.csv", &original);
    std::fs::remove_file(export.join("Appointment.csv")).unwrap();
    let message = ExportSource::open(&export).unwrap_err().to_string();
    assert!(
        message.contains("Appointment.csv") && message.contains("file is missing"),
        "{message}"
    );

    std::fs::copy(export.join("Patient.csv"), export.join("Appointment.csv")).unwrap();
    write(&export, "Extra.csv", b"A\n1\n");
    let message = ExportSource::open(&export).unwrap_err().to_string();
    assert!(
        message.contains("Extra.csv is in the folder but not in the manifest"),
        "{message}"
    );

    write(&export, "manifest.json", b"{\"tables\": ");
    let message = ExportSource::open(&export).unwrap_err().to_string();
    assert!(
        message.contains("manifest.json") && message.contains("not a valid manifest"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_tables_folders_and_duplicate_headers() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "RecallRule.csv", RECALL_HEADER.as_bytes());
    let source = ExportSource::open(dir.path()).unwrap();
    let error = source
        .stream("tblRecall", None)
        .await
        .err()
        .expect("unknown table");
    assert!(
        matches!(&error, SourceError::MissingTable { table, .. } if table == "tblRecall"),
        "{error}"
    );
    assert!(matches!(
        source.count("tblRecall").await,
        Err(SourceError::MissingTable { .. })
    ));
    // The format allows a reference table with no rows to be absent.
    assert_eq!(source.count("Document").await.unwrap(), 0);
    assert!(items(&source, "Document").await.is_empty());
    assert!(items(&source, "RecallRule").await.is_empty());

    let error = ExportSource::open(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(error, SourceError::Config(_)) && error.to_string().contains("nope"));

    write(dir.path(), "RecallRule.csv", b"RuleID,Name,ruleid\n");
    let message = ExportSource::open(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("RecallRule.csv line 1 column ruleid")
            && message.contains("appears twice"),
        "{message}"
    );
}

#[tokio::test]
async fn a_watermark_keeps_only_rows_modified_after_it() {
    let dir = practice(40, false);
    let source = ExportSource::open(&dir.path().join("export")).unwrap();
    let since = Watermark {
        modified_after: Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
    };
    let all: Vec<_> = items(&source, "Patient")
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    let delta: Vec<_> = source
        .stream("Patient", Some(since))
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    let expected = all
        .iter()
        .filter(
            |i| matches!(i, SourceItem::Record(r) if r.modified_at.unwrap() > since.modified_after),
        )
        .count();
    assert!(
        expected > 0 && expected < all.len(),
        "the watermark splits the table"
    );
    assert_eq!(delta.len(), expected);
    // No modification column: the whole table streams, the engine compares hashes.
    let sites = source.count("PerioExamSite").await.unwrap();
    assert_eq!(
        source
            .stream("PerioExamSite", Some(since))
            .await
            .unwrap()
            .count()
            .await as u64,
        sites
    );
}

#[tokio::test]
async fn a_file_changed_after_the_check_fails_the_stream_instead_of_ending_it() {
    let dir = practice(5, false);
    let export = dir.path().join("export");
    let source = ExportSource::open(&export).unwrap();
    let original = std::fs::read_to_string(export.join("Patient.csv")).unwrap();
    // Same number of rows, different bytes (a name edited after the check).
    let changed = original.replacen(",1,2", ",1,3", 1);
    assert_ne!(changed, original);
    write(&export, "Patient.csv", changed.as_bytes());
    let rows = items(&source, "Patient").await;
    assert_eq!(rows.iter().filter(|r| r.is_ok()).count(), 5);
    let last = rows.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(last, SourceError::Interrupted { rows_read: 5, .. }),
        "{last}"
    );
    assert!(
        last.to_string().contains("changed while it was read"),
        "{last}"
    );
    assert_eq!(last.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn rows_out_of_key_order_or_with_duplicate_keys_fail_loudly() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "RecallRule.csv",
        format!("{RECALL_HEADER}1,A,,3,x,1,\n10,B,,3,x,1,\n9,C,,3,x,1,\n").as_bytes(),
    );
    let source = ExportSource::open(dir.path()).unwrap();
    let rows = items(&source, "RecallRule").await;
    assert_eq!(rows.len(), 3, "two rows in order, then the error");
    let message = rows[2].as_ref().unwrap_err().to_string();
    assert!(
        message.contains("RecallRule.csv line 4")
            && message.contains("row 9 is out of primary-key order (after 10)"),
        "{message}"
    );
    assert!(message.contains("sorted by RuleID"), "{message}");

    write(dir.path(), "PerioExamSite.csv", b"ExamID,ToothNumber,Site,ProbingDepth,Recession,AttachmentLevel,Bleeding,Suppuration,Plaque\n1,2,B,3,0,3,0,0,0\n1,2,DB,3,0,3,0,0,0\n1,10,B,3,0,3,0,0,0\n1,10,b,3,0,3,0,0,0\n");
    let source = ExportSource::open(dir.path()).unwrap();
    let rows = items(&source, "PerioExamSite").await;
    assert!(
        rows[..3].iter().all(Result::is_ok),
        "tooth 10 sorts after tooth 2 (numbers, not text)"
    );
    let message = rows[3].as_ref().unwrap_err().to_string();
    assert!(
        message.contains("row 1/10/b is a duplicate primary key (after 1/10/B)"),
        "{message}"
    );
}
