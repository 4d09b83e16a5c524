//! `cutover rollback [--run ID | --all] [--dry-run] [--force] [--schema]`: undoes
//! runs from the ledger (engine::rollback; docs/rollback.md). Creates are
//! deleted children first, updates get their before-image back; each record is
//! read first and left alone, listed as a conflict, when someone changed it
//! after we wrote it (unless `--force`). Ledgered as a `rollback` run and
//! resumable: run the same command again after a crash.
//!
//! Output: a table of every record and what became of it, or with `--json`
//! `{"type":"compensation"}` lines (one per record), `{"type":"conflict"}` lines
//! for the records left alone, `{"type":"schema"}` lines and a `summary`.
//!
//! Exit codes: 0 everything selected is undone (or already gone); 2 finished
//! with records left (conflicts, failed requests, writes in doubt — each listed;
//! a dry run that finds conflicts also exits 2); 1 the rollback stopped (run it
//! again to resume); 64 usage (neither `--run` nor `--all`, a run that is not a
//! migration run); 78 configuration (credentials).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_engine::rollback::{
    plan_rollback, run_rollback, Item, ItemOutcome, Observer, RollbackError, RollbackOptions,
    RollbackReport, Selection,
};
use cutover_engine::ReadDestination;
use cutover_ledger::{Ledger, RunOutcome};
use serde_json::json;

use crate::destination;
use crate::exit::{Coded, Exit};
use crate::output::Output;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The ledger directory (default: the project's).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub destination: crate::destination::DestinationFlags,
    /// Undo one run (`run`, `delta` or `sample`), by id (`cutover ledger runs` lists them).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub run: Option<u64>,
    /// Undo every run, delta and sample run in the ledger.
    #[arg(long)]
    pub all: bool,
    /// Print the plan (drift checks included: the destination is only read); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also undo records changed at the destination after we wrote them.
    #[arg(long)]
    pub force: bool,
    /// Also drop the custom fields and objects cutover created (last; with --all).
    #[arg(long)]
    pub schema: bool,
    /// Compensations per ledger flush.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let dir = crate::project::required(args.ledger.clone(), |p| p.ledger.clone(), "ledger")?;
    let spec = args.destination.resolve()?;
    let mut ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let options = RollbackOptions {
        selection: match args.run {
            Some(id) => Selection::Run(id),
            None => Selection::All,
        },
        force: args.force,
        schema: args.schema,
        batch: args.batch.max(1),
    };
    let opened = destination::open(&spec).await?;
    let lines = Lines {
        out,
        dry_run: args.dry_run,
    };
    out.human(format!(
        "{:<14} {:<22} {:<38} {:<26} {:<8}  detail",
        "outcome", "object", "destination id", "source", "action"
    ));
    let result = if args.dry_run {
        let reader: &dyn ReadDestination = opened.destination.as_ref();
        plan_rollback(&ledger, reader, &options, &lines).await
    } else {
        run_rollback(
            &mut ledger,
            opened.destination.as_ref(),
            &options,
            &spec.describe(),
            &lines,
        )
        .await
    };
    let report = result.map_err(rollback_failure)?;
    print_report(&report, out);
    Ok(match report.outcome {
        RunOutcome::Completed => Exit::Clean,
        RunOutcome::CompletedWithFailures => Exit::RecordFailures,
        RunOutcome::Failed => Exit::Failed,
    })
}

fn rollback_failure(error: RollbackError) -> anyhow::Error {
    let (exit, message) = match &error {
        RollbackError::UnknownRun(_)
        | RollbackError::NotAMigrationRun { .. }
        | RollbackError::SchemaNeedsAll => (Exit::Usage, error.to_string()),
        RollbackError::Destination {
            error:
                cutover_engine::DestError::Unauthorized { .. } | cutover_engine::DestError::Config(_),
            ..
        } => (
            Exit::Config,
            "the destination refused the rollback".to_string(),
        ),
        _ => (
            Exit::Failed,
            "the rollback stopped; `cutover rollback` again resumes it".to_string(),
        ),
    };
    // The code rides as the context itself, so `exit_for` finds it in the chain.
    anyhow::Error::new(error).context(Coded { exit, message })
}

