//! `herald topology declare|status`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Declare every exchange and queue of the contract (idempotent).
    Declare,
    /// Print depth and consumers per queue.
    Status,
}

pub async fn run(_command: Command, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::not_built("topology")
}
