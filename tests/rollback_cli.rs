//! `cutover rollback`, the real binary against a sandbox in its own process:
//!
//! - run + delta, then someone else edits one migrated record at the sandbox:
//!   `rollback --run <delta>` gives the updated records their before-images back
//!   and `rollback --all` then brings the sandbox back to its pre-migration
//!   snapshot (seeded with records that were there before), except the record
//!   edited by someone else, which is reported as a conflict and left untouched;
//! - `--dry-run` prints the plan and sends no mutating request;
//! - SIGKILL at seeded random moments during a rollback, then `rollback` again:
//!   exit 0, the pre-migration snapshot, and exactly one DELETE per record created.

#[path = "support/cli.rs"]
mod cli;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cli::{
    api_request, edit_export_table, json_lines, last_of, ok, set_field, Crm, Project, Sandbox,
};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const FIRST_NAME: usize = 2;

/// Fields the sandbox maintains itself on every write (ours included).
const VOLATILE: &[&str] = &["updatedAt", "dateUpdated"];

/// The sandbox's whole state, by object then record id, without server-maintained times.
///
/// HighLevel's `documents` are left out: they are the sandbox's copy of uploaded
/// file bytes, which HighLevel's API has no way to delete (a rollback removes the
/// file from its contact's field, and the contact itself).
fn snapshot(sandbox: &Sandbox) -> BTreeMap<String, BTreeMap<String, Value>> {
    sandbox
        .records()
        .into_iter()
        .filter(|(object, _)| !(sandbox.crm == Crm::HighLevel && object == "documents"))
        .map(|(object, list)| {
            let by_id = list
                .into_iter()
                .map(|mut record| {
                    if let Some(map) = record.as_object_mut() {
                        for field in VOLATILE {
                            map.remove(*field);
                        }
                    }
                    (
                        record["id"].as_str().unwrap_or_default().to_string(),
                        record,
                    )
                })
                .collect();
            (object, by_id)
        })
        .filter(|(_, by_id): &(String, BTreeMap<String, Value>)| !by_id.is_empty())
        .collect()
}

/// The first difference between two snapshots, for a readable failure.
fn first_difference(
    a: &BTreeMap<String, BTreeMap<String, Value>>,
    b: &BTreeMap<String, BTreeMap<String, Value>>,
) -> String {
    let objects: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for object in objects {
        let empty = BTreeMap::new();
        let (x, y) = (
            a.get(object).unwrap_or(&empty),
            b.get(object).unwrap_or(&empty),
        );
        let ids: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for id in ids {
            if x.get(id) != y.get(id) {
                return format!(
                    "{object} {id}:\n  expected {}\n  got      {}",
                    x.get(id).map(Value::to_string).unwrap_or("(absent)".into()),
                    y.get(id).map(Value::to_string).unwrap_or("(absent)".into())
                );
            }
        }
    }
    "no difference".into()
}

/// Records at the sandbox before any migration: a person and a company another user made.
fn seed_pre_existing(sandbox: &Sandbox) {
    match sandbox.crm {
        Crm::Twenty => {
            api_request(
                sandbox,
                "POST",
                "/rest/companies",
                &json!({ "name": "Already Here Dental Lab" }),
            );
            api_request(
                sandbox,
                "POST",
                "/rest/people",
                &json!({ "name": { "firstName": "Pre", "lastName": "Existing" }, "jobTitle": "Office manager" }),
            );
        }
        Crm::HighLevel => {
            api_request(
                sandbox,
                "POST",
                "/contacts/",
                &json!({ "locationId": cli::HIGHLEVEL_LOCATION, "firstName": "Pre", "lastName": "Existing" }),
            );
        }
    }
}

/// Someone else renames a record we migrated, at the sandbox.
fn edit_at_sandbox(sandbox: &Sandbox, id: &str, name: &str) {
    match sandbox.crm {
        Crm::Twenty => {
            api_request(
                sandbox,
                "PATCH",
                &format!("/rest/people/{id}"),
                &json!({ "name": { "firstName": name, "lastName": "Someone" } }),
            );
        }
        Crm::HighLevel => {
            api_request(
                sandbox,
                "PUT",
                &format!("/contacts/{id}"),
                &json!({ "firstName": name }),
            );
        }
    }
}

fn first_name(crm: Crm, record: &Value) -> Option<String> {
    match crm {
        Crm::Twenty => record["name"]["firstName"].as_str().map(str::to_string),
        Crm::HighLevel => record["firstName"].as_str().map(str::to_string),
    }
}

