//! What the CRM emulators (`highlevel::sandbox`, `twenty::sandbox`) share:
//! serving an axum router on 127.0.0.1 in the background and stopping it
//! ([`server`]).
//!
//! Their admin endpoints (`/_sandbox/records`, `/_sandbox/faults`) only look
//! alike: each fault plan models its own API's failures (HighLevel: random 5xx
//! and dropped connections, faults after commit, silently dropped fields;
//! Twenty: seeded, counter-driven failures before or after a write and its
//! token-bucket throttler) and answers in its API's error shape, so they stay
//! with their emulator.

pub mod server;

pub use server::{bind_local, BackgroundServer};
