//! `cutover run` and `cutover delta`: the migration itself (engine::run), with
//! progress bars per object on a terminal, `--json` progress lines for
//! machines, and a summary table. `--dry-run` hands the engine a read-only
//! destination and opens the ledger without writing to it.
//!
//! Exit codes: 0 everything moved (quarantined records are a designed outcome,
//! counted in the summary and listed by `cutover quarantine`); 2 finished
//! with failed writes (each listed; the next `run` retries them); 1 the run
//! stopped (the next `run` resumes it); 78 configuration (no confirmed map, a
//! map changed since it was confirmed, credentials, a missing precondition).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args as ClapArgs;
use cutover_connectors::panda::open_source;
use cutover_engine::clean::CleanConfig;
use cutover_engine::map::ledgered::{load_confirmed, MapGateError};
use cutover_engine::map::MapFile;
use cutover_engine::run::{
    plan_migration, run_migration, ObjectCounts, Progress, RunError, RunOptions, RunReport, Step,
};
use cutover_engine::{Capabilities, ReadDestination, Source};
use cutover_ledger::{Ledger, RunKind, RunOutcome};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::destination::{self, DestinationSpec};
use crate::exit::{fail, fail_with, Exit};
use crate::output::Output;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectFlags,
    /// Plan and report without writing anything (the destination is only read).
    #[arg(long)]
    pub dry_run: bool,
    /// Requests in flight at once (the destination's rate budget paces them).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Records per ledger flush and request round.
    #[arg(long, default_value_t = 240)]
    pub batch: usize,
    /// The date birth dates must not be after (default: today).
    #[arg(long)]
    pub today: Option<NaiveDate>,
    /// Region for phone numbers written without a country code.
    #[arg(long, default_value = "US")]
    pub phone_region: String,
}

/// What a run over the project works with, opened in this order: the ledger, its
/// confirmed map (exit 78 without one), the source, the destination.
pub(crate) struct RunInputs {
    pub dir: PathBuf,
    pub ledger: Ledger,
    pub map: MapFile,
    pub source: Box<dyn Source>,
    pub spec: DestinationSpec,
    pub destination: destination::OpenDestination,
}

/// Where a command that reads the source and the destination works; every flag left
/// out comes from the project file (`cutover.toml`).
#[derive(Debug, Clone, ClapArgs)]
pub struct ProjectFlags {
    /// The ledger directory (default: the project's).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// `export:DIR` or `sqlserver:<ADO string>` (default: the project's).
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub destination: crate::destination::DestinationFlags,
}

/// Opens a run's inputs.
pub(crate) async fn open_inputs(flags: &ProjectFlags) -> anyhow::Result<RunInputs> {
    let dir = crate::project::required(flags.ledger.clone(), |p| p.ledger.clone(), "ledger")?;
    let source_spec =
        crate::project::required(flags.source.clone(), |p| p.source.clone(), "source")?;
    let ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let map = load_confirmed(&ledger).map_err(|e| fail(Exit::Config, e.to_string()))?;
    let spec = flags.destination.resolve()?;
    let source = open_source(&source_spec).await.map_err(|e| match e {
        cutover_engine::SourceError::Config(message) => {
            fail(Exit::Config, format!("source configuration: {message}"))
        }
        other => anyhow::Error::new(other).context("cannot open the source"),
    })?;
    let destination = destination::open(&spec).await?;
    Ok(RunInputs {
        dir,
        ledger,
        map,
        source,
        spec,
        destination,
    })
}

/// The engine's options from the command line's (zero concurrency or batch means 1).
pub(crate) fn run_options(
    kind: RunKind,
    filter: Option<cutover_engine::run::RecordFilter>,
    today: Option<NaiveDate>,
    phone_region: &str,
    concurrency: usize,
    batch: usize,
) -> RunOptions {
    RunOptions {
        kind,
        filter,
        today: today.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        clean: CleanConfig {
            default_region: phone_region.to_string(),
            ..CleanConfig::default()
        },
        concurrency: concurrency.max(1),
        batch: batch.max(1),
    }
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    execute(args, RunKind::Full, None, out)
        .await
        .map(|(exit, _)| exit)
}

