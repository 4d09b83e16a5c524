//! `cutover sandbox highlevel|twenty --port P`: a stateful CRM emulator on
//! 127.0.0.1, until Ctrl-C. Each CRM's options live in its own module.

use clap::Subcommand;

use crate::exit::Exit;
use crate::output::Output;
use crate::{highlevel, twenty};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// A stateful HighLevel emulator (contacts, businesses, opportunities, notes, tasks,
    /// appointments, custom fields, rate-limit windows, /_sandbox admin and faults).
    Highlevel(highlevel::SandboxArgs),
    /// A stateful Twenty emulator (REST, batch writes, metadata, uploads, /_sandbox admin and faults).
    Twenty(twenty::SandboxArgs),
}

pub async fn run(command: SandboxCommand, out: Output) -> anyhow::Result<Exit> {
    match command {
        SandboxCommand::Highlevel(args) => highlevel::run_sandbox(args, out).await,
        SandboxCommand::Twenty(args) => twenty::run_sandbox(args, out).await,
    }
}
