//! What the CRM emulators (`highlevel::sandbox`, `twenty::sandbox`) share:
//! serving an axum router on 127.0.0.1 in the background and stopping it
//! ([`server`]), and a client for their `/_sandbox/*` admin endpoints ([`admin`]).
//!
//! The admin *handlers* behind those endpoints only look alike and stay with
//! their emulator: each fault plan models its own API's failures (HighLevel: random 5xx
//! and dropped connections, faults after commit, silently dropped fields;
//! Twenty: seeded, counter-driven failures before or after a write and its
//! token-bucket throttler) and answers in its API's error shape.

pub mod admin;
pub mod server;

pub use admin::{AdminReply, SandboxAdmin};
pub use server::{bind_local, BackgroundServer};
