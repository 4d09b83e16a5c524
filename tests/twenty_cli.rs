//! The real `cutover` binary: `preflight --dest sandbox:twenty`, `sandbox twenty`,
//! usage/config exit codes, and no token in anything it prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn preflight_against_the_in_process_sandbox_passes() {
    let output = Command::new(BIN)
        .args([
            "--json",
            "preflight",
            "--dest",
            "sandbox:twenty",
            "--requests-per-minute",
            "6000",
        ])
        .env_remove("TWENTY_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "preflight_step")
        .collect();
    assert!(steps.len() >= 25, "{stdout}");
    assert!(steps.iter().all(|s| s["data"]["ok"] == true));
    for kind in [
        "company",
        "person",
        "note",
        "noteTarget",
        "task",
        "taskTarget",
        "attachment",
        "cutoverPreflightProbe",
    ] {
        assert!(
            steps
                .iter()
                .any(|s| s["data"]["step"] == format!("read {kind}")),
            "no read-back of {kind}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s["data"]["step"] == format!("destroy {kind}")),
            "no destroy of {kind}"
        );
    }
    assert_eq!(lines.last().unwrap()["type"], "preflight_finished");
}

#[test]
fn usage_and_configuration_errors_have_their_exit_codes() {
    let no_url = Command::new(BIN)
        .args(["preflight", "--dest", "twenty"])
        .output()
        .unwrap();
    assert_eq!(no_url.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&no_url.stderr).contains("--base-url"));
    let no_key = Command::new(BIN)
        .args([
            "preflight",
            "--dest",
            "twenty",
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .env_remove("TWENTY_API_KEY")
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("TWENTY_API_KEY"));
    let bad_url = Command::new(BIN)
        .args(["preflight", "--dest", "twenty", "--base-url", "ftp://x"])
        .env("TWENTY_API_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(bad_url.status.code(), Some(78));
}

#[test]
fn sandbox_serves_until_stopped_and_a_wrong_key_never_shows_in_output() {
    let mut child = Command::new(BIN)
        .args(["--json", "sandbox", "twenty", "--port", "0"])
        .env("TWENTY_API_KEY", "server-side-key-123456")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let started: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(started["type"], "sandbox_started");
    let base_url = started["data"]["base_url"].as_str().unwrap().to_string();
    let addr = base_url.trim_start_matches("http://").to_string();
    assert!(http_get(&addr, "/_sandbox/stats").starts_with("HTTP/1.1 200"));
    assert!(
        http_get(&addr, "/rest/people").starts_with("HTTP/1.1 401"),
        "the sandbox demands the key"
    );

    let wrong = Command::new(BIN)
        .args(["preflight", "--dest", "twenty", "--base-url", &base_url])
        .env("TWENTY_API_KEY", "wrong-SECRET-key-987654")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&wrong.stdout),
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(all.contains("401"), "{all}");
    assert!(
        !all.contains("wrong-SECRET-key-987654"),
        "token leaked: {all}"
    );
    drop(server);
}
