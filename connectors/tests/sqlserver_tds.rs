//! The SQL Server source against the TDS test server over a real socket, on a
//! generated practice: discovery, equivalence with the export folder (content
//! hash for content hash), SELECT-only, delta, bad input (unreachable host,
//! bad login, missing table, values that do not fit, a connection lost
//! mid-stream), TLS modes and named instances.

use std::path::{Path, PathBuf};

use cutover_connectors::panda::export::ExportSource;
use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_connectors::panda::reference::reference_tables;
use cutover_connectors::panda::sqlserver::{RetryPolicy, SqlServerConfig, SqlServerSource};
use cutover_engine::{Source, SourceError, SourceItem, Watermark};
use cutover_tds_testserver::{Encryption, ServerConfig, TdsServer};
use futures::StreamExt;

const PASSWORD: &str = "panda-test-pw";

struct Practice {
    _dir: tempfile::TempDir,
    export: PathBuf,
    sqlite: PathBuf,
}

/// 40 patients: the generator forces every kind of dirt at least once (a note over 64 KB included).
fn practice() -> Practice {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(
        dir.path(),
        &GenerateOptions {
            patients: 40,
            seed: 7,
            sqlite: true,
        },
    )
    .unwrap();
    Practice {
        export: summary.export_dir,
        sqlite: summary.sqlite_path.unwrap(),
        _dir: dir,
    }
}

async fn serve(db: &Path, encryption: Encryption, instance: Option<&str>) -> TdsServer {
    let mut config = ServerConfig::new(db);
    config.encryption = encryption;
    config.instance_name = instance.map(str::to_string);
    config.logins = vec![("panda_ro".into(), PASSWORD.into())];
    TdsServer::start(config).await.unwrap()
}

fn ado(server: &TdsServer, extra: &str) -> String {
    format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT;{extra}",
        server.port()
    )
}

fn config(ado: &str, password: &str) -> SqlServerConfig {
    let mut c = SqlServerConfig::parse(ado, password.into()).unwrap();
    c.retry = RetryPolicy {
        max_resumes: 2,
        first_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(20),
    };
    c
}

async fn read_all(
    source: &dyn Source,
    table: &str,
    since: Option<Watermark>,
) -> Vec<Result<SourceItem, SourceError>> {
    source.stream(table, since).await.unwrap().collect().await
}

fn records(items: Vec<Result<SourceItem, SourceError>>) -> Vec<(String, [u8; 32])> {
    items
        .into_iter()
        .map(|item| match item.unwrap() {
            SourceItem::Record(r) => (r.key.to_string(), r.content_hash()),
            SourceItem::Unreadable { place, reason, .. } => {
                panic!("unexpected unreadable row at {place}: {reason}")
            }
        })
        .collect()
}

#[tokio::test]
async fn same_practice_through_export_and_tds_gives_the_same_records_hash_for_hash() {
    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    let export = ExportSource::open(&practice.export).unwrap();

    let inventory = tds.discover().await.unwrap();
    let export_inventory = export.discover().await.unwrap();
    assert_eq!(inventory.tables.len(), reference_tables().len());
    for table in reference_tables() {
        let over_tds = inventory
            .table(&table.name)
            .unwrap_or_else(|| panic!("{} not discovered", table.name));
        let from_export = export_inventory.table(&table.name).unwrap();
        assert_eq!(
            over_tds.row_count, from_export.row_count,
            "{} row count",
            table.name
        );
        assert_eq!(
            over_tds.primary_key, table.primary_key,
            "{} key",
            table.name
        );
        let types: Vec<String> = over_tds
            .columns
            .iter()
            .map(|c| c.sql_type.clone())
            .collect();
        let reference: Vec<String> = table
            .columns
            .iter()
            .map(|c| c.sql_type.to_string())
            .collect();
        assert_eq!(types, reference, "{} column types", table.name);
    }
    assert!(
        cutover_connectors::panda::gaps::gap_report(&inventory).is_empty(),
        "no gaps against the reference"
    );

    let mut total = 0;
    for table in reference_tables() {
        let over_tds = records(read_all(&tds, &table.name, None).await);
        let from_export = records(read_all(&export, &table.name, None).await);
        assert_eq!(
            over_tds.len() as u64,
            inventory.table(&table.name).unwrap().row_count,
            "{}",
            table.name
        );
        assert!(
            over_tds == from_export,
            "{}: records differ between the TDS server and the export folder",
            table.name
        );
        total += over_tds.len();
    }
    assert!(total > 10_000, "a real practice, not a toy: {total} rows");

    // Strictly read-only: everything the connector sent was a SELECT.
    let statements = server.statements();
    assert!(!statements.is_empty());
    assert_eq!(server.violations(), vec![]);
    for s in &statements {
        assert!(
            s.sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("SELECT "),
            "non-SELECT sent: {}",
            s.sql
        );
    }
}

