//! Ledger errors. Each names the place (directory, seq, JSONL line) so the
//! person reading it knows where to look.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("{} is not a cutover ledger (no LEDGER marker file; create one with `cutover init` or `cutover ledger import`)", path.display())]
    NotALedger { path: PathBuf },

    #[error("{} already holds a ledger", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("the ledger store at {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("the ledger at {} is in use by another process (or its store cannot be opened): {detail}", path.display())]
    Unavailable { path: PathBuf, detail: String },

    #[error("hash chain broken at seq {seq}: {detail}")]
    Chain { seq: u64, detail: String },

    #[error("JSONL line {line}: {detail}")]
    Jsonl { line: u64, detail: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("ledger store error: {0}")]
    Store(String),
}

impl LedgerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LedgerError {
        LedgerError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
