//! `cutover sample -n N`, the real binary against a sandbox in its own process,
//! for both CRMs: the sample writes the chosen patients, their dependents and
//! the references they point at, and nothing else (every record at the sandbox
//! is a record of the report); the strata are covered (several referring
//! dentists, plan stages, visit histories, dirt); the CSV and the HTML carry
//! the same lines; a second sample sends nothing and duplicates nothing; the
//! HTML works in a browser without network (jsdom: sorting and filters, no
//! external reference). A field changed at the destination after the sample
//! is reported as `differs` (exit 3) by the next sample, which writes nothing.
//! On an untouched sandbox every field sent is held as
//! sent (`match` or `normalised`): that part needs the connectors'
//! `read_as_sent` (HighLevel custom-field arrays, Twenty composite fields).

#[path = "support/cli.rs"]
mod cli;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use cli::{last_of, text, Crm, Project, Sandbox};
use serde_json::Value;

const PATIENTS: u32 = 40;
const SAMPLE: &str = "10";

/// Runs `--json sample -n 10 --seed 3`; exit 0 or 3 (a mismatch) are both a finished sample.
fn sample(project: &Project, seed: &str) -> (i32, String) {
    let output = project.cutover(&["--json", "sample", "-n", SAMPLE, "--seed", seed]);
    let code = output.status.code().unwrap_or(-1);
    let stdout = text(&output.stdout);
    assert!(
        code == 0 || code == 3,
        "sample exited {code}\nstdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    (code, stdout)
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = parse_csv(&text);
    let header = lines.remove(0);
    lines
        .into_iter()
        .map(|cells| header.iter().cloned().zip(cells).collect())
        .collect()
}

/// RFC 4180 (quoted fields may hold commas, quotes and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The cells of the HTML table's body rows (values are escaped, so `<td>` never occurs inside one).
fn html_rows(path: &Path) -> Vec<Vec<String>> {
    let page = std::fs::read_to_string(path).unwrap();
    let body = page
        .split("<table class=\"diff\" id=\"diff\">")
        .nth(1)
        .unwrap()
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tbody>")
        .next()
        .unwrap();
    body.split("<tr ")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|cell| unescape(cell.split("</td>").next().unwrap()))
                .collect()
        })
        .collect()
}

/// Sandbox collection name of a report object.
fn collection(crm: Crm, object: &str) -> Option<String> {
    match crm {
        Crm::HighLevel => match object {
            "contact" => Some("contacts".into()),
            "business" => Some("businesses".into()),
            "opportunity" => Some("opportunities".into()),
            "note" => Some("notes".into()),
            "task" => Some("tasks".into()),
            // Links and files live on the contact.
            _ => None,
        },
        Crm::Twenty => Some(match object {
            "person" => "people".into(),
            "company" => "companies".into(),
            other => format!("{other}s"),
        }),
    }
}

fn reports(stdout: &str) -> (Value, PathBuf, PathBuf) {
    let summary = last_of(stdout, "sample");
    let html = PathBuf::from(summary["html"].as_str().unwrap());
    let csv = PathBuf::from(summary["csv"].as_str().unwrap());
    (summary, html, csv)
}

