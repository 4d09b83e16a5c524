//! Exit codes: what the process's status means. The only place they are defined.
//!
//! | code | meaning |
//! |------|---------|
//! | 0  | clean: everything asked for was done |
//! | 1  | failed: the command could not do its job (corrupt ledger, unreachable server, verify found a break) |
//! | 2  | finished with record-level failures (the list was written) |
//! | 3  | reconciliation mismatch |
//! | 64 | usage error (bad arguments) |
//! | 78 | configuration error (missing secret, bad config file) |

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// `RecordFailures` and `Mismatch` are the outcomes of `run` and `reconcile`, which the engine issue adds.
#[allow(dead_code)]
pub enum Exit {
    Clean = 0,
    Failed = 1,
    RecordFailures = 2,
    Mismatch = 3,
    Usage = 64,
    Config = 78,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that carries the exit code it should end the process with.
/// Wrap with [`fail`]; anything else that reaches `main` exits [`Exit::Failed`].
#[derive(Debug)]
pub struct Coded {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error with a chosen exit code.
pub fn fail(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        exit,
        message: message.into(),
    })
}

/// `error` with a chosen exit code and a message in front of its cause chain.
/// (Attaching [`fail`]'s `anyhow::Error` as context hides the code from
/// [`exit_for`]: anyhow downcasts context to its own type, not to what it wraps.)
pub fn fail_with(
    exit: Exit,
    message: impl Into<String>,
    error: impl std::error::Error + Send + Sync + 'static,
) -> anyhow::Error {
    anyhow::Error::new(error).context(Coded {
        exit,
        message: message.into(),
    })
}

/// The exit code for an error that reached `main`: the first [`Coded`] in its chain, else `Failed`.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    // A `Coded` attached as context is found by `downcast_ref` on the error itself;
    // the chain's items are the context layers, which do not downcast to it.
    if let Some(coded) = error.downcast_ref::<Coded>() {
        return coded.exit;
    }
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Coded>().map(|c| c.exit))
        .unwrap_or(Exit::Failed)
}