fn people(crm: Crm) -> &'static str {
    match crm {
        Crm::Twenty => "people",
        Crm::HighLevel => "contacts",
    }
}

/// Patients that moved (not quarantined).
fn movable_patients(project: &Project) -> BTreeSet<String> {
    let held: BTreeSet<String> = json_lines(&ok(&project.cutover(&["--json", "quarantine"])))
        .into_iter()
        .filter(|l| l["type"] == "quarantined" && l["data"]["entity"] == "Patient")
        .map(|l| l["data"]["key"].as_str().unwrap().to_string())
        .collect();
    let content =
        std::fs::read_to_string(project.path().join("practice/export/Patient.csv")).unwrap();
    content
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().to_string())
        .filter(|k| !held.contains(k))
        .collect()
}

/// Renames `k` migrated patients at the source (`Renamed0` …), their modification time moved.
fn rename_patients(project: &Project, k: usize) {
    let movable = movable_patients(project);
    edit_export_table(project, "Patient", |lines| {
        let mut n = 0;
        for line in lines.iter_mut() {
            let key = line.split(',').next().unwrap().to_string();
            if n < k && movable.contains(&key) {
                let renamed = set_field(line, FIRST_NAME, &format!("Renamed{n}"));
                let rest = renamed.rsplit_once(',').unwrap().0.to_string();
                *line = format!("{rest},2026-01-0{}T10:00:00.000", n + 1);
                n += 1;
            }
        }
        assert_eq!(n, k, "not enough migrated patients to rename");
    });
}

fn run_id(stdout: &str) -> u64 {
    last_of(stdout, "summary")["run"].as_u64().unwrap()
}

/// Runs `rollback` with `args` (JSON), returns (exit code, stdout).
fn rollback(project: &Project, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--json", "rollback"];
    all.extend_from_slice(args);
    let out = project.cutover(&all);
    let stdout = cli::text(&out.stdout);
    assert!(
        !stdout.is_empty(),
        "rollback printed nothing; stderr: {}",
        cli::text(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The records left alone because someone else changed them.
fn conflicts(stdout: &str) -> Vec<Value> {
    listed(stdout, "conflict")
}

/// The `conflict` lines with this outcome (`conflict`, or `kept`: a parent a conflicting record refers to).
fn listed(stdout: &str, outcome: &str) -> Vec<Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["type"] == "conflict" && l["data"]["outcome"] == outcome)
        .map(|l| l["data"].clone())
        .collect()
}

/// A record of a snapshot by id, whatever its object.
fn by_id<'a>(
    snapshot: &'a BTreeMap<String, BTreeMap<String, Value>>,
    id: &str,
) -> Option<(&'a String, &'a Value)> {
    snapshot
        .iter()
        .find_map(|(object, records)| records.get(id).map(|r| (object, r)))
}