fn writes_the_sample_and_nothing_else(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, PATIENTS, 7);
    let before = sandbox.records();
    let (_, stdout) = sample(&project, "3");
    let (summary, html, csv) = reports(&stdout);
    let run = last_of(&stdout, "summary");
    let run_id = summary["run"].as_u64().unwrap();
    assert!(
        html.ends_with(format!("reports/sample-{run_id}.html"))
            && csv.ends_with(format!("reports/sample-{run_id}.csv")),
        "the reports are not where the docs say: {summary}"
    );
    let html = project.path().join(&html);
    let csv = project.path().join(&csv);
    assert!(html.is_file() && csv.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [&html, &csv] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} holds patient data", file.display());
        }
    }

    // The sample: ten patients, each in the report.
    assert_eq!(summary["patients"], 10, "{summary}");
    let rows = csv_rows(&csv);
    let patients: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["entity"] == "Patient")
        .map(|r| r["key"].as_str())
        .collect();
    assert_eq!(patients.len(), 10, "patients in the report: {patients:?}");

    // Written: exactly the report's records, nothing else.
    let after = sandbox.records();
    let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r["dest_id"].is_empty()) {
        written
            .entry(row["object"].clone())
            .or_default()
            .insert(format!("{}/{}", row["entity"], row["key"]));
    }
    let mut checked = 0;
    for (object, records) in &written {
        let Some(name) = collection(crm, object) else {
            continue;
        };
        let new = after.get(&name).map_or(0, Vec::len) - before.get(&name).map_or(0, Vec::len);
        assert_eq!(
            new,
            records.len(),
            "{object}: {new} new records at the sandbox, {} in the report",
            records.len()
        );
        checked += 1;
    }
    assert!(checked >= 4, "{written:?}");
    let mut total_new = 0;
    for (name, list) in &after {
        total_new += list.len() - before.get(name).map_or(0, Vec::len);
    }
    let created = run["totals"]["created"].as_u64().unwrap() as usize;
    match crm {
        // Every create is a record at a Twenty sandbox.
        Crm::Twenty => assert_eq!(total_new, created, "{run}"),
        // HighLevel links and files are written onto the contact.
        Crm::HighLevel => assert!(total_new <= created && total_new > 0, "{run}"),
    }
    assert!(created > 20, "{run}");
    // Far from the whole practice.
    let contacts = match crm {
        Crm::HighLevel => "contacts",
        Crm::Twenty => "people",
    };
    assert!(after[contacts].len() - before.get(contacts).map_or(0, Vec::len) <= 10 + 20);

    // Strata: several referral sources, plan stages and visit histories, and dirt.
    let strata = last_of(&stdout, "strata");
    assert!(
        strata["referring_dentists"].as_u64().unwrap() >= 2,
        "{strata}"
    );
    assert!(
        strata["referral"].as_object().unwrap().len() >= 2,
        "{strata}"
    );
    assert!(strata["plan"].as_object().unwrap().len() >= 2, "{strata}");
    assert!(strata["visits"].as_object().unwrap().len() >= 2, "{strata}");
    assert!(!strata["dirt"].as_object().unwrap().is_empty(), "{strata}");
    let dirt_lines = rows
        .iter()
        .filter(|r| r["verdict"] == "quarantined" || r["verdict"] == "not sent")
        .count();
    assert!(dirt_lines > 0, "no dirt case in the report");
    assert!(rows
        .iter()
        .any(|r| r["note"].contains("sampled:") && r["note"].contains("dirt ")));

    // The HTML carries the CSV's lines, cell for cell.
    let from_html = html_rows(&html);
    assert_eq!(from_html.len(), rows.len());
    let columns = [
        "object",
        "entity",
        "key",
        "dest_id",
        "field",
        "source_columns",
        "source_value",
        "sent_value",
        "dest_value",
        "verdict",
        "note",
    ];
    for (h, c) in from_html.iter().zip(&rows) {
        let c: Vec<&str> = columns.iter().map(|k| c[*k].as_str()).collect();
        assert_eq!(h, &c);
    }

    // A second sample of the same patients moves nothing and duplicates nothing.
    let mutating = sandbox.mutating_requests();
    let (_, again) = sample(&project, "3");
    let second = last_of(&again, "summary");
    assert_eq!(second["totals"]["created"], 0, "{second}");
    assert_eq!(second["totals"]["updated"], 0, "{second}");
    assert_eq!(sandbox.mutating_requests(), mutating);
    let counts = |r: &BTreeMap<String, Vec<Value>>| -> BTreeMap<String, usize> {
        r.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    };
    assert_eq!(counts(&sandbox.records()), counts(&after));
    let (again_summary, _, again_csv) = reports(&again);
    assert_ne!(again_summary["run"], summary["run"]);
    let again_rows = csv_rows(&project.path().join(again_csv));
    assert_eq!(
        again_rows.len(),
        rows.len(),
        "the second report differs in size"
    );

    // The page in a browser without network.
    browser_checks(&html);
}

