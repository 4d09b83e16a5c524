//! Configuration of the HighLevel client: where to send requests, for which
//! location, with which token. The token is a [`Token`] (the shared
//! [`Secret`] type), whose `Debug` and `Display` never show it.

use std::time::Duration;

use cutover_engine::DestError;

use crate::http::secret::{Secret, SecretKind};

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://services.leadconnectorhq.com";
/// Environment variable holding the Private Integration Token or location OAuth token.
pub const TOKEN_ENV: &str = "HIGHLEVEL_TOKEN";
/// Alternatively, a file holding the token (readable by its owner only: mode 0600).
pub const TOKEN_FILE_ENV: &str = "HIGHLEVEL_TOKEN_FILE";
/// Environment variable holding the location (sub-account) id, when not given otherwise.
pub const LOCATION_ENV: &str = "HIGHLEVEL_LOCATION_ID";
/// The pipeline treatment plans go into, unless configured otherwise.
pub const DEFAULT_PIPELINE: &str = "Perio Treatment";
/// The contact and opportunity custom field carrying our idempotency key.
pub const SOURCE_ID_FIELD: &str = "Source_System_ID";

/// Marks a [`Secret`] as a HighLevel bearer token (`Token([redacted])` in `Debug`).
pub enum HighLevelToken {}

impl SecretKind for HighLevelToken {
    const NAME: &'static str = "Token";
}

/// A bearer token. Only [`Secret::expose`] reveals it, and only the HTTP layer calls that.
pub type Token = Secret<HighLevelToken>;

/// Everything the client needs to talk to one location.
#[derive(Debug, Clone)]
pub struct HighLevelConfig {
    /// Without a trailing slash (`https://services.leadconnectorhq.com`, `http://127.0.0.1:8720`).
    pub base_url: String,
    pub location_id: String,
    pub token: Token,
    /// Name of the pipeline opportunities go into (found by name, case-insensitive).
    pub pipeline_name: String,
    /// Calendar for appointments when a request does not name one.
    pub calendar_id: Option<String>,
    /// Requests per window the budget allows itself (a little under the documented 100 / 10 s).
    pub requests_per_window: u32,
    pub window: Duration,
    pub daily_limit: u64,
    /// Attempts per request before giving up on a transient failure.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl HighLevelConfig {
    /// A configuration with the documented limits and defaults.
    pub fn new(base_url: impl Into<String>, location_id: impl Into<String>, token: Token) -> Self {
        HighLevelConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            location_id: location_id.into(),
            token,
            pipeline_name: DEFAULT_PIPELINE.to_string(),
            calendar_id: None,
            requests_per_window: 100,
            window: Duration::from_secs(10),
            daily_limit: 200_000,
            max_attempts: 6,
            timeout: Duration::from_secs(30),
        }
    }

    /// Reads the token from `HIGHLEVEL_TOKEN`, the location from the argument or
    /// `HIGHLEVEL_LOCATION_ID`, the base URL from the argument or the production default.
    pub fn from_env(base_url: Option<&str>, location_id: Option<&str>) -> Result<Self, DestError> {
        let token = match std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()) {
            Some(token) => token,
            None => match std::env::var(TOKEN_FILE_ENV).ok().filter(|p| !p.trim().is_empty()) {
                Some(path) => read_token_file(std::path::Path::new(&path))?,
                None => {
                    return Err(DestError::Config(format!(
                        "{TOKEN_ENV} is not set (nor {TOKEN_FILE_ENV}); export the location's Private Integration Token"
                    )))
                }
            },
        };
        let location = match location_id {
            Some(id) => id.to_string(),
            None => std::env::var(LOCATION_ENV)
                .ok()
                .filter(|l| !l.trim().is_empty())
                .ok_or_else(|| {
                    DestError::Config(format!(
                        "no location id: pass --location-id or set {LOCATION_ENV}"
                    ))
                })?,
        };
        let config = HighLevelConfig::new(
            base_url.unwrap_or(DEFAULT_BASE_URL),
            location,
            Token::new(token.trim()),
        );
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without a request.
    pub fn validate(&self) -> Result<(), DestError> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(DestError::Config(format!(
                "base URL `{}` must start with http:// or https://",
                self.base_url
            )));
        }
        if self.location_id.trim().is_empty() || self.location_id.contains('/') {
            return Err(DestError::Config(format!(
                "location id `{}` is not a HighLevel id",
                self.location_id
            )));
        }
        if self.requests_per_window == 0 || self.window.is_zero() {
            return Err(DestError::Config(
                "the request budget must allow at least one request per window".into(),
            ));
        }
        Ok(())
    }
}

/// Reads a token file, refusing one that others can read (it must be mode 0600 or stricter).
pub fn read_token_file(path: &std::path::Path) -> Result<String, DestError> {
    let shown = path.display();
    let metadata = std::fs::metadata(path)
        .map_err(|e| DestError::Config(format!("token file {shown}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DestError::Config(format!("token file {shown} has mode {mode:o}; make it readable by its owner only (chmod 600)")));
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let token = std::fs::read_to_string(path)
        .map_err(|e| DestError::Config(format!("token file {shown}: {e}")))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(DestError::Config(format!("token file {shown} is empty")));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_shows_in_debug_or_display() {
        let token = Token::new("pit-abcdef-123456");
        let config = HighLevelConfig::new("http://127.0.0.1:1", "LOC1", token.clone());
        assert!(!format!("{config:?}").contains("pit-abcdef-123456"));
        assert!(!format!("{token}").contains("pit-abcdef-123456"));
        assert_eq!(
            token.redact("Bearer pit-abcdef-123456 rejected"),
            "Bearer [redacted] rejected"
        );
    }

    #[cfg(unix)]
    #[test]
    fn token_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "pit-from-file-123456\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_token_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("chmod 600") && error.contains("token"),
            "{error}"
        );
        assert!(
            !error.contains("pit-from-file"),
            "the token itself is never in the message"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "pit-from-file-123456");
    }

    #[test]
    fn bad_base_url_is_a_config_error_naming_it() {
        let config = HighLevelConfig::new("ftp://x", "LOC1", Token::new("t0ken"));
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("ftp://x"), "{error}");
    }
}
