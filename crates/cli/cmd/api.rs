//! `herald api`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::info;

/// Serve the HTTP API until SIGTERM or SIGINT, then let requests in
/// progress finish.
#[derive(Debug, clap::Args)]
#[command(after_help = r#"Endpoints:
  POST /v1/messages
      a job, or {"jobs":[…]}; 202 {"ids":[…]} only once the broker confirmed
      every job; 400 naming every problem by job index and field
  POST /v1/inbound
      {"provider","account"?,"contact","at"?}: a customer's inbound message
  GET  /v1/window/<provider>/<account>/<contact>
      {"open","last_inbound","closes_at"}
  POST /webhooks/<provider>/<account>
      the vendor's own inbound-message callback (Meta-style, 99digital, Kaleyra)
  GET  /webhooks/meta/<account>
      Meta's subscription handshake: hub.challenge back to the verify token
  GET  /healthz, /metrics

Authentication:
  /v1/* needs `Authorization: Bearer <token>`, the token named by api.token_env
  or api.token_file (the API does not start without one). A webhook carries its
  account's secret (webhook_secret_env or webhook_secret_file in
  [providers.<provider>.<account>]) as header X-Herald-Webhook-Secret or query
  ?secret=; an account without one refuses webhooks. Meta's callbacks instead
  carry X-Hub-Signature-256, checked against the raw body with the account's
  app_secret_env / app_secret_file; its handshake needs verify_token_env /
  verify_token_file.

Examples:
  HERALD_API_TOKEN=s3cret herald --config herald.toml api --listen 127.0.0.1:8080

  curl -H 'Authorization: Bearer s3cret' localhost:8080/v1/messages -d '{
    "id": "order-1234-shipped", "provider": "kaleyra", "to": "+254712345678",
    "message": {"type": "text", "body": "Your order has shipped"}}'

  curl -H 'Authorization: Bearer s3cret' localhost:8080/v1/inbound \
    -d '{"provider": "kaleyra", "contact": "+254712345678"}'

  curl -H 'Authorization: Bearer s3cret' \
    localhost:8080/v1/window/kaleyra/default/254712345678

  curl 'localhost:8080/webhooks/99digital/default?secret=hook-s3cret' -d '{"hook":
    "new", "unique": "92E0", "from": "972507654321", "timestamp": "1600517209"}'"#)]
pub struct Args {
    /// Listen address (overrides api.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut config = super::load_config(config)?;
    if let Some(listen) = args.listen {
        config.api.listen = listen;
    }
    let listen = config.api.listen;
    let api = herald_api::Api::start(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (configuration key api.listen)"))?;
    info!(%listen, "herald api listening");
    let shutdown = super::shutdown_on_signals()?;
    herald_api::serve(api, listener, shutdown.cancelled_owned()).await?;
    info!("herald api stopped");
    Ok(ExitCode::SUCCESS)
}
