//! Opening a destination from the command line: `highlevel`, `twenty`, or an
//! in-process sandbox of either (`sandbox:highlevel`, `sandbox:twenty`), with
//! the base URL and location from flags or the project file and the token
//! from the environment. Shared by every command that talks to a CRM.

use std::any::Any;

use anyhow::Context;
use cutover_connectors::highlevel::sandbox as hl_sandbox;
use cutover_connectors::highlevel::{HighLevelConfig, HighLevelDestination};
use cutover_connectors::twenty::sandbox as tw_sandbox;
use cutover_connectors::twenty::{ApiToken, TwentyClient, TwentyConfig};
use cutover_engine::{DestError, Destination};

use crate::exit::{fail, Exit};

/// The destination flags of commands that talk to the project's CRM; every flag left
/// out comes from the project file.
#[derive(Debug, Clone, clap::Args)]
pub struct DestinationFlags {
    /// `highlevel`, `twenty`, `sandbox:highlevel`, `sandbox:twenty` (default: the project's).
    #[arg(long)]
    pub dest: Option<String>,
    /// The destination's API base URL (default: the project's).
    #[arg(long)]
    pub base_url: Option<String>,
    /// HighLevel location id (default: the project's, or HIGHLEVEL_LOCATION_ID).
    #[arg(long)]
    pub location_id: Option<String>,
}

impl DestinationFlags {
    /// The flags merged with the project file.
    pub fn resolve(&self) -> anyhow::Result<DestinationSpec> {
        DestinationSpec::resolve(
            self.dest.clone(),
            self.base_url.clone(),
            self.location_id.clone(),
        )
    }
}

/// Where to connect, as given by flags (already merged with the project file).
#[derive(Debug, Clone)]
pub struct DestinationSpec {
    pub dest: String,
    pub base_url: Option<String>,
    pub location_id: Option<String>,
    /// The destination's request budget per minute, when not the published one.
    pub requests_per_minute: Option<u32>,
}

impl DestinationSpec {
    /// From optional flags, falling back to the project file.
    pub fn resolve(
        dest: Option<String>,
        base_url: Option<String>,
        location_id: Option<String>,
    ) -> anyhow::Result<DestinationSpec> {
        let dest = crate::project::required(dest, |p| p.dest.clone(), "dest")?;
        let crm = dest.trim_start_matches("sandbox:").to_string();
        let base_url = crate::project::optional(base_url, |p| match crm.as_str() {
            "highlevel" => p.highlevel.base_url.clone(),
            _ => p.twenty.base_url.clone(),
        })?;
        let location_id =
            crate::project::optional(location_id, |p| p.highlevel.location_id.clone())?;
        let requests_per_minute = crate::project::optional(None, |p| match crm.as_str() {
            "highlevel" => p.highlevel.requests_per_minute,
            _ => p.twenty.requests_per_minute,
        })?;
        Ok(DestinationSpec {
            dest,
            base_url,
            location_id,
            requests_per_minute,
        })
    }

    /// A description without secrets, for run events.
    pub fn describe(&self) -> String {
        match &self.base_url {
            Some(url) => format!("{} {url}", self.dest),
            None => self.dest.clone(),
        }
    }
}

/// An open destination; an in-process sandbox lives as long as this does.
pub struct OpenDestination {
    pub destination: Box<dyn Destination>,
    _sandbox: Option<Box<dyn Any + Send>>,
}

