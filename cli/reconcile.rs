//! `cutover reconcile`: source against ledger against destination
//! (engine::reconcile). Per rule of the confirmed map, the count equation
//! (source rows = confirmed + quarantined + skipped + rolled back); per
//! confirmed record (all, or `--sample N` per rule), the destination record
//! read back and compared with what was sent.
//!
//! Output: a table per object (or `--json` lines: `object`, `mismatch`,
//! `missing`, `unaccounted`, `summary`). Standard output names fields and
//! record keys only; the values that differ are written to the report file
//! `reports/reconcile-<run>-<time>.jsonl` (one line per differing field, per
//! missing or unaccounted record), whose path is printed.
//!
//! Exit codes: 0 everything reconciles; 3 a record is missing or differs, or a
//! rule's count equation does not hold; 78 configuration (no confirmed map,
//! credentials, a missing precondition); 1 the destination or ledger could
//! not be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_engine::reconcile::{
    reconcile, Finding, FindingKind, ObjectReconcile, ReconcileError, ReconcileOptions,
};
use cutover_engine::{DestError, ReadDestination};
use serde_json::json;

use crate::exit::{fail_with, Exit};
use crate::output::Output;
use crate::run::{open_inputs, ProjectFlags, RunInputs};

/// Findings shown on a terminal (all of them are in the report file).
const SHOWN: usize = 50;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Read back only N confirmed records per object (a deterministic sample); default all.
    #[arg(long)]
    pub sample: Option<usize>,
    /// The sample's seed (the same seed picks the same records).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Destination reads in flight at once (the destination's rate budget paces them).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub project: ProjectFlags,
    /// Folder for the report file (default: `reports/` next to the project file).
    #[arg(long)]
    pub reports: Option<PathBuf>,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let RunInputs {
        ledger,
        map,
        source,
        spec,
        destination: opened,
        ..
    } = open_inputs(&args.project).await?;
    let reader: &dyn ReadDestination = opened.destination.as_ref();

    let reports = match args.reports.clone() {
        Some(dir) => dir,
        None => project_dir().join("reports"),
    };
    std::fs::create_dir_all(&reports)
        .with_context(|| format!("creating the reports folder {}", reports.display()))?;
    let reports = reports.canonicalize().unwrap_or(reports);
    let run_label = ledger
        .runs()
        .ok()
        .and_then(|runs| runs.iter().map(|r| r.run).max())
        .map(|run| format!("run{run}-"))
        .unwrap_or_default();
    let report_path = reports.join(format!(
        "reconcile-{run_label}{}.jsonl",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let file = std::fs::File::create(&report_path)
        .with_context(|| format!("creating {}", report_path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut write_error: Option<std::io::Error> = None;
    let mut shown: Vec<String> = Vec::new();
    let mut findings = 0u64;

    let options = ReconcileOptions {
        sample: args.sample,
        seed: args.seed,
        concurrency: args.concurrency.max(1),
        ..ReconcileOptions::default()
    };
    let result = {
        let mut on_finding = |finding: &Finding| {
            findings += 1;
            if let Err(e) = write_finding(&mut writer, finding) {
                write_error.get_or_insert(e);
            }
            emit_finding(out, finding);
            if shown.len() < SHOWN {
                shown.push(describe(finding));
            }
        };
        reconcile(
            &ledger,
            source.as_ref(),
            reader,
            &map,
            &options,
            &mut on_finding,
        )
        .await
    };
    writer
        .flush()
        .with_context(|| format!("writing {}", report_path.display()))?;
    if let Some(e) = write_error {
        return Err(anyhow::Error::new(e).context(format!("writing {}", report_path.display())));
    }
    let report = result.map_err(reconcile_failure)?;

    for object in &report.objects {
        out.event(
            "object",
            &json!({ "counts": object, "equation_holds": object.equation_holds() }),
        );
    }
    let totals = report.totals();
    let clean = report.clean();
    out.event(
        "summary",
        &json!({
            "clean": clean,
            "dest": spec.describe(),
            "sample": report.sample,
            "seed": args.seed,
            "totals": totals,
            "objects_with_broken_equation": report.objects.iter().filter(|o| !o.equation_holds()).map(|o| format!("{} → {}", o.entity, o.object)).collect::<Vec<_>>(),
            "findings": findings,
            "report": report_path,
        }),
    );
    print_table(&report.objects, &totals, out);
    for line in &shown {
        out.human(line);
    }
    if findings > shown.len() as u64 {
        out.human(format!(
            "… and {} more (all in the report)",
            findings - shown.len() as u64
        ));
    }
    if let Some(n) = report.sample {
        out.human(format!(
            "read back a sample of at most {n} records per object (seed {})",
            args.seed
        ));
    }
    if clean {
        out.human(format!(
            "reconciled: every source row is accounted for and every record read back matches what was sent ({} checked); report {}",
            totals.checked,
            report_path.display()
        ));
        Ok(Exit::Clean)
    } else {
        out.human(format!(
            "NOT reconciled: {} missing, {} mismatched, {} unaccounted, {} objects whose counts do not add up; the values are in {}",
            totals.missing,
            totals.mismatched,
            totals.unaccounted,
            report.objects.iter().filter(|o| !o.equation_holds()).count(),
            report_path.display()
        ));
        Ok(Exit::Mismatch)
    }
}

/// The folder the project file is in (the current folder without one).
fn project_dir() -> PathBuf {
    crate::project::path()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn reconcile_failure(error: ReconcileError) -> anyhow::Error {
    let exit = match &error {
        ReconcileError::Destination {
            error:
                DestError::Unauthorized { .. } | DestError::Config(_) | DestError::Precondition(_),
            ..
        } => Exit::Config,
        _ => Exit::Failed,
    };
    fail_with(exit, "reconcile could not finish", error)
}

/// One report line per differing field, or per missing / unaccounted record.
fn write_finding(writer: &mut impl Write, finding: &Finding) -> std::io::Result<()> {
    let base = json!({
        "entity": finding.entity,
        "key": finding.key,
        "object": finding.object,
        "dest_id": finding.dest_id,
        "kind": finding.kind.name(),
    });
    match &finding.kind {
        FindingKind::Mismatch(differences) => {
            for d in differences {
                let mut line = base.clone();
                line["field"] = json!(d.path);
                line["sent"] = d.sent.clone();
                line["held"] = d.held.clone();
                writeln!(writer, "{line}")?;
            }
        }
        FindingKind::Missing => writeln!(writer, "{base}")?,
        FindingKind::Unaccounted { status } => {
            let mut line = base.clone();
            line["status"] = json!(status);
            writeln!(writer, "{line}")?;
        }
    }
    Ok(())
}

/// A finding on stdout: keys and field names, never values.
fn emit_finding(out: Output, finding: &Finding) {
    let mut data = json!({
        "entity": finding.entity,
        "key": finding.key,
        "object": finding.object,
        "dest_id": finding.dest_id,
    });
    match &finding.kind {
        FindingKind::Mismatch(differences) => {
            data["fields"] = json!(differences.iter().map(|d| &d.path).collect::<Vec<_>>());
        }
        FindingKind::Missing => {}
        FindingKind::Unaccounted { status } => data["status"] = json!(status),
    }
    out.event(finding.kind.name(), &data);
}

fn describe(finding: &Finding) -> String {
    let place = format!("{} {}/{}", finding.object, finding.entity, finding.key);
    match &finding.kind {
        FindingKind::Missing => format!(
            "missing     {place}: the destination has no {}",
            finding.dest_id.as_deref().unwrap_or("?")
        ),
        FindingKind::Mismatch(differences) => format!(
            "mismatch    {place}: {}",
            differences
                .iter()
                .map(|d| d.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FindingKind::Unaccounted { status } => format!("unaccounted {place}: {status}"),
    }
}

fn print_table(objects: &[ObjectReconcile], totals: &ObjectReconcile, out: Output) {
    out.human(format!(
        "{:<34} {:>7} {:>9} {:>11} {:>7} {:>6} {:>5} {:>7} {:>7} {:>8} {:>7}  {}",
        "object",
        "source",
        "confirmed",
        "quarantined",
        "skipped",
        "rolled",
        "other",
        "checked",
        "matched",
        "mismatch",
        "missing",
        "equation"
    ));
    let row = |label: &str, o: &ObjectReconcile, equation: &str| {
        format!(
            "{:<34} {:>7} {:>9} {:>11} {:>7} {:>6} {:>5} {:>7} {:>7} {:>8} {:>7}  {}",
            label,
            o.source_rows,
            o.confirmed,
            o.quarantined,
            o.skipped,
            o.rolled_back,
            o.unaccounted,
            o.checked,
            o.matched,
            o.mismatched,
            o.missing,
            equation
        )
    };
    for o in objects {
        let equation = if o.equation_holds() {
            "holds"
        } else {
            "DOES NOT HOLD"
        };
        out.human(row(&format!("{} → {}", o.entity, o.object), o, equation));
    }
    out.human(row("total", totals, ""));
}
