//! The project file, `cutover.toml`: what `cutover init` records so that every
//! later command knows the source, the destination and the ledger without
//! repeating them. Flags always override it. It never holds secrets: the SQL
//! password and the CRM tokens come only from the environment (or, for
//! HighLevel, a 0600 file named by `HIGHLEVEL_TOKEN_FILE`).
//!
//! Found at `$CUTOVER_CONFIG`, else `./cutover.toml`. Relative paths in it
//! are relative to the file's own folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{fail, Exit};

pub const FILE_NAME: &str = "cutover.toml";
pub const CONFIG_VAR: &str = "CUTOVER_CONFIG";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// `export:DIR` or `sqlserver:<ADO connection string without the password>`.
    pub source: Option<String>,
    /// `highlevel`, `twenty`, `sandbox:highlevel` or `sandbox:twenty`.
    pub dest: Option<String>,
    /// The ledger directory.
    pub ledger: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "HighLevel::is_empty")]
    pub highlevel: HighLevel,
    #[serde(default, skip_serializing_if = "Twenty::is_empty")]
    pub twenty: Twenty,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HighLevel {
    pub location_id: Option<String>,
    pub base_url: Option<String>,
    /// The location's request budget per minute, when not HighLevel's 100 per 10 s.
    pub requests_per_minute: Option<u32>,
}

impl HighLevel {
    fn is_empty(&self) -> bool {
        self == &HighLevel::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Twenty {
    pub base_url: Option<String>,
    /// The workspace's request budget per minute (Twenty's default is 100; self-hosted servers may allow more).
    pub requests_per_minute: Option<u32>,
}

impl Twenty {
    fn is_empty(&self) -> bool {
        self == &Twenty::default()
    }
}

/// Where the project file is looked for.
pub fn path() -> PathBuf {
    std::env::var_os(CONFIG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(FILE_NAME))
}

/// The project's directory: where the project file is (reports are written under it).
pub fn dir() -> PathBuf {
    path()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The project file, if there is one; a file that does not parse is a
/// configuration error naming it. Read once per process: a command may ask
/// for several of its values.
pub fn load() -> anyhow::Result<Option<Project>> {
    static LOADED: std::sync::OnceLock<Result<Option<Project>, String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| read(&path()))
        .clone()
        .map_err(|message| fail(Exit::Config, message))
}

fn read(path: &Path) -> Result<Option<Project>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut project: Project =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(source) = &project.source {
        check_source(source).map_err(|message| format!("{}: {message}", path.display()))?;
    }
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Some(ledger) = &project.ledger {
        if ledger.is_relative() {
            project.ledger = Some(base.join(ledger));
        }
    }
    if let Some(dir) = project
        .source
        .as_deref()
        .and_then(|s| s.strip_prefix("export:"))
    {
        if Path::new(dir).is_relative() {
            project.source = Some(format!("export:{}", base.join(dir).display()));
        }
    }
    Ok(Some(project))
}

/// A source spec fit to be written down: known scheme, and no secret in it.
pub fn check_source(spec: &str) -> Result<(), String> {
    if let Some(ado) = spec.strip_prefix("sqlserver:") {
        let lower = ado.to_ascii_lowercase();
        let has_secret = lower.split(';').any(|part| {
            let key = part.split('=').next().unwrap_or("").trim();
            key == "password" || key == "pwd"
        });
        if has_secret {
            return Err("the connection string carries a password: remove Password=/Pwd= and set CUTOVER_SQL_PASSWORD instead".into());
        }
        Ok(())
    } else if spec
        .strip_prefix("export:")
        .is_some_and(|dir| !dir.is_empty())
    {
        Ok(())
    } else {
        Err(format!(
            "source {spec:?}: expected export:DIR or sqlserver:<ADO connection string>"
        ))
    }
}

/// A destination name we know.
pub fn check_dest(dest: &str) -> Result<(), String> {
    match dest {
        "highlevel" | "twenty" | "sandbox:highlevel" | "sandbox:twenty" => Ok(()),
        other => Err(format!("destination {other:?}: expected highlevel, twenty, sandbox:highlevel or sandbox:twenty")),
    }
}

/// A value from the flag, else from the project file, else a usage error saying how to give it.
pub fn required<T: Clone>(
    flag: Option<T>,
    from_project: impl FnOnce(&Project) -> Option<T>,
    what: &str,
) -> anyhow::Result<T> {
    if let Some(value) = flag {
        return Ok(value);
    }
    if let Some(project) = load()? {
        if let Some(value) = from_project(&project) {
            return Ok(value);
        }
    }
    Err(fail(
        Exit::Usage,
        format!(
            "no {what}: give --{what} or record it with `cutover init` (looked for {})",
            path().display()
        ),
    ))
}

/// A value from the flag, else from the project file, else none.
pub fn optional<T>(
    flag: Option<T>,
    from_project: impl FnOnce(&Project) -> Option<T>,
) -> anyhow::Result<Option<T>> {
    if flag.is_some() {
        return Ok(flag);
    }
    Ok(load()?.and_then(|p| from_project(&p)))
}
