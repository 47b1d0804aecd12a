//! `herald bench`: Herald's own parts measured, with printed figures (not
//! pass/fail). Machines differ and are noisy: compare the ratios printed
//! within one run.

use std::path::Path;
use std::process::ExitCode;

mod limiter;
mod pipeline;
mod webhooks;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The rate limiter's overhead and accuracy.
    Limiter(limiter::LimiterArgs),
    /// End-to-end throughput and memory of publish → worker → vendor.
    Pipeline(pipeline::PipelineArgs),
    /// The webhook handler's latency under a steady rate of status callbacks.
    #[command(
        after_help = "Examples:\n  herald api --listen 127.0.0.1:8080\n  herald bench webhooks --url http://127.0.0.1:8080 --secret-env HOOK_SECRET --rate 50 --count 100"
    )]
    Webhooks(webhooks::WebhooksArgs),
    /// One process of a multi-process limiter run (started by `bench limiter`).
    #[command(hide = true)]
    LimiterProcess(limiter::ProcessArgs),
    /// The hand-written worker `bench pipeline` compares Herald with (started by it).
    #[command(hide = true)]
    PipelineHandwritten,
}

pub async fn run(command: Command, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Limiter(args) => limiter::limiter(args, config).await,
        Command::Pipeline(args) => pipeline::pipeline(args, config).await,
        Command::Webhooks(args) => webhooks::webhooks(args, config).await,
        Command::LimiterProcess(args) => limiter::limiter_process(args).await,
        Command::PipelineHandwritten => pipeline::handwritten(config).await,
    }
}
