//! `cutover schema apply`: creates at the destination what the confirmed map
//! needs — custom fields, custom objects, relations — and checks what must
//! already be there (the HighLevel pipeline and its stages). Every element is
//! ledgered in a `schema` run (`SchemaChanged`, with `created` telling ours
//! from pre-existing ones, so rollback removes only what we made).
//! `--dry-run` gets a read-only handle and lists what is missing.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use cutover_engine::map::ledgered::load_confirmed;
use cutover_engine::{ReadDestination, SchemaSpec};
use cutover_ledger::{EventBody, Ledger, RunKind, RunOutcome};
use serde_json::json;

use crate::destination;
use crate::exit::{fail, fail_with, Exit};
use crate::output::Output;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Create what the confirmed map needs at the destination (ledgered).
    Apply(ApplyArgs),
}

#[derive(Debug, ClapArgs)]
struct ApplyArgs {
    /// The ledger directory (default: the project's).
    #[arg(long)]
    ledger: Option<PathBuf>,
    #[command(flatten)]
    destination: crate::destination::DestinationFlags,
    /// List what would be created, without writing anything.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let SchemaCommand::Apply(args) = args.command;
    let dir = crate::project::required(args.ledger, |p| p.ledger.clone(), "ledger")?;
    let mut ledger =
        Ledger::open(&dir).with_context(|| format!("opening the ledger at {}", dir.display()))?;
    let map = load_confirmed(&ledger).map_err(|e| fail(Exit::Config, e.to_string()))?;
    let map_hash = ledger
        .confirmed_map()?
        .expect("load_confirmed found a confirmed map");
    let spec = args.destination.resolve()?;
    let kind = spec.dest.trim_start_matches("sandbox:");
    map.validate_for_destination(kind).map_err(|e| {
        fail(
            Exit::Config,
            format!("the confirmed map does not fit {}: {e}", spec.dest),
        )
    })?;
    let wanted = map.schema();
    let opened = destination::open(&spec).await?;

    if args.dry_run {
        let reader: &dyn ReadDestination = opened.destination.as_ref();
        return dry_run(reader, &wanted, out).await;
    }

    let run = ledger.start_run(RunKind::Schema, "", &spec.describe(), Some(map_hash))?;
    let changes = match opened.destination.ensure_schema(&wanted).await {
        Ok(changes) => changes,
        Err(error) => {
            ledger.finish_run(
                run,
                RunOutcome::Failed,
                &format!("ensure_schema: {:?}", error.class()),
            )?;
            let exit = match error {
                cutover_engine::DestError::Precondition(_)
                | cutover_engine::DestError::Config(_) => Exit::Config,
                _ => Exit::Failed,
            };
            return Err(fail_with(
                exit,
                format!("schema apply at {} (run {run})", spec.dest),
                error,
            ));
        }
    };
    ledger.append(
        run,
        changes.iter().map(|c| EventBody::SchemaChanged {
            element: c.kind.clone(),
            name: c.name.clone(),
            dest_id: c.dest_id.clone(),
            created: c.created,
        }),
    )?;
    let created = changes.iter().filter(|c| c.created).count();
    ledger.finish_run(
        run,
        RunOutcome::Completed,
        &format!(
            "{created} created, {} already there",
            changes.len() - created
        ),
    )?;
    for change in &changes {
        out.event("schema_change", change);
        out.human(format!(
            "{:<9} {:<8} {:<44} {}",
            if change.created { "created" } else { "exists" },
            change.kind,
            change.name,
            change.dest_id
        ));
    }
    out.event("schema_applied", &json!({ "run": run, "created": created, "existing": changes.len() - created, "dest": spec.dest }));
    out.human(format!(
        "run {run}: {created} created, {} already there",
        changes.len() - created
    ));
    Ok(Exit::Clean)
}

/// Compares the wanted schema with the destination's inventory, read-only.
async fn dry_run(
    reader: &dyn ReadDestination,
    wanted: &SchemaSpec,
    out: Output,
) -> anyhow::Result<Exit> {
    let inventory = reader
        .inventory()
        .await
        .context("reading the destination's schema")?;
    let has_field = |object: &str, name: &str| {
        let full = format!("{object}.{name}");
        inventory
            .fields
            .iter()
            .any(|f| f.name == full || f.name == name)
    };
    let mut missing = 0;
    for object in &wanted.objects {
        let exists = inventory.objects.iter().any(|o| o == &object.name);
        missing += usize::from(!exists);
        out.event(
            "schema_plan",
            &json!({ "kind": "object", "name": object.name, "exists": exists }),
        );
        out.human(format!(
            "{:<14} object {}",
            if exists { "exists" } else { "would create" },
            object.name
        ));
    }
    for field in &wanted.fields {
        let exists = has_field(&field.object, &field.name);
        missing += usize::from(!exists);
        out.event("schema_plan", &json!({ "kind": "field", "name": format!("{}.{}", field.object, field.name), "exists": exists }));
        out.human(format!(
            "{:<14} field  {}.{}",
            if exists { "exists" } else { "would create" },
            field.object,
            field.name
        ));
    }
    for pipeline in &wanted.pipelines {
        let exists = inventory.pipelines.iter().any(|p| p.name == pipeline.name);
        out.event(
            "schema_plan",
            &json!({ "kind": "pipeline", "name": pipeline.name, "exists": exists }),
        );
        out.human(format!(
            "{:<14} pipeline {} (must be created in HighLevel by hand)",
            if exists { "exists" } else { "MISSING" },
            pipeline.name
        ));
    }
    out.human(format!(
        "dry run: {missing} elements would be created; nothing was written"
    ));
    Ok(Exit::Clean)
}
