//! A stateful HighLevel emulator on 127.0.0.1 (axum): the endpoints the
//! client uses, with HighLevel's ids, response envelopes, duplicate-contact
//! rule and its 400 body, 422 message arrays for unknown properties, the
//! rolling 100 / 10 s and daily windows with 429 and `X-RateLimit-*`
//! headers, and its error shapes. Outside the emulated API, `/_sandbox/*`
//! reads all state and sets faults (5xx rate, latency, dropped connections,
//! forced 429s, silently dropped fields).
//!
//! It serves the tests, `cutover sandbox highlevel`, `--dest sandbox:highlevel`
//! and rehearsals. It is not a spec mock: the contract tests use Prism for that.

mod admin;
mod api;
pub mod faults;
mod limits;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;

use crate::sandbox_common::{bind_local, BackgroundServer};

pub use faults::Faults;
pub use store::Store;

/// How a sandbox starts.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub location_id: String,
    /// The bearer token it accepts; `None` accepts any non-empty token.
    pub token: Option<String>,
    pub allow_duplicate_contact: bool,
    pub requests_per_window: u32,
    pub window: Duration,
    pub daily_limit: u64,
    /// Seeds the "Perio Treatment" pipeline and a calendar, as a configured practice has them.
    pub seed_practice: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            location_id: "sandboxLocation0001".into(),
            token: None,
            allow_duplicate_contact: false,
            requests_per_window: 100,
            window: Duration::from_secs(10),
            daily_limit: 200_000,
            seed_practice: true,
        }
    }
}

/// Shared state of a running sandbox.
#[derive(Debug)]
pub struct Shared {
    pub config: SandboxConfig,
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub limits: Mutex<limits::Windows>,
    pub base_url: Mutex<String>,
}

/// A running sandbox; dropping it stops it.
#[derive(Debug)]
pub struct SandboxHandle {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    server: BackgroundServer,
}

impl SandboxHandle {
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(self) {
        self.server.stop().await
    }

    /// Waits until the server ends (Ctrl-C handling is the caller's).
    pub async fn serve_until(self, signal: impl std::future::Future<Output = ()>) {
        self.server.serve_until(signal).await
    }
}

/// The router (API + admin) over shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    api::routes(shared.clone()).merge(admin::routes(shared))
}

/// Binds 127.0.0.1:`port` (0 picks a free port) and serves in the background.
pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<SandboxHandle> {
    let listener = bind_local(port).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        store: Mutex::new(Store::new(&config)),
        faults: Mutex::new(Faults::default()),
        limits: Mutex::new(limits::Windows::default()),
        base_url: Mutex::new(format!("http://{addr}")),
        config,
    });
    let server = BackgroundServer::spawn(listener, router(shared.clone()))?;
    Ok(SandboxHandle {
        addr,
        shared,
        server,
    })
}

/// Starts a sandbox on a free port and returns it with a client configuration
/// pointing at it: what `--dest sandbox:highlevel` uses (engine, demo, preflight).
pub async fn in_process(
    config: SandboxConfig,
) -> std::io::Result<(SandboxHandle, crate::highlevel::HighLevelConfig)> {
    let location = config.location_id.clone();
    let token = config
        .token
        .clone()
        .unwrap_or_else(|| "sandbox-token".to_string());
    let handle = start(config, 0).await?;
    let mut client = crate::highlevel::HighLevelConfig::new(
        handle.base_url(),
        location,
        crate::highlevel::Token::new(token),
    );
    client.calendar_id = handle
        .shared
        .store
        .lock()
        .expect("store lock")
        .calendars
        .first()
        .and_then(|c| c["id"].as_str())
        .map(str::to_string);
    Ok((handle, client))
}
