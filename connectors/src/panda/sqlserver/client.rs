//! Connecting with tiberius (plain TCP or a named instance through the SQL
//! Browser, each TLS mode) and turning tiberius errors into the source's
//! typed errors: unreachable, login refused (18456 shown), missing table,
//! server error — transient or terminal.

use cutover_engine::SourceError;
use tiberius::error::Error as TdsError;
use tiberius::{Client, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::config::SqlServerConfig;

pub type SqlClient = Client<Compat<TcpStream>>;

/// Opens an authenticated connection.
pub async fn connect(config: &SqlServerConfig) -> Result<SqlClient, SourceError> {
    let place = config.describe();
    let tds = config.tiberius();
    let attempt = async {
        let tcp = if config.instance.is_some() {
            TcpStream::connect_named(&tds)
                .await
                .map_err(|e| connect_error(&place, e))?
        } else {
            TcpStream::connect(tds.get_addr())
                .await
                .map_err(|e| SourceError::Unreachable {
                    place: place.clone(),
                    message: format!("TCP connect failed: {e}"),
                })?
        };
        tcp.set_nodelay(true)
            .map_err(|e| SourceError::Unreachable {
                place: place.clone(),
                message: e.to_string(),
            })?;
        Client::connect(tds, tcp.compat_write())
            .await
            .map_err(|e| connect_error(&place, e))
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| SourceError::Unreachable {
            place: place.clone(),
            message: format!("no answer within {} s", config.connect_timeout.as_secs()),
        })?
}

/// An error while connecting or logging in.
pub fn connect_error(place: &str, error: TdsError) -> SourceError {
    match error {
        TdsError::Server(e) if matches!(e.code(), 18456 | 18452 | 18470 | 18486 | 18487 | 18488 | 4060) => {
            SourceError::LoginFailed { place: place.to_string(), message: format!("{} (SQL Server error {})", e.message(), e.code()) }
        }
        TdsError::Tls(message) => SourceError::Unreachable {
            place: place.to_string(),
            message: format!(
                "TLS handshake failed: {message} (a self-signed server certificate needs TrustServerCertificate=true \
                 or TrustServerCertificateCA=<file>; servers offering only TLS 1.0/1.1 need patching)"
            ),
        },
        TdsError::Protocol(message) if message.contains("encryption") => SourceError::Unreachable {
            place: place.to_string(),
            message: format!("{message} (the server does not offer the TLS mode Encrypt= asks for)"),
        },
        other => query_error(place, None, other),
    }
}

/// An error while querying; `table` names the table the query read, when one did.
pub fn query_error(place: &str, table: Option<&str>, error: TdsError) -> SourceError {
    match error {
        TdsError::Server(e) if e.code() == 208 => SourceError::MissingTable {
            table: table
                .map(str::to_string)
                .unwrap_or_else(|| e.message().to_string()),
            place: place.to_string(),
        },
        TdsError::Server(e) => SourceError::Server {
            place: place.to_string(),
            message: format!(
                "SQL Server error {} (class {}): {}",
                e.code(),
                e.class(),
                e.message()
            ),
            // Deadlock victim, timeouts and resource errors may pass; class 20+ ends the connection.
            transient: matches!(e.code(), 1205 | 1222 | 40501 | 40613) || e.class() >= 20,
        },
        TdsError::Io { kind, message } => SourceError::Unreachable {
            place: place.to_string(),
            message: format!("{kind:?}: {message}"),
        },
        other => SourceError::Unreachable {
            place: place.to_string(),
            message: other.to_string(),
        },
    }
}

/// True when the error means the connection is gone (worth reconnecting and resuming).
pub fn is_connection_loss(error: &TdsError) -> bool {
    matches!(error, TdsError::Io { .. })
        || matches!(error, TdsError::Protocol(m) if m.contains("closed") || m.contains("EOF"))
}
