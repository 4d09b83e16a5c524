//! `cutover sandbox twenty` and `cutover preflight --dest twenty|sandbox:twenty`:
//! the Twenty emulator as a long-running server, and the pre-migration check of a
//! workspace (one synthetic record of every kind, read back and destroyed).

use anyhow::Context;
use clap::Args;

use cutover_connectors::twenty::preflight;
use cutover_connectors::twenty::sandbox::{self, RateLimitSettings, SandboxConfig};
use cutover_connectors::twenty::{TwentyClient, TOKEN_ENV};

use crate::exit::{fail, Exit};
use crate::output::Output;
use crate::preflight::PreflightArgs;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// API requests per minute before 429 (Twenty's default 100; 0 = unlimited).
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
    /// Records per batch create (Twenty's QUERY_MAX_RECORDS).
    #[arg(long, default_value_t = 60)]
    pub max_batch: usize,
    /// Name fields like a 1.x workspace (`personId` targets, no FILES on attachments).
    #[arg(long)]
    pub v1_names: bool,
}

pub async fn run_sandbox(args: SandboxArgs, out: Output) -> anyhow::Result<Exit> {
    // With TWENTY_API_KEY set, the sandbox demands that bearer token, like a workspace.
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let config = SandboxConfig {
        port: args.port,
        token,
        rate_limit: (args.rate_limit > 0).then_some(RateLimitSettings {
            requests: args.rate_limit,
            window_ms: 60_000,
        }),
        max_batch: args.max_batch.max(1),
        v1_names: args.v1_names,
        ..SandboxConfig::default()
    };
    let handle = sandbox::start(config)
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    out.event(
        "sandbox_started",
        &serde_json::json!({"dest": "twenty", "base_url": handle.base_url()}),
    );
    out.human(format!(
        "Twenty sandbox listening on {} (Ctrl-C to stop)",
        handle.base_url()
    ));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.stop().await;
    out.note("Twenty sandbox stopped");
    Ok(Exit::Clean)
}

pub async fn run_preflight(args: PreflightArgs, out: Output) -> anyhow::Result<Exit> {
    let spec = crate::destination::DestinationSpec {
        dest: args.dest.clone().unwrap_or_default(),
        base_url: args.base_url.clone(),
        location_id: None,
        requests_per_minute: None,
    };
    let (config, _in_process) = crate::destination::twenty_config(&spec).await?;
    let config = config
        .with_batch_size(args.batch_size)
        .and_then(|c| c.with_requests_per_minute(args.requests_per_minute))
        .map_err(|e| fail(Exit::Config, e.to_string()))?;
    let client = TwentyClient::new(config).map_err(|e| fail(Exit::Config, e.to_string()))?;
    out.note(format!("preflight against {} …", client.config().base_url));
    let report = preflight::run(&client).await;
    for step in &report.steps {
        out.event("preflight_step", step);
        out.human(format!(
            "{:<4} {:<34} {:<48} {:>6} ms  {}",
            if step.ok { "ok" } else { "FAIL" },
            step.step,
            step.endpoint,
            step.millis,
            step.detail
        ));
    }
    let ok = report.ok();
    out.event(
        "preflight_finished",
        &serde_json::json!({"ok": ok, "steps": report.steps.len()}),
    );
    drop(_in_process); // an in-process sandbox stops when dropped
    if ok {
        out.human("preflight passed");
        Ok(Exit::Clean)
    } else {
        Err(fail(
            Exit::Failed,
            format!(
                "preflight failed: {} of {} steps failed",
                report.steps.iter().filter(|s| !s.ok).count(),
                report.steps.len()
            ),
        ))
    }
}
