//! `cutover demo`, the real binary, for both sandboxes: it walks the whole
//! flow and ends clean, leaves a ledger that verifies and holds the run, and
//! refuses a folder that is not empty.

#[path = "support/cli.rs"]
mod cli;

use std::process::Command;

use cli::{json_lines, ok, text, BIN};

fn demo(dest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = Command::new(BIN)
        .args([
            "--json",
            "demo",
            "--dest",
            dest,
            "--patients",
            "15",
            "--dir",
        ])
        .arg(&target)
        .env_remove("CUTOVER_CONFIG")
        .output()
        .unwrap();
    let stdout = ok(&out);
    let lines = json_lines(&stdout);
    let steps: Vec<String> = lines
        .iter()
        .filter(|l| l["type"] == "demo_step")
        .map(|l| {
            l["data"]["command"][0].as_str().unwrap().to_string()
                + " "
                + l["data"]["command"]
                    .get(1)
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
        })
        .collect();
    for expected in [
        "generate",
        "init",
        "discover",
        "map propose",
        "map confirm",
        "schema apply",
        "run",
        "reconcile",
    ] {
        assert!(
            steps
                .iter()
                .any(|s| s.trim() == expected || s.starts_with(&format!("{expected} "))),
            "{dest}: no `{expected}` step in {steps:?}"
        );
    }
    // The run moved records, reconcile found nothing missing or mismatched.
    let run = lines
        .iter()
        .find(|l| {
            l["type"] == "summary"
                && l["data"]["totals"]["created"]
                    .as_u64()
                    .is_some_and(|n| n > 0)
        })
        .unwrap_or_else(|| panic!("{dest}: no run summary with creates:\n{stdout}"));
    assert_eq!(run["data"]["outcome"], "completed");
    let done = lines
        .iter()
        .find(|l| l["type"] == "demo")
        .expect("the closing line");
    let ledger = done["data"]["ledger"].as_str().unwrap();
    assert!(std::path::Path::new(ledger).starts_with(target.canonicalize().unwrap()));
    ok(&Command::new(BIN)
        .args(["ledger", "verify", "--ledger", ledger])
        .output()
        .unwrap());

    // A second demo into the same folder is refused: nothing is overwritten.
    let again = Command::new(BIN)
        .args(["demo", "--dest", dest, "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(64), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("not empty"));
}

#[test]
fn demo_walks_the_whole_flow_against_twenty() {
    demo("sandbox:twenty");
}

#[test]
fn demo_walks_the_whole_flow_against_highlevel() {
    demo("sandbox:highlevel");
}
