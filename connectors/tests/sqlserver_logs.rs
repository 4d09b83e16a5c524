//! No patient data and no password in the logs: a whole extract of the
//! Patient table over TDS — with a connection drop and a resume, so the
//! warning path runs too — captured at TRACE level (the connector's logs and
//! tiberius's, with the filter directives the CLI always adds), then searched
//! for the password and for every patient's names, e-mail and phone numbers.
//! Without `LOG_DIRECTIVES_WITHOUT_PHI` this fails: tiberius traces every row.

use std::io::Write;
use std::sync::{Arc, Mutex};

use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_connectors::panda::sqlserver::{
    RetryPolicy, SqlServerConfig, SqlServerSource, LOG_DIRECTIVES_WITHOUT_PHI,
};
use cutover_engine::{Source, SourceItem, Value};
use cutover_tds_testserver::{ServerConfig, TdsServer};
use futures::StreamExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_of_an_interrupted_and_resumed_extract_carry_no_phi_and_no_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    // TRACE for everything, plus the directives the CLI always adds.
    let mut filter = tracing_subscriber::EnvFilter::new("trace");
    for directive in LOG_DIRECTIVES_WITHOUT_PHI {
        filter = filter.add_directive(directive.parse().unwrap());
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let summary = generate(
        dir.path(),
        &GenerateOptions {
            patients: 40,
            seed: 5,
            sqlite: true,
        },
    )
    .unwrap();
    let password = "Log-Secret-9137";
    let mut config = ServerConfig::new(summary.sqlite_path.unwrap());
    config.logins = vec![("panda_ro".into(), password.into())];
    let server = TdsServer::start(config).await.unwrap();
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT",
        server.port()
    );
    let mut config = SqlServerConfig::parse(&ado, password.into()).unwrap();
    config.retry = RetryPolicy {
        max_resumes: 2,
        first_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(5),
    };
    let source = SqlServerSource::open(config).await.unwrap();
    server.drop_connection_after(20, 1);
    let items: Vec<SourceItem> = source
        .stream("Patient", None)
        .await
        .unwrap()
        .map(|i| i.unwrap())
        .collect()
        .await;
    assert_eq!(server.connections_dropped(), 1, "the resume path ran");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("resuming after the last key"),
        "the capture works: {logs}"
    );
    assert!(!logs.contains(password), "the password reached the logs");
    let mut checked = 0;
    for item in &items {
        let SourceItem::Record(record) = item else {
            continue;
        };
        for column in ["FirstName", "LastName", "Email", "HomePhone", "MobilePhone"] {
            if let Some(Value::Text(value)) = record.get(column) {
                if value.chars().count() >= 4 {
                    let line = logs
                        .lines()
                        .find(|l| l.contains(value.as_str()))
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect::<String>();
                    assert!(
                        !logs.contains(value.as_str()),
                        "{column} of patient {} reached the logs: {line}",
                        record.key
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "checked {checked} values");
}
