//! The connection settings of a SQL Server source, parsed from an ADO.NET
//! connection string (`Server=tcp:host\SQLEXPRESS,1433;Database=PANDA;User Id=reader;
//! Encrypt=true;TrustServerCertificate=true`). The password never comes from
//! the string or the command line: only from `CUTOVER_SQL_PASSWORD`; it is kept
//! out of `Debug`, descriptions and errors.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use connection_string::AdoNetString;
use cutover_engine::SourceError;
use tiberius::{AuthMethod, EncryptionLevel};

use super::retry::RetryPolicy;

/// The environment variable the SQL password is read from.
pub const PASSWORD_VAR: &str = "CUTOVER_SQL_PASSWORD";

/// How the connection is encrypted (the `Encrypt` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// `Encrypt=true|yes|mandatory` (the default): TLS for the whole connection, or fail.
    Required,
    /// `Encrypt=false|no|optional`: TLS for the login packet only (SQL Server's "off"),
    /// full TLS when the server insists.
    LoginOnly,
    /// `Encrypt=DANGER_PLAINTEXT`: no TLS at all, login included. Last resort for
    /// servers that offer no usable TLS (SQL Server 2008 R2 with TLS 1.0 only).
    Plaintext,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to connect; `Debug` shows no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlServerConfig {
    pub host: String,
    /// Named instance (`host\SQLEXPRESS`), resolved through the SQL Browser.
    pub instance: Option<String>,
    /// TCP port, or with an instance the SQL Browser's UDP port (default 1434).
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: String,
    password: Password,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
    pub trust_ca: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl SqlServerConfig {
    /// Parses `ado`, taking the password from `CUTOVER_SQL_PASSWORD`.
    pub fn from_env(ado: &str) -> Result<SqlServerConfig, SourceError> {
        let password = std::env::var(PASSWORD_VAR).map_err(|_| {
            SourceError::Config(format!("set {PASSWORD_VAR} to the SQL login's password (it is never taken from the command line)"))
        })?;
        SqlServerConfig::parse(ado, password)
    }

    /// Parses `ado` with the given password. Errors quote keys, never values of secret keys.
    pub fn parse(ado: &str, password: String) -> Result<SqlServerConfig, SourceError> {
        let pairs = AdoNetString::from_str(ado).map_err(|e| {
            SourceError::Config(format!(
                "the SQL Server connection string does not parse: {e}"
            ))
        })?;
        let get = |keys: &[&str]| -> Option<String> {
            pairs
                .iter()
                .find(|(k, _)| keys.iter().any(|key| k.eq_ignore_ascii_case(key)))
                .map(|(_, v)| v.trim().to_string())
        };
        if get(&["password", "pwd"]).is_some() {
            return Err(SourceError::Config(format!(
                "the connection string must not carry the password: remove Password=/Pwd= and set {PASSWORD_VAR}"
            )));
        }
        let server = get(&[
            "server",
            "data source",
            "address",
            "addr",
            "network address",
        ])
        .ok_or_else(|| {
            SourceError::Config(
                "the connection string names no Server= (e.g. Server=tcp:host\\SQLEXPRESS)".into(),
            )
        })?;
        let server = server.strip_prefix("tcp:").unwrap_or(&server);
        let (host_part, port) = match server.split_once(',') {
            Some((h, p)) => (
                h,
                Some(p.trim().parse::<u16>().map_err(|_| {
                    SourceError::Config(format!("Server= has a bad port {:?}", p.trim()))
                })?),
            ),
            None => (server, None),
        };
        let (host, instance) = match host_part.split_once('\\') {
            Some((h, i)) if !i.is_empty() => (h.to_string(), Some(i.to_string())),
            _ => (host_part.to_string(), None),
        };
        let host = match host.as_str() {
            "." | "(local)" | "localhost" | "" => "localhost".to_string(),
            _ => host,
        };
        let user = get(&["user id", "uid", "user", "username"])
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                SourceError::Config(
                    "the connection string names no User Id= (a read-only SQL login)".into(),
                )
            })?;
        let truthy = |v: &str| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "mandatory"
            )
        };
        let encrypt = match get(&["encrypt"]).map(|v| v.to_ascii_lowercase()) {
            None => Encrypt::Required,
            Some(v) if truthy(&v) => Encrypt::Required,
            Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "optional") => Encrypt::LoginOnly,
            Some(v) if v == "danger_plaintext" => Encrypt::Plaintext,
            Some(v) => {
                return Err(SourceError::Config(format!(
                    "Encrypt={v} is not supported (true, false or DANGER_PLAINTEXT; strict needs TDS 8, not built in)"
                )))
            }
        };
        Ok(SqlServerConfig {
            host,
            instance,
            port,
            database: get(&["database", "initial catalog"]).filter(|d| !d.is_empty()),
            user,
            password: Password(password),
            encrypt,
            trust_server_certificate: get(&["trustservercertificate", "trust server certificate"])
                .is_some_and(|v| truthy(&v)),
            trust_ca: get(&["trustservercertificateca"]).map(PathBuf::from),
            connect_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
        })
    }

    /// `host\INSTANCE,port/Database` — no user, no password.
    pub fn describe(&self) -> String {
        let mut s = format!("sqlserver:{}", self.host);
        if let Some(i) = &self.instance {
            s.push('\\');
            s.push_str(i);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(",{p}"));
        }
        if let Some(d) = &self.database {
            s.push('/');
            s.push_str(d);
        }
        s
    }

    /// The tiberius configuration (carries the password; never logged).
    pub fn tiberius(&self) -> tiberius::Config {
        let mut config = tiberius::Config::new();
        config.host(&self.host);
        match (self.port, &self.instance) {
            (Some(p), _) => config.port(p),
            (None, Some(_)) => config.port(1434),
            (None, None) => config.port(1433),
        }
        if let Some(i) = &self.instance {
            config.instance_name(i);
        }
        if let Some(d) = &self.database {
            config.database(d);
        }
        config.application_name("cutover");
        config.authentication(AuthMethod::sql_server(&self.user, &self.password.0));
        config.encryption(match self.encrypt {
            Encrypt::Required => EncryptionLevel::Required,
            Encrypt::LoginOnly => EncryptionLevel::Off,
            Encrypt::Plaintext => EncryptionLevel::NotSupported,
        });
        if self.trust_server_certificate {
            config.trust_cert();
        } else if let Some(ca) = &self.trust_ca {
            config.trust_cert_ca(ca.to_string_lossy());
        }
        config.readonly(true);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_instance_with_tls_options_parses() {
        let c = SqlServerConfig::parse(
            r"Server=tcp:panda-srv\SQLEXPRESS,1434;Database=PANDA;User Id=panda_ro;Encrypt=true;TrustServerCertificate=true",
            "pw".into(),
        )
        .unwrap();
        assert_eq!(c.host, "panda-srv");
        assert_eq!(c.instance.as_deref(), Some("SQLEXPRESS"));
        assert_eq!(c.port, Some(1434));
        assert_eq!(c.database.as_deref(), Some("PANDA"));
        assert_eq!(c.user, "panda_ro");
        assert_eq!(c.encrypt, Encrypt::Required);
        assert!(c.trust_server_certificate);
        assert_eq!(c.describe(), r"sqlserver:panda-srv\SQLEXPRESS,1434/PANDA");
    }

    #[test]
    fn encrypt_modes_and_defaults() {
        let mode = |e: &str| {
            SqlServerConfig::parse(&format!("Server=h;User Id=u;{e}"), "pw".into())
                .map(|c| c.encrypt)
        };
        assert_eq!(mode("").unwrap(), Encrypt::Required);
        assert_eq!(mode("Encrypt=no").unwrap(), Encrypt::LoginOnly);
        assert_eq!(
            mode("Encrypt=DANGER_PLAINTEXT").unwrap(),
            Encrypt::Plaintext
        );
        assert!(mode("Encrypt=sometimes").is_err());
    }

    #[test]
    fn a_password_in_the_string_is_refused_without_echoing_it() {
        let err =
            SqlServerConfig::parse("Server=h;User Id=u;Password=hunter2", "pw".into()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(PASSWORD_VAR), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn debug_and_describe_never_show_the_password() {
        let c = SqlServerConfig::parse("Server=h;User Id=u", "s3cret-pw".into()).unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"));
        assert!(!c.describe().contains("s3cret-pw"));
    }

    #[test]
    fn missing_server_or_user_is_a_clear_config_error() {
        assert!(
            SqlServerConfig::parse("Database=PANDA;User Id=u", "pw".into())
                .unwrap_err()
                .to_string()
                .contains("Server=")
        );
        assert!(SqlServerConfig::parse("Server=h", "pw".into())
            .unwrap_err()
            .to_string()
            .contains("User Id="));
    }
}
