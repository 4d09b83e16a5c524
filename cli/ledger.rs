//! `cutover ledger verify|export|import|stats`: the auditor's commands.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use cutover_ledger::{verify_jsonl, Digest, Ledger};
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute every link of the hash chain and check the head.
    Verify {
        /// The ledger directory (default: the project's, from cutover.toml).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Verify a JSONL export instead of a ledger directory.
        #[arg(long, conflicts_with = "ledger")]
        jsonl: Option<PathBuf>,
        /// Fail unless the chain ends at this head hash (recorded elsewhere, e.g. in a signed report).
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
    },
    /// Write the whole trail as JSONL (one event per line, with hashes).
    Export {
        /// The ledger directory (default: the project's).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Rebuild a ledger directory from a JSONL export (verified line by line).
    Import {
        /// The new ledger directory (must not hold a ledger).
        #[arg(long)]
        ledger: PathBuf,
        /// The JSONL export.
        input: PathBuf,
    },
    /// Counts, sizes and runs.
    Stats {
        /// The ledger directory (default: the project's).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

pub fn run(args: LedgerArgs, out: Output) -> anyhow::Result<Exit> {
    match args.command {
        LedgerCommand::Verify {
            ledger,
            jsonl,
            expect_head,
        } => {
            let expected = match &expect_head {
                Some(text) => Some(Digest::from_hex(text.trim()).ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        format!("--expect-head {text:?} is not a 64-digit hex hash"),
                    )
                })?),
                None => None,
            };
            let ledger = match (&ledger, &jsonl) {
                (None, None) => Some(project_ledger(None)?),
                _ => ledger,
            };
            let (what, head) = match (ledger, jsonl) {
                (Some(dir), _) => {
                    let ledger = Ledger::open(&dir)
                        .with_context(|| format!("opening the ledger at {}", dir.display()))?;
                    ledger
                        .verify()
                        .with_context(|| format!("verifying the ledger at {}", dir.display()))?;
                    (dir.display().to_string(), ledger.head())
                }
                (None, Some(path)) => {
                    let file =
                        File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    let head = verify_jsonl(&mut BufReader::new(file))
                        .with_context(|| format!("verifying the export {}", path.display()))?;
                    (path.display().to_string(), head)
                }
                (None, None) => return Err(fail(Exit::Usage, "give --ledger DIR or --jsonl FILE")),
            };
            if let Some(expected) = expected {
                if expected != head.hash {
                    out.event("verify", &json!({ "ok": false, "events": head.seq, "head": head.hash, "expected_head": expected }));
                    return Err(fail(Exit::Failed, format!("{what}: the chain verifies but ends at {} (seq {}), not at the expected head {expected}", head.hash, head.seq)));
                }
            }
            out.event(
                "verify",
                &json!({ "ok": true, "events": head.seq, "head": head.hash }),
            );
            out.human(format!(
                "ok: {} events verified in {what}; head seq {} hash {}",
                head.seq, head.seq, head.hash
            ));
            Ok(Exit::Clean)
        }
        LedgerCommand::Export { ledger, output } => {
            let ledger = project_ledger(ledger)?;
            let ledger = Ledger::open(&ledger)
                .with_context(|| format!("opening the ledger at {}", ledger.display()))?;
            let count = match &output {
                Some(path) => {
                    let tmp = path.with_extension("partial");
                    let file = File::create(&tmp)
                        .with_context(|| format!("creating {}", tmp.display()))?;
                    let mut writer = BufWriter::new(file);
                    let count = ledger.export_jsonl(&mut writer)?;
                    writer
                        .flush()
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    std::fs::rename(&tmp, path).with_context(|| {
                        format!("moving the export into place at {}", path.display())
                    })?;
                    count
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = BufWriter::new(stdout.lock());
                    ledger.export_jsonl(&mut lock)?
                }
            };
            if let Some(path) = output {
                out.event(
                    "export",
                    &json!({ "events": count, "output": path, "head": ledger.head().hash }),
                );
                out.human(format!("exported {count} events to {}", path.display()));
            }
            Ok(Exit::Clean)
        }
        LedgerCommand::Import { ledger, input } => {
            let file =
                File::open(&input).with_context(|| format!("opening {}", input.display()))?;
            let imported =
                Ledger::import_jsonl(&mut BufReader::new(file), &ledger).with_context(|| {
                    format!("importing {} into {}", input.display(), ledger.display())
                })?;
            let head = imported.head();
            out.event(
                "import",
                &json!({ "events": head.seq, "head": head.hash, "ledger": ledger }),
            );
            out.human(format!(
                "imported {} events into {}; head {}",
                head.seq,
                ledger.display(),
                head.hash
            ));
            Ok(Exit::Clean)
        }
        LedgerCommand::Stats { ledger } => {
            let ledger = project_ledger(ledger)?;
            let ledger = Ledger::open(&ledger)
                .with_context(|| format!("opening the ledger at {}", ledger.display()))?;
            let stats = ledger.stats()?;
            out.event("stats", &stats);
            out.human(format!("events      {}", stats.events));
            out.human(format!("head        {}", stats.head.hash));
            out.human(format!("runs        {}", stats.runs));
            out.human(format!(
                "blobs       {} ({} bytes)",
                stats.blobs, stats.blob_bytes
            ));
            out.human(format!("on disk     {} bytes", stats.disk_bytes));
            for (kind, n) in &stats.events_by_kind {
                out.human(format!("  {kind:<16} {n}"));
            }
            Ok(Exit::Clean)
        }
    }
}

/// The ledger directory from the flag, else from the project file.
fn project_ledger(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    crate::project::required(flag, |p| p.ledger.clone(), "ledger")
}