fn outcome_word(outcome: ItemOutcome) -> &'static str {
    match outcome {
        ItemOutcome::Deleted => "deleted",
        ItemOutcome::Restored => "restored",
        ItemOutcome::AlreadyGone => "already gone",
        ItemOutcome::Conflict => "CONFLICT",
        ItemOutcome::Kept => "KEPT",
        ItemOutcome::Failed => "FAILED",
        ItemOutcome::InDoubt => "IN DOUBT",
        ItemOutcome::WouldDelete => "would delete",
        ItemOutcome::WouldRestore => "would restore",
    }
}

/// Prints each record as soon as it is decided: a `plan` / `compensation` line (and a
/// `conflict` line for a record left alone) with `--json`, a table row without.
struct Lines {
    out: Output,
    dry_run: bool,
}

impl Observer for Lines {
    fn item(&self, item: &Item) {
        let out = self.out;
        out.event(if self.dry_run { "plan" } else { "compensation" }, item);
        if matches!(item.outcome, ItemOutcome::Conflict | ItemOutcome::Kept) {
            out.event("conflict", item);
        }
        out.human(format!(
            "{:<14} {:<22} {:<38} {:<26} {:<8}  {}",
            outcome_word(item.outcome),
            item.object,
            item.dest_id,
            format!("{}/{}", item.entity, item.key),
            match item.action {
                cutover_engine::rollback::Action::Delete => "delete",
                cutover_engine::rollback::Action::Restore => "restore",
            },
            item.detail
        ));
    }
}

fn print_report(report: &RollbackReport, out: Output) {
    for element in &report.schema {
        out.event("schema", element);
    }
    out.event(
        "summary",
        &json!({
            "run": report.run,
            "dry_run": report.dry_run,
            "runs": report.runs,
            "outcome": report.outcome,
            "counts": report.counts,
            "conflicts": report.items.iter().filter(|i| matches!(i.outcome, ItemOutcome::Conflict | ItemOutcome::Kept)).map(|i| json!({"object": i.object, "dest_id": i.dest_id, "entity": i.entity, "key": i.key, "outcome": i.outcome, "changed_fields": i.changed_fields})).collect::<Vec<_>>(),
        }),
    );
    if !out.json {
        for element in &report.schema {
            out.human(format!(
                "{:<14} {} {} ({}) {}",
                element.outcome, element.element, element.name, element.dest_id, element.detail
            ));
        }
        let c = &report.counts;
        let runs: Vec<String> = report.runs.iter().map(u64::to_string).collect();
        if report.dry_run {
            out.human(format!(
                "dry run of the rollback of run(s) {}: would delete {}, would restore {}, already gone {}, conflicts {}, kept {}, in doubt {}, undone before {}; nothing was changed",
                runs.join(", "), c.would_delete, c.would_restore, c.already_gone, c.conflicts, c.kept, c.in_doubt, c.done_before
            ));
        } else {
            out.human(format!(
                "rollback run {} of run(s) {}: deleted {}, restored {}, already gone {}, conflicts {}, kept {}, failed {}, in doubt {}, undone before {}",
                report.run.unwrap_or(0), runs.join(", "), c.deleted, c.restored, c.already_gone, c.conflicts, c.kept, c.failed, c.in_doubt, c.done_before
            ));
        }
        if c.conflicts > 0 {
            out.human(format!(
                "{} records changed at the destination after we wrote them and were left alone (listed above as CONFLICT; {} records they refer to are KEPT); `--force` undoes them anyway",
                c.conflicts, c.kept
            ));
        }
        if c.failed > 0 {
            out.human("some compensations failed; `cutover rollback` again retries them");
        }
    }
}
