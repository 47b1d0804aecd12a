//! `herald api`: the HTTP API of CONTRACT §7. Producers publish send jobs
//! (validated, then confirmed by the broker before the answer), services
//! and vendors' webhooks record customers' inbound messages (the 24-hour
//! window), and anyone with the token can ask whether a window is open.
//!
//! Owns: the HTTP surface — routes, authentication (bearer token for
//! `/v1/*`, per-account secret for webhooks, Meta's signature and
//! subscription handshake), request validation, the
//! vendors' inbound callback formats, and how long a webhook is remembered.
//! Must not touch: what a job is (herald-core), how it is published
//! (herald-client) or how the window and webhook de-duplication are stored
//! (herald-store); nor sending.

mod auth;
mod broker;
mod error;
pub mod hooks;
mod inbound;
mod messages;
mod metrics;
pub mod openapi;
mod webhook;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use herald_client::{Topology, redact_url};
use herald_core::{Config, Secret};
use herald_store::Store;

pub use auth::WebhookSecrets;
pub use auth::secrets as check_secrets;
use broker::Broker;
use error::ApiError;

/// Largest request body accepted; larger ones are answered `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The running API's state: configuration, secrets, and its connections to
/// the broker and Redis. Cheap to clone.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    config: Config,
    token: Secret,
    webhook_secrets: WebhookSecrets,
    broker: Broker,
    store: Store,
}

impl Api {
    /// Reads the secrets (a missing one stops the start, naming its key),
    /// connects to the broker (declaring the topology) and to Redis.
    pub async fn start(config: Config) -> anyhow::Result<Api> {
        let (token, webhook_secrets) = check_secrets(&config)?;
        // Installed before anything counts, so no count is lost.
        metrics::install(&config);
        let broker = Broker::connect(&config.amqp.url, Topology::from_config(&config))
            .await
            .with_context(|| {
                format!(
                    "cannot reach the broker at {} (configuration key amqp.url)",
                    redact_url(&config.amqp.url)
                )
            })?;
        let store = Store::connect(&config.redis.url, &config.redis.prefix)
            .await
            .context("cannot reach Redis (configuration key redis.url)")?;
        Ok(Api(Arc::new(Inner {
            config,
            token,
            webhook_secrets,
            broker,
            store,
        })))
    }

    /// Every route of CONTRACT §7.
    pub fn router(&self) -> Router {
        let authenticated = Router::new()
            .route("/v1/messages", post(messages::post))
            .route("/v1/inbound", post(inbound::post))
            .route(
                "/v1/window/{provider}/{account}/{contact}",
                get(inbound::window),
            )
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                auth::require_bearer,
            ));
        Router::new()
            .merge(authenticated)
            .route(
                "/webhooks/{provider}/{account}",
                get(webhook::verify).post(webhook::post),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(|| async { metrics::handle().render() }))
            .route("/openapi.json", get(openapi::serve))
            .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn(metrics::track))
            .with_state(self.clone())
    }

    /// Closes the broker connection cleanly.
    pub async fn close(&self) {
        self.0.broker.close().await;
    }

    fn config(&self) -> &Config {
        &self.0.config
    }
    fn token(&self) -> &Secret {
        &self.0.token
    }
    fn webhook_secrets(&self) -> &WebhookSecrets {
        &self.0.webhook_secrets
    }
    fn broker(&self) -> &Broker {
        &self.0.broker
    }
    fn store(&self) -> &Store {
        &self.0.store
    }
}

/// Serves `api` on `listener` until `shutdown` completes, then lets the
/// requests in progress finish and closes the broker connection.
pub async fn serve(
    api: Api,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = axum::serve(listener, api.router())
        .with_graceful_shutdown(shutdown)
        .await;
    api.close().await;
    served
}
