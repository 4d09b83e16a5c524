//! The HTTP layer: one request = one budget token, the exact `Version`
//! header of the spec file the operation belongs to, a redacted token, and
//! classified failures. [`HighLevelClient::call`] retries what is safe to
//! repeat; [`HighLevelClient::attempt`] sends once and leaves the decision to
//! the caller (creates must be looked up before they are re-sent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_engine::DestError;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use serde_json::Value;

use super::budget::{location_budget, BudgetRefusal, RateLimitHeaders, RequestBudget};
use super::config::HighLevelConfig;
use super::retry::{message_text, Backoff, HighLevelResponses, Verdict, DEFAULT_BACKOFF};
use crate::http::retry::{ClassifyResponse, RetryPolicy};

/// `Version` of every spec file except calendars.
pub const VERSION_2021_07_28: &str = "2021-07-28";
/// `Version` of `apps/calendars.json` (appointments).
pub const VERSION_2021_04_15: &str = "2021-04-15";

/// One operation of the official spec: its `operationId`, method, path template and `Version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub operation: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub version: &'static str,
}

macro_rules! endpoints {
    ($($name:ident = $op:literal, $method:ident, $path:literal, $version:ident;)*) => {
        $(pub const $name: Endpoint = Endpoint { operation: $op, method: Method::$method, path: $path, version: $version };)*
        /// Every operation the client uses (the contract tests walk this list).
        pub const ALL: &[Endpoint] = &[$($name),*];
    };
}

