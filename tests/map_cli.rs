//! `cutover map propose` and `cutover map confirm`, run as the real binary on a
//! practice written by `cutover generate`: proposal lines with confidences,
//! the TOML written, the hash pinned in the ledger, and clear refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cutover_engine::map::MapFile;
use cutover_ledger::{Digest, EventBody, Ledger};

fn cutover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("the cutover binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn generated(dir: &Path) -> String {
    let out = cutover(&[
        "generate",
        "--patients",
        "40",
        "--seed",
        "11",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "generate: {}", text(&out.stderr));
    format!("export:{}", dir.join("export").display())
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn propose_to(source: &str, dest: &str, path: &Path) -> Output {
    let out = cutover(&[
        "--json",
        "map",
        "propose",
        "--source",
        source,
        "--dest",
        dest,
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "propose: {}", text(&out.stderr));
    out
}

#[test]
fn propose_prints_every_line_with_a_confidence_and_writes_a_valid_map() {
    let dir = tempfile::tempdir().unwrap();
    let source = generated(dir.path());
    for dest in ["highlevel", "twenty"] {
        let path = dir.path().join(format!("{dest}.toml"));
        let out = propose_to(&source, dest, &path);
        let lines = json_lines(&out);
        let proposal_lines: Vec<_> = lines.iter().filter(|l| l["type"] == "line").collect();
        assert!(
            proposal_lines.len() > 40,
            "{dest}: {}",
            proposal_lines.len()
        );
        for line in &proposal_lines {
            let confidence = line["data"]["confidence"]
                .as_f64()
                .expect("a confidence on every line");
            assert!((0.0..=1.0).contains(&confidence));
        }
        let summary = lines.iter().find(|l| l["type"] == "summary").unwrap();
        // The generated practice has the reference layout: nothing unmapped, nothing missing.
        assert_eq!(summary["data"]["unmapped"], 0, "{dest}");
        assert_eq!(summary["data"]["missing"], 0, "{dest}");
        let map = MapFile::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        map.validate_for_destination(dest).unwrap();
        assert_eq!(summary["data"]["map_hash"], map.hash_hex());
        assert!(proposal_lines.iter().any(|l| l["data"]["target_field"]
            == "customFields.Last_Probing_Summary"
            || l["data"]["target_field"] == "lastProbingSummary"));
    }
    // Human output lists lines and the unmapped section.
    let out = cutover(&["map", "propose", "--source", &source, "--dest", "highlevel"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Patient.MobilePhone") && stdout.contains("contact.phone"),
        "{stdout}"
    );
    assert!(stdout.contains("unmapped: none"), "{stdout}");
}

#[test]
fn confirm_pins_the_hash_and_the_canonical_bytes_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let source = generated(dir.path());
    let path = dir.path().join("mapping.toml");
    propose_to(&source, "twenty", &path);
    let ledger_dir = dir.path().join("ledger");

    let out = cutover(&[
        "--json",
        "map",
        "confirm",
        "--ledger",
        ledger_dir.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "confirm: {}", text(&out.stderr));
    let confirmed = json_lines(&out)
        .into_iter()
        .find(|l| l["type"] == "map_confirmed")
        .unwrap();
    let map = MapFile::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(confirmed["data"]["map_hash"], map.hash_hex());

    {
        let ledger = Ledger::open(&ledger_dir).unwrap();
        assert_eq!(ledger.confirmed_map().unwrap(), Some(Digest(map.hash())));
        let bytes = ledger
            .blob(&Digest(map.hash()))
            .unwrap()
            .expect("the map is stored");
        let stored: MapFile = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored, map);
        let mut kinds = Vec::new();
        ledger
            .scan(1, |event| {
                kinds.push(matches!(event.record.body, EventBody::MapConfirmed { .. }));
                Ok(true)
            })
            .unwrap();
        assert_eq!(kinds.iter().filter(|k| **k).count(), 1);
        ledger.verify().unwrap();
    }

    // A changed map is a different hash, and confirming it moves the pin.
    let edited =
        std::fs::read_to_string(&path)
            .unwrap()
            .replacen("required = true", "required = false", 1);
    let edited_path = dir.path().join("edited.toml");
    std::fs::write(&edited_path, edited).unwrap();
    let out = cutover(&[
        "map",
        "confirm",
        "--ledger",
        ledger_dir.to_str().unwrap(),
        edited_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("replaces the previously confirmed map"),
        "{stdout}"
    );
    let ledger = Ledger::open(&ledger_dir).unwrap();
    let pinned = ledger.confirmed_map().unwrap().unwrap();
    assert_ne!(pinned, Digest(map.hash()));
}

fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

#[test]
fn confirm_refuses_bad_maps_naming_the_place_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir: PathBuf = dir.path().join("ledger");
    let ledger = ledger_dir.to_str().unwrap();

    let wrong_kind = dir.path().join("wrong.toml");
    std::fs::write(&wrong_kind, cutover_engine::map::defaults::HIGHLEVEL_TOML).unwrap();
    assert_refused(
        &cutover(&[
            "map",
            "confirm",
            "--ledger",
            ledger,
            "--dest",
            "twenty",
            wrong_kind.to_str().unwrap(),
        ]),
        &["wrong.toml", "for highlevel, not twenty"],
    );

    let bad_target = dir.path().join("bad-target.toml");
    std::fs::write(&bad_target, "format = 1\ndestination = \"highlevel\"\n[[object]]\nsource = \"Patient\"\ntarget = \"perioExam\"\n").unwrap();
    assert_refused(
        &cutover(&[
            "map",
            "confirm",
            "--ledger",
            ledger,
            bad_target.to_str().unwrap(),
        ]),
        &["object #1 (Patient → perioExam)", "no object"],
    );

    let bad_field = dir.path().join("bad-field.toml");
    std::fs::write(&bad_field, "format = 1\ndestination = \"twenty\"\n[[object]]\nsource = \"Patient\"\ntarget = \"person\"\nfield = [ { to = \"x\", transform = \"lookup\", from = \"A\" } ]\n").unwrap();
    assert_refused(
        &cutover(&[
            "map",
            "confirm",
            "--ledger",
            ledger,
            bad_field.to_str().unwrap(),
        ]),
        &["field \"x\"", "lookup needs `entity` and `object`"],
    );

    let syntax = dir.path().join("syntax.toml");
    std::fs::write(&syntax, "format = 1\ndestination = \n").unwrap();
    assert_refused(
        &cutover(&[
            "map",
            "confirm",
            "--ledger",
            ledger,
            syntax.to_str().unwrap(),
        ]),
        &["syntax.toml", "not valid TOML"],
    );

    assert_refused(
        &cutover(&[
            "map",
            "confirm",
            "--ledger",
            ledger,
            dir.path().join("absent.toml").to_str().unwrap(),
        ]),
        &["absent.toml"],
    );
    assert!(
        !ledger_dir.exists(),
        "a refused map must not create or touch the ledger"
    );
}
