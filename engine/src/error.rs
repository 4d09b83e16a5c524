//! Typed errors of the ports, each classed transient (worth retrying) or
//! terminal (retrying will not help; fix something first).
//!
//! Messages name the place (file, line, column, table, endpoint) and never
//! carry secrets or patient data: connectors build them with that in mind.

use thiserror::Error;

/// Whether trying again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A timeout, a dropped connection, a 429 or 5xx: retry with back-off.
    Transient,
    /// Bad credentials, a missing table, a 4xx validation error: retrying will not help.
    Terminal,
}

/// An error from a [`crate::Source`].
#[derive(Debug, Error)]
pub enum SourceError {
    /// Could not connect or lost the connection (host, port, instance named).
    #[error("cannot reach the source at {place}: {message}")]
    Unreachable { place: String, message: String },
    /// The server refused the login (e.g. SQL Server error 18456).
    #[error("login refused by {place}: {message}")]
    LoginFailed { place: String, message: String },
    /// A table the caller asked for does not exist.
    #[error("table {table} not found in {place}")]
    MissingTable { table: String, place: String },
    /// Input that cannot be read: a malformed CSV line, a manifest mismatch, a bad packet.
    #[error("malformed source data at {place}: {message}")]
    Malformed { place: String, message: String },
    /// The stream ended early or broke mid-way; the extract is not complete.
    #[error("the stream of {table} broke after {rows_read} rows: {message}")]
    Interrupted {
        table: String,
        rows_read: u64,
        message: String,
    },
    /// A configuration problem (bad connection string, missing password variable).
    #[error("source configuration: {0}")]
    Config(String),
    /// The server answered with an error.
    #[error("source server error at {place}: {message}")]
    Server {
        place: String,
        message: String,
        transient: bool,
    },
}

impl SourceError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Unreachable { .. } | SourceError::Interrupted { .. } => {
                ErrorClass::Transient
            }
            SourceError::Server {
                transient: true, ..
            } => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }
}

/// An error from a [`crate::Destination`].
#[derive(Debug, Error)]
pub enum DestError {
    /// Rate limited (429); `retry_after_ms` from the response when it said so.
    #[error("rate limited by {endpoint} (retry after {retry_after_ms:?} ms)")]
    RateLimited {
        endpoint: String,
        retry_after_ms: Option<u64>,
    },
    /// Network failure or a 5xx: the request may or may not have landed.
    #[error("{endpoint}: transient failure{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        endpoint: String,
        status: Option<u16>,
        message: String,
    },
    /// The destination rejected the request (4xx); the message is the server's, secrets removed.
    #[error("{endpoint}: rejected (HTTP {status}): {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// Authentication or scope problem (401/403).
    #[error("{endpoint}: not authorised (HTTP {status}): {message}")]
    Unauthorized {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// A 2xx whose body does not carry what was sent (e.g. a phone dropped by duplicate rules).
    #[error("{endpoint}: accepted but the stored record differs from what was sent: {message}")]
    Mismatch { endpoint: String, message: String },
    /// A precondition at the destination is missing (pipeline, stage, custom field).
    #[error("destination precondition: {0}")]
    Precondition(String),
    /// A configuration problem (missing token variable, bad base URL).
    #[error("destination configuration: {0}")]
    Config(String),
}

impl DestError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DestError::RateLimited { .. } | DestError::Transient { .. } => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }

    /// The HTTP status the destination answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DestError::Transient { status, .. } => *status,
            DestError::Rejected { status, .. } | DestError::Unauthorized { status, .. } => {
                Some(*status)
            }
            DestError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The kind of failure and where, without the server's message (it may quote
    /// record contents, so it never goes to logs or the ledger).
    pub fn kind_and_place(&self) -> String {
        match self {
            DestError::RateLimited { endpoint, .. } => format!("rate limited at {endpoint}"),
            DestError::Transient { endpoint, .. } => format!("transient failure at {endpoint}"),
            DestError::Rejected { endpoint, .. } => format!("rejected by {endpoint}"),
            DestError::Unauthorized { endpoint, .. } => format!("not authorised at {endpoint}"),
            DestError::Mismatch { endpoint, .. } => {
                format!("stored differently than sent at {endpoint}")
            }
            DestError::Precondition(_) => "destination precondition missing".into(),
            DestError::Config(_) => "destination configuration".into(),
        }
    }
}
