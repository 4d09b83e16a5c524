//! HighLevel (LeadConnector API v2) destination: the HTTP client that
//! implements the engine's `Destination` port for one sub-account
//! (location), its request budget and retry policy, the pre-production
//! preflight, and a stateful sandbox emulator of the API for tests, the
//! demo and rehearsals.
//!
//! Layout: `config` (base URL, location, redacted token), `budget` (the
//! 100 req / 10 s and 200,000 / day limits and the `X-RateLimit-*` headers,
//! as settings of the shared `crate::http::budget`), `retry` (response
//! classification, plugged into the shared `crate::http::retry`), `client`
//! (endpoints with their exact `Version` header), `destination` (the port,
//! per object kind), `preflight`, `sandbox` (the axum emulator with admin and
//! fault endpoints, served by `crate::sandbox_common`).

pub mod budget;
pub mod client;
pub mod config;
pub mod destination;
pub mod preflight;
mod read_back;
pub mod retry;
pub mod sandbox;

#[cfg(test)]
mod tests;

pub use client::HighLevelClient;
pub use config::{HighLevelConfig, Token};
pub use destination::{HighLevelDestination, OBJECT_KINDS};
pub use preflight::{preflight, PreflightCheck, PreflightReport};
