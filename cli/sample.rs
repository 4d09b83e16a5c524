//! `cutover sample -n N [--seed S]`: a representative slice written for real,
//! read back and compared field by field (engine::sample). Writes
//! `reports/sample-<run>.html` (self-contained: opens without network) and
//! `reports/sample-<run>.csv` under the project directory, and prints a
//! summary per object. The sample is an ordinary ledgered run of kind
//! `sample`: `rollback --run <run>` removes it, and `run` later skips what it
//! already moved.
//!
//! Exit codes: 0 every field sent is held as sent (exactly or after
//! normalisation; quarantined records are a designed outcome); 3 some field
//! differs or is missing at the destination; 2 no mismatch but some writes
//! failed; 1 the run stopped; 78 configuration.

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args as ClapArgs;
use cutover_engine::report::{summarise, write_csv, write_html, Verdict};
use cutover_engine::run::RunReport;
use cutover_engine::sample::{run_sample, SampleError, SampleOptions, SelectedPatient};
use cutover_ledger::{RunKind, RunOutcome};
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;
use crate::run::{
    open_inputs, print_report, run_failure, run_options, Bars, ProjectFlags, RunInputs,
};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Patients to sample (their plans, exams, appointments, notes, letters and
    /// documents come with them, and the practices, providers and referrers they point at).
    #[arg(short = 'n', long = "patients", default_value_t = 100)]
    pub patients: usize,
    /// Same seed, same patients.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the reports go (default: `reports/` in the project directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub project: ProjectFlags,
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

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    if args.patients == 0 {
        return Err(fail(Exit::Usage, "-n must be at least 1"));
    }
    let RunInputs {
        dir,
        mut ledger,
        map,
        source,
        spec,
        destination: opened,
    } = open_inputs(&args.project).await?;
    let options = run_options(
        RunKind::Sample,
        None,
        args.today,
        &args.phone_region,
        args.concurrency,
        args.batch,
    );
    let progress = Bars::new(out, opened.destination.capabilities());
    let result = run_sample(
        &mut ledger,
        source.as_ref(),
        opened.destination.as_ref(),
        &map,
        &options,
        SampleOptions {
            patients: args.patients,
            seed: args.seed,
        },
        &progress,
    )
    .await;
    progress.clear();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(SampleError::Run(error)) => return Err(run_failure(error)),
        Err(SampleError::NoPatients) => {
            return Err(fail(Exit::Config, "the source has no patients to sample"))
        }
        Err(other) => return Err(anyhow::Error::new(other).context("the sample failed")),
    };
    print_report(&outcome.run, &spec.describe(), &dir, out);
    print_strata(&outcome.selection.patients, out);

    let run = outcome.run.run.map(|r| r.to_string()).unwrap_or_default();
    let reports = match &args.out {
        Some(dir) => dir.clone(),
        None => crate::project::dir().join("reports"),
    };
    std::fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;
    let html_path = reports.join(format!("sample-{run}.html"));
    let csv_path = reports.join(format!("sample-{run}.csv"));
    let meta = format!(
        "run {run} (sample of {} patients, seed {}, {} rows) · {} → {} · {}",
        outcome.selection.patients.len(),
        args.seed,
        outcome.selection.records.len(),
        source.describe(),
        spec.describe(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let file =
        private_file(&html_path).with_context(|| format!("writing {}", html_path.display()))?;
    write_html(
        &outcome.rows,
        &format!("cutover sample — run {run}"),
        &meta,
        std::io::BufWriter::new(file),
    )
    .with_context(|| format!("writing {}", html_path.display()))?;
    let file =
        private_file(&csv_path).with_context(|| format!("writing {}", csv_path.display()))?;
    write_csv(&outcome.rows, std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", csv_path.display()))?;

    let summary = summarise(&outcome.rows);
    let mismatches = outcome
        .rows
        .iter()
        .filter(|r| r.verdict.is_mismatch())
        .count();
    let exit = exit_for(&outcome.run, mismatches);
    out.event(
        "sample",
        &json!({
            "run": outcome.run.run,
            "patients": outcome.selection.patients.len(),
            "rows": outcome.selection.counts(),
            "objects": summary,
            "lines": outcome.rows.len(),
            "mismatches": mismatches,
            "html": html_path,
            "csv": csv_path,
            "exit": exit.code(),
        }),
    );
    out.human("");
    let head = |cells: Vec<String>| {
        format!(
            "{:<22} {:>7} {:>7} {:>10} {:>7} {:>8} {:>8} {:>11} {:>11}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8]
        )
    };
    out.human(head(
        [
            "object",
            "records",
            "match",
            "normalised",
            "differs",
            "missing",
            "not sent",
            "quarantined",
            "not written",
        ]
        .map(String::from)
        .to_vec(),
    ));
    for object in &summary {
        let n = |v: Verdict| {
            object
                .verdicts
                .get(v.as_str())
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        out.human(head(vec![
            object.object.clone(),
            object.records.to_string(),
            n(Verdict::Match),
            n(Verdict::Normalised),
            n(Verdict::Differs),
            n(Verdict::MissingAtDestination),
            n(Verdict::NotSent),
            n(Verdict::Quarantined),
            n(Verdict::NotWritten),
        ]));
    }
    out.human(format!(
        "report: {}\n        {}",
        html_path.display(),
        csv_path.display()
    ));
    if mismatches > 0 {
        out.human(format!(
            "{mismatches} fields differ from what was sent or are missing at the destination (see the report)"
        ));
    }
    out.human(format!(
        "`cutover rollback --run {run}` removes this sample from the destination"
    ));
    Ok(exit)
}

/// A report file readable by its owner only (it holds patient data).
fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn exit_for(report: &RunReport, mismatches: usize) -> Exit {
    if mismatches > 0 {
        Exit::Mismatch
    } else if report.outcome == RunOutcome::CompletedWithFailures {
        Exit::RecordFailures
    } else {
        Exit::Clean
    }
}

/// How the sample spreads (counts only; patient keys stay in the report).
fn print_strata(patients: &[SelectedPatient], out: Output) {
    use std::collections::BTreeMap;
    let mut referral = BTreeMap::new();
    let mut plan = BTreeMap::new();
    let mut visits = BTreeMap::new();
    let mut dirt = BTreeMap::new();
    for p in patients {
        *referral
            .entry(if p.referral.starts_with("dentist:") {
                "referring dentist".to_string()
            } else {
                p.referral.clone()
            })
            .or_insert(0u64) += 1;
        *plan.entry(p.plan.clone()).or_insert(0u64) += 1;
        *visits.entry(p.visits.clone()).or_insert(0u64) += 1;
        for d in &p.dirt {
            *dirt.entry(d.clone()).or_insert(0u64) += 1;
        }
    }
    let dentists = patients
        .iter()
        .filter(|p| p.referral.starts_with("dentist:"))
        .map(|p| p.referral.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    out.event(
        "strata",
        &json!({
            "patients": patients.len(),
            "referral": referral,
            "referring_dentists": dentists,
            "plan": plan,
            "visits": visits,
            "dirt": dirt,
        }),
    );
    let show = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.human(format!("sampled {} patients:", patients.len()));
    out.human(format!(
        "  referral  {} ({dentists} distinct dentists)",
        show(&referral)
    ));
    out.human(format!("  plan      {}", show(&plan)));
    out.human(format!("  visits    {}", show(&visits)));
    out.human(format!(
        "  dirt      {}",
        if dirt.is_empty() {
            "none".to_string()
        } else {
            show(&dirt)
        }
    ));
}
