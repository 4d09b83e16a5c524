//! `cutover discover --source SRC`: what the source holds — tables, columns,
//! types, keys, row counts — and its gaps against the PANDA reference schema.
//! A readable table on a terminal; with `--json`, one `table` line per table,
//! then a `gaps` line and a `summary` line.

use cutover_connectors::panda::gaps::gap_report;
use cutover_connectors::panda::open_source;
use cutover_engine::SourceError;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `export:DIR` or `sqlserver:<ADO connection string>` (the password comes from CUTOVER_SQL_PASSWORD).
    /// Default: the project's source (cutover.toml).
    #[arg(long)]
    pub source: Option<String>,
    /// Also list every column with its type (human output; JSON always has them).
    #[arg(long)]
    pub columns: bool,
}

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    let spec = crate::project::required(args.source, |p| p.source.clone(), "source")?;
    let source = open_source(&spec).await.map_err(source_failure)?;
    let inventory = source.discover().await.map_err(source_failure)?;
    let gaps = gap_report(&inventory);

    for table in &inventory.tables {
        out.event("table", table);
    }
    out.event("gaps", &gaps);
    let total_rows: u64 = inventory.tables.iter().map(|t| t.row_count).sum();
    out.event(
        "summary",
        &serde_json::json!({ "source": source.describe(), "tables": inventory.tables.len(), "rows": total_rows, "gaps": !gaps.is_empty() }),
    );

    out.human(format!("source: {}", source.describe()));
    out.human(format!(
        "{:<22} {:>7} {:>12}  {:<28} {}",
        "table", "columns", "rows", "primary key", "modified column"
    ));
    for table in &inventory.tables {
        out.human(format!(
            "{:<22} {:>7} {:>12}  {:<28} {}",
            table.name,
            table.columns.len(),
            table.row_count,
            if table.primary_key.is_empty() {
                "-".to_string()
            } else {
                table.primary_key.join(", ")
            },
            table.modified_column.as_deref().unwrap_or("-"),
        ));
        if args.columns {
            for column in &table.columns {
                out.human(format!(
                    "    {:<28} {:<16} {}",
                    column.name,
                    column.sql_type,
                    if column.nullable { "NULL" } else { "NOT NULL" }
                ));
            }
        }
    }
    out.human(format!(
        "{} tables, {total_rows} rows",
        inventory.tables.len()
    ));
    if gaps.is_empty() {
        out.human("no gaps against the reference schema");
    } else {
        out.human("gaps against the reference schema:");
        if !gaps.missing_tables.is_empty() {
            out.human(format!(
                "  tables missing from the source: {}",
                gaps.missing_tables.join(", ")
            ));
        }
        if !gaps.extra_tables.is_empty() {
            out.human(format!(
                "  tables beyond the reference (carried): {}",
                gaps.extra_tables.join(", ")
            ));
        }
        for table in &gaps.tables {
            if !table.missing_columns.is_empty() {
                out.human(format!(
                    "  {}: columns missing: {}",
                    table.table,
                    table.missing_columns.join(", ")
                ));
            }
            if !table.extra_columns.is_empty() {
                out.human(format!(
                    "  {}: columns beyond the reference (carried): {}",
                    table.table,
                    table.extra_columns.join(", ")
                ));
            }
            for difference in &table.type_differences {
                out.human(format!(
                    "  {}.{}: {} where the reference has {}",
                    table.table, difference.column, difference.source, difference.reference
                ));
            }
        }
    }
    Ok(Exit::Clean)
}

/// Configuration problems exit 78; everything else exits 1 with the source's message.
fn source_failure(error: SourceError) -> anyhow::Error {
    match error {
        SourceError::Config(message) => {
            fail(Exit::Config, format!("source configuration: {message}"))
        }
        other => anyhow::Error::new(other).context("cannot read the source"),
    }
}
