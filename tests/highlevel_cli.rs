//! The real `cutover` binary: `sandbox highlevel` serves and stops on Ctrl-C,
//! `preflight --dest …` reports per endpoint with exit codes that mean
//! something, and the token never reaches its output or logs (RUST_LOG=trace).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

#[test]
fn sandbox_serves_until_ctrl_c() {
    let mut child = Command::new(BIN)
        .args(["--json", "sandbox", "highlevel", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let event: Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not a JSON line ({e}): {first}"));
    assert_eq!(event["type"], "sandbox_started");
    let url = event["data"]["url"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let records: Value = runtime.block_on(async {
        reqwest::get(format!("{url}/_sandbox/records"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(records["pipelines"][0]["name"], "Perio Treatment");
    let refused = runtime.block_on(async {
        reqwest::get(format!("{url}/contacts/abc"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(refused, 401, "the emulated API wants a token");
    // SAFETY: signalling the child this test spawned, by its own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn preflight_against_the_in_process_sandbox_passes() {
    let output = Command::new(BIN)
        .args(["--json", "preflight", "--dest", "sandbox:highlevel"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks = lines
        .iter()
        .filter(|l| l["type"] == "preflight_check")
        .count();
    assert!(checks >= 25, "only {checks} checks");
    let summary = lines.iter().find(|l| l["type"] == "preflight").unwrap();
    assert_eq!(summary["data"]["ok"], true);
}

fn preflight_against(url: &str, token: &str) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .args([
            "preflight",
            "--dest",
            "highlevel",
            "--base-url",
            url,
            "--location-id",
            "sandboxLocation0001",
        ])
        .env("HIGHLEVEL_TOKEN", token)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn preflight_names_missing_scopes_and_never_prints_the_token() {
    let good = "pit-cli-good-4b1d2e3f4a5b6c7d";
    let bad = "pit-cli-bad-9e8d7c6b5a4f3e2d";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime
        .block_on(sandbox::start(
            SandboxConfig {
                token: Some(good.into()),
                requests_per_window: 10_000,
                ..Default::default()
            },
            0,
        ))
        .unwrap();
    let url = handle.base_url();

    let (code, stdout, stderr) = preflight_against(&url, bad);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED")
            && stdout.contains("HTTP 401")
            && stdout.contains("probably missing scope locations.readonly"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(bad), "token printed");
    }

    let (code, stdout, stderr) = preflight_against(&url, good);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("highlevel request"),
        "trace logs were on: {}",
        &stderr[..stderr.len().min(300)]
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(good), "token printed");
    }
    runtime.block_on(handle.stop());
}

#[test]
fn preflight_without_a_token_is_a_configuration_error() {
    let output = Command::new(BIN)
        .args(["preflight", "--dest", "highlevel", "--location-id", "L1"])
        .env_remove("HIGHLEVEL_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HIGHLEVEL_TOKEN"));
    let output = Command::new(BIN)
        .args(["preflight", "--dest", "salesforce"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}