#[tokio::test]
async fn delta_streams_only_rows_modified_after_the_watermark() {
    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    let all: Vec<_> = read_all(&tds, "Patient", None)
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    let mut stamps: Vec<_> = all
        .iter()
        .map(|i| match i {
            SourceItem::Record(r) => r.modified_at.unwrap(),
            _ => unreachable!(),
        })
        .collect();
    stamps.sort();
    let watermark = Watermark {
        modified_after: stamps[stamps.len() / 2],
    };
    let expected = stamps
        .iter()
        .filter(|t| **t > watermark.modified_after)
        .count();
    let delta = read_all(&tds, "Patient", Some(watermark)).await;
    assert_eq!(delta.len(), expected);
    assert!(expected > 0 && expected < all.len());
    for item in delta {
        match item.unwrap() {
            SourceItem::Record(r) => assert!(r.modified_at.unwrap() > watermark.modified_after),
            other => panic!("{other:?}"),
        }
    }
    assert!(server
        .statements()
        .iter()
        .any(|s| s.via == "rpc" && s.sql.contains("[ModifiedAt] > @P1")));

    // A table without a modification column streams whole (the engine compares content hashes).
    let sites = read_all(&tds, "PerioExamSite", None).await.len();
    assert_eq!(
        read_all(&tds, "PerioExamSite", Some(watermark)).await.len(),
        sites
    );
}

#[tokio::test]
async fn a_connection_lost_mid_stream_resumes_after_the_last_key_without_duplicates() {
    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    let baseline = records(read_all(&tds, "PerioExamSite", None).await);
    assert!(baseline.len() > 2_000);
    server.drop_connection_after(1_000, 2);
    let resumed = records(read_all(&tds, "PerioExamSite", None).await);
    assert_eq!(server.connections_dropped(), 2);
    assert!(
        resumed == baseline,
        "resumed extract differs: {} vs {} rows",
        resumed.len(),
        baseline.len()
    );
}

#[tokio::test]
async fn a_connection_that_keeps_dropping_fails_loudly_never_a_short_complete_extract() {
    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    server.drop_connection_after(500, 100);
    let items = read_all(&tds, "PerioExamSite", None).await;
    let (last, rows) = items.split_last().unwrap();
    assert!(rows.iter().all(|r| r.is_ok()));
    match last {
        Err(SourceError::Interrupted {
            table,
            rows_read,
            message,
        }) => {
            assert_eq!(table, "PerioExamSite");
            assert_eq!(*rows_read as usize, rows.len());
            assert!(
                message.contains("gave up after 2 resume attempts"),
                "{message}"
            );
        }
        other => panic!("expected Interrupted at the end, got {other:?}"),
    }
    assert_eq!(
        server.connections_dropped(),
        3,
        "first read plus two resumes"
    );
}

#[tokio::test]
async fn bad_login_shows_18456_and_never_the_password() {
    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let err = SqlServerSource::open(config(&ado(&server, ""), "wrong-secret-123"))
        .await
        .err()
        .unwrap();
    match &err {
        SourceError::LoginFailed { message, .. } => {
            assert!(
                message.contains("Login failed for user 'panda_ro'."),
                "{message}"
            );
            assert!(message.contains("18456"), "{message}");
        }
        other => panic!("expected LoginFailed, got {other:?}"),
    }
    assert!(!err.to_string().contains("wrong-secret-123"));
    assert_eq!(server.logins_refused(), 1);
}

#[tokio::test]
async fn unreachable_host_and_missing_table_are_clear_errors() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = SqlServerSource::open(config(
        &format!(
            "Server=tcp:127.0.0.1,{port};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT"
        ),
        PASSWORD,
    ))
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1,{port}")),
        "{err}"
    );

    let practice = practice();
    let server = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    let err = tds.stream("PatientNotes", None).await.err().unwrap();
    assert!(
        matches!(&err, SourceError::MissingTable { table, .. } if table == "PatientNotes"),
        "{err:?}"
    );
    let err = tds.count("PatientNotes").await.unwrap_err();
    assert!(matches!(err, SourceError::MissingTable { .. }), "{err:?}");
}

