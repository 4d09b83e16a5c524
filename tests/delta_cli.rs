//! `cutover checkpoint` and `cutover delta`, the real binary against a Twenty
//! sandbox in its own process: after a run and a sealed checkpoint, the
//! practice's next export has K patients changed (some with a newer
//! modification time, some whose time did not move) and J patients added;
//! the delta moves exactly K updates and J creates and nothing else, keeps a
//! before-image for every update, and reports a patient deleted at the source
//! without touching it.

#[path = "support/cli.rs"]
mod cli;

use std::collections::BTreeSet;

use cli::{edit_export_table, json_lines, last_of, ok, set_field, Crm, Project, Sandbox};
use serde_json::Value;

const FIRST_NAME: usize = 2;
const EMAIL: usize = 8;
const PHONES: [usize; 3] = [9, 10, 11];

fn delta_steps(stdout: &str) -> Vec<(String, Value)> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["type"] == "step")
        .map(|l| {
            (
                l["data"]["step"]["label"].as_str().unwrap().to_string(),
                l["data"]["counts"].clone(),
            )
        })
        .collect()
}

#[test]
fn delta_moves_exactly_the_changed_and_the_added() {
    let sandbox = Sandbox::start(Crm::Twenty);
    let project = Project::new(&sandbox, 30, 31);
    ok(&project.cutover(&["run"]));

    // Nothing changed yet: a delta moves nothing.
    let out = ok(&project.cutover(&["--json", "delta"]));
    let summary = last_of(&out, "summary");
    assert_eq!(summary["totals"]["created"], 0, "{summary}");
    assert_eq!(summary["totals"]["updated"], 0, "{summary}");

    let sealed = ok(&project.cutover(&["--json", "checkpoint"]));
    assert!(!last_of(&sealed, "checkpoint")["watermarks"]
        .as_array()
        .unwrap()
        .is_empty());

    // Patients that moved (not quarantined) are the ones to change and copy.
    let held: BTreeSet<String> = json_lines(&ok(&project.cutover(&["--json", "quarantine"])))
        .into_iter()
        .filter(|l| l["type"] == "quarantined" && l["data"]["entity"] == "Patient")
        .map(|l| l["data"]["key"].as_str().unwrap().to_string())
        .collect();
    let before = sandbox.records();
    let mutating_before = sandbox.mutating_requests();

    const K: usize = 4;
    const J: usize = 3;
    let mut changed = Vec::new();
    edit_export_table(&project, "Patient", |lines| {
        let movable: Vec<usize> = (0..lines.len())
            .filter(|&i| !held.contains(lines[i].split(',').next().unwrap()))
            .collect();
        for (n, &i) in movable.iter().take(K).enumerate() {
            let mut line = set_field(&lines[i], FIRST_NAME, &format!("Renamed{n}"));
            if n % 2 == 0 {
                // A newer modification time for half; the other half "lie" (time unchanged).
                let last = line.rsplit_once(',').unwrap().0.to_string();
                line = format!("{last},2026-01-0{}T10:00:00.000", n + 1);
            }
            changed.push(lines[i].split(',').next().unwrap().to_string());
            lines[i] = line;
        }
        let template = lines[movable[K]].clone();
        let last_id: u64 = lines
            .last()
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // One patient that moved disappears from the export.
        let gone = movable[K + 1];
        lines.remove(gone);
        for n in 0..J {
            let id = last_id + 1 + n as u64;
            let mut line = set_field(&template, 0, &id.to_string());
            line = set_field(&line, 1, &format!("D{id}"));
            line = set_field(&line, FIRST_NAME, &format!("New{n}"));
            for field in std::iter::once(EMAIL).chain(PHONES) {
                line = set_field(&line, field, "");
            }
            lines.push(line);
        }
    });

    let out = ok(&project.cutover(&["--json", "delta"]));
    let summary = last_of(&out, "summary");
    let steps = delta_steps(&out);
    for (label, counts) in &steps {
        let (updated, created) = if label == "Patient → person" {
            (K, J)
        } else {
            (0, 0)
        };
        assert_eq!(counts["updated"], updated as u64, "{label}: {counts}");
        assert_eq!(counts["created"], created as u64, "{label}: {counts}");
        assert_eq!(counts["failed"], 0, "{label}: {counts}");
    }
    assert_eq!(summary["totals"]["updated"], K as u64);
    assert_eq!(summary["totals"]["created"], J as u64);
    assert_eq!(
        summary["changed_without_timestamp"],
        (K / 2) as u64,
        "changes whose modification time did not move are found by content hash"
    );
    assert_eq!(summary["deleted_at_source"]["Patient"], 1, "{summary}");
    // Exactly K + J mutating requests (Twenty: one per update, the creates in one batch).
    let sent = sandbox.mutating_requests() - mutating_before;
    assert!(
        sent as usize > K && sent as usize <= K + J,
        "{sent} mutating requests"
    );

    // The sandbox: J more people (the one deleted at the source is still there), the K renamed.
    let after = sandbox.records();
    assert_eq!(after["people"].len(), before["people"].len() + J);
    let names: BTreeSet<String> = after["people"]
        .iter()
        .filter_map(|p| p["name"]["firstName"].as_str().map(str::to_string))
        .collect();
    for n in 0..K {
        assert!(
            names.contains(&format!("Renamed{n}")),
            "Renamed{n} missing: {names:?}"
        );
    }
    for n in 0..J {
        assert!(names.contains(&format!("New{n}")));
    }

    // Every update kept a before-image, as the provenance shows.
    for key in &changed {
        let story = ok(&project.cutover(&["--json", "provenance", &format!("Patient/{key}")]));
        let updates: Vec<Value> = json_lines(&story)
            .into_iter()
            .flat_map(|l| l["data"]["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| {
                e["kind"] == "write_intended" && e["event"]["write_intended"]["op"] == "update"
            })
            .collect();
        assert_eq!(updates.len(), 1, "Patient/{key}: {story}");
        assert!(
            updates[0]["event"]["write_intended"]["before_image"].is_string(),
            "Patient/{key}: the update has no before-image: {}",
            updates[0]
        );
    }

    // And a delta right after moves nothing.
    let again = last_of(&ok(&project.cutover(&["--json", "delta"])), "summary");
    assert_eq!(again["totals"]["created"], 0);
    assert_eq!(again["totals"]["updated"], 0);
}
