//! `cutover generate`: writes a synthetic PANDA Perio practice — an export
//! folder (`OUT/export/`, CSV + manifest.json) and the SQLite database the
//! TDS test server serves (`OUT/panda.sqlite3`). Same seed, same bytes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cutover_connectors::panda::generator::{generate, GenerateOptions};

use crate::exit::Exit;
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of patients.
    #[arg(long, default_value_t = 1000)]
    pub patients: u32,
    /// Seed of the generator: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (created if missing; existing files of a practice are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Write only the export folder, no SQLite database.
    #[arg(long)]
    pub no_sqlite: bool,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let options = GenerateOptions {
        patients: args.patients,
        seed: args.seed,
        sqlite: !args.no_sqlite,
    };
    let started = Instant::now();
    let folder = args.out.clone();
    let summary = tokio::task::spawn_blocking(move || generate(&folder, &options))
        .await
        .context("the generator did not finish")?
        .with_context(|| format!("cannot generate a practice in {}", args.out.display()))?;
    let elapsed = started.elapsed();
    let total: u64 = summary.manifest.tables.values().map(|t| t.rows).sum();
    out.event(
        "generated",
        &serde_json::json!({
            "export": summary.export_dir,
            "sqlite": summary.sqlite_path,
            "patients": args.patients,
            "seed": args.seed,
            "rows": total,
            "seconds": elapsed.as_secs_f64(),
            "tables": summary.manifest.tables,
        }),
    );
    out.human(format!("{:<22} {:>12}", "table", "rows"));
    for (table, entry) in &summary.manifest.tables {
        out.human(format!("{table:<22} {:>12}", entry.rows));
    }
    out.human(format!(
        "{total} rows for {} patients in {:.2} s",
        args.patients,
        elapsed.as_secs_f64()
    ));
    out.human(format!("export folder: {}", summary.export_dir.display()));
    if let Some(path) = &summary.sqlite_path {
        out.human(format!("SQLite database: {}", path.display()));
    }
    Ok(Exit::Clean)
}
