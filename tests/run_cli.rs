//! `cutover run`, the real binary against a sandbox in its own process, for
//! both CRMs: a dry run sends no mutating request; the run puts every record
//! that was not quarantined at the sandbox exactly once with its links intact;
//! a second run sends nothing; SIGKILL at many points followed by `run` gives
//! no duplicate and no lost record (compared with an uninterrupted run of the
//! same practice on a second sandbox).

#[path = "support/cli.rs"]
mod cli;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use cli::{last_of, ok, text, Crm, Project, Sandbox};
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Records per object at the sandbox.
fn counts(records: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, usize> {
    records.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

/// Every link field of every stored record points at a stored record; returns
/// how many links were checked per object.field.
fn assert_links_intact(
    crm: Crm,
    records: &BTreeMap<String, Vec<Value>>,
) -> BTreeMap<String, usize> {
    let ids: BTreeSet<String> = records
        .values()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    let mut checked = BTreeMap::new();
    let not_links = [
        "locationId",
        "pipelineId",
        "pipelineStageId",
        "fieldId",
        "calendarId",
        "assignedTo",
        "workspaceMemberId",
        "id",
    ];
    for (object, list) in records {
        for record in list {
            let Some(fields) = record.as_object() else {
                continue;
            };
            for (name, value) in fields {
                let is_link = name.ends_with("Id")
                    && !not_links.contains(&name.as_str())
                    && match crm {
                        Crm::HighLevel => true,
                        // Twenty's relations hold UUIDs; `sourceSystemId` and the like are text.
                        Crm::Twenty => value
                            .as_str()
                            .is_some_and(|v| v.len() == 36 && v.matches('-').count() == 4),
                    };
                let Some(target) = value.as_str().filter(|_| is_link) else {
                    continue;
                };
                assert!(
                    ids.contains(target),
                    "{object} {} has {name} = {target}, which is not at the sandbox",
                    record["id"]
                );
                *checked.entry(format!("{object}.{name}")).or_insert(0) += 1;
            }
        }
    }
    checked
}

fn run_json(project: &Project, args: &[&str]) -> Value {
    run_lines(project, args).1
}

/// The `step` lines (label → counts) and the summary of a `--json` run.
fn run_lines(project: &Project, args: &[&str]) -> (BTreeMap<String, Value>, Value) {
    let mut all = vec!["--json", "run"];
    all.extend_from_slice(args);
    let stdout = ok(&project.cutover(&all));
    let steps = cli::json_lines(&stdout)
        .into_iter()
        .filter(|l| l["type"] == "step")
        .map(|l| {
            (
                l["data"]["step"]["label"].as_str().unwrap().to_string(),
                l["data"]["counts"].clone(),
            )
        })
        .collect();
    (steps, last_of(&stdout, "summary"))
}

fn moves_everything_once(crm: Crm) {
    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 30, 11);
    let before = sandbox.records();
    let mutating = sandbox.mutating_requests();

    let plan = run_json(&project, &["--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        sandbox.mutating_requests(),
        mutating,
        "the dry run sent a mutating request"
    );
    assert_eq!(counts(&sandbox.records()), counts(&before));
    let planned = plan["totals"]["created"].as_u64().unwrap();
    assert!(planned > 100, "{plan}");

    let (steps, summary) = run_lines(&project, &[]);
    assert_eq!(summary["outcome"], "completed", "{summary}");
    let totals = &summary["totals"];
    let created = totals["created"].as_u64().unwrap();
    assert_eq!(
        created, planned,
        "the dry run planned {planned} creates, the run made {created}"
    );
    assert_eq!(totals["failed"], 0);
    assert!(
        totals["quarantined"].as_u64().unwrap() > 0,
        "a generated practice has dirt to quarantine"
    );

    // Exactly once: the sandbox gained as many records as were created.
    let after = sandbox.records();
    let gained: usize =
        counts(&after).values().sum::<usize>() - counts(&before).values().sum::<usize>();
    let link_records = if crm == Crm::HighLevel {
        // A contact's business link is an update of the contact, not a record.
        steps["Patient → contact_business_link"]["created"]
            .as_u64()
            .unwrap()
    } else {
        0
    };
    assert_eq!(
        gained as u64,
        created - link_records,
        "created {created}, sandbox gained {gained}"
    );

    let links = assert_links_intact(crm, &after);
    let expect: &[&str] = match crm {
        Crm::HighLevel => &[
            "contacts.businessId",
            "opportunities.contactId",
            "notes.contactId",
            "tasks.contactId",
        ],
        Crm::Twenty => &[
            "people.companyId",
            "taskTargets.taskId",
            "taskTargets.targetPersonId",
            "noteTargets.noteId",
            "perioExams.patientId",
            "perioExams.providerId",
            "treatmentPlans.patientId",
        ],
    };
    for link in expect {
        assert!(
            links.get(*link).copied().unwrap_or(0) > 0,
            "no {link} link at the sandbox: {links:?}"
        );
    }

    // A second run sends nothing.
    let mutating = sandbox.mutating_requests();
    let again = run_json(&project, &[]);
    assert_eq!(again["totals"]["created"], 0, "{again}");
    assert_eq!(again["totals"]["updated"], 0, "{again}");
    assert_eq!(
        sandbox.mutating_requests(),
        mutating,
        "the second run wrote"
    );
    assert_eq!(again["totals"]["unchanged"], totals["created"]);

    // The ledger verifies.
    ok(&project.cutover(&["ledger", "verify", "--ledger", "ledger"]));
}

#[test]
fn run_moves_every_record_once_to_twenty() {
    moves_everything_once(Crm::Twenty);
}

#[test]
fn run_moves_every_record_once_to_highlevel() {
    moves_everything_once(Crm::HighLevel);
}

/// Kills `cutover run` after seeded random numbers of writes, then lets it finish; the
/// sandbox must hold what an uninterrupted run gives, no more, no less.
fn survives_sigkill(crm: Crm, seed: u64, kills: usize) {
    // Slow answers, so that a kill lands between a request and its confirmation.
    let latency = serde_json::json!({ "latency_ms": 4 });
    let reference_sandbox = Sandbox::start(crm);
    reference_sandbox.post("/_sandbox/faults", &latency);
    let reference = Project::new(&reference_sandbox, 25, 23);
    let summary = run_json(&reference, &[]);
    assert_eq!(summary["outcome"], "completed");
    let expected = counts(&reference_sandbox.records());
    let writes = reference_sandbox.mutating_requests();

    let sandbox = Sandbox::start(crm);
    let project = Project::new(&sandbox, 25, 23);
    sandbox.post("/_sandbox/faults", &latency);
    // Each round is killed once a seeded random number of further writes has
    // reached the sandbox (up to a 2*kills-th of an uninterrupted run's), so the
    // kills land while the run writes, whatever the speed of this build or machine.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut killed_while_writing = 0;
    for round in 0..kills {
        let mut child = project
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let kill_after =
            sandbox.mutating_requests() + rng.gen_range(1..=writes / (2 * kills as u64));
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if sandbox.mutating_requests() >= kill_after {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if !finished {
            killed_while_writing += 1;
            // SIGKILL: no destructor, no flush.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        }
        let status = child.wait().unwrap();
        if finished {
            assert!(
                status.success(),
                "round {round}: the run failed on its own: {status:?}"
            );
        }
        // Every kill leaves a ledger that verifies.
        ok(&project.cutover(&["ledger", "verify", "--ledger", "ledger"]));
    }
    assert!(
        killed_while_writing >= kills / 2,
        "only {killed_while_writing} of {kills} kills hit a run while it wrote (seed {seed}, {writes} writes in all)"
    );
    let last = run_json(&project, &[]);
    assert_eq!(last["outcome"], "completed", "{last}");
    let got = counts(&sandbox.records());
    assert_eq!(
        got, expected,
        "seed {seed}: after {killed_while_writing} kills the sandbox differs from an uninterrupted run"
    );

    // No record twice under one idempotency marker (HighLevel) or id (Twenty).
    let records = sandbox.records();
    let mut markers: HashMap<String, usize> = HashMap::new();
    for list in records.values() {
        for record in list {
            let text = record.to_string();
            if let Some(at) = text.find("cutover-ref: ") {
                let marker: String = text[at..]
                    .chars()
                    .take_while(|c| *c != '"' && *c != '\\')
                    .collect();
                *markers.entry(marker).or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = markers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    // And a run after that sends nothing.
    let mutating = sandbox.mutating_requests();
    run_json(&project, &[]);
    assert_eq!(sandbox.mutating_requests(), mutating);
}

#[test]
fn sigkill_at_random_points_then_run_leaves_no_duplicates_or_gaps_highlevel() {
    survives_sigkill(Crm::HighLevel, 0x6B11_2026, 8);
}

#[test]
fn sigkill_at_random_points_then_run_leaves_no_duplicates_or_gaps_twenty() {
    survives_sigkill(Crm::Twenty, 0x6B12_2026, 6);
}

/// Regression: a refused credential ended `run` with exit 1, not 78 — the exit
/// code was attached as an `anyhow::Error` context, which `exit_for` cannot see.
#[test]
fn a_refused_token_ends_the_run_with_the_configuration_exit_code() {
    let sandbox = Sandbox::start(Crm::Twenty);
    let project = Project::new(&sandbox, 3, 4);
    let before = sandbox.mutating_requests();
    let out = project
        .command(&["run"])
        .env("TWENTY_API_KEY", "not-the-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("not-the-token"),
        "the secret stays out of the error"
    );
    assert_eq!(sandbox.mutating_requests(), before);
}
