//! `cutover map propose` and `cutover map confirm`.
//!
//! `propose` discovers the source, samples a few rows per table and rebinds the
//! destination's default map to the names it found, printing every line with
//! its confidence and every unmapped column (`--out` writes the TOML map).
//! `confirm` validates a map against its destination kind, stores its
//! canonical bytes as a ledger blob and appends `MapConfirmed { map_hash }`
//! in a `map` run; `run` will refuse any other map.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use cutover_connectors::panda::open_source;
use cutover_connectors::panda::reference::reference_tables;
use cutover_engine::map::defaults::default_map;
use cutover_engine::map::ledgered::confirm_map;
use cutover_engine::map::{propose, MapFile};
use cutover_engine::{ColumnInfo, Inventory, SourceItem, TableInfo};
use cutover_ledger::Ledger;
use futures::StreamExt;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: MapCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MapCommand {
    /// Propose a map for a source: every line with a confidence, unmapped columns listed.
    Propose(ProposeArgs),
    /// Pin a map's hash in the ledger; nothing moves under any other map.
    Confirm(ConfirmArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProposeArgs {
    /// `export:DIR` or `sqlserver:<ADO connection string>` (password from CUTOVER_SQL_PASSWORD).
    #[arg(long)]
    pub source: String,
    /// `highlevel` or `twenty`.
    #[arg(long, value_parser = ["highlevel", "twenty"])]
    pub dest: String,
    /// Write the proposed map (TOML) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rows sampled per table for value-based evidence.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
}

#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// The ledger directory (created if missing).
    #[arg(long)]
    pub ledger: PathBuf,
    /// Refuse the map unless it is for this destination.
    #[arg(long, value_parser = ["highlevel", "twenty"])]
    pub dest: Option<String>,
    /// The map file (TOML).
    pub map: PathBuf,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    match args.command {
        MapCommand::Propose(args) => run_propose(args, out).await,
        MapCommand::Confirm(args) => run_confirm(args, out),
    }
}

/// The reference schema as an inventory (what the default maps are written against).
fn reference_inventory() -> Inventory {
    Inventory {
        tables: reference_tables()
            .iter()
            .map(|t| TableInfo {
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        sql_type: c.sql_type.to_string(),
                        nullable: c.nullable,
                    })
                    .collect(),
                row_count: 0,
                primary_key: t.primary_key.clone(),
                modified_column: t.modified_column().map(|c| c.name.clone()),
            })
            .collect(),
    }
}