#[tokio::test]
async fn tls_modes_and_a_named_instance_through_the_sql_browser() {
    let practice = practice();
    // Full TLS, self-signed certificate trusted explicitly, named instance resolved via the SQL Browser.
    let server = serve(&practice.sqlite, Encryption::Required, Some("SQLEXPRESS")).await;
    let browser = server.browser_port().unwrap();
    let named = format!(
        "Server=tcp:127.0.0.1\\SQLEXPRESS,{browser};Database=PANDA;User Id=panda_ro;Encrypt=true;TrustServerCertificate=true"
    );
    let tds = SqlServerSource::open(config(&named, PASSWORD))
        .await
        .unwrap();
    assert_eq!(
        tds.count("Patient").await.unwrap(),
        ExportSource::open(&practice.export)
            .unwrap()
            .count("Patient")
            .await
            .unwrap()
    );
    assert!(tds.describe().contains("127.0.0.1\\SQLEXPRESS"));

    // An instance the SQL Browser does not know: a clear "unreachable" naming the instance.
    let unknown = named.replace("SQLEXPRESS", "PANDA2");
    let err = SqlServerSource::open(config(&unknown, PASSWORD))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("PANDA2"), "{err}");

    // Pinning the server's certificate as the CA (TrustServerCertificateCA) also verifies.
    let ca = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
    std::fs::write(ca.path(), server.certificate_pem().unwrap()).unwrap();
    let pinned = format!(
        "Server=tcp:localhost,{};Database=PANDA;User Id=panda_ro;Encrypt=true;TrustServerCertificateCA={}",
        server.port(),
        ca.path().display()
    );
    let tds = SqlServerSource::open(config(&pinned, PASSWORD))
        .await
        .unwrap();
    assert!(tds.count("Practice").await.unwrap() == 1);

    // Without trusting the self-signed certificate the handshake fails, and says what to do.
    let untrusted = format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=true",
        server.port()
    );
    let err = SqlServerSource::open(config(&untrusted, PASSWORD))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("TrustServerCertificate"), "{err}");

    // Login-only TLS (Encrypt=false) against a server that offers TLS without forcing it.
    let login_only = serve(&practice.sqlite, Encryption::Off, None).await;
    let tds = SqlServerSource::open(config(
        &format!("Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=false;TrustServerCertificate=true", login_only.port()),
        PASSWORD,
    ))
    .await
    .unwrap();
    assert_eq!(records(read_all(&tds, "Practice", None).await).len(), 1);

    // Encrypt=true against a server without TLS is refused, not silently downgraded.
    let plain = serve(&practice.sqlite, Encryption::NotSupported, None).await;
    let err = SqlServerSource::open(config(
        &format!("Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=true;TrustServerCertificate=true", plain.port()),
        PASSWORD,
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("encryption"), "{err}");
}

/// Another install: dates and numbers kept in text columns, an extra column, one bad date.
#[tokio::test]
async fn text_stored_dates_and_numbers_are_coerced_and_a_bad_value_is_quarantined_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("install.sqlite3");
    let conn = rusqlite_setup(&db);
    drop(conn);
    let server = serve(&db, Encryption::NotSupported, None).await;
    let tds = SqlServerSource::open(config(&ado(&server, ""), PASSWORD))
        .await
        .unwrap();
    let items: Vec<SourceItem> = read_all(&tds, "Patient", None)
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(items.len(), 3, "every row comes out, the bad one included");
    match &items[0] {
        SourceItem::Record(r) => {
            assert_eq!(r.get("DateOfBirth").unwrap().to_string(), "1960-02-29");
            assert_eq!(r.get("BOPPercent").unwrap().to_string(), "12.5");
            assert_eq!(
                r.get("ModifiedAt").unwrap().to_string(),
                "2024-05-06T07:08:09.123Z"
            );
            assert_eq!(
                r.modified_at.unwrap().to_string(),
                "2024-05-06 07:08:09.123 UTC"
            );
            assert_eq!(
                r.get("FavoriteColor").unwrap().to_string(),
                "teal",
                "extra columns are carried"
            );
        }
        other => panic!("{other:?}"),
    }
    match &items[1] {
        SourceItem::Unreadable {
            entity,
            key,
            place,
            reason,
        } => {
            assert_eq!(entity, "Patient");
            assert_eq!(key.as_ref().unwrap().as_str(), "2");
            assert!(
                place.contains("Patient") && place.contains("DateOfBirth"),
                "{place}"
            );
            assert!(reason.contains("not a date"), "{reason}");
            assert!(
                !reason.contains("Smith") && !place.contains("Smith"),
                "no PHI in the reason"
            );
        }
        other => panic!("expected the bad date quarantined, got {other:?}"),
    }
    assert!(matches!(&items[2], SourceItem::Record(r) if r.key.as_str() == "3"));

    // Delta on a text-stored ModifiedAt filters by parsed time here (text order is not time order):
    // the quarantined row still comes through, the older record does not.
    let since = Watermark {
        modified_after: "2024-05-06T07:08:09.500Z".parse().unwrap(),
    };
    let delta: Vec<SourceItem> = read_all(&tds, "Patient", Some(since))
        .await
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(delta.len(), 2);
    assert!(matches!(&delta[0], SourceItem::Unreadable { key: Some(k), .. } if k.as_str() == "2"));
    assert!(matches!(&delta[1], SourceItem::Record(r) if r.key.as_str() == "3"));
}

fn rusqlite_setup(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE Patient (PatientID INT NOT NULL PRIMARY KEY, LastName NVARCHAR(100) NULL,
            DateOfBirth NVARCHAR(30) NULL, BOPPercent NVARCHAR(10) NULL, FavoriteColor NVARCHAR(20) NULL,
            ModifiedAt NVARCHAR(30) NOT NULL);
         INSERT INTO Patient VALUES (1, 'Doe', '1960-02-29', '12.5', 'teal', '2024-05-06 07:08:09.123');
         INSERT INTO Patient VALUES (2, 'Smith', 'Smith-31/02', '3', NULL, '2024-05-06 07:08:10.000');
         INSERT INTO Patient VALUES (3, 'Roe', '02/28/1971', NULL, NULL, '2024-05-06T07:08:11Z');",
    )
    .unwrap();
    conn
}
