//! The `cutover` command line. Parses arguments (clap derive), runs one
//! command, prints its outcome and exits with a code that means something
//! (see `exit.rs`). Errors are printed with their whole cause chain.
//!
//! Each command lives in its own module with an `Args` struct and a `run`
//! function returning the [`exit::Exit`] it finished with.

mod bench;
mod bench_source;
mod checkpoint;
mod demo;
mod destination;
mod discover;
mod exit;
mod generate;
mod highlevel;
mod init;
mod ledger;
mod map;
mod output;
mod preflight;
mod project;
mod provenance;
mod reconcile;
mod rollback;
mod run;
mod sample;
mod sandbox;
mod schema;
mod twenty;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc: the run allocates per row (events, payloads, sled nodes); with glibc
/// malloc a third of its CPU went to the allocator (BENCHMARKS.md, Run).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use exit::{exit_for, Exit};
use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Move a PANDA Perio practice into HighLevel or Twenty, with a hash-chained ledger of every step."
)]
struct Cli {
    /// Print JSON lines (`{"type": …, "data": …}`) instead of human output.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole flow on a synthetic practice against a sandbox, in one command (under a minute).
    Demo(demo::Args),
    /// Record the project (source, destination, ledger) in cutover.toml and create the ledger.
    Init(init::Args),
    /// Write a synthetic PANDA Perio practice (export folder + SQLite database).
    Generate(generate::Args),
    /// Inventory of a source: tables, columns, types, row counts, gaps against the reference.
    Discover(discover::Args),
    /// Verify, export, import and inspect a ledger.
    Ledger(ledger::LedgerArgs),
    /// A record's whole story from the ledger (source key `Entity/Key` or destination id).
    Provenance(provenance::Args),
    /// Measure throughput (figures for BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Create what the confirmed map needs at the destination (custom fields, objects, relations).
    Schema(schema::Args),
    /// Run a CRM emulator on 127.0.0.1 (`cutover sandbox highlevel|twenty --port P`).
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Check a destination before a production migration: one synthetic record of every kind, read back and deleted.
    Preflight(preflight::PreflightArgs),
    /// Propose a map for a source (`map propose`) and pin one in the ledger (`map confirm`).
    Map(map::Args),
    /// Move the practice: every rule of the confirmed map, in dependency order, ledgered; resumable.
    Run(run::Args),
    /// Write a representative slice for real, read it back, and report every field (HTML + CSV).
    Sample(sample::Args),
    /// Move what was created or changed at the source since the migration (updates keep a before-image).
    Delta(run::Args),
    /// Seal the cutover checkpoint (the watermarks the runs reached).
    Checkpoint(checkpoint::Args),
    /// List the records held back, with their reasons.
    Quarantine(checkpoint::QuarantineArgs),
    /// Source against ledger against destination: per object the counts add up, per record the destination holds what was sent (exit 3 if not).
    Reconcile(reconcile::Args),
    /// Undo runs from the ledger: deletes for creates (children first), before-images for updates, drift-checked; resumable.
    Rollback(rollback::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                Exit::Usage.code()
            } else {
                Exit::Clean.code()
            });
        }
    };
    init_tracing();
    let out = Output { json: cli.json };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Failed.code());
        }
    };
    match runtime.block_on(dispatch(cli.command, out)) {
        Ok(exit) => ExitCode::from(exit.code()),
        // A closed pipe (`cutover ledger export | head`) is the reader's choice, not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::from(Exit::Clean.code()),
        Err(error) => {
            report(&error, out);
            ExitCode::from(exit_for(&error).code())
        }
    }
}

async fn dispatch(command: Command, out: Output) -> anyhow::Result<Exit> {
    match command {
        Command::Init(args) => init::run(args, out),
        Command::Generate(args) => generate::run(args, out).await,
        Command::Discover(args) => discover::run(args, out).await,
        Command::Ledger(args) => ledger::run(args, out),
        Command::Provenance(args) => provenance::run(args, out),
        Command::Bench(args) => bench::run(args, out).await,
        Command::Schema(args) => schema::run(args, out).await,
        Command::Sandbox(command) => sandbox::run(command, out).await,
        Command::Preflight(args) => preflight::run(args, out).await,
        Command::Map(args) => map::run(args, out).await,
        Command::Run(args) => run::run(args, out).await,
        Command::Sample(args) => sample::run(args, out).await,
        Command::Demo(args) => demo::run(args, out).await,
        Command::Delta(args) => run::delta(args, out).await,
        Command::Checkpoint(args) => checkpoint::run(args, out),
        Command::Quarantine(args) => checkpoint::list_quarantine(args, out),
        Command::Reconcile(args) => reconcile::run(args, out).await,
        Command::Rollback(args) => rollback::run(args, out).await,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints an error with its whole cause chain: `error: top` then `  caused by: …` lines.
fn report(error: &anyhow::Error, out: Output) {
    let chain: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    if out.json {
        out.event("error", &serde_json::json!({ "message": chain[0], "causes": &chain[1..], "exit": exit_for(error).code() }));
    }
    eprintln!("error: {}", chain[0]);
    for cause in &chain[1..] {
        eprintln!("  caused by: {cause}");
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings). No PHI and no secrets are logged anywhere.
fn init_tracing() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Whatever RUST_LOG says, library targets that would log row data stay off.
    for directive in cutover_connectors::panda::sqlserver::LOG_DIRECTIVES_WITHOUT_PHI {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
