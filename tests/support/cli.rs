//! Shared by the end-to-end tests that drive the real `cutover` binary against
//! a sandbox running in its own process: starting a sandbox, setting up a
//! project on a generated practice (generate → init → map confirm → schema
//! apply), running commands, reading the sandbox's state and request counts.
//!
//! Include with `#[path = "support/cli.rs"] mod cli;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_cutover");
pub const TWENTY_TOKEN: &str = "e2e-twenty-token";
pub const HIGHLEVEL_TOKEN: &str = "e2e-highlevel-token";
pub const HIGHLEVEL_LOCATION: &str = "sandboxLocation0001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crm {
    HighLevel,
    Twenty,
}

impl Crm {
    pub fn name(self) -> &'static str {
        match self {
            Crm::HighLevel => "highlevel",
            Crm::Twenty => "twenty",
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `data` of the last `--json` line of type `kind`.
pub fn last_of(stdout: &str, kind: &str) -> Value {
    json_lines(stdout)
        .into_iter()
        .rev()
        .find(|l| l["type"] == kind)
        .map(|l| l["data"].clone())
        .unwrap_or_else(|| panic!("no {kind:?} line in:\n{stdout}"))
}

/// A sandbox in its own process, killed when dropped.
pub struct Sandbox {
    child: Child,
    pub crm: Crm,
    pub port: u16,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    /// A sandbox with its rate limit off.
    pub fn start(crm: Crm) -> Sandbox {
        let port = free_port();
        let port_text = port.to_string();
        let mut command = Command::new(BIN);
        match crm {
            Crm::Twenty => command
                .args([
                    "sandbox",
                    "twenty",
                    "--port",
                    &port_text,
                    "--rate-limit",
                    "0",
                ])
                .env("TWENTY_API_KEY", TWENTY_TOKEN),
            Crm::HighLevel => command
                .args([
                    "sandbox",
                    "highlevel",
                    "--port",
                    &port_text,
                    "--requests-per-window",
                    "1000000",
                    "--daily-limit",
                    "1000000000",
                ])
                .env("HIGHLEVEL_TOKEN", HIGHLEVEL_TOKEN),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the sandbox starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the sandbox did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sandbox { child, crm, port }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> Value {
        http_json("GET", self.port, path)
    }

    /// POSTs a JSON body to an admin path (`/_sandbox/faults`).
    pub fn post(&self, path: &str, body: &Value) -> Value {
        http_request("POST", self.port, path, &body.to_string())
    }

    /// Mutating API requests answered so far (admin paths excluded).
    pub fn mutating_requests(&self) -> u64 {
        self.get("/_sandbox/request-counts")["mutating"]
            .as_u64()
            .unwrap()
    }

    /// Every stored record, by object name: `{object: [record, …]}`.
    pub fn records(&self) -> std::collections::BTreeMap<String, Vec<Value>> {
        let mut out = std::collections::BTreeMap::new();
        match self.crm {
            Crm::HighLevel => {
                let store = self.get("/_sandbox/records");
                for object in [
                    "businesses",
                    "contacts",
                    "opportunities",
                    "notes",
                    "tasks",
                    "documents",
                    "appointments",
                ] {
                    let records = store[object]
                        .as_object()
                        .map(|m| m.values().cloned().collect())
                        .unwrap_or_default();
                    out.insert(object.to_string(), records);
                }
            }
            Crm::Twenty => {
                let counts = self.get("/_sandbox/records");
                for object in counts["counts"].as_object().unwrap().keys() {
                    let records = self.get(&format!("/_sandbox/records?object={object}"))
                        ["records"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    out.insert(object.clone(), records);
                }
            }
        }
        out
    }
}

/// One HTTP/1.1 request on 127.0.0.1, the body parsed as JSON.
pub fn http_json(method: &str, port: u16, path: &str) -> Value {
    http_request(method, port, path, "")
}

/// One HTTP/1.1 request with a JSON body on 127.0.0.1, the answer parsed as JSON.
pub fn http_request(method: &str, port: u16, path: &str, body: &str) -> Value {
    let (_, body) = exchange(method, port, path, "", body);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Sends one request (`headers` are whole `Name: value\r\n` lines) and returns the
/// answer's head and its body, de-chunked.
fn exchange(method: &str, port: u16, path: &str, headers: &str, body: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = text(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A project directory: a generated practice, `cutover.toml` pointing at a sandbox.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub crm: Crm,
    pub port: u16,
}

impl Project {
    /// generate → init → map confirm (the default map) → schema apply.
    pub fn new(sandbox: &Sandbox, patients: u32, seed: u64) -> Project {
        let project = Project {
            dir: tempfile::tempdir().unwrap(),
            crm: sandbox.crm,
            port: sandbox.port,
        };
        ok(&project.cutover(&[
            "generate",
            "--patients",
            &patients.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            "practice",
            "--no-sqlite",
        ]));
        project.init(&sandbox.base_url());
        project
    }

    /// A second project on the same practice files (another ledger, maybe another sandbox).
    pub fn init(&self, base_url: &str) {
        let mut args = vec![
            "init",
            "--force",
            "--source",
            "export:practice/export",
            "--dest",
            self.crm.name(),
            "--base-url",
            base_url,
            "--requests-per-minute",
            "6000000",
        ];
        if self.crm == Crm::HighLevel {
            args.extend(["--location-id", HIGHLEVEL_LOCATION]);
        }
        ok(&self.cutover(&args));
        let map = self.default_map();
        ok(&self.cutover(&[
            "map",
            "confirm",
            "--ledger",
            "ledger",
            map.to_str().unwrap(),
        ]));
        ok(&self.cutover(&["schema", "apply"]));
    }

    pub fn default_map(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("engine/maps")
            .join(format!("{}.toml", self.crm.name()))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CUTOVER_CONFIG")
            .env("TWENTY_API_KEY", TWENTY_TOKEN)
            .env("HIGHLEVEL_TOKEN", HIGHLEVEL_TOKEN)
            .env("HIGHLEVEL_LOCATION_ID", HIGHLEVEL_LOCATION);
        command
    }

    pub fn cutover(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("the cutover binary runs")
    }
}

/// Edits one table of the project's export folder line by line and rewrites
/// the manifest (row count and BLAKE3), as a practice's next export would be.
/// `edit` gets the data lines (header excluded, CRLF removed) and may change,
/// add or remove lines; keys must stay in ascending order.
pub fn edit_export_table(project: &Project, table: &str, edit: impl FnOnce(&mut Vec<String>)) {
    let folder = project.path().join("practice/export");
    let path = folder.join(format!("{table}.csv"));
    let content = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = content.split("\r\n").map(str::to_string).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let header = lines.remove(0);
    edit(&mut lines);
    let mut out = header + "\r\n";
    for line in &lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    std::fs::write(&path, &out).unwrap();
    let manifest_path = folder.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["tables"][table]["rows"] = Value::from(lines.len());
    manifest["tables"][table]["blake3"] =
        Value::from(blake3::hash(out.as_bytes()).to_hex().to_string());
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Replaces field `index` (0-based) of a simple CSV line (no quoted commas before it).
pub fn set_field(line: &str, index: usize, value: &str) -> String {
    let mut fields: Vec<&str> = line.split(',').collect();
    fields[index] = value;
    fields.join(",")
}

/// One authenticated API request to a sandbox (as another user of the CRM would
/// make it: "someone else's edit"), the answer parsed as JSON.
pub fn api_request(sandbox: &Sandbox, method: &str, path: &str, body: &Value) -> Value {
    let port = sandbox.port;
    let body = body.to_string();
    let auth = match sandbox.crm {
        Crm::Twenty => format!("Authorization: Bearer {TWENTY_TOKEN}\r\n"),
        Crm::HighLevel => {
            format!("Authorization: Bearer {HIGHLEVEL_TOKEN}\r\nVersion: 2021-07-28\r\n")
        }
    };
    let (head, body) = exchange(method, port, path, &auth, &body);
    assert!(
        head.starts_with("HTTP/1.1 2"),
        "{method} {path}: {head}\n{body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}
