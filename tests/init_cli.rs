//! `cutover init` and the project file: what init writes (never a secret),
//! and that later commands take source, destination and ledger from it,
//! with flags overriding.

use std::path::Path;
use std::process::{Command, Output};

fn cutover_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUTOVER_CONFIG")
        .output()
        .expect("the cutover binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn init_records_the_project_and_later_commands_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&cutover_in(
        root,
        &[
            "generate",
            "--patients",
            "20",
            "--seed",
            "3",
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
            "--location-id",
            "loc123",
        ],
    ));

    let file = std::fs::read_to_string(root.join("cutover.toml")).unwrap();
    assert!(
        file.contains("source = \"export:practice/export\""),
        "{file}"
    );
    assert!(file.contains("dest = \"sandbox:highlevel\""), "{file}");
    assert!(file.contains("location_id = \"loc123\""), "{file}");
    assert!(
        root.join("ledger/LEDGER").exists(),
        "init creates the ledger"
    );

    // discover without --source reads the project's source.
    let out = cutover_in(root, &["discover", "--json"]);
    ok(&out);
    assert!(
        text(&out.stdout).contains("\"Patient\""),
        "{}",
        text(&out.stdout)
    );

    // ledger commands without --ledger use the project's ledger.
    let out = cutover_in(root, &["ledger", "verify", "--json"]);
    ok(&out);
    let line: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(line["data"]["events"], 0);

    // From another folder, through CUTOVER_CONFIG: relative paths resolve against the file's folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["discover", "--json"])
        .current_dir(elsewhere.path())
        .env("CUTOVER_CONFIG", root.join("cutover.toml"))
        .output()
        .unwrap();
    ok(&out);

    // A flag overrides the file.
    let out = cutover_in(root, &["discover", "--source", "export:nowhere"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nowhere"),
        "the flag's source was used: {}",
        text(&out.stderr)
    );

    // init does not overwrite without --force.
    let out = cutover_in(
        root,
        &[
            "init",
            "--source",
            "export:practice/export",
            "--dest",
            "sandbox:twenty",
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    ok(&cutover_in(
        root,
        &[
            "init",
            "--source",
            "export:practice/export",
            "--dest",
            "sandbox:twenty",
            "--force",
        ],
    ));
    assert!(std::fs::read_to_string(root.join("cutover.toml"))
        .unwrap()
        .contains("sandbox:twenty"));
}

#[test]
fn init_refuses_a_password_in_the_connection_string_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = cutover_in(
        dir.path(),
        &[
            "init",
            "--source",
            "sqlserver:Server=tcp:db.example,1433;Database=PANDA;User Id=ro;Password=hunter2",
            "--dest",
            "highlevel",
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains("hunter2"), "the secret was printed: {all}");
    assert!(
        text(&out.stderr).contains("CUTOVER_SQL_PASSWORD"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("cutover.toml").exists());
    assert!(!dir.path().join("ledger").exists());
}

#[test]
fn a_broken_project_file_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cutover.toml"),
        "source = \"export:x\"\ndestination = 3\n",
    )
    .unwrap();
    let out = cutover_in(dir.path(), &["discover"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cutover.toml"),
        "{}",
        text(&out.stderr)
    );

    let empty = tempfile::tempdir().unwrap();
    let out = cutover_in(empty.path(), &["discover"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cutover init"),
        "{}",
        text(&out.stderr)
    );
}
