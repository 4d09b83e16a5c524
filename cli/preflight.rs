//! `cutover preflight --dest highlevel|twenty|sandbox:highlevel|sandbox:twenty`:
//! what a user runs before a production migration. One synthetic record of
//! every kind we write goes in, is read back and deleted; each endpoint is
//! reported OK or failed (with the status and the scope probably missing).

use clap::Args;

use crate::exit::{fail, Exit};
use crate::output::Output;
use crate::{highlevel, twenty};

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// `highlevel` (token from HIGHLEVEL_TOKEN or a 0600 file named by HIGHLEVEL_TOKEN_FILE),
    /// `twenty` (token from TWENTY_API_KEY; needs --base-url), or `sandbox:highlevel` / `sandbox:twenty`
    /// (an in-process emulator).
    /// Default: the project's destination (cutover.toml).
    #[arg(long)]
    pub dest: Option<String>,
    /// API base URL (HighLevel default: https://services.leadconnectorhq.com; Twenty: required, the server root).
    #[arg(long)]
    pub base_url: Option<String>,
    /// HighLevel location (sub-account) id (default: HIGHLEVEL_LOCATION_ID).
    #[arg(long)]
    pub location_id: Option<String>,
    /// HighLevel: the pipeline treatment plans go into.
    #[arg(long, default_value = "Perio Treatment")]
    pub pipeline: String,
    /// HighLevel: stages the pipeline must have (default: PANDA's treatment phases).
    #[arg(long, value_delimiter = ',')]
    pub stages: Vec<String>,
    /// HighLevel: calendar for appointments (default: the location's first calendar).
    #[arg(long)]
    pub calendar_id: Option<String>,
    /// Twenty: records per batch create.
    #[arg(long, default_value_t = 60)]
    pub batch_size: usize,
    /// Twenty: the workspace's request budget per minute (self-hosted servers may allow more).
    #[arg(long, default_value_t = 100)]
    pub requests_per_minute: u32,
}

pub async fn run(mut args: PreflightArgs, out: Output) -> anyhow::Result<Exit> {
    let spec = crate::destination::DestinationSpec::resolve(
        args.dest.take(),
        args.base_url.take(),
        args.location_id.take(),
    )?;
    let dest = spec.dest.clone();
    args.dest = Some(spec.dest);
    args.base_url = spec.base_url;
    args.location_id = spec.location_id;
    match dest.as_str() {
        "highlevel" | "sandbox:highlevel" => highlevel::run_preflight(args, out).await,
        "twenty" | "sandbox:twenty" => twenty::run_preflight(args, out).await,
        other => Err(fail(
            Exit::Usage,
            format!(
                "--dest {other:?}: expected highlevel, twenty, sandbox:highlevel or sandbox:twenty"
            ),
        )),
    }
}
