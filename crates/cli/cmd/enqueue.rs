//! `herald enqueue`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::not_built("enqueue")
}
