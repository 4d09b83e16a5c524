//! Opening a source from its spec string, as the command line takes it:
//! `export:DIR` or `sqlserver:<ADO connection string>`.

use std::path::PathBuf;

use cutover_engine::{Source, SourceError};

use super::export::ExportSource;
use super::sqlserver::SqlServerSource;

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Export(PathBuf),
    /// The ADO connection string (it names no password: that comes from `CUTOVER_SQL_PASSWORD`).
    SqlServer(String),
}

impl SourceSpec {
    pub fn parse(spec: &str) -> Result<SourceSpec, SourceError> {
        if let Some(dir) = spec.strip_prefix("export:") {
            if dir.is_empty() {
                return Err(SourceError::Config(
                    "export: needs a folder, e.g. export:/data/panda-export".into(),
                ));
            }
            return Ok(SourceSpec::Export(PathBuf::from(dir)));
        }
        if let Some(ado) = spec.strip_prefix("sqlserver:") {
            return Ok(SourceSpec::SqlServer(ado.to_string()));
        }
        Err(SourceError::Config(
            "a source is export:DIR or sqlserver:<ADO connection string> (e.g. sqlserver:Server=tcp:host\\SQLEXPRESS,1433;Database=PANDA;User Id=reader)"
                .into(),
        ))
    }
}

/// Opens the source `spec` names. An export folder is checked against its manifest here.
pub async fn open_source(spec: &str) -> Result<Box<dyn Source>, SourceError> {
    match SourceSpec::parse(spec)? {
        SourceSpec::Export(dir) => {
            let source = tokio::task::spawn_blocking(move || ExportSource::open(&dir))
                .await
                .map_err(|e| {
                    SourceError::Config(format!("the export check did not finish: {e}"))
                })??;
            Ok(Box::new(source))
        }
        // The password comes from CUTOVER_SQL_PASSWORD, never from the spec.
        SourceSpec::SqlServer(ado) => Ok(Box::new(SqlServerSource::from_ado(&ado).await?)),
    }
}