fn drift_conflict_then_restore_then_pre_migration(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    seed_pre_existing(&sandbox);
    let project = Project::new(&sandbox, 12, 41);
    let pre_migration = snapshot(&sandbox);

    let run_out = ok(&project.cutover(&["--json", "run"]));
    let _run = run_id(&run_out);
    let after_run = snapshot(&sandbox);
    ok(&project.cutover(&["checkpoint"]));
    const K: usize = 3;
    rename_patients(&project, K);
    let delta_out = ok(&project.cutover(&["--json", "delta"]));
    let delta = run_id(&delta_out);
    assert_eq!(
        last_of(&delta_out, "summary")["totals"]["updated"],
        K as u64
    );
    let after_delta = snapshot(&sandbox);

    // Someone else edits Renamed0 (updated by the delta) at the sandbox.
    let edited = after_delta[people(crm)]
        .values()
        .find(|r| first_name(crm, r).as_deref() == Some("Renamed0"))
        .expect("Renamed0 at the sandbox")
        .clone();
    let edited_id = edited["id"].as_str().unwrap().to_string();
    edit_at_sandbox(&sandbox, &edited_id, "EditedByFrontDesk");
    let edited_now = snapshot(&sandbox)[people(crm)][&edited_id].clone();

    // Undo the delta: K - 1 records get their before-image back, the edited one is a conflict.
    let (code, out) = rollback(&project, &["--run", &delta.to_string()]);
    assert_eq!(code, 2, "conflicts left → exit 2\n{out}");
    let found = conflicts(&out);
    assert_eq!(found.len(), 1, "{out}");
    assert_eq!(found[0]["dest_id"], edited_id.as_str());
    let summary = last_of(&out, "summary");
    assert_eq!(summary["counts"]["restored"], (K - 1) as u64, "{summary}");
    assert_eq!(summary["counts"]["deleted"], 0, "{summary}");
    let after_delta_rollback = snapshot(&sandbox);
    let people_now = &after_delta_rollback[people(crm)];
    let names: BTreeSet<String> = people_now
        .values()
        .filter_map(|r| first_name(crm, r))
        .collect();
    for n in 1..K {
        assert!(
            !names.contains(&format!("Renamed{n}")),
            "Renamed{n} still there: {names:?}"
        );
    }
    assert_eq!(
        people_now[&edited_id], edited_now,
        "the conflicting record was touched"
    );
    // Apart from the edited record, the sandbox is as the run left it (updated records restored).
    let mut expected = after_run.clone();
    expected
        .get_mut(people(crm))
        .unwrap()
        .insert(edited_id.clone(), edited_now.clone());
    assert_eq!(
        after_delta_rollback,
        expected,
        "{}",
        first_difference(&expected, &after_delta_rollback)
    );

    // Someone edits a second migrated record, one that holds a file where the CRM
    // stores files inside the record (HighLevel: in a contact's custom field).
    let second_id = match crm {
        Crm::HighLevel => sandbox.records()["documents"]
            .iter()
            .filter_map(|d| d["contactId"].as_str().map(str::to_string))
            .find(|c| *c != edited_id && after_run["contacts"].contains_key(c))
            .expect("a contact with a file"),
        Crm::Twenty => after_run["people"]
            .iter()
            .find(|(id, r)| **id != edited_id && r["sourceSystemId"].is_string())
            .map(|(id, _)| id.clone())
            .unwrap(),
    };
    edit_at_sandbox(&sandbox, &second_id, "EditedByBilling");
    let second_now = snapshot(&sandbox)[people(crm)][&second_id].clone();

    // Undo everything: the pre-migration state, except the conflicting records, left as edited.
    let (code, out) = rollback(&project, &["--all"]);
    assert_eq!(code, 2, "{out}");
    let found: BTreeSet<String> = conflicts(&out)
        .iter()
        .map(|c| c["dest_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        found,
        [edited_id.clone(), second_id.clone()].into_iter().collect(),
        "{out}"
    );
    let summary = last_of(&out, "summary");
    assert_eq!(summary["counts"]["failed"], 0, "{summary}");
    let mut expected = pre_migration.clone();
    let expected_people = expected.entry(people(crm).to_string()).or_default();
    expected_people.insert(edited_id.clone(), edited_now.clone());
    expected_people.insert(second_id.clone(), second_now.clone());
    // The records the conflicting one refers to stay too (deleting them would change it), as the run left them.
    let kept = listed(&out, "kept");
    for record in &kept {
        let id = record["dest_id"].as_str().unwrap();
        // (A HighLevel link is its contact, a file lives in it: the contact stays as edited.)
        let Some((object, held)) = by_id(&after_run, id) else {
            assert!(
                matches!(
                    record["object"].as_str(),
                    Some("file" | "contact_business_link")
                ),
                "{record}"
            );
            continue;
        };
        expected
            .entry(object.clone())
            .or_default()
            .entry(id.to_string())
            .or_insert_with(|| held.clone());
    }
    let got = snapshot(&sandbox);
    assert_eq!(got, expected, "{}", first_difference(&expected, &got));

    // Again: nothing more to do, the conflict listed again, nothing sent.
    let mutating = sandbox.mutating_requests();
    let (code, out) = rollback(&project, &["--all"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(conflicts(&out).len(), 2);
    assert_eq!(sandbox.mutating_requests(), mutating, "{out}");

    // --force undoes the conflicting record too: exactly the pre-migration state.
    let (code, out) = rollback(&project, &["--all", "--force"]);
    assert_eq!(code, 0, "{out}");
    let got = snapshot(&sandbox);
    assert_eq!(
        got,
        pre_migration,
        "{}",
        first_difference(&pre_migration, &got)
    );
    ok(&project.cutover(&["ledger", "verify", "--ledger", "ledger"]));

    // The ledger knows what was undone: migrating again creates everything again.
    let again = ok(&project.cutover(&["--json", "run"]));
    let first = last_of(&run_out, "summary")["totals"]["created"].clone();
    let summary = last_of(&again, "summary");
    assert_eq!(summary["outcome"], "completed", "{summary}");
    assert_eq!(summary["totals"]["created"], first, "{summary}");
    assert_eq!(summary["totals"]["failed"], 0, "{summary}");
}

#[test]
fn rollback_restores_pre_migration_state_except_conflicts_twenty() {
    drift_conflict_then_restore_then_pre_migration(Crm::Twenty);
}

fn dry_run_sends_nothing(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 8, 43);
    let run_out = ok(&project.cutover(&["--json", "run"]));
    let created = last_of(&run_out, "summary")["totals"]["created"]
        .as_u64()
        .unwrap();
    let before = snapshot(&sandbox);
    let mutating = sandbox.mutating_requests();
    let (code, out) = rollback(&project, &["--all", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        sandbox.mutating_requests(),
        mutating,
        "a dry run sent a mutating request"
    );
    let plan: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "plan")
        .map(|l| l["data"].clone())
        .collect();
    assert_eq!(
        plan.len() as u64,
        created,
        "one planned delete per record created: {out}"
    );
    assert!(plan.iter().all(|p| p["outcome"] == "would_delete"), "{out}");
    let summary = last_of(&out, "summary");
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["counts"]["would_delete"], created);
    assert_eq!(snapshot(&sandbox), before);
    // The human plan names every record too.
    let human = ok(&project.cutover(&["rollback", "--all", "--dry-run"]));
    assert!(human.contains("would delete"), "{human}");
    assert_eq!(sandbox.mutating_requests(), mutating);
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing_twenty() {
    dry_run_sends_nothing(Crm::Twenty);
}

fn deletes_sent(sandbox: &Sandbox) -> u64 {
    sandbox.get("/_sandbox/request-counts")["by_method"]["DELETE"]
        .as_u64()
        .unwrap_or(0)
}

/// Kills `rollback` at seeded random moments, then lets it finish.
fn survives_sigkill(crm: Crm, seed: u64, kills: usize) {
    let sandbox = Sandbox::start(crm);
    seed_pre_existing(&sandbox);
    let project = Project::new(&sandbox, 12, 47);
    let pre_migration = snapshot(&sandbox);
    let run_out = ok(&project.cutover(&["--json", "run"]));
    let created = last_of(&run_out, "summary")["totals"]["created"]
        .as_u64()
        .unwrap();
    // HighLevel undoes a contact-business link and a file by updating the contact (a PUT):
    // every other record created is undone by exactly one DELETE.
    let (_, plan) = rollback(&project, &["--all", "--dry-run"]);
    let expected_deletes = json_lines(&plan)
        .into_iter()
        .filter(|l| l["type"] == "plan")
        .filter(|l| {
            !matches!(
                l["data"]["object"].as_str(),
                Some("contact_business_link" | "file")
            )
        })
        .count() as u64;
    if crm == Crm::Twenty {
        assert_eq!(expected_deletes, created);
    }
    let deletes_before = deletes_sent(&sandbox);
    // Slow answers and one request at a time, so that kills land mid-rollback.
    sandbox.post("/_sandbox/faults", &json!({ "latency_ms": 25 }));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut killed = 0;
    for round in 0..kills {
        let mut child = project
            .command(&["rollback", "--all", "--batch", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..900)));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            killed += 1;
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        }
        let status = child.wait().unwrap();
        if finished {
            assert!(
                status.success(),
                "round {round}: the rollback failed on its own: {status:?}"
            );
        }
        ok(&project.cutover(&["ledger", "verify", "--ledger", "ledger"]));
    }
    assert!(
        killed >= kills / 2,
        "only {killed} of {kills} kills hit a running rollback"
    );
    sandbox.post("/_sandbox/faults", &json!({ "latency_ms": 0 }));
    let (code, out) = rollback(&project, &["--all"]);
    assert_eq!(code, 0, "{out}");
    let summary = last_of(&out, "summary");
    assert_eq!(summary["counts"]["failed"], 0, "{summary}");
    assert_eq!(summary["counts"]["conflicts"], 0, "{summary}");
    let got = snapshot(&sandbox);
    assert_eq!(
        got,
        pre_migration,
        "{}",
        first_difference(&pre_migration, &got)
    );
    assert_eq!(
        deletes_sent(&sandbox) - deletes_before,
        expected_deletes,
        "seed {seed}: one DELETE per record created, none twice ({killed} kills)"
    );
    // The kills left rollback intents without answers, and they were resolved by reading
    // the destination, not by sending again.
    let trail = ok(&project.cutover(&["ledger", "export", "--ledger", "ledger"]));
    let resolved = trail
        .lines()
        .filter(|l| l.contains("interrupted rollback") || l.contains("interrupted; not done"))
        .count();
    assert!(
        resolved > 0,
        "seed {seed}: no kill landed between an intent and its answer"
    );
    // Nothing left: another rollback sends nothing.
    let mutating = sandbox.mutating_requests();
    let (code, _) = rollback(&project, &["--all"]);
    assert_eq!(code, 0);
    assert_eq!(sandbox.mutating_requests(), mutating);
}

