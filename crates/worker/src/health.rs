//! The worker's HTTP listener: `/healthz` (the process runs), `/readyz`
//! (broker connected and Redis answering), `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::OnceCell;

use herald_store::Store;

/// What readiness is made of; the supervisor updates it.
#[derive(Default)]
pub struct Readiness {
    broker_connected: AtomicBool,
    store: OnceCell<Store>,
}

impl Readiness {
    pub fn set_broker(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::SeqCst);
    }

    pub fn set_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// `Ok` when ready, else what is missing.
    pub async fn check(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        if !self.broker_connected.load(Ordering::SeqCst) {
            missing.push("broker not connected".to_owned());
        }
        match self.store.get() {
            None => missing.push("Redis not connected".to_owned()),
            Some(store) => match tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => missing.push(format!("Redis: {e}")),
                Err(_) => missing.push("Redis: no answer within 1s".to_owned()),
            },
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}

pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|| async { crate::metrics::handle().render() }),
        )
        .with_state(readiness)
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> (StatusCode, String) {
    match readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {missing}\n"),
        ),
    }
}
