//! `herald worker`: consumes the provider queues and runs each job through
//! the send pipeline, then makes the outcome durable before acking.
//!
//! Owns: the pipeline's order ([`pipeline`]), its pure decisions
//! ([`steps`], [`outcome`]), turning a decision into confirmed publishes
//! ([`settle`]), the consumer lifecycle with reconnects and graceful
//! shutdown ([`supervisor`]), and the health/metrics listener ([`health`]).
//! Must not touch: vendor wire formats (herald-vendors), Redis key layout
//! (herald-store) or the topology's shape (herald-client).

pub mod accounts;
pub mod health;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod settle;
pub mod steps;
pub mod supervisor;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use herald_core::Config;
use herald_vendors::Vendors;

/// Runs a worker until `shutdown` is cancelled; returns after in-flight jobs
/// finished or the grace period passed.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything counts, so no count is lost.
    metrics::install(&config);
    let vendors = Vendors::from_config(&config).context("invalid configuration")?;
    anyhow::ensure!(
        !config.providers.is_empty(),
        "no providers configured: add a [providers.<provider>.<account>] table"
    );
    let config = Arc::new(config);
    let readiness = Arc::new(health::Readiness::default());
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    info!(listen = %listener.local_addr()?, "health, readiness and metrics");
    let server = axum::serve(listener, health::router(readiness.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(server.into_future());

    if let Some(store) = supervisor::connect_store(&config, &shutdown).await {
        readiness.set_store(store.clone());
        let pipeline = Arc::new(pipeline::Pipeline::new(config.clone(), vendors, store));
        supervisor::consume_until_shutdown(&config, pipeline, &readiness, &shutdown).await;
    }
    server
        .await
        .context("health listener")?
        .context("health listener")?;
    info!("worker stopped");
    Ok(())
}
