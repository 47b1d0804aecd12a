//! `herald suppress add|remove|list`: opt-outs (CONTRACT §11) from the
//! command line, on the same Redis keys the worker's admission reads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::DateTime;
use herald_core::protocol::rfc3339;
use serde_json::json;

use super::window::{ContactArgs, configured_contact, connect};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Suppress a contact: its jobs are dead-lettered as `suppressed`
    /// without a vendor call.
    #[command(
        after_help = "Example:\n  herald suppress add --provider kaleyra --account default --contact +254700000001"
    )]
    Add(ContactArgs),
    /// Release a suppressed contact (exit code 3 when it was not suppressed).
    #[command(
        after_help = "Example:\n  herald suppress remove --provider kaleyra --account default --contact +254700000001"
    )]
    Remove(ContactArgs),
    /// List the suppressed contacts of one account.
    #[command(after_help = "Example:\n  herald suppress list --provider kaleyra --json")]
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The provider, as in `[providers.<provider>.<account>]`.
    #[arg(long)]
    provider: String,
    /// The account of that provider.
    #[arg(long, default_value = "default")]
    account: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: Command, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    match command {
        Command::Add(who) => {
            let contact = configured_contact(&config, &who)?;
            let store = connect(&config).await?;
            store
                .suppress(&contact)
                .await
                .context("could not suppress the contact")?;
            println!(
                "suppressed {} on {}/{}",
                who.contact, who.provider, who.account
            );
        }
        Command::Remove(who) => {
            let contact = configured_contact(&config, &who)?;
            let store = connect(&config).await?;
            let released = store
                .release_suppression(&contact)
                .await
                .context("could not release the contact")?;
            if !released {
                eprintln!(
                    "herald: {} is not suppressed on {}/{}",
                    who.contact, who.provider, who.account
                );
                return Ok(ExitCode::from(super::status::NOT_FOUND));
            }
            println!(
                "released {} on {}/{}",
                who.contact, who.provider, who.account
            );
        }
        Command::List(args) => {
            if config.account(&args.provider, &args.account).is_none() {
                bail!(
                    "no account `{}` of provider `{}` in the configuration",
                    args.account,
                    args.provider
                );
            }
            let store = connect(&config).await?;
            let suppressed = store
                .suppressed(&args.provider, &args.account)
                .await
                .context("could not list the suppressed contacts")?;
            for (digits, since) in suppressed {
                let since = DateTime::from_timestamp_millis(since).map(rfc3339);
                if args.json {
                    println!(
                        "{}",
                        json!({"contact": format!("+{digits}"), "since": since})
                    );
                } else {
                    println!("+{digits}\t{}", since.unwrap_or_default());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
