//! An axum router served on 127.0.0.1 by a background task, with a graceful
//! stop: [`BackgroundServer::stop`] waits for the task, dropping the server
//! signals it to stop without waiting.
//!
//! Every sandbox served here also counts the API requests it answered by
//! method (`GET /_sandbox/request-counts` → `{"by_method": {…}, "mutating": n}`,
//! admin paths excluded), so a test in another process can check that a dry
//! run, a reconcile or a rerun sent no mutating request.

use std::future::Future;
use std::net::SocketAddr;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Binds 127.0.0.1:`port` (0 picks a free port). Bind first, then build the
/// state that needs the address (base URLs, upload links), then [`BackgroundServer::spawn`].
pub async fn bind_local(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await
}

/// A router being served; stops on [`BackgroundServer::stop`] or drop.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serves `app` on `listener` until stopped.
    pub fn spawn(listener: TcpListener, app: Router) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let app = count_requests(app);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(BackgroundServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        self.signal_stop();
        self.join().await;
    }

    /// Serves until `signal` completes (Ctrl-C handling is the caller's), then stops.
    pub async fn serve_until(mut self, signal: impl Future<Output = ()>) {
        signal.await;
        self.signal_stop();
        self.join().await;
    }

    /// Serves until the server task ends on its own (in practice: the process is interrupted).
    pub async fn wait(mut self) {
        self.join().await;
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn join(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Adds the per-method request counter and its `/_sandbox/request-counts` route.
fn count_requests(app: Router) -> Router {
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let counter = counts.clone();
    let reader = counts.clone();
    app.layer(middleware::from_fn(move |request: Request, next: Next| {
        let counter = counter.clone();
        async move {
            if !request.uri().path().starts_with("/_sandbox") {
                *counter
                    .lock()
                    .expect("request counter")
                    .entry(request.method().to_string())
                    .or_default() += 1;
            }
            // Carried out to the end even when the client goes away mid-request (a
            // killed process): a real server does not undo what it received, so a
            // request counted here always takes effect.
            match tokio::spawn(next.run(request)).await {
                Ok(response) => response,
                Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    }))
    .route(
        "/_sandbox/request-counts",
        get(move || {
            let reader = reader.clone();
            async move {
                let by_method = reader.lock().expect("request counter").clone();
                let mutating: u64 = by_method
                    .iter()
                    .filter(|(method, _)| !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS"))
                    .map(|(_, n)| n)
                    .sum();
                Json::<Value>(json!({ "by_method": by_method, "mutating": mutating }))
            }
        }),
    )
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Duration;

    fn hello() -> Router {
        Router::new().route("/hello", get(|| async { "hi" }))
    }

    async fn answers(url: &str) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        matches!(client.get(url).send().await, Ok(r) if r.status() == 200)
    }

    #[tokio::test]
    async fn serves_on_loopback_until_stopped() {
        let server = BackgroundServer::spawn(bind_local(0).await.unwrap(), hello()).unwrap();
        assert!(server.addr().ip().is_loopback());
        let url = format!("{}/hello", server.base_url());
        assert_eq!(
            reqwest::get(&url).await.unwrap().text().await.unwrap(),
            "hi"
        );
        let client = reqwest::Client::new();
        client.post(&url).send().await.unwrap();
        let counts: Value = reqwest::get(format!("{}/_sandbox/request-counts", server.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(counts["by_method"]["GET"], 1);
        assert_eq!(
            counts["by_method"]["POST"], 1,
            "a refused POST still counts as sent"
        );
        assert_eq!(counts["mutating"], 1);
        server.stop().await;
        assert!(!answers(&url).await, "still answering after stop");
    }

    #[tokio::test]
    async fn serve_until_stops_when_the_signal_fires() {
        let server = BackgroundServer::spawn(bind_local(0).await.unwrap(), hello()).unwrap();
        let url = format!("{}/hello", server.base_url());
        let (fire, fired) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_until(async {
            let _ = fired.await;
        }));
        assert!(answers(&url).await);
        fire.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("serve_until returns once signalled")
            .unwrap();
        assert!(!answers(&url).await);
    }

    #[tokio::test]
    async fn dropping_the_server_stops_it() {
        let server = BackgroundServer::spawn(bind_local(0).await.unwrap(), hello()).unwrap();
        let url = format!("{}/hello", server.base_url());
        drop(server);
        let mut stopped = false;
        for _ in 0..50 {
            if !answers(&url).await {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "still answering after drop");
    }
}
