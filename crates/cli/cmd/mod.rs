//! One module per subcommand.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use herald_core::Config;

pub mod api;
pub mod bench;
pub mod dlq;
pub mod enqueue;
pub mod mock_vendor;
pub mod topology;
pub mod window;
pub mod worker;

/// Loads the configuration; a bad one stops the command naming the key.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).context("invalid configuration")
}

pub fn print_schema() -> anyhow::Result<ExitCode> {
    let schema = herald_core::job::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