async fn run_propose(args: ProposeArgs, out: Output) -> anyhow::Result<Exit> {
    let source = open_source(&args.source)
        .await
        .map_err(|e| fail(source_exit(&e), format!("cannot open the source: {e}")))?;
    let inventory = source.discover().await.context("discovering the source")?;
    let mut samples = HashMap::new();
    for table in &inventory.tables {
        let mut rows = Vec::new();
        if args.samples > 0 {
            let mut stream = source
                .stream(&table.name, None)
                .await
                .with_context(|| format!("sampling table {}", table.name))?;
            while let Some(item) = stream.next().await {
                if let SourceItem::Record(record) =
                    item.with_context(|| format!("sampling table {}", table.name))?
                {
                    rows.push(record);
                }
                if rows.len() >= args.samples {
                    break;
                }
            }
        }
        samples.insert(table.name.clone(), rows);
    }
    let default = default_map(&args.dest).context("the bundled default map")?;
    let proposal = propose(&inventory, &reference_inventory(), &samples, &default);

    for (reference, (table, confidence)) in &proposal.tables {
        out.event(
            "table",
            &serde_json::json!({"reference": reference, "source": table, "confidence": confidence}),
        );
    }
    for line in &proposal.lines {
        out.event("line", line);
    }
    for unmapped in &proposal.unmapped {
        out.event("unmapped", unmapped);
    }
    for missing in &proposal.missing {
        out.event("missing", missing);
    }
    let hash = proposal.map.hash_hex();
    out.event(
        "summary",
        &serde_json::json!({
            "source": source.describe(), "dest": args.dest, "lines": proposal.lines.len(),
            "unmapped": proposal.unmapped.len(), "missing": proposal.missing.len(),
            "map_hash": hash, "out": args.out,
        }),
    );

    out.human(format!(
        "source: {}   destination: {}",
        source.describe(),
        args.dest
    ));
    out.human("tables:");
    for (reference, (table, confidence)) in &proposal.tables {
        out.human(format!("  {confidence:>4.2}  {table:<28} as {reference}"));
    }
    out.human("lines (confidence  source → target):");
    for line in &proposal.lines {
        let from = if line.source_columns.is_empty() {
            format!("{} ({})", line.source_table, line.transform)
        } else {
            format!("{}.{}", line.source_table, line.source_columns.join("+"))
        };
        out.human(format!(
            "  {:>4.2}  {from:<44} → {}.{}  [{}]",
            line.confidence, line.target_object, line.target_field, line.transform
        ));
    }
    if proposal.unmapped.is_empty() {
        out.human("unmapped: none");
    } else {
        out.human(format!(
            "unmapped ({}), listed as not_migrated in the map for review:",
            proposal.unmapped.len()
        ));
        for u in &proposal.unmapped {
            out.human(format!(
                "  {}{}",
                u.table,
                u.column
                    .as_deref()
                    .map(|c| format!(".{c}"))
                    .unwrap_or_default()
            ));
        }
    }
    if !proposal.missing.is_empty() {
        out.human(format!(
            "default-map lines without a source ({}):",
            proposal.missing.len()
        ));
        for m in &proposal.missing {
            out.human(format!(
                "  {}{}: {}",
                m.reference_table,
                m.reference_column
                    .as_deref()
                    .map(|c| format!(".{c}"))
                    .unwrap_or_default(),
                m.consequence
            ));
        }
    }
    if let Some(path) = &args.out {
        let text = format!(
            "# Proposed by `cutover map propose --source {} --dest {}`.\n# Review every line (confidence = how sure the proposal is), then `cutover map confirm`.\n{}",
            source.describe(),
            args.dest,
            proposal.map.to_toml()
        );
        std::fs::write(path, text)
            .with_context(|| format!("writing the proposed map to {}", path.display()))?;
        out.human(format!("map written to {} (hash {hash})", path.display()));
    }
    Ok(Exit::Clean)
}

fn run_confirm(args: ConfirmArgs, out: Output) -> anyhow::Result<Exit> {
    let text = std::fs::read_to_string(&args.map).map_err(|e| {
        fail(
            Exit::Config,
            format!("cannot read the map {}: {e}", args.map.display()),
        )
    })?;
    let map = MapFile::from_toml(&text)
        .map_err(|e| fail(Exit::Config, format!("{}: {e}", args.map.display())))?;
    let kind = args.dest.clone().unwrap_or_else(|| map.destination.clone());
    map.validate_for_destination(&kind)
        .map_err(|e| fail(Exit::Config, format!("{}: {e}", args.map.display())))?;

    let mut ledger = Ledger::open_or_create(&args.ledger)
        .with_context(|| format!("opening the ledger at {}", args.ledger.display()))?;
    let already = ledger
        .confirmed_map()
        .context("reading the confirmed map")?;
    let map_hash = confirm_map(&mut ledger, &map, &format!("map:{}", args.map.display()))
        .context("confirming the map in the ledger")?;
    let run = ledger.head().seq;
    let replaced = already.filter(|previous| *previous != map_hash);
    out.event(
        "map_confirmed",
        &serde_json::json!({
            "map_hash": map_hash.to_hex(), "destination": kind, "ledger_seq": run,
            "objects": map.objects.len(), "replaced": replaced.map(|d| d.to_hex()),
        }),
    );
    out.human(format!("map confirmed: {}", map_hash.to_hex()));
    out.human(format!(
        "  {} object rules for {kind}; ledger {} (head seq {run})",
        map.objects.len(),
        args.ledger.display()
    ));
    if let Some(previous) = replaced {
        out.human(format!(
            "  replaces the previously confirmed map {}",
            previous.to_hex()
        ));
    }
    Ok(Exit::Clean)
}

fn source_exit(error: &cutover_engine::SourceError) -> Exit {
    match error {
        cutover_engine::SourceError::Config(_) => Exit::Config,
        _ => Exit::Failed,
    }
}
