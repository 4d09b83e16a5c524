//! HighLevel commands: `cutover sandbox highlevel --port P` (the stateful
//! emulator, until Ctrl-C) and `cutover preflight --dest highlevel` (one
//! synthetic record of every kind written, read back and deleted, per
//! endpoint OK or failed with the scope that is probably missing).

use anyhow::Context;
use clap::Args;
use cutover_connectors::highlevel::sandbox::{self, SandboxConfig};
use cutover_connectors::highlevel::{preflight, HighLevelDestination};
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;
use crate::preflight::PreflightArgs;

/// `cutover sandbox highlevel --port P`
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8720)]
    pub port: u16,
    /// The location id the sandbox serves.
    #[arg(long, default_value = "sandboxLocation0001")]
    pub location_id: String,
    /// Accept only the token in this environment variable (default: any non-empty token).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Start with the location's "Allow Duplicate Contact" setting on.
    #[arg(long)]
    pub allow_duplicate_contact: bool,
    /// Start without the "Perio Treatment" pipeline and the calendar.
    #[arg(long)]
    pub empty: bool,
    /// Requests allowed per rolling window (HighLevel: 100).
    #[arg(long, default_value_t = 100)]
    pub requests_per_window: u32,
    /// The rolling window in milliseconds (HighLevel: 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub window_ms: u64,
    /// Requests allowed per day (HighLevel: 200,000).
    #[arg(long, default_value_t = 200_000)]
    pub daily_limit: u64,
}

pub async fn run_sandbox(args: SandboxArgs, out: Output) -> anyhow::Result<Exit> {
    let token = match &args.token_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            fail(
                Exit::Config,
                format!("--token-env {var}: the variable is not set"),
            )
        })?),
        None => None,
    };
    let config = SandboxConfig {
        location_id: args.location_id.clone(),
        token,
        allow_duplicate_contact: args.allow_duplicate_contact,
        seed_practice: !args.empty,
        requests_per_window: args.requests_per_window,
        window: std::time::Duration::from_millis(args.window_ms),
        daily_limit: args.daily_limit,
    };
    if config.requests_per_window == 0 || config.window.is_zero() {
        return Err(fail(
            Exit::Usage,
            "--requests-per-window and --window-ms must be positive",
        ));
    }
    let handle = sandbox::start(config, args.port)
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let url = handle.base_url();
    out.event("sandbox_started", &json!({ "crm": "highlevel", "url": url, "location_id": args.location_id, "admin": format!("{url}/_sandbox/records") }));
    out.human(format!(
        "HighLevel sandbox on {url} (location {})",
        args.location_id
    ));
    out.human(format!("  state:  GET  {url}/_sandbox/records"));
    out.human(format!("  faults: POST {url}/_sandbox/faults {{\"error_rate\":0.1,\"drop_rate\":0.05,\"after_commit\":0.5,\"latency_ms\":0,\"force_429\":0,\"drop_fields\":[]}}"));
    out.human("Ctrl-C stops it.");
    handle
        .serve_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    out.event("sandbox_stopped", &json!({ "crm": "highlevel" }));
    Ok(Exit::Clean)
}

pub async fn run_preflight(args: PreflightArgs, out: Output) -> anyhow::Result<Exit> {
    let spec = crate::destination::DestinationSpec {
        dest: args.dest.clone().unwrap_or_default(),
        base_url: args.base_url.clone(),
        location_id: args.location_id.clone(),
        requests_per_minute: None,
    };
    let (mut config, _sandbox) = crate::destination::highlevel_config(&spec).await?;
    config.pipeline_name = args.pipeline.clone();
    if args.calendar_id.is_some() {
        config.calendar_id = args.calendar_id.clone();
    }
    let location = config.location_id.clone();
    let destination =
        HighLevelDestination::new(config).map_err(|e| fail(Exit::Config, e.to_string()))?;
    out.human(format!("preflight of HighLevel location {location}"));
    let stages = (!args.stages.is_empty()).then_some(args.stages.as_slice());
    let report = preflight(&destination, stages).await;
    for check in &report.checks {
        out.event("preflight_check", check);
        let mut line = format!(
            "{:<6} {:<44} {:<34}",
            if check.ok { "OK" } else { "FAILED" },
            check.step,
            check.operation
        );
        if let Some(status) = check.status {
            line.push_str(&format!(" HTTP {status}"));
        }
        if let Some(scope) = &check.missing_scope {
            line.push_str(&format!(" — probably missing scope {scope}"));
        }
        if !check.ok {
            line.push_str(&format!(" — {}", check.detail));
        }
        out.human(line.trim_end());
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    out.event("preflight", &json!({ "location_id": location, "ok": report.ok(), "checks": report.checks.len(), "failed": failed }));
    if report.ok() {
        out.human(format!("all {} checks passed", report.checks.len()));
        Ok(Exit::Clean)
    } else {
        out.human(format!("{failed} of {} checks failed", report.checks.len()));
        Ok(Exit::Failed)
    }
}
