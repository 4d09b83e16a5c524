//! End-to-end: the real `cutover` binary against the TDS test server —
//! `discover --source sqlserver:<ADO string>` with the password from
//! `CUTOVER_SQL_PASSWORD`, and the clear failures (bad login with the 18456
//! message, a password put in the connection string) that never print the secret.

use std::path::Path;
use std::process::{Command, Output};

use cutover_tds_testserver::{ServerConfig, TdsServer};

const PASSWORD: &str = "e2e-Secret-pw-42";

fn cutover(args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
    command
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("CUTOVER_SQL_PASSWORD");
    if let Some(pw) = password {
        command.env("CUTOVER_SQL_PASSWORD", pw);
    }
    command.output().expect("the binary runs")
}

fn generate(out: &Path) {
    let output = cutover(
        &[
            "generate",
            "--patients",
            "40",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        output.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn serve(db: &Path) -> TdsServer {
    let mut config = ServerConfig::new(db);
    config.logins = vec![("panda_ro".into(), PASSWORD.into())];
    TdsServer::start(config).await.unwrap()
}

fn assert_no_secret(output: &Output) {
    for stream in [&output.stdout, &output.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(PASSWORD),
            "the password leaked into the output"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_over_tds_lists_every_table_with_manifest_counts() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let server = serve(&dir.path().join("panda.sqlite3")).await;
    let source =
        format!("sqlserver:Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT", server.port());
    let output = tokio::task::block_in_place(|| {
        cutover(&["discover", "--source", &source, "--json"], Some(PASSWORD))
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_secret(&output);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("export/manifest.json")).unwrap())
            .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tables: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "table").collect();
    assert_eq!(tables.len(), manifest["tables"].as_object().unwrap().len());
    for table in tables {
        let name = table["data"]["name"].as_str().unwrap();
        assert_eq!(
            table["data"]["row_count"], manifest["tables"][name]["rows"],
            "{name}"
        );
    }
    let gaps = lines.iter().find(|l| l["type"] == "gaps").unwrap();
    let summary = lines.iter().find(|l| l["type"] == "summary").unwrap();
    assert_eq!(summary["data"]["gaps"], false, "{gaps}");
    assert_eq!(server.violations(), vec![], "discover sends SELECTs only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_and_password_in_the_string_fail_clearly_without_showing_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let server = serve(&dir.path().join("panda.sqlite3")).await;
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT",
        server.port()
    );
    let source = format!("sqlserver:{ado}");

    let wrong = tokio::task::block_in_place(|| {
        cutover(&["discover", "--source", &source], Some("not-the-password"))
    });
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("Login failed for user 'panda_ro'.") && stderr.contains("18456"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"));

    let missing = tokio::task::block_in_place(|| cutover(&["discover", "--source", &source], None));
    assert_eq!(
        missing.status.code(),
        Some(78),
        "a missing password is a configuration error"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("CUTOVER_SQL_PASSWORD"));

    let inline = format!("sqlserver:{ado};Password={PASSWORD}");
    let refused =
        tokio::task::block_in_place(|| cutover(&["discover", "--source", &inline], Some(PASSWORD)));
    assert_eq!(refused.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must not carry the password"));
    assert_no_secret(&refused);
    assert_eq!(
        server.logins_refused(),
        1,
        "only the wrong password reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_trace_never_turns_on_tiberius_row_logging() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let server = serve(&dir.path().join("panda.sqlite3")).await;
    let source = format!(
        "sqlserver:Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT",
        server.port()
    );
    let output = tokio::task::block_in_place(|| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
        command
            .args(["bench", "source", "--table", "Patient", "--source", &source])
            .env("RUST_LOG", "trace")
            .env("CUTOVER_SQL_PASSWORD", PASSWORD);
        command.output().unwrap()
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TRACE"), "trace logging is on");
    assert!(!stderr.contains("TokenRow"), "row data reached the logs");
    assert_no_secret(&output);
}
