//! `cutover checkpoint`: seals the cutover checkpoint — a `checkpoint` event
//! labelled `cutover` carrying the per-entity watermarks the runs so far
//! reached (only past confirmed writes). `cutover delta` moves what changed
//! after it. `cutover quarantine`: the records held back, with their reasons.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_engine::map::ledgered::quarantined;
use cutover_ledger::{EventBody, Ledger, RunKind, RunOutcome};
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The ledger directory (default: the project's).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// The checkpoint's label.
    #[arg(long, default_value = "cutover")]
    label: String,
}

pub fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let dir = crate::project::required(args.ledger, |p| p.ledger.clone(), "ledger")?;
    let mut ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let runs = ledger.runs()?;
    if let Some(open) = runs
        .iter()
        .find(|r| matches!(r.kind, Some(RunKind::Full | RunKind::Delta)) && r.outcome.is_none())
    {
        return Err(fail(
            Exit::Failed,
            format!(
                "run {} never finished: run `cutover run` to complete it before sealing a checkpoint",
                open.run
            ),
        ));
    }
    let watermarks: Vec<_> = ledger.watermarks()?.into_iter().collect();
    if watermarks.is_empty() {
        return Err(fail(
            Exit::Failed,
            "nothing has been migrated completely yet: no entity has a watermark to seal",
        ));
    }
    let run = ledger.start_run(RunKind::Checkpoint, "", "", None)?;
    ledger.append(
        run,
        [EventBody::Checkpoint {
            label: args.label.clone(),
            watermarks: watermarks.clone(),
        }],
    )?;
    ledger.finish_run(
        run,
        RunOutcome::Completed,
        &format!("sealed {}", args.label),
    )?;
    for (entity, at) in &watermarks {
        out.human(format!("{entity:<24} {at}"));
    }
    out.event(
        "checkpoint",
        &json!({ "run": run, "label": args.label, "watermarks": watermarks.iter().map(|(e, at)| json!({"entity": e, "at": at.to_string()})).collect::<Vec<_>>() }),
    );
    out.human(format!(
        "checkpoint {:?} sealed (run {run}); `cutover delta` moves what changes after it",
        args.label
    ));
    Ok(Exit::Clean)
}

#[derive(Debug, ClapArgs)]
pub struct QuarantineArgs {
    /// The ledger directory (default: the project's).
    #[arg(long)]
    ledger: Option<PathBuf>,
}

/// Lists quarantined records: entity, key, reason codes and places (never values).
pub fn list_quarantine(args: QuarantineArgs, out: Output) -> anyhow::Result<Exit> {
    let dir = crate::project::required(args.ledger, |p| p.ledger.clone(), "ledger")?;
    let ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let held = quarantined(&ledger)?;
    for record in &held {
        out.event(
            "quarantined",
            &json!({ "entity": record.entity, "key": record.key, "reasons": record.reasons }),
        );
        let reasons: Vec<String> = record
            .reasons
            .iter()
            .map(|r| format!("{} ({})", r.code, r.detail))
            .collect();
        out.human(format!(
            "{}/{}: {}",
            record.entity,
            record.key,
            reasons.join("; ")
        ));
    }
    out.event("summary", &json!({ "quarantined": held.len() }));
    out.human(format!(
        "{} records quarantined; fix them at the source and `cutover run` retries them",
        held.len()
    ));
    Ok(Exit::Clean)
}
