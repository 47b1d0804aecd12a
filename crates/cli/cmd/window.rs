//! `herald inbound record` and `herald window show`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum InboundCommand {
    /// Record a customer's inbound message.
    Record,
}

#[derive(Debug, clap::Subcommand)]
pub enum WindowCommand {
    /// Show whether the window to a contact is open.
    Show,
}

pub async fn run_inbound(
    _command: InboundCommand,
    _config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    super::not_built("inbound")
}

pub async fn run_window(
    _command: WindowCommand,
    _config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    super::not_built("window")
}
