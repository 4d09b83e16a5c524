//! Configuration of the Twenty client: where the workspace is, the API key,
//! batch size and request budget. The key is an [`ApiToken`] (the shared
//! [`Secret`] type), whose `Debug` and `Display` never show it.

use std::time::Duration;

use cutover_engine::DestError;
use reqwest::Url;

use crate::http::secret::{Secret, SecretKind};

/// Environment variable the API key is read from (never the command line).
pub const TOKEN_ENV: &str = "TWENTY_API_KEY";

/// Records per batch-create request; the documented cap of a Twenty server.
pub const DEFAULT_BATCH_SIZE: usize = 60;
/// Twenty's documented API budget: 100 requests per minute per workspace.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 100;

/// Marks a [`Secret`] as a Twenty API key (`ApiToken([redacted])` in `Debug`).
pub enum TwentyApiKey {}

impl SecretKind for TwentyApiKey {
    const NAME: &'static str = "ApiToken";
}

/// A Twenty API key. It is only ever revealed to build the `Authorization` header.
pub type ApiToken = Secret<TwentyApiKey>;

impl Secret<TwentyApiKey> {
    /// Reads the key from [`TOKEN_ENV`].
    pub fn from_env() -> Result<Self, DestError> {
        match std::env::var(TOKEN_ENV) {
            Ok(value) if !value.trim().is_empty() => Ok(ApiToken::new(value.trim())),
            _ => Err(DestError::Config(format!(
                "the Twenty API key is missing: set {TOKEN_ENV} (Settings → APIs & Webhooks in the workspace)"
            ))),
        }
    }
}

/// Everything the client needs to talk to one Twenty workspace.
#[derive(Debug, Clone)]
pub struct TwentyConfig {
    /// The server root (`https://api.twenty.com`, `http://127.0.0.1:3000`); `/rest/…` and
    /// `/metadata` are appended.
    pub base_url: Url,
    pub token: ApiToken,
    /// Records per `POST /rest/batch/{plural}` (default 60).
    pub batch_size: usize,
    /// Request budget per minute (default 100; self-hosted servers may allow more).
    pub requests_per_minute: u32,
    /// Attempts per request on transient failures (429, 5xx, network), first included.
    pub max_attempts: u32,
    /// Ceiling of one back-off wait.
    pub max_backoff: Duration,
    /// First back-off step (doubles per attempt, full jitter).
    pub base_backoff: Duration,
    pub request_timeout: Duration,
}

impl TwentyConfig {
    /// A configuration with the documented defaults. `base_url` must be http(s).
    pub fn new(base_url: &str, token: ApiToken) -> Result<Self, DestError> {
        let mut url = Url::parse(base_url.trim())
            .map_err(|e| DestError::Config(format!("--base-url {base_url:?} is not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(DestError::Config(format!(
                "--base-url {base_url:?} must start with http:// or https://"
            )));
        }
        if url.cannot_be_a_base() || url.host_str().is_none() {
            return Err(DestError::Config(format!(
                "--base-url {base_url:?} has no host"
            )));
        }
        // Accept a base given with a trailing `/rest` (as the OpenAPI server URL reads).
        let trimmed = url
            .path()
            .trim_end_matches('/')
            .trim_end_matches("/rest")
            .to_string();
        url.set_path(&format!("{trimmed}/"));
        url.set_query(None);
        Ok(TwentyConfig {
            base_url: url,
            token,
            batch_size: DEFAULT_BATCH_SIZE,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            max_attempts: 6,
            max_backoff: Duration::from_secs(60),
            base_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(60),
        })
    }

    pub fn with_batch_size(mut self, size: usize) -> Result<Self, DestError> {
        if size == 0 || size > 200 {
            return Err(DestError::Config(format!(
                "batch size {size} is out of range 1..=200"
            )));
        }
        self.batch_size = size;
        Ok(self)
    }

    pub fn with_requests_per_minute(mut self, rpm: u32) -> Result<Self, DestError> {
        if rpm == 0 {
            return Err(DestError::Config(
                "the request budget must be at least 1 per minute".into(),
            ));
        }
        self.requests_per_minute = rpm;
        Ok(self)
    }

    /// `base_url` joined with a relative path such as `rest/people`.
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base_url
            .join(path.trim_start_matches('/'))
            .expect("relative paths join onto an http base")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_formats() {
        let token = ApiToken::new("eyJsecret-token-value");
        assert!(!format!("{token:?}").contains("secret"));
        assert!(!format!("{token}").contains("secret"));
        let config = TwentyConfig::new("http://127.0.0.1:1", token.clone()).unwrap();
        assert!(!format!("{config:?}").contains("secret"));
        assert_eq!(
            token.redact("bearer eyJsecret-token-value!"),
            "bearer [redacted]!"
        );
    }

    #[test]
    fn base_url_is_normalised_and_checked() {
        let token = ApiToken::new("t0ken");
        let c = TwentyConfig::new("https://crm.example.com/rest/", token.clone()).unwrap();
        assert_eq!(
            c.url("rest/people").as_str(),
            "https://crm.example.com/rest/people"
        );
        let c = TwentyConfig::new("http://127.0.0.1:3000", token.clone()).unwrap();
        assert_eq!(
            c.url("/metadata").as_str(),
            "http://127.0.0.1:3000/metadata"
        );
        let err = TwentyConfig::new("ftp://x", token.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--base-url"), "{err}");
        assert!(TwentyConfig::new("not a url", token.clone()).is_err());
        assert!(TwentyConfig::new("http://x", token)
            .unwrap()
            .with_batch_size(0)
            .is_err());
    }
}
