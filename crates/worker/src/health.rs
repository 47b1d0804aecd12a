//! The worker's HTTP listener: `/healthz` (the process runs), `/readyz`
//! (broker connected and Redis answering, naming exactly what is not),
//! `/metrics` (Prometheus text).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::OnceCell;

use herald_store::Store;

use crate::metrics;

/// Longest a readiness check or a scrape waits for Redis's answer.
const REDIS_CHECK: Duration = Duration::from_secs(1);

/// What readiness is made of; the supervisor updates it.
#[derive(Default)]
pub struct Readiness {
    broker: Mutex<Broker>,
    store: OnceCell<Store>,
}

/// The broker as the supervisor last saw it.
#[derive(Default, Clone)]
enum Broker {
    /// Not tried yet: the worker connects to the broker once Redis answers.
    #[default]
    NotTried,
    Connected,
    /// The last session ended, and why.
    Lost(String),
}

impl Readiness {
    pub fn set_broker(&self, connected: bool) {
        let state = if connected {
            Broker::Connected
        } else {
            Broker::Lost("connection closed".to_owned())
        };
        self.set(state);
    }

    /// The broker session ended with `error`; the supervisor reconnects.
    pub fn broker_lost(&self, error: &anyhow::Error) {
        self.set(Broker::Lost(format!("{error:#}")));
    }

    fn set(&self, state: Broker) {
        metrics::broker_connected(matches!(state, Broker::Connected));
        *self.broker.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    pub fn set_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// `Ok` when ready, else each thing that is not, by name.
    pub async fn check(&self) -> Result<(), String> {
        let broker = self
            .broker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let missing: Vec<String> = [self.redis().await.err(), broker_problem(&broker)]
            .into_iter()
            .flatten()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }

    /// Asks Redis, and keeps [`metrics::REDIS_UP`] true to the answer.
    pub async fn redis(&self) -> Result<(), String> {
        let answer = match self.store.get() {
            None => Err(
                "Redis: not connected yet (the worker waits for it before consuming)".to_owned(),
            ),
            Some(store) => match tokio::time::timeout(REDIS_CHECK, store.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("Redis: {e}")),
                Err(_) => Err(format!(
                    "Redis: no answer within {}s",
                    REDIS_CHECK.as_secs()
                )),
            },
        };
        metrics::redis_up(answer.is_ok());
        answer
    }
}

/// What is wrong with the broker, if anything. Before the first attempt
/// nothing is: the worker is waiting for Redis, which names itself.
fn broker_problem(broker: &Broker) -> Option<String> {
    match broker {
        Broker::NotTried | Broker::Connected => None,
        Broker::Lost(why) => Some(format!("broker not connected: {why}")),
    }
}

pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
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

/// Redis is asked at each scrape, so `herald_redis_up` is as fresh as the
/// scrape interval even while no job touches Redis.
async fn scrape(State(readiness): State<Arc<Readiness>>) -> String {
    let _ = readiness.redis().await;
    metrics::handle().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_what_is_down_is_named() {
        let readiness = Readiness::default();
        let before = readiness.check().await.unwrap_err();
        assert!(before.starts_with("Redis: not connected"), "{before}");
        assert!(!before.contains("broker"), "{before}");

        readiness.set_broker(true);
        let redis_only = readiness.check().await.unwrap_err();
        assert!(!redis_only.contains("broker"), "{redis_only}");

        readiness.broker_lost(&anyhow::anyhow!("connection reset"));
        let both = readiness.check().await.unwrap_err();
        assert!(
            both.contains("broker not connected: connection reset"),
            "{both}"
        );
    }
}
