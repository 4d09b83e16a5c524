//! End-to-end tests of the real `cutover` binary for the source half of the
//! PANDA connector: `generate` and `discover --source export:DIR`.

use std::path::Path;
use std::process::{Command, Output};

fn cutover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn generate(out: &Path, patients: &str, seed: &str) -> Output {
    let output = cutover(&[
        "generate",
        "--patients",
        patients,
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

#[test]
fn generate_then_discover_reports_every_table_with_manifest_counts() {
    let dir = tempfile::tempdir().unwrap();
    let human = generate(dir.path(), "40", "5");
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.contains("PerioExamSite") && text.contains("rows for 40 patients"),
        "{text}"
    );
    assert!(dir.path().join("panda.sqlite3").is_file());
    let export = dir.path().join("export");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();

    let source = format!("export:{}", export.display());
    let output = cutover(&["discover", "--source", &source, "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let tables: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "table")
        .map(|l| &l["data"])
        .collect();
    assert_eq!(tables.len(), 20);
    for table in &tables {
        let name = table["name"].as_str().unwrap();
        assert_eq!(
            table["row_count"], manifest["tables"][name]["rows"],
            "{name}"
        );
    }
    let patient = tables.iter().find(|t| t["name"] == "Patient").unwrap();
    assert_eq!(patient["columns"].as_array().unwrap().len(), 32);
    assert_eq!(
        patient["columns"][6],
        serde_json::json!({ "name": "DateOfBirth", "sql_type": "DATE", "nullable": true })
    );
    let gaps = lines.iter().find(|l| l["type"] == "gaps").unwrap();
    assert_eq!(gaps["data"]["missing_tables"], serde_json::json!([]));
    let summary = lines.iter().find(|l| l["type"] == "summary").unwrap();
    assert_eq!(summary["data"]["tables"], 20);
    assert_eq!(summary["data"]["gaps"], false);

    let human = cutover(&["discover", "--source", &source, "--columns"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.contains("PerioExamSite")
            && text.contains("ExamID, ToothNumber, Site")
            && text.contains("no gaps"),
        "{text}"
    );
    assert!(
        text.contains("InsPrimaryCoveragePct") && text.contains("DECIMAL(5,2)"),
        "{text}"
    );
}

#[test]
fn discover_reports_gaps_of_a_different_install() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Provider.csv"),
        "ProviderID,PracticeID,FirstName,LastName,IsActive,Pager\r\n1,1,Ann,Lee,1,555\r\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tblAudit.csv"), "Id,What\n1,login\n").unwrap();
    let output = cutover(&[
        "discover",
        "--source",
        &format!("export:{}", dir.path().display()),
    ]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("tables beyond the reference (carried): tblAudit"),
        "{text}"
    );
    assert!(
        text.contains(
            "Provider: columns missing: Credentials, NPI, Email, Phone, CreatedAt, ModifiedAt"
        ),
        "{text}"
    );
    assert!(
        text.contains("Provider: columns beyond the reference (carried): Pager"),
        "{text}"
    );
    assert!(
        text.contains("tables missing from the source: Practice, ReferringPractice"),
        "{text}"
    );
}

#[test]
fn discover_refuses_a_tampered_export_and_bad_specs() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "3", "1");
    let export = dir.path().join("export");
    let mut csv = std::fs::read(export.join("Appointment.csv")).unwrap();
    csv.truncate(csv.len() - 10);
    std::fs::write(export.join("Appointment.csv"), csv).unwrap();
    let output = cutover(&[
        "discover",
        "--source",
        &format!("export:{}", export.display()),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("Appointment.csv") && stderr.contains("does not match manifest.json"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing is reported as discovered"
    );

    let output = cutover(&["discover", "--source", "mysql://x"]);
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("export:DIR or sqlserver:"));
    let output = cutover(&[
        "discover",
        "--source",
        "export:/definitely/not/here",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(78));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["type"], "error");
    assert!(lines[0]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("/definitely/not/here"));
}

#[test]
fn generate_is_deterministic_through_the_binary() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(a.path(), "12", "77");
    let output = cutover(&[
        "generate",
        "--patients",
        "12",
        "--seed",
        "77",
        "--out",
        b.path().to_str().unwrap(),
        "--json",
        "--no-sqlite",
    ]);
    let lines = json_lines(&output);
    assert_eq!(lines[0]["type"], "generated");
    assert_eq!(lines[0]["data"]["tables"]["Patient"]["rows"], 12);
    assert_eq!(
        std::fs::read(a.path().join("export/manifest.json")).unwrap(),
        std::fs::read(b.path().join("export/manifest.json")).unwrap(),
        "same seed, same hashes of every file"
    );
}

/// `discover` over a real TDS socket: the generated practice's SQLite
/// database served by the TDS test server, read by the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_over_sqlserver_matches_the_export_and_keeps_the_password_out() {
    use cutover_tds_testserver::{ServerConfig, TdsServer};
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "20", "8");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("export/manifest.json")).unwrap())
            .unwrap();
    let server = TdsServer::start(ServerConfig::new(dir.path().join("panda.sqlite3")))
        .await
        .unwrap();
    let source = format!("sqlserver:Server=tcp:127.0.0.1,{};Database=PANDA;User Id=panda_ro;Encrypt=DANGER_PLAINTEXT", server.port());
    let run = |password: &'static str, json: bool| {
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
            command
                .args(["discover", "--source", &source])
                .env("CUTOVER_SQL_PASSWORD", password);
            if json {
                command.arg("--json");
            }
            command.output().unwrap()
        })
    };

    let output = run("panda-test-pw", true).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let tables: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "table")
        .map(|l| &l["data"])
        .collect();
    assert_eq!(tables.len(), 20);
    for table in &tables {
        let name = table["name"].as_str().unwrap();
        assert_eq!(
            table["row_count"], manifest["tables"][name]["rows"],
            "{name}"
        );
    }
    let gaps = &lines.iter().find(|l| l["type"] == "gaps").unwrap()["data"];
    assert_eq!(gaps["missing_tables"], serde_json::json!([]));
    assert_eq!(
        gaps["tables"],
        serde_json::json!([]),
        "same columns and types as the reference: {gaps}"
    );
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!everything.contains("panda-test-pw"));

    let output = run("wrong-secret-pw", false).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("18456"),
        "the server's login error is shown: {stderr}"
    );
    assert!(
        !stderr.contains("wrong-secret-pw")
            && !String::from_utf8_lossy(&output.stdout).contains("wrong-secret-pw")
    );
    assert!(
        server.violations().is_empty(),
        "discover sends SELECT statements only: {:?}",
        server.violations()
    );
}
