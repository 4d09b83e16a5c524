//! `cutover reconcile`, the real binary against a sandbox in its own process,
//! for both CRMs: after `run`, every rule's counts add up (source rows =
//! confirmed + quarantined + skipped), every confirmed record is at the
//! sandbox exactly once and reads back as sent (zero missing, zero
//! mismatched, exit 0). Then one field of one migrated record is changed and
//! another record is deleted directly at the sandbox (its API, as a user
//! would): reconcile exits 3 and names exactly those two — the changed
//! (object, key, field) and the missing (object, key) — with the values in the
//! report file only, never on standard output.

#[path = "support/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use cli::{json_lines, ok, text, Crm, Project, Sandbox, HIGHLEVEL_TOKEN, TWENTY_TOKEN};
use cutover_engine::WriteRequest;
use serde_json::{json, Value};

const ALTERED: &str = "Altered-At-The-Sandbox";

/// One authenticated API request to the sandbox (what a user of the CRM would send).
fn api(sandbox: &Sandbox, method: &str, path: &str, body: Option<&Value>) -> u16 {
    let body = body.map(Value::to_string).unwrap_or_default();
    let token = match sandbox.crm {
        Crm::HighLevel => HIGHLEVEL_TOKEN,
        Crm::Twenty => TWENTY_TOKEN,
    };
    let mut stream = TcpStream::connect(("127.0.0.1", sandbox.port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nVersion: 2021-07-28\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sandbox.port,
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = text(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((200..300).contains(&status), "{method} {path}: {response}");
    status
}

/// `reconcile --json`: exit code, stdout and the parsed lines.
fn reconcile(project: &Project, extra: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let mut args = vec!["--json", "reconcile"];
    args.extend_from_slice(extra);
    let out = project.cutover(&args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "reconcile failed: {:?}\n{stdout}\n{}",
        out.status.code(),
        text(&out.stderr)
    );
    let lines = json_lines(&stdout);
    (out.status.code(), stdout, lines)
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["type"] == kind)
        .map(|l| &l["data"])
        .collect()
}

/// The records a user changes and deletes, with the (object, entity, key) the
/// ledger knows them by — found from the sandbox's own records, not from the tool.
struct Tampering {
    altered: (String, String, String),
    altered_field: String,
    deleted: (String, String, String),
}

fn tamper(sandbox: &Sandbox, project: &Project) -> Tampering {
    match sandbox.crm {
        Crm::HighLevel => {
            let store = sandbox.get("/_sandbox/records");
            let source_field = store["customFields"]
                .as_object()
                .unwrap()
                .values()
                .find(|f| f["name"] == "Source_System_ID" && f["model"] == "contact")
                .expect("the Source_System_ID field")["id"]
                .as_str()
                .unwrap()
                .to_string();
            // A contact with a city: change the city.
            let (contact_id, key) = store["contacts"]
                .as_object()
                .unwrap()
                .values()
                .find_map(|c| {
                    c["city"].as_str().filter(|s| !s.is_empty())?;
                    let key = c["customFields"]
                        .as_array()?
                        .iter()
                        .find(|f| f["id"] == source_field.as_str())?["value"]
                        .as_str()?
                        .strip_prefix("contact:Patient:")?
                        .to_string();
                    Some((c["id"].as_str()?.to_string(), key))
                })
                .expect("a migrated contact with a city");
            api(
                sandbox,
                "PUT",
                &format!("/contacts/{contact_id}"),
                Some(&json!({ "city": ALTERED })),
            );
            // A progress note: delete it.
            let (note_id, note_contact, note_key) = store["notes"]
                .as_object()
                .unwrap()
                .values()
                .find_map(|n| {
                    let key = n["body"]
                        .as_str()?
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("cutover-ref: note:ProgressNote:"))?
                        .to_string();
                    Some((
                        n["id"].as_str()?.to_string(),
                        n["contactId"].as_str()?.to_string(),
                        key,
                    ))
                })
                .expect("a migrated progress note");
            api(
                sandbox,
                "DELETE",
                &format!("/contacts/{note_contact}/notes/{note_id}"),
                None,
            );
            Tampering {
                altered: ("contact".into(), "Patient".into(), key),
                altered_field: "city".into(),
                deleted: ("note".into(), "ProgressNote".into(), note_key),
            }
        }
        Crm::Twenty => {
            let records = sandbox.records();
            let (person_id, key) = records["people"]
                .iter()
                .find_map(|p| {
                    p["city"].as_str().filter(|s| !s.is_empty())?;
                    let key = p["sourceSystemId"]
                        .as_str()?
                        .strip_prefix("Patient/")?
                        .to_string();
                    Some((p["id"].as_str()?.to_string(), key))
                })
                .expect("a migrated patient with a city");
            api(
                sandbox,
                "PATCH",
                &format!("/rest/people/{person_id}"),
                Some(&json!({ "city": ALTERED })),
            );
            // A planned procedure (a leaf: nothing links to it): delete it.
            let ids: Vec<String> = records["plannedProcedures"]
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            let csv = std::fs::read_to_string(
                project.path().join("practice/export/PlannedProcedure.csv"),
            )
            .unwrap();
            let (procedure_id, procedure_key) = csv
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').next())
                .find_map(|k| {
                    let id = WriteRequest::uuid_for_key(&format!(
                        "plannedProcedure:PlannedProcedure:{k}"
                    ))
                    .to_string();
                    ids.contains(&id).then(|| (id, k.to_string()))
                })
                .expect("a migrated planned procedure");
            api(
                sandbox,
                "DELETE",
                &format!("/rest/plannedProcedures/{procedure_id}"),
                None,
            );
            Tampering {
                altered: ("person".into(), "Patient".into(), key),
                altered_field: "city".into(),
                deleted: (
                    "plannedProcedure".into(),
                    "PlannedProcedure".into(),
                    procedure_key,
                ),
            }
        }
    }
}

fn reconciles_after_run_and_names_what_changed(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 30, 11);
    let before: usize = sandbox.records().values().map(Vec::len).sum();
    let run = ok(&project.cutover(&["--json", "run"]));
    let summary = cli::last_of(&run, "summary");
    assert_eq!(summary["outcome"], "completed", "{summary}");

    // Clean: the equation holds per object, nothing missing or mismatched, exit 0.
    let requests_before = sandbox.get("/_sandbox/request-counts");
    let (code, stdout, lines) = reconcile(&project, &[]);
    let requests_after = sandbox.get("/_sandbox/request-counts");
    assert_eq!(code, Some(0), "{stdout}");
    let objects = of_type(&lines, "object");
    assert!(objects.len() >= 8, "{stdout}");
    let mut confirmed_records = 0;
    let mut quarantined = 0;
    for o in &objects {
        let c = &o["counts"];
        assert_eq!(o["equation_holds"], true, "{o}");
        let n = |k: &str| c[k].as_u64().unwrap();
        assert_eq!(
            n("source_rows"),
            n("confirmed") + n("quarantined") + n("skipped") + n("rolled_back"),
            "{o}"
        );
        assert_eq!(n("unaccounted"), 0, "{o}");
        assert_eq!(
            n("checked"),
            n("confirmed"),
            "every confirmed record read back: {o}"
        );
        assert_eq!(n("matched"), n("checked"), "{o}");
        assert_eq!(n("mismatched") + n("missing"), 0, "{o}");
        quarantined += n("quarantined");
        // A HighLevel business link is a field of the contact, not a record.
        if c["object"] != "contact_business_link" {
            confirmed_records += n("confirmed") as usize;
        }
    }
    assert!(quarantined > 0, "a generated practice has dirt: {stdout}");
    let totals = &cli::last_of(&stdout, "summary")["totals"];
    assert_eq!(totals["missing"], 0);
    assert_eq!(totals["mismatched"], 0);
    // Exactly once: the sandbox gained one record per confirmed write.
    let after: usize = sandbox.records().values().map(Vec::len).sum();
    assert_eq!(
        after - before,
        confirmed_records,
        "the sandbox holds a record per confirmed write, no more"
    );
    assert!(of_type(&lines, "mismatch").is_empty() && of_type(&lines, "missing").is_empty());
    // Reconcile only reads; Twenty reads many ids per request (100 requests a minute).
    assert_eq!(
        requests_after["mutating"], requests_before["mutating"],
        "reconcile wrote to the destination"
    );
    let gets = requests_after["by_method"]["GET"].as_u64().unwrap_or(0)
        - requests_before["by_method"]["GET"].as_u64().unwrap_or(0);
    let checked = totals["checked"].as_u64().unwrap();
    eprintln!(
        "{}: {checked} records read back with {gets} GET requests",
        crm.name()
    );
    match crm {
        Crm::Twenty => assert!(gets * 10 <= checked, "{gets} GETs for {checked} records"),
        Crm::HighLevel => assert!(gets >= checked, "{gets} GETs for {checked} records"),
    }

    // A sample reads back at most N per object, deterministically.
    let (code, stdout, lines) = reconcile(&project, &["--sample", "3", "--seed", "7"]);
    assert_eq!(code, Some(0), "{stdout}");
    for o in of_type(&lines, "object") {
        let c = &o["counts"];
        assert_eq!(
            c["checked"].as_u64().unwrap(),
            c["confirmed"].as_u64().unwrap().min(3),
            "{o}"
        );
    }

    // Changed and deleted at the sandbox: exit 3, exactly those two named.
    let t = tamper(&sandbox, &project);
    let (code, stdout, lines) = reconcile(&project, &[]);
    assert_eq!(code, Some(3), "{stdout}");
    let mismatches = of_type(&lines, "mismatch");
    let missing = of_type(&lines, "missing");
    assert!(of_type(&lines, "unaccounted").is_empty(), "{stdout}");
    assert_eq!(mismatches.len(), 1, "{stdout}");
    assert_eq!(missing.len(), 1, "{stdout}");
    let m = mismatches[0];
    assert_eq!(
        (
            m["object"].as_str().unwrap(),
            m["entity"].as_str().unwrap(),
            m["key"].as_str().unwrap()
        ),
        (
            t.altered.0.as_str(),
            t.altered.1.as_str(),
            t.altered.2.as_str()
        ),
        "{stdout}"
    );
    assert_eq!(m["fields"], json!([t.altered_field]), "{stdout}");
    let g = missing[0];
    assert_eq!(
        (
            g["object"].as_str().unwrap(),
            g["entity"].as_str().unwrap(),
            g["key"].as_str().unwrap()
        ),
        (
            t.deleted.0.as_str(),
            t.deleted.1.as_str(),
            t.deleted.2.as_str()
        ),
        "{stdout}"
    );
    let summary = cli::last_of(&stdout, "summary");
    assert_eq!(summary["clean"], false);
    assert_eq!(summary["totals"]["mismatched"], 1);
    assert_eq!(summary["totals"]["missing"], 1);
    // Values stay off standard output; the report file has them.
    assert!(
        !stdout.contains(ALTERED),
        "a value reached stdout: {stdout}"
    );
    let report = summary["report"].as_str().unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_kind: BTreeMap<String, Vec<&Value>> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        m.entry(l["kind"].as_str().unwrap().to_string())
            .or_insert_with(Vec::new)
            .push(l);
        m
    });
    assert_eq!(by_kind["mismatch"].len(), 1, "{lines:?}");
    assert_eq!(by_kind["missing"].len(), 1, "{lines:?}");
    let line = by_kind["mismatch"][0];
    assert_eq!(line["field"], t.altered_field.as_str());
    assert_eq!(line["held"], ALTERED);
    assert!(line["sent"].as_str().is_some_and(|s| s != ALTERED));
    assert!(report.contains("/reports/reconcile-"));

    // The human table says the same and still exits 3.
    let out = project.cutover(&["reconcile"]);
    assert_eq!(out.status.code(), Some(3));
    let human = text(&out.stdout);
    assert!(
        human.contains("NOT reconciled: 1 missing, 1 mismatched"),
        "{human}"
    );
    assert!(!human.contains(ALTERED));
}

#[test]
fn reconcile_after_run_against_twenty() {
    reconciles_after_run_and_names_what_changed(Crm::Twenty);
}

#[test]
fn reconcile_after_run_against_highlevel() {
    reconciles_after_run_and_names_what_changed(Crm::HighLevel);
}

#[test]
fn reconcile_without_a_confirmed_map_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(cli::BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("CUTOVER_CONFIG")
            .env("TWENTY_API_KEY", TWENTY_TOKEN)
            .output()
            .unwrap()
    };
    ok(&run(&[
        "generate",
        "--patients",
        "3",
        "--out",
        "practice",
        "--no-sqlite",
    ]));
    ok(&run(&[
        "init",
        "--source",
        "export:practice/export",
        "--dest",
        "twenty",
        "--base-url",
        "http://127.0.0.1:9",
    ]));
    let out = run(&["reconcile"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("map confirm"));
    assert!(
        !dir.path().join("reports").exists(),
        "no report without a reconcile"
    );
}
