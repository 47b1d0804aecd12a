//! `herald bench`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The rate limiter's overhead and accuracy.
    Limiter,
}

pub async fn run(_command: Command, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::not_built("bench")
}
