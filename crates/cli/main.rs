//! `herald`: the one binary. Each subcommand is a thin module in `cmd/` that
//! parses its flags and calls into the library crates; no business logic
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

/// Herald: a durable, queue-based WhatsApp send worker.
///
/// Producers publish send jobs to RabbitMQ (`herald enqueue`, the HTTP API or
/// any AMQP client); `herald worker` replicas send them through the vendors
/// with rate limits, the 24-hour window rule, retries and dead-lettering;
/// `herald dlq` inspects and replays what died.
#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden from the
    /// environment, e.g. HERALD_AMQP_URL, HERALD_RETRY_MAX_ATTEMPTS.
    #[arg(long, global = true, env = "HERALD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the provider queues and send jobs through the vendors.
    Worker(cmd::worker::Args),
    /// Serve the HTTP API (publish jobs, record inbound messages, webhooks).
    Api(cmd::api::Args),
    /// Declare or inspect the broker topology (exchanges, queues, delay tiers).
    #[command(subcommand)]
    Topology(cmd::topology::Command),
    /// Publish send jobs: one from flags, or many from JSON lines or CSV.
    Enqueue(cmd::enqueue::Args),
    /// Record a customer's inbound message (opens the 24-hour window).
    #[command(subcommand)]
    Inbound(cmd::window::InboundCommand),
    /// Show whether the 24-hour window to a contact is open.
    #[command(subcommand)]
    Window(cmd::window::WindowCommand),
    /// What happened to one message: state, attempts, fallback, timeline
    /// (exit code 3 for a message Herald does not know).
    Status(cmd::status::Args),
    /// Suppress, release and list opted-out contacts.
    #[command(subcommand)]
    Suppress(cmd::suppress::Command),
    /// Inspect, replay, purge, export and import dead letters.
    #[command(subcommand)]
    Dlq(cmd::dlq::Command),
    /// Serve all five vendors' send APIs on localhost, with fault injection.
    MockVendor(cmd::mock_vendor::Args),
    /// Measure Herald's own parts (printed figures, not pass/fail).
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Print the JSON Schema of a send job, for producers in other languages.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Worker(args) => cmd::worker::run(args, config).await,
            Command::Api(args) => cmd::api::run(args, config).await,
            Command::Topology(command) => cmd::topology::run(command, config).await,
            Command::Enqueue(args) => cmd::enqueue::run(args, config).await,
            Command::Inbound(command) => cmd::window::run_inbound(command, config).await,
            Command::Window(command) => cmd::window::run_window(command, config).await,
            Command::Status(args) => cmd::status::run(args, config).await,
            Command::Suppress(command) => cmd::suppress::run(command, config).await,
            Command::Dlq(command) => cmd::dlq::run(command, config).await,
            Command::MockVendor(args) => cmd::mock_vendor::run(args).await,
            Command::Bench(command) => cmd::bench::run(command, config).await,
            Command::Schema => cmd::print_schema(),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}