pub async fn delta(args: Args, out: Output) -> anyhow::Result<Exit> {
    execute(args, RunKind::Delta, None, out)
        .await
        .map(|(exit, _)| exit)
}

/// Runs with a kind and an optional filter (a sample); returns the report too.
pub async fn execute(
    args: Args,
    kind: RunKind,
    filter: Option<cutover_engine::run::RecordFilter>,
    out: Output,
) -> anyhow::Result<(Exit, Option<RunReport>)> {
    let RunInputs {
        dir,
        mut ledger,
        map,
        source,
        spec,
        destination: opened,
    } = open_inputs(&args.project).await?;
    let options = run_options(
        kind,
        filter,
        args.today,
        &args.phone_region,
        args.concurrency,
        args.batch,
    );
    let capabilities = opened.destination.capabilities();
    let progress = Bars::new(out, capabilities);
    let result = if args.dry_run {
        let reader: &dyn ReadDestination = opened.destination.as_ref();
        plan_migration(&ledger, source.as_ref(), reader, &map, &options, &progress).await
    } else {
        run_migration(
            &mut ledger,
            source.as_ref(),
            opened.destination.as_ref(),
            &map,
            &options,
            &progress,
        )
        .await
    };
    progress.clear();
    let report = match result {
        Ok(report) => report,
        Err(error) => return Err(run_failure(error)),
    };
    print_report(&report, &spec.describe(), &dir, out);
    let exit = match report.outcome {
        RunOutcome::Completed => Exit::Clean,
        RunOutcome::CompletedWithFailures => Exit::RecordFailures,
        RunOutcome::Failed => Exit::Failed,
    };
    Ok((exit, Some(report)))
}

pub(crate) fn run_failure(error: RunError) -> anyhow::Error {
    let exit = match &error {
        RunError::Map(MapGateError::Ledger(_)) => Exit::Failed,
        RunError::Map(_) | RunError::Clean(_) => Exit::Config,
        RunError::Destination {
            error:
                cutover_engine::DestError::Unauthorized { .. }
                | cutover_engine::DestError::Config(_)
                | cutover_engine::DestError::Precondition(_),
            ..
        } => Exit::Config,
        _ => Exit::Failed,
    };
    let message = match &error {
        RunError::Map(e) => e.to_string(),
        _ => "the run stopped; `cutover run` again resumes it".to_string(),
    };
    fail_with(exit, message, error)
}

pub(crate) fn print_report(report: &RunReport, dest: &str, ledger: &std::path::Path, out: Output) {
    for (step, counts) in &report.steps {
        out.event("step", &json!({ "step": step, "counts": counts }));
    }
    let totals = report.totals();
    out.event(
        "summary",
        &json!({
            "run": report.run,
            "dry_run": report.dry_run,
            "dest": dest,
            "outcome": report.outcome,
            "seconds": report.seconds,
            "totals": totals,
            "deleted_at_source": report.deleted_at_source,
            "changed_without_timestamp": report.changed_without_timestamp,
        }),
    );
    let verb = if report.dry_run { "would " } else { "" };
    out.human(format!(
        "{:<34} {:>8} {:>8} {:>8} {:>9} {:>8} {:>11} {:>8} {:>7}",
        "step",
        "read",
        format!("{verb}create").trim_start(),
        "update",
        "unchanged",
        "resumed",
        "quarantined",
        "skipped",
        "failed"
    ));
    let row = |label: &str, c: &ObjectCounts| {
        format!(
            "{:<34} {:>8} {:>8} {:>8} {:>9} {:>8} {:>11} {:>8} {:>7}",
            label,
            c.read,
            c.created,
            c.updated,
            c.unchanged,
            c.resumed,
            c.quarantined,
            c.skipped + c.excluded,
            c.failed
        )
    };
    for (step, counts) in &report.steps {
        out.human(row(&step.label, counts));
    }
    out.human(row("total", &totals));
    for (entity, count) in &report.deleted_at_source {
        out.human(format!("{entity}: {count} migrated rows are no longer at the source (reported only; nothing was deleted)"));
    }
    let rate = if report.seconds > 0.0 {
        totals.read as f64 / report.seconds
    } else {
        0.0
    };
    match report.run {
        Some(run) => out.human(format!(
            "run {run} {} in {:.1} s ({rate:.0} rows/s) → {dest}; ledger {}",
            match report.outcome {
                RunOutcome::Completed => "completed",
                RunOutcome::CompletedWithFailures =>
                    "completed with failures (run again to retry them)",
                RunOutcome::Failed => "failed",
            },
            report.seconds,
            ledger.display()
        )),
        None => out.human(format!(
            "dry run: nothing was written ({:.1} s)",
            report.seconds
        )),
    }
    if totals.quarantined > 0 {
        out.human(format!(
            "{} records are quarantined with their reasons: `cutover quarantine` lists them",
            totals.quarantined
        ));
    }
}

