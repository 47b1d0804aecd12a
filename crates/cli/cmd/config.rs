//! `herald config check`: the configuration and every secret it names,
//! checked the way `herald worker` and `herald api` check them at start,
//! without connecting to anything.

use std::path::Path;
use std::process::ExitCode;

use herald_core::{Config, ConfigError, ConfigErrors};
use serde_json::json;

use super::{Exit, OrExit};

const CHECK_HELP: &str = "\
Examples:
  herald --config herald.toml config check
  HERALD_AMQP_PREFETCH=64 herald --config herald.toml config check --json

Reads the file (--config or HERALD_CONFIG) and the HERALD_* overrides, builds
every provider account (vendor keys, secrets from *_env / *_file) and reads
the API's token and webhook secrets, then names every problem at once. Exit
status 0 when all is well, 2 when anything is wrong.";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration file and environment; start nothing.
    #[command(after_help = CHECK_HELP)]
    Check {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Command::Check { json } = command;
    let problems = match Config::load(path) {
        Ok(config) => problems(&config),
        Err(errors) => errors.problems,
    };
    if json {
        let problems: Vec<_> = problems
            .iter()
            .map(|p| json!({"key": p.key, "problem": p.problem}))
            .collect();
        println!(
            "{}",
            json!({"ok": problems.is_empty(), "problems": problems})
        );
    } else if problems.is_empty() {
        println!("configuration OK");
    }
    if problems.is_empty() {
        return Ok(Exit::Ok.code());
    }
    ConfigErrors::check(problems, ExitCode::SUCCESS)
        .or_exit(Exit::Rejected, || "invalid configuration".into())
}

/// What `herald worker` (vendor accounts) and `herald api` (its token,
/// webhook secrets) would refuse to start with. Without `api.token_env` or
/// `api.token_file` the API is taken as not run from this configuration.
fn problems(config: &Config) -> Vec<ConfigError> {
    let vendors = herald_vendors::Vendors::from_config(config).err();
    let api = if config.api.token_env.is_none() && config.api.token_file.is_none() {
        herald_api::WebhookSecrets::from_config(config).err()
    } else {
        herald_api::check_secrets(config).err()
    };
    vendors
        .into_iter()
        .chain(api)
        .flat_map(|errors| errors.problems)
        .collect()
}