/// The operations the client sends, named after their spec `operationId`.
pub mod ops {
    use super::*;
    endpoints! {
        GET_LOCATION = "get-location", GET, "/locations/{locationId}", VERSION_2021_07_28;
        LIST_CUSTOM_FIELDS = "get-custom-fields", GET, "/locations/{locationId}/customFields", VERSION_2021_07_28;
        CREATE_CUSTOM_FIELD = "create-custom-field", POST, "/locations/{locationId}/customFields", VERSION_2021_07_28;
        DELETE_CUSTOM_FIELD = "delete-custom-field", DELETE, "/locations/{locationId}/customFields/{id}", VERSION_2021_07_28;
        CREATE_CONTACT = "create-contact", POST, "/contacts/", VERSION_2021_07_28;
        GET_CONTACT = "get-contact", GET, "/contacts/{contactId}", VERSION_2021_07_28;
        UPDATE_CONTACT = "update-contact", PUT, "/contacts/{contactId}", VERSION_2021_07_28;
        DELETE_CONTACT = "delete-contact", DELETE, "/contacts/{contactId}", VERSION_2021_07_28;
        SEARCH_CONTACTS = "search-contacts-advanced", POST, "/contacts/search", VERSION_2021_07_28;
        DUPLICATE_CONTACT = "get-duplicate-contact", GET, "/contacts/search/duplicate", VERSION_2021_07_28;
        LINK_BUSINESS = "add-remove-contact-from-business", POST, "/contacts/bulk/business", VERSION_2021_07_28;
        CREATE_BUSINESS = "create-business", POST, "/businesses/", VERSION_2021_07_28;
        LIST_BUSINESSES = "get-businesses-by-location", GET, "/businesses/", VERSION_2021_07_28;
        GET_BUSINESS = "get-business", GET, "/businesses/{businessId}", VERSION_2021_07_28;
        UPDATE_BUSINESS = "update-business", PUT, "/businesses/{businessId}", VERSION_2021_07_28;
        DELETE_BUSINESS = "delete-Business", DELETE, "/businesses/{businessId}", VERSION_2021_07_28;
        GET_PIPELINES = "get-pipelines", GET, "/opportunities/pipelines", VERSION_2021_07_28;
        CREATE_OPPORTUNITY = "create-opportunity", POST, "/opportunities/", VERSION_2021_07_28;
        GET_OPPORTUNITY = "get-opportunity", GET, "/opportunities/{id}", VERSION_2021_07_28;
        UPDATE_OPPORTUNITY = "update-opportunity", PUT, "/opportunities/{id}", VERSION_2021_07_28;
        DELETE_OPPORTUNITY = "delete-opportunity", DELETE, "/opportunities/{id}", VERSION_2021_07_28;
        SEARCH_OPPORTUNITIES = "search-opportunity", GET, "/opportunities/search", VERSION_2021_07_28;
        CREATE_NOTE = "create-note", POST, "/contacts/{contactId}/notes", VERSION_2021_07_28;
        LIST_NOTES = "get-all-notes", GET, "/contacts/{contactId}/notes", VERSION_2021_07_28;
        GET_NOTE = "get-note", GET, "/contacts/{contactId}/notes/{id}", VERSION_2021_07_28;
        UPDATE_NOTE = "update-note", PUT, "/contacts/{contactId}/notes/{id}", VERSION_2021_07_28;
        DELETE_NOTE = "delete-note", DELETE, "/contacts/{contactId}/notes/{id}", VERSION_2021_07_28;
        CREATE_TASK = "create-task", POST, "/contacts/{contactId}/tasks", VERSION_2021_07_28;
        LIST_TASKS = "get-all-tasks", GET, "/contacts/{contactId}/tasks", VERSION_2021_07_28;
        GET_TASK = "get-task", GET, "/contacts/{contactId}/tasks/{taskId}", VERSION_2021_07_28;
        UPDATE_TASK = "update-task", PUT, "/contacts/{contactId}/tasks/{taskId}", VERSION_2021_07_28;
        DELETE_TASK = "delete-task", DELETE, "/contacts/{contactId}/tasks/{taskId}", VERSION_2021_07_28;
        LIST_CALENDARS = "get-calendars", GET, "/calendars/", VERSION_2021_04_15;
        CREATE_APPOINTMENT = "create-appointment", POST, "/calendars/events/appointments", VERSION_2021_04_15;
        GET_APPOINTMENT = "get-appointment", GET, "/calendars/events/appointments/{eventId}", VERSION_2021_04_15;
        UPDATE_APPOINTMENT = "edit-appointment", PUT, "/calendars/events/appointments/{eventId}", VERSION_2021_04_15;
        DELETE_EVENT = "delete-event", DELETE, "/calendars/events/{eventId}", VERSION_2021_04_15;
        CONTACT_APPOINTMENTS = "get-appointments-for-contact", GET, "/contacts/{contactId}/appointments", VERSION_2021_07_28;
        UPLOAD_CUSTOM_FILES = "upload-to-custom-fields", POST, "/forms/upload-custom-files", VERSION_2021_07_28;
    }
}

