//! `cutover init --source SRC --dest DEST [...]`: records the project in
//! `cutover.toml` and creates its ledger. Refuses anything that would put a
//! secret in the file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_ledger::Ledger;
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;
use crate::project::{self, Project};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// `export:DIR` or `sqlserver:<ADO connection string>` (no password: it comes from CUTOVER_SQL_PASSWORD).
    #[arg(long)]
    pub source: String,
    /// `highlevel`, `twenty`, `sandbox:highlevel` or `sandbox:twenty`.
    #[arg(long)]
    pub dest: String,
    /// The ledger directory (created if missing).
    #[arg(long, default_value = "ledger")]
    pub ledger: PathBuf,
    /// HighLevel location (sub-account) id.
    #[arg(long)]
    pub location_id: Option<String>,
    /// The destination's API base URL (Twenty: the server root; HighLevel: to override the default).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The destination's request budget per minute, when not the published one
    /// (Twenty: 100; self-hosted servers may allow more. HighLevel: 600, i.e. 100 per
    /// 10 s; a higher figure also lifts the 200,000-a-day cap to a day at that pace).
    #[arg(long)]
    pub requests_per_minute: Option<u32>,
    /// Replace an existing project file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    project::check_source(&args.source).map_err(|m| fail(Exit::Config, m))?;
    project::check_dest(&args.dest).map_err(|m| fail(Exit::Usage, m))?;
    if args.dest == "twenty" && args.base_url.is_none() {
        return Err(fail(
            Exit::Usage,
            "--dest twenty needs --base-url URL (the workspace's server root)",
        ));
    }
    let path = project::path();
    if path.exists() && !args.force {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} already exists; use --force to replace it",
                path.display()
            ),
        ));
    }
    let crm = args.dest.trim_start_matches("sandbox:");
    let project = Project {
        source: Some(args.source.clone()),
        dest: Some(args.dest.clone()),
        ledger: Some(args.ledger.clone()),
        highlevel: project::HighLevel {
            location_id: args.location_id.clone().filter(|_| crm == "highlevel"),
            base_url: args.base_url.clone().filter(|_| crm == "highlevel"),
            requests_per_minute: args.requests_per_minute.filter(|_| crm == "highlevel"),
        },
        twenty: project::Twenty {
            base_url: args.base_url.clone().filter(|_| crm == "twenty"),
            requests_per_minute: args.requests_per_minute.filter(|_| crm == "twenty"),
        },
    };
    let text = format!(
        "# cutover project — written by `cutover init`; flags override it.\n# No secrets here: CUTOVER_SQL_PASSWORD, HIGHLEVEL_TOKEN, TWENTY_API_KEY come from the environment.\n{}",
        toml::to_string_pretty(&project).context("rendering the project file")?
    );
    let ledger_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join(&args.ledger))
        .unwrap_or_else(|| args.ledger.clone());
    let ledger = Ledger::open_or_create(&ledger_dir)
        .with_context(|| format!("creating the ledger at {}", ledger_dir.display()))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    out.event(
        "init",
        &json!({ "project": path, "source": args.source, "dest": args.dest, "ledger": ledger_dir, "ledger_head": ledger.head().seq }),
    );
    out.human(format!(
        "wrote {} (source {}, destination {})",
        path.display(),
        args.source,
        args.dest
    ));
    out.human(format!(
        "ledger at {} ({} events)",
        ledger_dir.display(),
        ledger.head().seq
    ));
    Ok(Exit::Clean)
}