fn browser_checks(html: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join(".tools/node/node_modules");
    assert!(
        modules.join("jsdom").is_dir(),
        "jsdom is not installed in {}: run scripts/setup-tools",
        modules.display()
    );
    let output = Command::new("node")
        .arg(root.join("tests/sample_report.mjs"))
        .arg(html)
        .env("CUTOVER_NODE_MODULES", &modules)
        .output()
        .expect("node must be installed (Node 20): see scripts/setup-tools");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "the browser checks failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["attempts"], 0);
}

fn untouched_sandbox_holds_what_was_sent(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, PATIENTS, 7);
    let (code, stdout) = sample(&project, "5");
    let (summary, _, csv) = reports(&stdout);
    let rows = csv_rows(&project.path().join(csv));
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| r["verdict"] == "differs" || r["verdict"] == "missing at destination")
        .map(|r| format!("{} {} ({})", r["object"], r["field"], r["verdict"]))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(bad.is_empty(), "fields not held as sent: {bad:#?}");
    assert_eq!(summary["mismatches"], 0);
    assert_eq!(code, 0);
    assert!(rows.iter().any(|r| r["verdict"] == "match"));
}

/// `PATCH /rest/{plural}/{id}` at the Twenty sandbox, as someone at the practice editing a record.
fn twenty_patch(sandbox: &Sandbox, plural: &str, id: &str, body: &Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sandbox.port)).unwrap();
    write!(
        stream,
        "PATCH /rest/{plural}/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        cli::TWENTY_TOKEN,
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A field someone changed at the destination after the sample wrote it: the
/// next sample writes nothing (the ledger says it is unchanged) and reports the
/// field as `differs`, with both values, and exits 3.
#[test]
fn twenty_a_field_changed_at_the_destination_is_reported() {
    let sandbox = Sandbox::start(Crm::Twenty);
    let project = Project::new(&sandbox, PATIENTS, 7);
    let (_, stdout) = sample(&project, "3");
    let (_, _, csv) = reports(&stdout);
    let rows = csv_rows(&project.path().join(csv));
    let target = rows
        .iter()
        .find(|r| r["object"] == "person" && r["field"] == "chartNumber" && r["verdict"] == "match")
        .expect("a patient's chart number in the report")
        .clone();
    twenty_patch(
        &sandbox,
        "people",
        &target["dest_id"],
        &serde_json::json!({ "chartNumber": "CHANGED-AT-THE-PRACTICE" }),
    );
    let mutating = sandbox.mutating_requests();
    let (code, again) = sample(&project, "3");
    assert_eq!(code, 3, "{again}");
    assert_eq!(
        sandbox.mutating_requests(),
        mutating,
        "the second sample wrote"
    );
    let (summary, _, csv) = reports(&again);
    assert_eq!(summary["mismatches"], 1, "{summary}");
    let rows = csv_rows(&project.path().join(csv));
    let changed: Vec<_> = rows
        .iter()
        .filter(|r| r["verdict"] == "differs" || r["verdict"] == "missing at destination")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["key"], target["key"]);
    assert_eq!(changed[0]["field"], "chartNumber");
    assert_eq!(changed[0]["verdict"], "differs");
    assert_eq!(changed[0]["sent_value"], target["sent_value"]);
    assert_eq!(changed[0]["source_value"], target["source_value"]);
    assert_eq!(changed[0]["dest_value"], "CHANGED-AT-THE-PRACTICE");
}

#[test]
fn twenty_sample_writes_the_slice_only() {
    writes_the_sample_and_nothing_else(Crm::Twenty);
}

#[test]
fn highlevel_sample_writes_the_slice_only() {
    writes_the_sample_and_nothing_else(Crm::HighLevel);
}

#[test]
fn twenty_untouched_sandbox_holds_what_was_sent() {
    untouched_sandbox_holds_what_was_sent(Crm::Twenty);
}

#[test]
fn highlevel_untouched_sandbox_holds_what_was_sent() {
    untouched_sandbox_holds_what_was_sent(Crm::HighLevel);
}
