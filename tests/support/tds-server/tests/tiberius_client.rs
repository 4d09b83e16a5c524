//! The server as tiberius sees it: every column type, PLP values spanning
//! packets, NULLs, parameters, errors, TLS modes, the SQL Browser, the
//! select-only log and the mid-stream drop.

use cutover_tds_testserver::{Encryption, ServerConfig, TdsServer};
use futures::TryStreamExt;
use tiberius::{AuthMethod, Client, ColumnData, ColumnType, Config, EncryptionLevel, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(&dir.path().join("db.sqlite3"));
    dir
}

/// One table with every reference column type, declared per the database contract.
fn write_fixture(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE Sample (
            ID INT NOT NULL PRIMARY KEY, Flag BIT NOT NULL, Tiny TINYINT NULL, Small SMALLINT NULL, Big BIGINT NULL,
            Amount DECIMAL(5,2) NULL, Code CHAR(3) NULL, Label VARCHAR(10) NULL, Name NVARCHAR(100) NULL,
            Notes NVARCHAR(-1) NULL, Born DATE NULL, Seen DATETIME2(3) NULL, Blob VARBINARY(-1) NULL);",
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE Codes (Code VARCHAR(5) NOT NULL PRIMARY KEY);
         INSERT INTO Codes VALUES ('b'), ('A'), ('C'), ('a2');",
    )
    .unwrap();
    let long_text: String = "Zahnfleisch ✓ ".repeat(800); // > 10 kB in UTF-16
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    conn.execute(
        "INSERT INTO Sample VALUES (1, 1, 200, -5, 9000000000, '12.50', 'AB', 'plain', 'Zoë 😀', ?1, '1960-02-29', '2024-05-06 07:08:09.123', ?2)",
        rusqlite::params![long_text, blob],
    )
    .unwrap();
    conn.execute("INSERT INTO Sample (ID, Flag) VALUES (2, 0)", [])
        .unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(id) AS (SELECT 3 UNION ALL SELECT id + 1 FROM n WHERE id < 1000)
         INSERT INTO Sample (ID, Flag, Name) SELECT id, 1, 'row' FROM n;",
    )
    .unwrap();
}

async fn connect(config: Config) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

fn client_config(server: &TdsServer, password: &str, encryption: EncryptionLevel) -> Config {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.port());
    config.database("PANDA");
    config.authentication(AuthMethod::sql_server("panda_ro", password));
    config.encryption(encryption);
    config.trust_cert();
    config
}

async fn start(dir: &tempfile::TempDir, encryption: Encryption) -> TdsServer {
    let mut config = ServerConfig::new(dir.path().join("db.sqlite3"));
    config.encryption = encryption;
    config.instance_name = Some("SQLEXPRESS".into());
    TdsServer::start(config).await.unwrap()
}

