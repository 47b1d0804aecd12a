//! `herald topology declare|status`: the broker topology of CONTRACT §2,
//! derived from the configuration (`herald_client::Topology`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use herald_client::{QueueStatus, Topology, redact_url};

use super::Exit;
use herald_core::protocol::{DEAD_EXCHANGE, DELAY_EXCHANGE, EVENTS_EXCHANGE, SEND_EXCHANGE};
use serde::Serialize;

const DECLARE_HELP: &str = "\
Examples:
  herald topology declare
  herald topology declare --provider kaleyra --provider pingup --json

Provider queues come from the [providers.*] tables of the configuration, plus
any --provider; delay tiers from retry.delays; x-delivery-limit from
amqp.delivery_limit. Declaring again changes nothing. A queue that already
exists with other arguments makes the declaration fail naming it (RabbitMQ
never changes a queue's arguments: delete it first, or keep the configuration).";

const STATUS_HELP: &str = "\
Examples:
  herald topology status
  herald topology status --json | jq '.[] | select(.messages > 0)'

Every queue is listed; one that does not exist is marked `missing` (run
`herald topology declare`), and the exit status is then 3 (not found).";

const DELETE_HELP: &str = "\
Example:
  herald topology delete --yes

Deletes every queue and exchange `declare` makes, with the jobs and dead
letters in them: for tearing down a local or test set-up (`deploy/local.sh
--down`), never a production one.";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Declare every exchange and queue of the contract (idempotent).
    #[command(after_help = DECLARE_HELP)]
    Declare(Options),
    /// Print depth and consumers per queue, missing ones marked.
    #[command(after_help = STATUS_HELP)]
    Status(Options),
    /// Delete every exchange and queue of the contract, with their messages.
    #[command(after_help = DELETE_HELP)]
    Delete {
        #[command(flatten)]
        options: Options,
        /// Required: what the queues hold is lost.
        #[arg(long, required = true)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// A provider queue to include beyond those configured (repeatable).
    #[arg(long = "provider", value_name = "NAME", value_parser = provider_name)]
    providers: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What `declare` prints with `--json`.
#[derive(Debug, Serialize)]
struct Declared<'a> {
    broker: String,
    exchanges: Vec<&'static str>,
    queues: Vec<String>,
    providers: &'a [String],
    delay_tiers: Vec<String>,
    delivery_limit: u32,
}

pub async fn run(command: Command, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let options = match &command {
        Command::Declare(options) | Command::Status(options) | Command::Delete { options, .. } => {
            options
        }
    };
    let config = super::load_config(config)?;
    let topology = with_providers(Topology::from_config(&config), &options.providers);
    let broker = redact_url(&config.amqp.url);
    let connection = super::broker(&config, "topology").await?;
    let mut exit = Exit::Ok;
    match command {
        Command::Declare(options) => {
            let channel = connection.create_channel().await?;
            topology
                .declare(&channel)
                .await
                .with_context(|| format!("declaring the topology on {broker}"))?;
            print_declared(&declared(&topology, broker), options.json)?;
        }
        Command::Status(options) => {
            let statuses = topology
                .status(&connection)
                .await
                .with_context(|| format!("reading queues on {broker}"))?;
            print_status(&statuses, options.json)?;
            if statuses.iter().any(|s| !s.exists) {
                eprintln!("some queues are missing: run `herald topology declare`");
                exit = Exit::NotFound;
            }
        }
        Command::Delete { options, .. } => {
            let channel = connection.create_channel().await?;
            topology
                .delete(&channel)
                .await
                .with_context(|| format!("deleting the topology on {broker}"))?;
            if options.json {
                println!("{}", serde_json::json!({ "deleted": topology.queues() }));
            } else {
                println!("deleted on {broker}: {}", topology.queues().join(", "));
            }
        }
    }
    connection.close(200, "done".into()).await.ok();
    Ok(exit.code())
}

/// The configured topology plus the extra providers, each queue once.
fn with_providers(mut topology: Topology, extra: &[String]) -> Topology {
    for provider in extra {
        if !topology.providers.contains(provider) {
            topology.providers.push(provider.clone());
        }
    }
    topology
}

fn declared(topology: &Topology, broker: String) -> Declared<'_> {
    Declared {
        broker,
        exchanges: vec![
            SEND_EXCHANGE,
            DELAY_EXCHANGE,
            DEAD_EXCHANGE,
            EVENTS_EXCHANGE,
        ],
        queues: topology.queues(),
        providers: &topology.providers,
        delay_tiers: topology
            .delay_tiers
            .iter()
            .map(|t| Topology::tier_name(*t))
            .collect(),
        delivery_limit: topology.delivery_limit,
    }
}

fn print_declared(declared: &Declared, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(declared)?);
        return Ok(());
    }
    println!("declared on {}:", declared.broker);
    println!("  exchanges: {}", declared.exchanges.join(", "));
    println!("  queues:    {}", declared.queues.join(", "));
    println!(
        "  delay tiers {}; provider queues dead-letter after {} deliveries",
        declared.delay_tiers.join(" "),
        declared.delivery_limit
    );
    if declared.providers.is_empty() {
        println!(
            "  no provider queue declared: none is configured under [providers.*] and no --provider was given"
        );
    }
    Ok(())
}

fn print_status(statuses: &[QueueStatus], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(statuses)?);
        return Ok(());
    }
    print!("{}", status_table(statuses));
    Ok(())
}

fn status_table(statuses: &[QueueStatus]) -> String {
    let width = statuses
        .iter()
        .map(|s| s.queue.len())
        .chain(["QUEUE".len()])
        .max()
        .unwrap_or_default();
    let mut table = format!(
        "{:<width$}  {:>10}  {:>9}\n",
        "QUEUE", "MESSAGES", "CONSUMERS"
    );
    for s in statuses {
        let row = match (s.messages, s.consumers) {
            (Some(messages), Some(consumers)) => format!("{messages:>10}  {consumers:>9}"),
            _ => format!("{:>10}  {:>9}", "missing", "-"),
        };
        table.push_str(&format!("{:<width$}  {row}\n", s.queue));
    }
    table
}

/// A provider name as jobs use it (and as a routing key and queue name).
fn provider_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err("must be 1–64 characters of [a-z0-9_-]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn extra_providers_are_added_once() {
        let configured = Topology {
            providers: vec!["kaleyra".into()],
            delay_tiers: vec![Duration::from_secs(5)],
            delivery_limit: 5,
        };
        let topology = with_providers(configured, &["pingup".into(), "kaleyra".into()]);
        assert_eq!(topology.providers, ["kaleyra", "pingup"]);
    }

    #[test]
    fn the_status_table_aligns_columns() {
        let statuses = [
            QueueStatus {
                queue: "herald.send.kaleyra".into(),
                exists: true,
                messages: Some(12),
                consumers: Some(2),
            },
            QueueStatus {
                queue: "herald.dead".into(),
                exists: false,
                messages: None,
                consumers: None,
            },
        ];
        assert_eq!(
            status_table(&statuses),
            "QUEUE                  MESSAGES  CONSUMERS\n\
             herald.send.kaleyra          12          2\n\
             herald.dead             missing          -\n"
        );
    }

    #[test]
    fn provider_names_are_checked() {
        assert!(provider_name("99digital").is_ok());
        assert!(provider_name("Kaleyra").is_err());
        assert!(provider_name("").is_err());
    }
}
