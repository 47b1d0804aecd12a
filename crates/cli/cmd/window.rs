//! `herald inbound record` and `herald window show`: the 24-hour window
//! from the command line, on the same Redis keys the worker reads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_core::Config;
use herald_core::protocol::rfc3339;
use herald_store::{Contact, Store, WindowState};

use super::{Exit, OrExit};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum InboundCommand {
    /// Record a customer's inbound message: opens or refreshes the window.
    /// A message older than the one already recorded changes nothing.
    #[command(after_help = "Examples:
  herald inbound record --provider kaleyra --contact +254712345678
  herald inbound record --provider kaleyra --contact +254712345678 --at 2026-11-21T10:00:00Z --json")]
    Record(RecordArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum WindowCommand {
    /// Show whether the window to a contact is open.
    #[command(after_help = "Examples:
  herald window show --provider kaleyra --contact +254712345678
  herald window show --provider kaleyra --account default --contact 254712345678 --json")]
    Show(ShowArgs),
}

/// Whose window: a contact of one configured provider account.
#[derive(Debug, clap::Args)]
pub struct ContactArgs {
    /// The provider, e.g. kaleyra.
    #[arg(long)]
    provider: String,
    /// The provider account.
    #[arg(long, default_value = "default")]
    account: String,
    /// The customer, in E.164 (`+` then 8–15 digits); the `+` may be left out.
    #[arg(long, value_parser = e164)]
    contact: String,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    who: ContactArgs,
    /// When the customer's message was sent (RFC 3339), e.g. the vendor's
    /// timestamp; default now.
    #[arg(long, value_parser = rfc3339_instant)]
    at: Option<DateTime<Utc>>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    who: ContactArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The contact as E.164, given with or without its `+` (like the API's path).
fn e164(value: &str) -> Result<String, String> {
    let number = herald_core::job::with_plus(value);
    if herald_core::job::is_e164(&number) {
        Ok(number)
    } else {
        Err(format!("{value:?} is not E.164 (`+` then 8–15 digits)"))
    }
}

fn rfc3339_instant(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{value:?} is not an RFC 3339 time like 2026-11-21T10:00:00Z ({e})"))
}

pub async fn run_inbound(
    command: InboundCommand,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let InboundCommand::Record(args) = command;
    let config = super::load_config(config)?;
    let contact = configured_contact(&config, &args.who)?;
    let store = connect(&config).await?;
    let at = args.at.unwrap_or_else(Utc::now);
    let stored = store
        .record_inbound(&contact, at.timestamp_millis(), &config.window)
        .await
        .context("could not record the inbound message")?;
    let state = WindowState::at(Some(stored), Utc::now(), &config.window);
    if args.json {
        let mut report = window_json(&args.who, &state);
        report["recorded"] = json!(rfc3339(at));
        println!("{report}");
    } else {
        println!(
            "recorded an inbound message from {} ({}/{}) at {}",
            args.who.contact,
            args.who.provider,
            args.who.account,
            rfc3339(at)
        );
        if stored > at.timestamp_millis() {
            println!("a later inbound message was already recorded; it stays");
        }
        print_window(&args.who, &state);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_window(command: WindowCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let WindowCommand::Show(args) = command;
    let config = super::load_config(config)?;
    let contact = configured_contact(&config, &args.who)?;
    let store = connect(&config).await?;
    let last = store
        .last_inbound(&contact)
        .await
        .context("could not read the last inbound message")?;
    let state = WindowState::at(last, Utc::now(), &config.window);
    if args.json {
        println!("{}", window_json(&args.who, &state));
    } else {
        print_window(&args.who, &state);
    }
    Ok(ExitCode::SUCCESS)
}

/// The contact, once its account is known to be configured: a window kept
/// for an account that does not exist is a typo nobody would notice.
fn configured_contact(config: &Config, who: &ContactArgs) -> anyhow::Result<Contact> {
    if config.account(&who.provider, &who.account).is_none() {
        return Err(super::fail(
            Exit::Rejected,
            format!(
                "no account `{}` of provider `{}` in the configuration (expected [providers.{}.{}])",
                who.account, who.provider, who.provider, who.account
            ),
        ));
    }
    Ok(Contact {
        provider: who.provider.clone(),
        account: who.account.clone(),
        digits: who.contact.trim_start_matches('+').to_owned(),
    })
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.redis.url, &config.redis.prefix)
        .await
        .or_exit(Exit::Unavailable, || {
            "cannot reach Redis (configuration key redis.url)".into()
        })
}

/// The shape of `GET /v1/window/…`, plus whose window it is.
fn window_json(who: &ContactArgs, state: &WindowState) -> serde_json::Value {
    json!({
        "provider": who.provider,
        "account": who.account,
        "contact": who.contact,
        "open": state.open,
        "last_inbound": state.last_inbound.map(rfc3339),
        "closes_at": state.closes_at.map(rfc3339),
    })
}

fn print_window(who: &ContactArgs, state: &WindowState) {
    let status = if state.open { "open" } else { "closed" };
    println!(
        "window to {} ({}/{}): {status}",
        who.contact, who.provider, who.account
    );
    match (state.last_inbound, state.closes_at) {
        (Some(last), Some(closes)) => {
            println!("  last inbound: {}", rfc3339(last));
            let verb = if state.open { "closes at" } else { "closed at" };
            println!("  {verb}:    {}", rfc3339(closes));
        }
        _ => println!("  no inbound message recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(provider: &str, account: &str) -> ContactArgs {
        ContactArgs {
            provider: provider.into(),
            account: account.into(),
            contact: "+254712345678".into(),
        }
    }

    fn config_with_kaleyra_default() -> Config {
        let toml = "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n";
        Config::from_toml_with_env(toml, &[]).expect("valid configuration")
    }

    #[test]
    fn a_contact_must_be_e164() {
        assert_eq!(e164("+254712345678").as_deref(), Ok("+254712345678"));
        assert_eq!(
            e164("254712345678").as_deref(),
            Ok("+254712345678"),
            "the + may be left out, as in the API's path"
        );
        for bad in ["2547", "+2547", "+25471234567a", "", "++254712345678"] {
            let problem = e164(bad).unwrap_err();
            assert!(problem.contains("not E.164"), "{bad}: {problem}");
        }
    }

    #[test]
    fn at_takes_any_rfc3339_offset_and_names_a_bad_time() {
        let at = rfc3339_instant("2026-11-21T12:00:00+02:00").unwrap();
        assert_eq!(rfc3339(at), "2026-11-21T10:00:00.000Z");
        assert!(
            rfc3339_instant("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn the_contact_key_uses_digits_of_a_configured_account() {
        let contact =
            configured_contact(&config_with_kaleyra_default(), &who("kaleyra", "default")).unwrap();
        assert_eq!(
            contact,
            Contact {
                provider: "kaleyra".into(),
                account: "default".into(),
                digits: "254712345678".into(),
            }
        );
    }

    #[test]
    fn an_unconfigured_account_is_refused_by_name() {
        let error = configured_contact(&config_with_kaleyra_default(), &who("kaleyra", "typo"))
            .unwrap_err();
        assert!(
            error.to_string().contains("[providers.kaleyra.typo]"),
            "{error}"
        );
    }
}