#[tokio::test]
async fn every_type_round_trips_with_plp_values_spanning_packets() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let mut stream = client
        .query(
            "SELECT * FROM [dbo].[Sample] WHERE [ID] <= @P1 ORDER BY [ID]",
            &[&2i32],
        )
        .await
        .unwrap();
    let columns: Vec<ColumnType> = stream
        .columns()
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|c| c.column_type())
        .collect();
    assert_eq!(
        columns,
        vec![
            ColumnType::Int4,
            ColumnType::Bitn,
            ColumnType::Int1,
            ColumnType::Int2,
            ColumnType::Int8,
            ColumnType::Decimaln,
            ColumnType::BigChar,
            ColumnType::BigVarChar,
            ColumnType::NVarchar,
            ColumnType::NVarchar,
            ColumnType::Daten,
            ColumnType::Datetime2,
            ColumnType::BigVarBin
        ]
    );
    let rows = stream.into_first_result().await.unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.try_get::<i32, _>("ID").unwrap(), Some(1));
    assert_eq!(r.try_get::<bool, _>("Flag").unwrap(), Some(true));
    assert_eq!(r.try_get::<u8, _>("Tiny").unwrap(), Some(200));
    assert_eq!(r.try_get::<i16, _>("Small").unwrap(), Some(-5));
    assert_eq!(r.try_get::<i64, _>("Big").unwrap(), Some(9_000_000_000));
    assert_eq!(
        r.try_get::<rust_decimal::Decimal, _>("Amount")
            .unwrap()
            .unwrap()
            .to_string(),
        "12.50"
    );
    assert_eq!(
        r.try_get::<&str, _>("Code").unwrap(),
        Some("AB "),
        "CHAR(3) is space-padded like SQL Server"
    );
    assert_eq!(r.try_get::<&str, _>("Label").unwrap(), Some("plain"));
    assert_eq!(r.try_get::<&str, _>("Name").unwrap(), Some("Zoë 😀"));
    assert_eq!(
        r.try_get::<&str, _>("Notes").unwrap().unwrap(),
        "Zahnfleisch ✓ ".repeat(800)
    );
    assert_eq!(
        r.try_get::<chrono::NaiveDate, _>("Born")
            .unwrap()
            .unwrap()
            .to_string(),
        "1960-02-29"
    );
    assert_eq!(
        r.try_get::<chrono::NaiveDateTime, _>("Seen")
            .unwrap()
            .unwrap()
            .to_string(),
        "2024-05-06 07:08:09.123"
    );
    let blob: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.try_get::<&[u8], _>("Blob").unwrap().unwrap(), &blob[..]);
    // Row 2: every nullable column NULL (NBCROW).
    let r = &rows[1];
    for (i, cell) in r.cells().enumerate().skip(2) {
        let null = match cell.1 {
            ColumnData::U8(v) => v.is_none(),
            ColumnData::I16(v) => v.is_none(),
            ColumnData::I32(v) => v.is_none(),
            ColumnData::I64(v) => v.is_none(),
            ColumnData::Numeric(v) => v.is_none(),
            ColumnData::String(v) => v.is_none(),
            ColumnData::Binary(v) => v.is_none(),
            ColumnData::Date(v) => v.is_none(),
            ColumnData::DateTime2(v) => v.is_none(),
            other => panic!("unexpected cell {other:?}"),
        };
        assert!(null, "column {i} should be NULL");
    }
    assert_eq!(server.violations(), vec![]);
}

#[tokio::test]
async fn bad_password_gets_18456_and_bad_table_gets_208() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let err = connect(client_config(
        &server,
        "wrong",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap_err();
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 18456);
            assert_eq!(e.message(), "Login failed for user 'panda_ro'.");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let err = match client.simple_query("SELECT * FROM dbo.Nope").await {
        Ok(stream) => stream.into_results().await.unwrap_err(),
        Err(e) => e,
    };
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 208);
            assert_eq!(e.message(), "Invalid object name 'Nope'.");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // The connection stays usable after an error.
    let count = client
        .simple_query("SELECT COUNT_BIG(*) FROM dbo.Sample")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count.get::<i64, _>(0), Some(1000));
}

#[tokio::test]
async fn select_only_mode_refuses_and_logs_anything_else() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let err = client
        .execute("DELETE FROM Sample WHERE ID = @P1", &[&1i32])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let violations = server.violations();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].sql, "DELETE FROM Sample WHERE ID = @P1");
    let rows = client
        .simple_query("SELECT ID FROM Sample WHERE ID = 1")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the row is still there");
}

#[tokio::test]
async fn tls_modes_login_only_and_full_work_and_a_mismatch_is_refused() {
    let dir = fixture();
    for (server_mode, client_mode) in [
        (Encryption::Off, EncryptionLevel::Off),
        (Encryption::On, EncryptionLevel::Required),
        (Encryption::Required, EncryptionLevel::On),
        (Encryption::Off, EncryptionLevel::Required),
    ] {
        let server = start(&dir, server_mode).await;
        let mut client = connect(client_config(&server, "panda-test-pw", client_mode))
            .await
            .unwrap_or_else(|e| panic!("{server_mode:?}/{client_mode:?}: {e}"));
        let rows = client
            .simple_query("SELECT Notes FROM Sample WHERE ID = 1")
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        assert_eq!(
            rows[0].get::<&str, _>(0).unwrap().len(),
            "Zahnfleisch ✓ ".len() * 800,
            "{server_mode:?}/{client_mode:?}"
        );
    }
    let plain = start(&dir, Encryption::NotSupported).await;
    let err = connect(client_config(
        &plain,
        "panda-test-pw",
        EncryptionLevel::Required,
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("encryption"), "{err}");
}

#[tokio::test]
async fn named_instance_resolves_through_the_sql_browser() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut config = client_config(&server, "panda-test-pw", EncryptionLevel::NotSupported);
    config.instance_name("SQLEXPRESS");
    config.port(server.browser_port().unwrap());
    let tcp = TcpStream::connect_named(&config).await.unwrap();
    let mut client = Client::connect(config, tcp.compat_write()).await.unwrap();
    let row = client
        .simple_query("SELECT @@VERSION")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert!(row.get::<&str, _>(0).unwrap().contains("SQL Server"));
}

