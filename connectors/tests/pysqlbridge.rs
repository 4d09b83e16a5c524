//! Smoke and three-way equivalence test on one generated practice: the export
//! folder, the project's own TDS test server (its SQLite database), and an
//! independent TDS server — `pysqlbridge==2.1.3` from PyPI, installed by
//! `scripts/setup-tools` into `.tools/venv` — serving the export folder over
//! full TLS (`Encrypt=true;TrustServerCertificate=true`).
//!
//! Discovery over the bridge must find every table with the manifest's row
//! counts and every table must extract completely. The own server must give
//! exactly the export folder's records; the bridge must give the same content
//! hashes. The bridge infers only int / float / text from CSV (no DATE,
//! DATETIME2, DECIMAL or VARBINARY columns), so the connector coerces those to
//! the reference types (binary from the export's base64); it reads an empty
//! field as NULL, so empty text counts as NULL in that comparison.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover_connectors::panda::export::ExportSource;
use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_connectors::panda::reference::reference_tables;
use cutover_connectors::panda::sqlserver::{SqlServerConfig, SqlServerSource};
use cutover_engine::{Source, SourceItem, SourceRecord, Value};
use cutover_tds_testserver::{ServerConfig, TdsServer};
use futures::StreamExt;

const PASSWORD: &str = "bridge-test-pw";

fn bridge_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let python = root.join(".tools/venv/bin/python");
    let installed = python.exists()
        && Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; assert m.version('pysqlbridge') == '2.1.3'",
            ])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed,
        "pysqlbridge 2.1.3 is not installed in {}: run scripts/setup-tools first",
        python.display()
    );
    python
}

/// The bridge process; killed (by its own PID) when dropped.
struct Bridge {
    child: Child,
    port: u16,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bridge(export: &Path) -> Bridge {
    let python = bridge_python();
    let tables: Vec<serde_json::Value> = reference_tables()
        .iter()
        .map(|t| serde_json::json!({ "name": t.name, "csv": format!("{}.csv", t.name) }))
        .collect();
    let config = serde_json::json!({
        "logins": [{ "user": "panda_ro", "password": "${env:CUTOVER_BRIDGE_PW}" }],
        "tables": tables,
    });
    let config_path = export.join("pysqlbridge.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(python)
        .args([
            "-m",
            "pysqlbridge.server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--config",
        ])
        .arg(&config_path)
        .env("CUTOVER_BRIDGE_PW", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pysqlbridge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(Ok(()));
            }
            seen.push(line);
            if seen.len() > 200 {
                seen.remove(0);
            }
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    match rx.recv_timeout(deadline - Instant::now()) {
        Ok(Ok(())) => Bridge { child, port },
        Ok(Err(log)) => panic!("pysqlbridge exited before listening:\n{log}"),
        Err(_) => panic!("pysqlbridge did not report 'listening on' within 30 s"),
    }
}

/// A record as far as the bridge can carry it: empty text reads back as NULL.
fn comparable(record: &SourceRecord) -> SourceRecord {
    let mut out = record.clone();
    for value in out.fields.values_mut() {
        if matches!(value, Value::Text(s) if s.is_empty()) {
            *value = Value::Null;
        }
    }
    out
}

#[tokio::test]
async fn pysqlbridge_over_tls_serves_every_table_with_manifest_counts_and_equal_records() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(
        dir.path(),
        &GenerateOptions {
            patients: 40,
            seed: 11,
            sqlite: true,
        },
    )
    .unwrap();
    let bridge = start_bridge(&summary.export_dir);
    // The same practice through the project's own TDS server, for the three-way comparison.
    let own = TdsServer::start(ServerConfig::new(summary.sqlite_path.clone().unwrap()))
        .await
        .unwrap();
    let own_ado = format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT",
        own.port()
    );
    let tds =
        SqlServerSource::open(SqlServerConfig::parse(&own_ado, "panda-test-pw".into()).unwrap())
            .await
            .unwrap();
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=true;TrustServerCertificate=true",
        bridge.port
    );
    let source = SqlServerSource::open(SqlServerConfig::parse(&ado, PASSWORD.into()).unwrap())
        .await
        .unwrap();
    let export = ExportSource::open(&summary.export_dir).unwrap();

    let inventory = source.discover().await.unwrap();
    assert_eq!(summary.manifest.tables.len(), reference_tables().len());
    for (name, entry) in &summary.manifest.tables {
        let table = inventory
            .table(name)
            .unwrap_or_else(|| panic!("{name} not discovered over pysqlbridge"));
        assert_eq!(
            table.row_count, entry.rows,
            "{name} row count against the manifest"
        );
    }

    let mut compared = 0usize;
    for table in reference_tables() {
        let bridged: Vec<SourceItem> = source
            .stream(&table.name, None)
            .await
            .unwrap()
            .map(|i| i.unwrap())
            .collect()
            .await;
        let exported: Vec<SourceItem> = export
            .stream(&table.name, None)
            .await
            .unwrap()
            .map(|i| i.unwrap())
            .collect()
            .await;
        let own_tds: Vec<SourceItem> = tds
            .stream(&table.name, None)
            .await
            .unwrap()
            .map(|i| i.unwrap())
            .collect()
            .await;
        assert!(
            own_tds == exported,
            "{}: the TDS test server and the export folder differ",
            table.name
        );
        let expected_rows = summary.manifest.tables[&table.name].rows;
        assert_eq!(
            bridged.len() as u64,
            expected_rows,
            "{} extracted completely",
            table.name
        );
        for (b, e) in bridged.iter().zip(&exported) {
            match (b, e) {
                (SourceItem::Record(b), SourceItem::Record(e)) => {
                    assert_eq!(b.key, e.key, "{} rows in the same key order", table.name);
                    let (b, e) = (comparable(b), comparable(e));
                    assert!(
                        b.content_hash() == e.content_hash(),
                        "{} {}: differs\n bridge: {:?}\n export: {:?}",
                        table.name,
                        b.key,
                        b.fields,
                        e.fields
                    );
                    compared += 1;
                }
                other => panic!("{}: unexpected pair {other:?}", table.name),
            }
        }
    }
    assert!(compared > 10_000, "compared {compared} records");
}
