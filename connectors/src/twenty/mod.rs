//! The Twenty CRM destination: a REST + metadata client with batch writes
//! ([`client`]), its request budget ([`budget`], settings of the shared
//! `crate::http::budget`), its configuration ([`config`]), response
//! classification ([`retry`], plugged into the shared `crate::http::retry`
//! with its back-off), the workspace's self-description
//! ([`metadata`]), the perio schema ([`schema`]), and a stateful emulator of the
//! API subset the client uses ([`sandbox`]).
//!
//! Reference: `reference/twenty-api.md`; request shapes follow
//! `specs/twenty/core-openapi.yaml` (contract-tested in `tests/twenty_contract.rs`).

pub mod budget;
pub mod client;
pub mod config;
pub mod metadata;
pub mod preflight;
mod read_back;
pub mod retry;
pub mod sandbox;
pub mod schema;

#[cfg(test)]
mod tests;

pub use budget::{BudgetStats, RequestBudget};
pub use client::{rollback_rank, TwentyClient, UPLOAD_KEY};
pub use config::{ApiToken, TwentyConfig, TOKEN_ENV};
pub use schema::perio_schema;
