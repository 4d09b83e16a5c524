//! `cutover schema apply`, run as the real binary against a Twenty sandbox in
//! its own process: the dry run writes nothing, the apply creates what the
//! confirmed map needs and ledgers every element, and a second apply finds
//! everything already there.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "schema-test-token";

fn cutover_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUTOVER_CONFIG")
        .env("TWENTY_API_KEY", TOKEN)
        .output()
        .expect("the cutover binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A Twenty sandbox in its own process, stopped when dropped.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sandbox() -> (Sandbox, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "sandbox",
            "twenty",
            "--port",
            &port.to_string(),
            "--rate-limit",
            "0",
        ])
        .env("TWENTY_API_KEY", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the sandbox did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Sandbox(child), port)
}

#[test]
fn schema_apply_creates_ledgers_and_is_idempotent_against_twenty() {
    let (_sandbox, port) = start_sandbox();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&cutover_in(
        root,
        &[
            "generate",
            "--patients",
            "10",
            "--seed",
            "5",
            "--out",
            "practice",
        ],
    ));
    let base_url = format!("http://127.0.0.1:{port}");
    // The sandbox runs unlimited; the client is told so through the project file.
    ok(&cutover_in(
        root,
        &[
            "init",
            "--source",
            "export:practice/export",
            "--dest",
            "twenty",
            "--base-url",
            &base_url,
            "--requests-per-minute",
            "6000",
        ],
    ));

    // Nothing moves before a map is confirmed.
    let out = cutover_in(root, &["schema", "apply"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("map confirm"),
        "{}",
        text(&out.stderr)
    );

    let map = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/maps/twenty.toml");
    ok(&cutover_in(
        root,
        &[
            "map",
            "confirm",
            "--ledger",
            "ledger",
            map.to_str().unwrap(),
        ],
    ));

    // The dry run lists what is missing and creates nothing.
    let plan = json_lines(&ok(&cutover_in(
        root,
        &["schema", "apply", "--dry-run", "--json"],
    )));
    let would_create: Vec<&serde_json::Value> = plan
        .iter()
        .filter(|l| l["type"] == "schema_plan" && l["data"]["exists"] == false)
        .collect();
    assert!(
        would_create
            .iter()
            .any(|l| l["data"]["name"] == "perioExam"),
        "{plan:?}"
    );

    let first = json_lines(&ok(&cutover_in(root, &["schema", "apply", "--json"])));
    let applied = first
        .iter()
        .find(|l| l["type"] == "schema_applied")
        .expect("a summary line");
    let created = applied["data"]["created"].as_u64().unwrap();
    let created_names: Vec<String> = first
        .iter()
        .filter(|l| l["type"] == "schema_change" && l["data"]["created"] == true)
        .map(|l| l["data"]["name"].as_str().unwrap().to_string())
        .collect();
    let planned: Vec<String> = would_create
        .iter()
        .map(|l| l["data"]["name"].as_str().unwrap().to_string())
        .collect();
    let only_planned: Vec<&String> = planned
        .iter()
        .filter(|n| !created_names.contains(n))
        .collect();
    let only_created: Vec<&String> = created_names
        .iter()
        .filter(|n| !planned.contains(n))
        .collect();
    assert_eq!(created as usize, would_create.len(), "the dry run and the apply disagree on what is missing: planned only {only_planned:?}, created only {only_created:?}");
    let changes = first
        .iter()
        .filter(|l| l["type"] == "schema_change")
        .count();

    // Every element is in the ledger, in a schema run.
    let export = ok(&cutover_in(root, &["ledger", "export"]));
    let ledgered: Vec<serde_json::Value> = json_lines(&export)
        .into_iter()
        .filter(|l| l["kind"] == "schema_changed")
        .collect();
    assert_eq!(ledgered.len(), changes);
    assert_eq!(
        ledgered
            .iter()
            .filter(|l| l["event"]["schema_changed"]["created"] == true)
            .count() as u64,
        created
    );
    assert!(
        export.contains("\"kind\":\"schema\""),
        "the run is a schema run"
    );
    assert!(!export.contains(TOKEN), "the token reached the ledger");

    // Again: everything is already there.
    let second = json_lines(&ok(&cutover_in(root, &["schema", "apply", "--json"])));
    let applied = second
        .iter()
        .find(|l| l["type"] == "schema_applied")
        .unwrap();
    assert_eq!(applied["data"]["created"], 0, "{second:?}");
    assert_eq!(
        applied["data"]["existing"].as_u64().unwrap() as usize,
        changes
    );
}

#[test]
fn schema_apply_against_the_in_process_highlevel_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&cutover_in(
        root,
        &[
            "generate",
            "--patients",
            "10",
            "--seed",
            "5",
            "--out",
            "practice",
        ],
    ));
    ok(&cutover_in(
        root,
        &[
            "init",
            "--source",
            "export:practice/export",
            "--dest",
            "sandbox:highlevel",
        ],
    ));
    let map = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/maps/highlevel.toml");
    ok(&cutover_in(
        root,
        &[
            "map",
            "confirm",
            "--ledger",
            "ledger",
            map.to_str().unwrap(),
        ],
    ));
    let lines = json_lines(&ok(&cutover_in(root, &["schema", "apply", "--json"])));
    let applied = lines
        .iter()
        .find(|l| l["type"] == "schema_applied")
        .unwrap();
    assert!(
        applied["data"]["created"].as_u64().unwrap() > 0,
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["type"] == "schema_change"
            && l["data"]["name"]
                .as_str()
                .unwrap_or("")
                .contains("Source_System_ID")),
        "{lines:?}"
    );
}