/// Progress for people (a bar per step, on stderr, only on a terminal) and for
/// machines (`{"type":"progress"}` lines with `--json`, at most two a second).
pub(crate) struct Bars {
    out: Output,
    multi: MultiProgress,
    bars: Mutex<Vec<(String, ProgressBar, Instant)>>,
    last_json: Mutex<Instant>,
    /// Records per second the destination's budget allows.
    budget_rate: f64,
}

impl Bars {
    pub(crate) fn new(out: Output, capabilities: Capabilities) -> Bars {
        let multi = MultiProgress::new();
        if out.json {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let per_second =
            capabilities.requests_per_window as f64 / capabilities.window.as_secs_f64().max(0.001);
        Bars {
            out,
            multi,
            bars: Mutex::new(Vec::new()),
            last_json: Mutex::new(Instant::now() - Duration::from_secs(1)),
            budget_rate: per_second * capabilities.max_batch.max(1) as f64,
        }
    }

    pub(crate) fn clear(&self) {
        let _ = self.multi.clear();
    }

    /// Seconds left: the slower of the observed pace and what the budget allows.
    fn eta(&self, step: &Step, counts: &ObjectCounts, started: Instant) -> Option<f64> {
        let total = step.total?;
        let remaining = total.saturating_sub(counts.read) as f64;
        let elapsed = started.elapsed().as_secs_f64();
        let observed = if elapsed > 0.0 {
            counts.read as f64 / elapsed
        } else {
            0.0
        };
        let write_share = if counts.read > 0 {
            counts.writes() as f64 / counts.read as f64
        } else {
            1.0
        };
        let budget_rows = if write_share > 0.0 {
            self.budget_rate / write_share
        } else {
            f64::INFINITY
        };
        let rate = observed.min(budget_rows);
        (rate > 0.0).then(|| remaining / rate)
    }
}

impl Progress for Bars {
    fn phase(&self, what: &str) {
        self.out.event("phase", &json!({ "phase": what }));
        if !self.out.json {
            let _ = self.multi.println(what);
        }
    }

    fn step_started(&self, step: &Step) {
        let bar = match step.total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:<34} {wide_bar} {pos:>7}/{len:7} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(step.label.clone());
        let bar = self.multi.add(bar);
        self.bars
            .lock()
            .unwrap()
            .push((step.label.clone(), bar, Instant::now()));
        self.out.event("step_started", step);
    }

    fn step_progress(&self, step: &Step, counts: &ObjectCounts) {
        let bars = self.bars.lock().unwrap();
        let Some((_, bar, started)) = bars.iter().find(|(label, ..)| *label == step.label) else {
            return;
        };
        let eta = self.eta(step, counts, *started);
        bar.set_position(counts.read);
        bar.set_message(format!(
            "new {} upd {} same {} quar {} fail {}{}",
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.quarantined,
            counts.failed,
            eta.map(|s| format!(" eta {s:.0}s")).unwrap_or_default()
        ));
        if self.out.json {
            let mut last = self.last_json.lock().unwrap();
            if last.elapsed() >= Duration::from_millis(500) {
                *last = Instant::now();
                self.out.event(
                    "progress",
                    &json!({ "step": step.label, "total": step.total, "counts": counts, "eta_seconds": eta }),
                );
            }
        }
    }

    fn step_finished(&self, step: &Step, counts: &ObjectCounts) {
        if let Some((_, bar, _)) = self
            .bars
            .lock()
            .unwrap()
            .iter()
            .find(|(label, ..)| *label == step.label)
        {
            bar.set_position(counts.read);
            bar.finish();
        }
        self.out.event(
            "step_finished",
            &json!({ "step": step.label, "counts": counts }),
        );
    }
}