#[tokio::test]
async fn fault_plan_cuts_the_stream_and_the_client_sees_an_error_not_an_end() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    server.drop_connection_after(500, 1);
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let mut stream = client
        .simple_query("SELECT ID, Name FROM Sample ORDER BY ID")
        .await
        .unwrap()
        .into_row_stream();
    let mut seen = 0;
    let result = loop {
        match stream.try_next().await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(result.is_err(), "a cut stream must end in an error");
    assert!(seen < 1000, "saw {seen} rows");
    assert_eq!(server.connections_dropped(), 1);
    // The plan was one-shot: a new connection reads everything.
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let rows = client
        .simple_query("SELECT ID FROM Sample")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
}

#[tokio::test]
async fn information_schema_describes_the_tables() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let rows = client
        .query(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = @P1 ORDER BY ORDINAL_POSITION",
            &[&"Sample"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 13);
    assert_eq!(rows[0].get::<&str, _>(0), Some("ID"));
    assert_eq!(rows[9].get::<&str, _>(0), Some("Notes"));
    assert_eq!(rows[9].get::<&str, _>(1), Some("nvarchar"));
    assert_eq!(rows[9].get::<i32, _>(2), Some(-1));
}

#[tokio::test]
async fn sp_executesql_decodes_every_parameter_type_tiberius_sends() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let at = chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
        .unwrap()
        .and_hms_milli_opt(7, 8, 9, 123)
        .unwrap();
    let born = chrono::NaiveDate::from_ymd_opt(1960, 2, 29).unwrap();
    let amount = rust_decimal::Decimal::new(-1250, 2);
    let long_text = "é".repeat(5000); // over 4000 bytes: sent as nvarchar(max), PLP
    let blob: &[u8] = &[0, 1, 2, 255];
    let row = client
        .query(
            "SELECT @P1 AS i, @P2 AS b, @P3 AS s, @P4 AS t, @P5 AS d, @P6 AS n, @P7 AS x, @P8 AS l, @P9 AS z, @P10 AS f",
            &[&42i64, &true, &"Zoë", &at, &born, &amount, &blob, &long_text.as_str(), &Option::<i32>::None, &1.5f64],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i64, _>("i"), Some(42));
    assert_eq!(row.get::<i64, _>("b"), Some(1));
    assert_eq!(row.get::<&str, _>("s"), Some("Zoë"));
    assert_eq!(row.get::<&str, _>("t"), Some("2024-05-06 07:08:09.123"));
    assert_eq!(row.get::<&str, _>("d"), Some("1960-02-29"));
    assert_eq!(row.get::<&str, _>("n"), Some("-12.50"));
    assert_eq!(row.get::<&[u8], _>("x"), Some(blob));
    assert_eq!(
        row.get::<&str, _>("l").map(|s| s.chars().count()),
        Some(5000)
    );
    assert_eq!(row.get::<&str, _>("z"), None);
    assert_eq!(row.get::<f64, _>("f"), Some(1.5));
    let logged = server.statements();
    assert_eq!(logged.last().unwrap().via, "rpc");
}

#[tokio::test]
async fn text_compares_and_sorts_case_insensitively_like_the_announced_collation() {
    let dir = fixture();
    let server = start(&dir, Encryption::NotSupported).await;
    let mut client = connect(client_config(
        &server,
        "panda-test-pw",
        EncryptionLevel::NotSupported,
    ))
    .await
    .unwrap();
    let codes = |rows: Vec<tiberius::Row>| -> Vec<String> {
        rows.iter()
            .map(|r| r.get::<&str, _>(0).unwrap().to_string())
            .collect()
    };
    let all = client
        .simple_query("SELECT Code FROM Codes ORDER BY Code")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(codes(all), vec!["A", "a2", "b", "C"]);
    let after = client
        .query(
            "SELECT Code FROM Codes WHERE Code > @P1 ORDER BY Code",
            &[&"a2"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(codes(after), vec!["b", "C"]);
}
