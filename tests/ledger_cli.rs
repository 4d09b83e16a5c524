//! The `cutover ledger` and `cutover bench ledger` commands, run as the real
//! binary: outcomes, exit codes, and clear errors that name the place for
//! every kind of bad input — never a panic, never a partial result called done.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cutover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("the cutover binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failure with `code`, an `error:` line mentioning every `needle`, and no panic.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

/// A small real ledger made by the benchmark command.
fn bench_ledger(dir: &Path) -> PathBuf {
    let ledger = dir.join("ledger");
    let out = cutover(&[
        "bench",
        "ledger",
        "--events",
        "3000",
        "--batch",
        "500",
        "--ledger",
        ledger.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "bench failed: {}", text(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object");
    for field in [
        "events_per_sec",
        "verify_events_per_sec",
        "replay_seconds",
        "bytes_per_event",
    ] {
        assert!(
            report[field].as_f64().unwrap() > 0.0,
            "{field} missing or zero in {report}"
        );
    }
    assert_eq!(report["events"], 3000);
    assert_eq!(report["projections_equal_replay"], true);
    ledger
}

#[test]
fn verify_export_import_round_trip_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    let ledger_arg = ledger.to_str().unwrap();

    let out = cutover(&["ledger", "verify", "--ledger", ledger_arg, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["type"], "verify");
    assert_eq!(line["data"]["ok"], true);
    assert_eq!(line["data"]["events"], 3000);
    let head = line["data"]["head"].as_str().unwrap().to_string();

    let export = dir.path().join("trail.jsonl");
    let out = cutover(&[
        "ledger",
        "export",
        "--ledger",
        ledger_arg,
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cutover(&[
        "ledger",
        "verify",
        "--jsonl",
        export.to_str().unwrap(),
        "--expect-head",
        &head,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let rebuilt = dir.path().join("rebuilt");
    let out = cutover(&[
        "ledger",
        "import",
        "--ledger",
        rebuilt.to_str().unwrap(),
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = dir.path().join("again.jsonl");
    assert!(cutover(&[
        "ledger",
        "export",
        "--ledger",
        rebuilt.to_str().unwrap(),
        "-o",
        again.to_str().unwrap()
    ])
    .status
    .success());
    assert!(
        std::fs::read(&export).unwrap() == std::fs::read(&again).unwrap(),
        "export → import → export is not byte-identical"
    );

    let out = cutover(&[
        "ledger",
        "stats",
        "--ledger",
        rebuilt.to_str().unwrap(),
        "--json",
    ]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["data"]["events"], 3000);

    // A wrong anchor fails even though the chain itself is whole.
    let out = cutover(&[
        "ledger",
        "verify",
        "--ledger",
        ledger_arg,
        "--expect-head",
        &"ab".repeat(32),
    ]);
    assert_fails(&out, 1, &["expected head"]);
}

#[test]
fn a_directory_that_is_not_a_ledger_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let path = dir.path().to_str().unwrap();
    for command in [
        &["ledger", "verify", "--ledger", path][..],
        &["ledger", "stats", "--ledger", path],
        &["ledger", "export", "--ledger", path],
    ] {
        assert_fails(&cutover(command), 1, &[path, "is not a cutover ledger"]);
    }
    let missing = dir.path().join("nowhere");
    assert_fails(
        &cutover(&["ledger", "verify", "--ledger", missing.to_str().unwrap()]),
        1,
        &["nowhere", "is not a cutover ledger"],
    );
}

#[test]
fn a_corrupted_store_is_reported_not_panicked_over() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    let db = ledger.join("store/db");
    let original = std::fs::read(&db).unwrap();

    // Scribble over everything past sled's file header.
    let mut scribbled = original.clone();
    for b in &mut scribbled[512..] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &scribbled).unwrap();
    let out = cutover(&["ledger", "verify", "--ledger", ledger.to_str().unwrap()]);
    assert_fails(&out, 1, &[ledger.to_str().unwrap()]);

    // A data file cut short (disk full, bad copy).
    std::fs::write(&db, &original[..original.len() / 3]).unwrap();
    let out = cutover(&["ledger", "verify", "--ledger", ledger.to_str().unwrap()]);
    assert_fails(&out, 1, &[ledger.to_str().unwrap()]);
}

#[test]
fn a_store_cut_short_is_reported_as_lost_events() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    // Pretend the store lost its tail: the HEAD anchor says more was durable.
    let anchor = ledger.join("HEAD");
    std::fs::write(
        &anchor,
        format!("{{\"seq\":3500,\"hash\":\"{}\"}}\n", "00".repeat(32)),
    )
    .unwrap();
    let out = cutover(&["ledger", "verify", "--ledger", ledger.to_str().unwrap()]);
    assert_fails(&out, 1, &["3500", "lost"]);
}

#[test]
fn bad_jsonl_lines_are_named_and_import_leaves_no_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    let export = dir.path().join("trail.jsonl");
    assert!(cutover(&[
        "ledger",
        "export",
        "--ledger",
        ledger.to_str().unwrap(),
        "-o",
        export.to_str().unwrap()
    ])
    .status
    .success());
    let good = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    let mut garbled = owned.clone();
    garbled[10] = "{\"seq\":10, this is not json".into();
    let garbled = write("garbled.jsonl", &garbled);
    assert_fails(
        &cutover(&["ledger", "verify", "--jsonl", garbled.to_str().unwrap()]),
        1,
        &["garbled.jsonl", "line 11", "does not parse"],
    );

    let mut unchained = owned.clone();
    unchained.remove(20);
    let unchained = write("unchained.jsonl", &unchained);
    assert_fails(
        &cutover(&["ledger", "verify", "--jsonl", unchained.to_str().unwrap()]),
        1,
        &["line 21", "expected seq 20"],
    );

    let truncated = write("truncated.jsonl", &owned[..owned.len() - 5]);
    assert_fails(
        &cutover(&["ledger", "verify", "--jsonl", truncated.to_str().unwrap()]),
        1,
        &["truncated"],
    );

    let target = dir.path().join("imported");
    assert_fails(
        &cutover(&[
            "ledger",
            "import",
            "--ledger",
            target.to_str().unwrap(),
            unchained.to_str().unwrap(),
        ]),
        1,
        &["line 21"],
    );
    assert!(
        !target.join("LEDGER").exists(),
        "a failed import must not leave a ledger behind"
    );
    assert_fails(
        &cutover(&["ledger", "verify", "--ledger", target.to_str().unwrap()]),
        1,
        &["is not a cutover ledger"],
    );
}

#[test]
fn usage_errors_exit_64() {
    let out = cutover(&["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let out = cutover(&[
        "ledger",
        "verify",
        "--ledger",
        "/tmp",
        "--expect-head",
        "xyz",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let out = cutover(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(64));
}

/// The independent verifier (Python + the public blake3 package, none of our
/// code) accepts a real export and rejects a tampered one.
#[test]
fn the_independent_python_verifier_agrees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-tools first (it installs the verifier's blake3 package)",
        python.display()
    );
    let script = root.join("scripts/verify_ledger.py");
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    let export = dir.path().join("trail.jsonl");
    assert!(cutover(&[
        "ledger",
        "export",
        "--ledger",
        ledger.to_str().unwrap(),
        "-o",
        export.to_str().unwrap()
    ])
    .status
    .success());
    let out = Command::new(&python)
        .arg(&script)
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verifier rejected a good export: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("ok: 3000 events"),
        "{}",
        text(&out.stdout)
    );

    let good = std::fs::read_to_string(&export).unwrap();
    // Writes the altered export and runs the verifier on it.
    let verify_altered = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        Command::new(&python)
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap()
    };
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    // Re-chain nothing: alter one record byte (base64 of different bytes).
    let line: serde_json::Value = serde_json::from_str(&lines[100]).unwrap();
    let record = line["record"].as_str().unwrap();
    let flipped = if record.starts_with('A') {
        record.replacen('A', "B", 1)
    } else {
        format!("A{}", &record[1..])
    };
    lines[100] = lines[100].replace(record, &flipped);
    let out = verify_altered("tampered.jsonl", &lines);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verifier accepted a tampered export"
    );
    assert!(
        text(&out.stderr).contains("line 101"),
        "{}",
        text(&out.stderr)
    );

    // Only the readable part edited (hashes untouched): caught by decoding the record.
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let target = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"extracted\""))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&lines[target]).unwrap();
    let key = line["event"]["extracted"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    lines[target] = lines[target].replace(
        &format!("\"key\":\"{key}\""),
        &format!("\"key\":\"{key}0\""),
    );
    let out = verify_altered("edited.jsonl", &lines);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verifier accepted an edited readable field"
    );
    assert!(
        text(&out.stderr).contains("differ from the hashed record"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn provenance_tells_a_records_story_from_its_key_or_its_destination_id() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = bench_ledger(dir.path());
    let ledger_arg = ledger.to_str().unwrap();
    let export = text(&cutover(&["ledger", "export", "--ledger", ledger_arg]).stdout);
    // A record that was written: its confirmation names the destination id.
    let confirmed: serde_json::Value = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["kind"] == "write_confirmed")
        .unwrap();
    let intent_seq = confirmed["event"]["write_confirmed"]["intent"]
        .as_u64()
        .unwrap();
    let dest_id = confirmed["event"]["write_confirmed"]["dest_id"]
        .as_str()
        .unwrap()
        .to_string();
    let intent: serde_json::Value = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["seq"] == intent_seq)
        .unwrap();
    let entity = intent["event"]["write_intended"]["entity"]
        .as_str()
        .unwrap();
    let key = intent["event"]["write_intended"]["key"].as_str().unwrap();

    for record in [format!("{entity}/{key}"), dest_id.clone()] {
        let out = cutover(&["provenance", &record, "--ledger", ledger_arg, "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line: serde_json::Value =
            serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
        assert_eq!(line["type"], "provenance");
        assert_eq!(line["data"]["entity"], entity);
        assert_eq!(line["data"]["key"], key);
        let kinds: Vec<&str> = line["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "extracted",
                "transformed",
                "write_intended",
                "write_confirmed"
            ],
            "{record}"
        );
        let state = &line["data"]["state"]["targets"];
        assert!(
            state
                .as_object()
                .unwrap()
                .values()
                .any(|t| t["dest_id"] == dest_id.as_str()),
            "{state}"
        );
    }

    let out = cutover(&["provenance", "Patient/no-such-key", "--ledger", ledger_arg]);
    assert_fails(&out, 1, &["Patient/no-such-key", "neither"]);
}
