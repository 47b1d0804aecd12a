//! `herald worker`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// Consume every configured provider's queue and send the jobs.
///
/// Each job runs through: validate → schedule/expiry → idempotency →
/// 24-hour window → rate limit → vendor call → classify, and ends sent,
/// in a delay queue for a retry, or in the dead-letter queue with a reason.
/// SIGTERM or SIGINT stops consuming and lets in-flight jobs finish within
/// `worker.shutdown_grace`; a second signal exits at once (unfinished jobs
/// stay unacked and are redelivered).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  herald --config herald.toml worker\n  HERALD_AMQP_PREFETCH=64 herald worker --listen 127.0.0.1:9091"
)]
pub struct Args {
    /// Listen address for /healthz, /readyz and /metrics (overrides http.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut config = super::load_config(config)?;
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    let shutdown = super::shutdown_on_signals()?;
    herald_worker::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
