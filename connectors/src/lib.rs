//! Connectors: the PANDA Perio sources and the CRM destinations, each
//! implementing a port of `cutover-engine`, plus the sandbox emulators.
//!
//! Boundary: connectors depend on the engine's traits only; they never touch
//! the ledger. Each component lives in its own folder with the same cast of
//! files (config, client, retry, tests). What the CRM destinations share —
//! request budget, retry plumbing, secrets — is in `http`; what their
//! emulators share is in `sandbox_common`.
pub mod highlevel;
pub mod http;
pub mod panda;
pub mod preflight_probe;
pub mod sandbox_common;
pub mod twenty;