#[test]
fn sigkill_during_rollback_then_rollback_finishes_without_touching_anything_twice_twenty() {
    survives_sigkill(Crm::Twenty, 0x0B0B_2026, 5);
}

#[test]
fn rollback_restores_pre_migration_state_except_conflicts_highlevel() {
    drift_conflict_then_restore_then_pre_migration(Crm::HighLevel);
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing_highlevel() {
    dry_run_sends_nothing(Crm::HighLevel);
}

#[test]
fn sigkill_during_rollback_then_rollback_finishes_without_touching_anything_twice_highlevel() {
    survives_sigkill(Crm::HighLevel, 0x0B0C_2026, 5);
}

/// `--schema`: after every record is undone, the custom fields and objects cutover
/// created are dropped (last), once; a dry run only lists them.
fn schema_goes_last_behind_a_flag(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 6, 53);
    ok(&project.cutover(&["--json", "run"]));
    let mutating = sandbox.mutating_requests();
    let (code, out) = rollback(&project, &["--all", "--schema", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sandbox.mutating_requests(), mutating);
    let planned: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "schema")
        .map(|l| l["data"].clone())
        .collect();
    assert!(!planned.is_empty(), "{out}");
    assert!(
        planned.iter().all(|s| s["outcome"] == "would_drop"),
        "{out}"
    );

    let (code, out) = rollback(&project, &["--all", "--schema"]);
    assert_eq!(code, 0, "{out}");
    let lines = json_lines(&out);
    let schema: Vec<&Value> = lines.iter().filter(|l| l["type"] == "schema").collect();
    assert_eq!(schema.len(), planned.len(), "{out}");
    assert!(
        schema.iter().all(|s| s["data"]["outcome"] == "dropped"),
        "{out}"
    );
    // Records first, schema last.
    let first_schema = lines.iter().position(|l| l["type"] == "schema").unwrap();
    assert!(lines[first_schema..]
        .iter()
        .all(|l| l["type"] != "compensation"));

    // Once: a second rollback drops nothing and sends nothing.
    let mutating = sandbox.mutating_requests();
    let (code, out) = rollback(&project, &["--all", "--schema"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        json_lines(&out).iter().all(|l| l["type"] != "schema"),
        "{out}"
    );
    assert_eq!(sandbox.mutating_requests(), mutating);
    // Neither --run nor --all: usage.
    assert_eq!(project.cutover(&["rollback"]).status.code(), Some(64));
    // --schema needs --all.
    let out = project.cutover(&["rollback", "--run", "1", "--schema"]);
    assert_eq!(out.status.code(), Some(64), "{}", cli::text(&out.stderr));
}

#[test]
fn schema_is_dropped_last_and_once_behind_a_flag_twenty() {
    schema_goes_last_behind_a_flag(Crm::Twenty);
}

#[test]
fn schema_is_dropped_last_and_once_behind_a_flag_highlevel() {
    schema_goes_last_behind_a_flag(Crm::HighLevel);
}

/// Issue 7: `rollback --run <sample run>` removes the sample, and only it.
fn rollback_of_the_sample_run_removes_it(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 30, 11);
    seed_pre_existing(&sandbox);
    let before = snapshot(&sandbox);

    let out = project.cutover(&["--json", "sample", "-n", "6", "--seed", "2"]);
    let stdout = cli::text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", cli::text(&out.stderr));
    let sample_run = last_of(&stdout, "sample")["run"].as_u64().unwrap();
    let during = snapshot(&sandbox);
    let added: usize = during.values().map(|m| m.len()).sum::<usize>()
        - before.values().map(|m| m.len()).sum::<usize>();
    assert!(
        added > 6,
        "the sample wrote its patients and their records ({added})"
    );

    let (code, out) = rollback(&project, &["--run", &sample_run.to_string()]);
    assert_eq!(code, 0, "{out}");
    let after = snapshot(&sandbox);
    assert!(
        after == before,
        "the sample is gone, nothing else touched: {}",
        first_difference(&before, &after)
    );
}

#[test]
fn rollback_of_the_sample_run_removes_it_twenty() {
    rollback_of_the_sample_run_removes_it(Crm::Twenty);
}

#[test]
fn rollback_of_the_sample_run_removes_it_highlevel() {
    rollback_of_the_sample_run_removes_it(Crm::HighLevel);
}
