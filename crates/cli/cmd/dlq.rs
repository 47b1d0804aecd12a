//! `herald dlq`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Counts by provider and by reason.
    Stats,
}

pub async fn run(_command: Command, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::not_built("dlq")
}
