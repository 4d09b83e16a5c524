//! `cutover demo`: the whole flow on a synthetic practice, in one command.
//!
//! It generates a practice, serves a CRM sandbox from this process on
//! 127.0.0.1 (rate limit lifted: a real HighLevel location allows 100 requests
//! per 10 s), and then runs the very commands a migration engineer would —
//! each one this same binary in a child process, printed before it runs:
//! init → discover → map propose → map confirm → schema apply → run →
//! reconcile. It ends by saying where the ledger and the reports are. A step
//! that fails stops the demo with that step's exit code, named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Args as ClapArgs;
use cutover_connectors::highlevel::sandbox as hl_sandbox;
use cutover_connectors::twenty::sandbox as tw_sandbox;
use serde_json::json;

use crate::exit::{fail, Exit};
use crate::output::Output;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// `sandbox:twenty` or `sandbox:highlevel`.
    #[arg(long, default_value = "sandbox:twenty", value_parser = ["sandbox:twenty", "sandbox:highlevel"])]
    dest: String,
    /// Patients in the generated practice.
    #[arg(long, default_value_t = 200)]
    patients: u32,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Where the practice, the project file, the ledger and the reports go (must not exist, or be empty).
    #[arg(long, default_value = "cutover-demo")]
    dir: PathBuf,
}

/// A lifted budget for the sandbox and the client alike.
const DEMO_REQUESTS_PER_MINUTE: &str = "6000000";

pub async fn run(args: Args, out: Output) -> anyhow::Result<Exit> {
    if args.dir.exists()
        && std::fs::read_dir(&args.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} exists and is not empty; name another --dir (the demo never overwrites)",
                args.dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let started = Instant::now();
    let crm = args.dest.trim_start_matches("sandbox:").to_string();
    let token = format!("demo-{:032x}", rand::random::<u128>());

    // The sandbox lives as long as this process; each step reaches it over HTTP.
    let (base_url, _sandbox): (String, Box<dyn std::any::Any>) = match crm.as_str() {
        "twenty" => {
            let handle = tw_sandbox::start(tw_sandbox::SandboxConfig {
                token: Some(token.clone()),
                rate_limit: None,
                ..tw_sandbox::SandboxConfig::default()
            })
            .await
            .context("starting the Twenty sandbox")?;
            (handle.base_url(), Box::new(handle))
        }
        _ => {
            let handle = hl_sandbox::start(
                hl_sandbox::SandboxConfig {
                    token: Some(token.clone()),
                    requests_per_window: 1_000_000,
                    daily_limit: u64::MAX / 2,
                    ..hl_sandbox::SandboxConfig::default()
                },
                0,
            )
            .await
            .context("starting the HighLevel sandbox")?;
            (handle.base_url(), Box::new(handle))
        }
    };
    out.event(
        "sandbox",
        &json!({ "dest": args.dest, "base_url": base_url, "rate_limit": "lifted" }),
    );
    out.human(format!(
        "{} sandbox on {base_url} (rate limit lifted for the demo)",
        args.dest
    ));

    let patients = args.patients.to_string();
    let seed = args.seed.to_string();
    let mut init = vec![
        "init",
        "--source",
        "export:practice/export",
        "--dest",
        crm.as_str(),
        "--base-url",
        base_url.as_str(),
        "--requests-per-minute",
        DEMO_REQUESTS_PER_MINUTE,
    ];
    if crm == "highlevel" {
        init.extend(["--location-id", "sandboxLocation0001"]);
    }
    let steps: Vec<Vec<&str>> = vec![
        vec![
            "generate",
            "--patients",
            &patients,
            "--seed",
            &seed,
            "--out",
            "practice",
            "--no-sqlite",
        ],
        init,
        vec!["discover"],
        vec![
            "map",
            "propose",
            "--source",
            "export:practice/export",
            "--dest",
            crm.as_str(),
            "--out",
            "map.toml",
        ],
        vec!["map", "confirm", "--ledger", "ledger", "map.toml"],
        vec!["schema", "apply"],
        vec!["run"],
        vec!["reconcile"],
    ];
    for step in &steps {
        run_step(&dir, step, &token, out).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    out.event(
        "demo",
        &json!({ "dir": dir, "ledger": dir.join("ledger"), "project": dir.join("cutover.toml"), "seconds": seconds }),
    );
    out.human(format!(
        "\ndemo finished in {seconds:.1} s. Everything is in {}:",
        dir.display()
    ));
    out.human(format!(
        "  project file  {}",
        dir.join("cutover.toml").display()
    ));
    out.human(format!(
        "  practice      {}",
        dir.join("practice/export").display()
    ));
    out.human(format!(
        "  proposed map  {}",
        dir.join("map.toml").display()
    ));
    out.human(format!("  ledger        {}", dir.join("ledger").display()));
    out.human(format!(
        "try: cd {} && cutover ledger verify && cutover provenance Patient/1 && cutover quarantine",
        dir.display()
    ));
    out.human("(the sandbox stopped with the demo; `cutover sandbox twenty|highlevel` serves one that stays)");
    Ok(Exit::Clean)
}

/// Runs one step as a child process of this binary, in the demo folder.
async fn run_step(dir: &Path, args: &[&str], token: &str, out: Output) -> anyhow::Result<()> {
    let shown = format!("$ cutover {}", args.join(" "));
    out.event("demo_step", &json!({ "command": args }));
    out.human(format!("\n{shown}"));
    let exe = std::env::current_exe().context("finding the cutover binary")?;
    let mut command = Command::new(exe);
    if out.json {
        command.arg("--json");
    }
    command
        .args(args)
        .current_dir(dir)
        .env("CUTOVER_CONFIG", dir.join("cutover.toml"))
        .env("TWENTY_API_KEY", token)
        .env("HIGHLEVEL_TOKEN", token)
        .env_remove("HIGHLEVEL_TOKEN_FILE");
    // The child runs while this process keeps serving the sandbox.
    let status = tokio::task::spawn_blocking(move || command.status())
        .await
        .context("waiting for a demo step")?
        .with_context(|| format!("starting `{shown}`"))?;
    if status.success() {
        return Ok(());
    }
    let code = status.code().unwrap_or(1);
    let exit = match code {
        2 => Exit::RecordFailures,
        3 => Exit::Mismatch,
        64 => Exit::Usage,
        78 => Exit::Config,
        _ => Exit::Failed,
    };
    Err(fail(
        exit,
        format!(
            "the demo stopped at `cutover {}` (exit {code})",
            args.join(" ")
        ),
    ))
}