impl Endpoint {
    /// Fills `{placeholders}` in order with URL-encoded values.
    pub fn path_with(&self, values: &[&str]) -> String {
        let mut out = String::with_capacity(self.path.len() + 32);
        let mut values = values.iter();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .unwrap_or(rest.len() - 1);
            let value = values.next().copied().unwrap_or("");
            out.extend(url_escape(value));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// How errors name the place: `create-contact (POST /contacts/)`. No ids, no query strings.
    pub fn describe(&self) -> String {
        format!("{} ({} {})", self.operation, self.method, self.path)
    }
}

fn url_escape(value: &str) -> impl Iterator<Item = char> + '_ {
    value.chars().flat_map(|c| {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
        let text = if keep {
            c.to_string()
        } else {
            c.to_string().bytes().map(|b| format!("%{b:02X}")).collect()
        };
        text.chars().collect::<Vec<_>>()
    })
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Payload {
    None,
    Json(Value),
    /// One multipart file part (`upload-to-custom-fields`).
    File {
        part_name: String,
        file_name: String,
        mime: String,
        bytes: Vec<u8>,
    },
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A failed attempt, classified.
#[derive(Debug, Clone)]
pub struct Failure {
    pub verdict: Verdict,
    pub status: Option<u16>,
    /// The server's message or the transport error, token removed.
    pub message: String,
    /// The parsed error body, when there was one (e.g. the duplicate-contact `meta`).
    pub body: Option<Value>,
}

impl Failure {
    pub fn into_error(self, endpoint: &Endpoint) -> DestError {
        let endpoint = endpoint.describe();
        match self.verdict {
            Verdict::RateLimited { wait } => DestError::RateLimited {
                endpoint,
                retry_after_ms: wait.map(|w| w.as_millis() as u64),
            },
            Verdict::Transient { .. } => DestError::Transient {
                endpoint,
                status: self.status,
                message: self.message,
            },
            Verdict::Unauthorized => DestError::Unauthorized {
                endpoint,
                status: self.status.unwrap_or(401),
                message: self.message,
            },
            Verdict::Terminal | Verdict::Success => DestError::Rejected {
                endpoint,
                status: self.status.unwrap_or(0),
                message: self.message,
            },
        }
    }

    /// The budget refused before sending: the day's cap is spent, and retrying
    /// today cannot help.
    pub fn daily_budget_spent(&self) -> bool {
        self.status.is_none() && matches!(self.verdict, Verdict::RateLimited { .. })
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
            || (matches!(self.verdict, Verdict::Terminal)
                && self.message.to_ascii_lowercase().contains("not found"))
    }
}

/// Counters of what the client sent and what came back.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: std::sync::atomic::AtomicU64,
    pub rate_limited: std::sync::atomic::AtomicU64,
}

/// The HighLevel API client for one location.
#[derive(Debug, Clone)]
pub struct HighLevelClient {
    http: reqwest::Client,
    config: Arc<HighLevelConfig>,
    budget: Arc<RequestBudget>,
    backoff: Backoff,
    stats: Arc<ClientStats>,
}

impl HighLevelClient {
    pub fn new(config: HighLevelConfig) -> Result<Self, DestError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestError::Config(format!("cannot build the HTTP client: {e}")))?;
        let budget = location_budget(
            config.requests_per_window,
            config.window,
            config.daily_limit,
        );
        Ok(HighLevelClient {
            http,
            config: Arc::new(config),
            budget: Arc::new(budget),
            backoff: DEFAULT_BACKOFF,
            stats: Arc::default(),
        })
    }

    /// Shorter back-off (tests with fault injection).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn config(&self) -> &HighLevelConfig {
        &self.config
    }

    pub fn budget(&self) -> &RequestBudget {
        &self.budget
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// (requests sent, responses that were 429).
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.requests.load(Relaxed),
            self.stats.rate_limited.load(Relaxed),
        )
    }

    /// Sends once through the budget. A 429 also pauses the budget for everyone.
    pub async fn attempt(
        &self,
        endpoint: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        payload: &Payload,
    ) -> Result<Reply, Failure> {
        if let Err(BudgetRefusal::DailyExhausted { retry_after }) = self.budget.acquire().await {
            return Err(Failure {
                verdict: Verdict::RateLimited {
                    wait: Some(retry_after),
                },
                status: None,
                message: "the daily request budget of this location is spent".into(),
                body: None,
            });
        }
        let url = format!("{}{}", self.config.base_url, path);
        let mut request = self
            .http
            .request(endpoint.method.clone(), &url)
            .headers(self.headers(endpoint))
            .query(query);
        request = match payload {
            Payload::None => request,
            Payload::Json(body) => request.json(body),
            Payload::File {
                part_name,
                file_name,
                mime,
                bytes,
            } => {
                let part = reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name(file_name.clone())
                    .mime_str(mime)
                    .map_err(|e| Failure {
                        verdict: Verdict::Terminal,
                        status: None,
                        message: format!("bad content type `{mime}`: {e}"),
                        body: None,
                    })?;
                request.multipart(reqwest::multipart::Form::new().part(part_name.clone(), part))
            }
        };
        let started = Instant::now();
        self.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.read(request).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(reply) => tracing::debug!(
                operation = endpoint.operation,
                status = reply.status,
                elapsed_ms,
                "highlevel request"
            ),
            Err(failure) => {
                tracing::debug!(operation = endpoint.operation, status = failure.status, verdict = ?failure.verdict, elapsed_ms, "highlevel request failed")
            }
        }
        if let Err(Failure {
            verdict: Verdict::RateLimited { wait },
            status: Some(429),
            ..
        }) = &result
        {
            self.stats
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.budget
                .rate_limited(wait.unwrap_or(Duration::from_secs(1)));
        }
        result
    }

    async fn read(&self, request: reqwest::RequestBuilder) -> Result<Reply, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        self.budget
            .observe(&RateLimitHeaders::parse(&headers).feedback());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let verdict = HighLevelResponses.classify(status, &headers, &bytes);
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if verdict == Verdict::Success {
            return Ok(Reply {
                status: status.as_u16(),
                body: body.unwrap_or(Value::Null),
            });
        }
        let message = match &body {
            Some(json) => message_text(json),
            None => String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        };
        Err(Failure {
            verdict,
            status: Some(status.as_u16()),
            message: self.config.token.redact(&message),
            body,
        })
    }

    fn transport_failure(&self, error: reqwest::Error) -> Failure {
        // A connect failure never reached the server; anything later may have.
        let may_have_landed = !error.is_connect();
        let message = self.config.token.redact(&error.without_url().to_string());
        Failure {
            verdict: Verdict::Transient { may_have_landed },
            status: None,
            message,
            body: None,
        }
    }

    fn headers(&self, endpoint: &Endpoint) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.config.token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert("Version", HeaderValue::from_static(endpoint.version));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers
    }

    /// Sends and retries what is safe to repeat (reads, updates, deletes,
    /// searches, link changes): 429 after the server's wait, transient failures
    /// after a jittered back-off, up to the configured attempts.
    pub async fn call(
        &self,
        endpoint: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        payload: &Payload,
    ) -> Result<Reply, Failure> {
        let mut attempts = self.retry_policy().attempts();
        loop {
            match self.attempt(endpoint, path, query, payload).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => {
                    let tally = attempts.record(HighLevelResponses.retry_class(&failure.verdict));
                    if tally.give_up || failure.daily_budget_spent() {
                        return Err(failure);
                    }
                    self.pause_before_retry(&failure, tally.attempt).await;
                }
            }
        }
    }

    /// Attempts per request; a 429 counts like any other failure (the budget
    /// already holds every caller back for the server's wait).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_attempts,
            max_rate_limited_attempts: None,
        }
    }

    /// The wait before attempt `attempt + 1`: the server's wait for a 429 (the budget
    /// already holds everyone back), else full-jitter back-off.
    pub async fn pause_before_retry(&self, failure: &Failure, attempt: u32) {
        let wait = match failure.verdict {
            Verdict::RateLimited { .. } => Duration::ZERO,
            _ => self.backoff.delay(attempt),
        };
        tracing::debug!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "highlevel retry"
        );
        tokio::time::sleep(wait).await;
    }

    /// [`Self::call`] with the failure turned into a port error.
    pub async fn call_json(
        &self,
        endpoint: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, DestError> {
        let payload = body.map(Payload::Json).unwrap_or(Payload::None);
        self.call(endpoint, path, query, &payload)
            .await
            .map(|r| r.body)
            .map_err(|f| f.into_error(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_and_escape_placeholders() {
        assert_eq!(
            ops::GET_NOTE.path_with(&["C1", "N 2"]),
            "/contacts/C1/notes/N%202"
        );
        assert_eq!(ops::CREATE_CONTACT.path_with(&[]), "/contacts/");
    }

    #[test]
    fn calendars_use_their_own_version() {
        for endpoint in ops::ALL {
            let expected = if endpoint.path.starts_with("/calendars") {
                VERSION_2021_04_15
            } else {
                VERSION_2021_07_28
            };
            assert_eq!(endpoint.version, expected, "{}", endpoint.operation);
        }
    }
}