/// The HighLevel client configuration for `highlevel` or `sandbox:highlevel`
/// (the sandbox handle must be kept alive while the config is used).
pub async fn highlevel_config(
    spec: &DestinationSpec,
) -> anyhow::Result<(HighLevelConfig, Option<Box<dyn Any + Send>>)> {
    match spec.dest.as_str() {
        "highlevel" => {
            let config =
                HighLevelConfig::from_env(spec.base_url.as_deref(), spec.location_id.as_deref())
                    .map_err(|e| match e {
                        DestError::Config(message) => fail(Exit::Config, message),
                        other => anyhow::Error::new(other),
                    })?;
            Ok((with_budget(config, spec.requests_per_minute), None))
        }
        "sandbox:highlevel" => {
            let mut sandbox = hl_sandbox::SandboxConfig::default();
            if let Some(rpm) = spec.requests_per_minute {
                // The emulated location allows what the project declares.
                sandbox.requests_per_window = (rpm / 6).max(1);
                sandbox.daily_limit = sandbox.daily_limit.max(u64::from(rpm) * 60 * 24);
            }
            let (handle, config) = hl_sandbox::in_process(sandbox)
                .await
                .context("cannot start the in-process HighLevel sandbox")?;
            Ok((
                with_budget(config, spec.requests_per_minute),
                Some(Box::new(handle)),
            ))
        }
        other => Err(fail(
            Exit::Usage,
            format!("--dest {other:?} is not a HighLevel destination"),
        )),
    }
}

/// A HighLevel budget other than the published 100 per 10 s (a location with
/// another agreement, or a sandbox with its limit lifted): the 10-second window
/// gets a sixth of the per-minute figure, and the daily cap becomes at least a
/// day at that pace.
fn with_budget(mut config: HighLevelConfig, requests_per_minute: Option<u32>) -> HighLevelConfig {
    if let Some(rpm) = requests_per_minute {
        config.requests_per_window = (rpm / 6).max(1);
        config.daily_limit = config.daily_limit.max(u64::from(rpm) * 60 * 24);
    }
    config
}

/// The Twenty client configuration for `twenty` or `sandbox:twenty`.
pub async fn twenty_config(
    spec: &DestinationSpec,
) -> anyhow::Result<(TwentyConfig, Option<Box<dyn Any + Send>>)> {
    let (base_url, token, sandbox): (String, ApiToken, Option<Box<dyn Any + Send>>) =
        match spec.dest.as_str() {
            "twenty" => {
                let base_url = spec
                    .base_url
                    .clone()
                    .ok_or_else(|| fail(Exit::Usage, "--dest twenty needs --base-url URL"))?;
                let token = ApiToken::from_env().map_err(|e| fail(Exit::Config, e.to_string()))?;
                (base_url, token, None)
            }
            "sandbox:twenty" => {
                let token = format!("sandbox-{:032x}", rand::random::<u128>());
                let handle = tw_sandbox::start(tw_sandbox::SandboxConfig {
                    token: Some(token.clone()),
                    ..tw_sandbox::SandboxConfig::default()
                })
                .await
                .context("cannot start the in-process Twenty sandbox")?;
                (
                    handle.base_url(),
                    ApiToken::new(token),
                    Some(Box::new(handle)),
                )
            }
            other => {
                return Err(fail(
                    Exit::Usage,
                    format!("--dest {other:?} is not a Twenty destination"),
                ))
            }
        };
    let mut config =
        TwentyConfig::new(&base_url, token).map_err(|e| fail(Exit::Config, e.to_string()))?;
    if let Some(rpm) = spec.requests_per_minute {
        config = config
            .with_requests_per_minute(rpm)
            .map_err(|e| fail(Exit::Config, e.to_string()))?;
    }
    Ok((config, sandbox))
}

/// Opens the destination `spec` names.
pub async fn open(spec: &DestinationSpec) -> anyhow::Result<OpenDestination> {
    match spec.dest.trim_start_matches("sandbox:") {
        "highlevel" => {
            let (config, sandbox) = highlevel_config(spec).await?;
            let destination =
                HighLevelDestination::new(config).map_err(|e| fail(Exit::Config, e.to_string()))?;
            Ok(OpenDestination {
                destination: Box::new(destination),
                _sandbox: sandbox,
            })
        }
        "twenty" => {
            let (config, sandbox) = twenty_config(spec).await?;
            let client =
                TwentyClient::new(config).map_err(|e| fail(Exit::Config, e.to_string()))?;
            Ok(OpenDestination {
                destination: Box::new(client),
                _sandbox: sandbox,
            })
        }
        _ => Err(fail(
            Exit::Usage,
            format!(
                "--dest {:?}: expected highlevel, twenty, sandbox:highlevel or sandbox:twenty",
                spec.dest
            ),
        )),
    }
}
