//! `herald`: the one binary. Each subcommand is a thin module in `cmd/` that
//! parses its flags and calls into the library crates; no business logic
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

const HELP: &str = "\
Examples:
  herald --config herald.toml config check
  herald --config herald.toml topology declare
  herald --config herald.toml enqueue --id order-1 --provider kaleyra --to +254712345678 --text hi

Environment:
  HERALD_CONFIG       the configuration file, like --config
  HERALD_<SECTION>_<KEY>, HERALD_PROVIDERS__<provider>__<account>__<key>
                      override a configuration key (HERALD_AMQP_URL, …); a
                      HERALD_* name that is no key is an error naming the closest
  HERALD_LOG_FORMAT   `json` for JSON log lines; human-readable otherwise
  RUST_LOG            log level and filters, e.g. `debug` or `info,herald_worker=debug`
                      (default `info`). Logs go to stderr, uncoloured unless it is a
                      terminal.

Exit status:
  0  done as asked
  1  anything else failed (a partial failure, an unexpected error)
  2  input rejected: flags, configuration, or jobs that cannot be sent
  3  not found (e.g. `herald dlq show <id>` of no dead letter)
  4  the broker or Redis is unavailable: nothing was done, try again";

/// Herald: a durable, queue-based WhatsApp send worker.
///
/// Producers publish send jobs to RabbitMQ (`herald enqueue`, the HTTP API or
/// any AMQP client); `herald worker` replicas send them through the vendors
/// with rate limits, the 24-hour window rule, retries and dead-lettering;
/// `herald dlq` inspects and replays what died.
#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = HELP
)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden from the
    /// environment, e.g. HERALD_AMQP_URL, HERALD_RETRY_MAX_ATTEMPTS.
    #[arg(long, global = true, env = "HERALD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the provider queues and send jobs through the vendors.
    Worker(cmd::worker::Args),
    /// Serve the HTTP API (publish jobs, record inbound messages, webhooks).
    Api(cmd::api::Args),
    /// Declare or inspect the broker topology (exchanges, queues, delay tiers).
    #[command(subcommand)]
    Topology(cmd::topology::Command),
    /// Publish send jobs: one from flags, or many from JSON lines or CSV.
    Enqueue(cmd::enqueue::Args),
    /// Record a customer's inbound message (opens the 24-hour window).
    #[command(subcommand)]
    Inbound(cmd::window::InboundCommand),
    /// Show whether the 24-hour window to a contact is open.
    #[command(subcommand)]
    Window(cmd::window::WindowCommand),
    /// What happened to one message: state, attempts, fallback, timeline
    /// (exit code 3 for a message Herald does not know).
    #[command(
        after_help = "Examples:\n  herald status order-1234-shipped\n  herald status order-1234-shipped --json"
    )]
    Status(cmd::status::Args),
    /// Suppress, release and list opted-out contacts.
    #[command(
        subcommand,
        after_help = "Examples:\n  herald suppress add --provider kaleyra --contact +254712345678\n  herald suppress list --provider kaleyra\n  herald suppress remove --provider kaleyra --contact +254712345678"
    )]
    Suppress(cmd::suppress::Command),
    /// Inspect, replay, purge, export and import dead letters.
    #[command(subcommand)]
    Dlq(cmd::dlq::Command),
    /// Serve every vendor's send API (the five BSPs and Meta's Cloud API) on
    /// localhost, with fault injection.
    MockVendor(cmd::mock_vendor::Args),
    /// Measure Herald's own parts (printed figures, not pass/fail).
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Check the configuration and the secrets it names; start nothing.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Print the JSON Schema of a send job, for producers in other languages
    /// (or, with --openapi, the HTTP API's OpenAPI 3.1 description).
    #[command(
        after_help = "Examples:\n  herald schema > job.schema.json\n  herald schema --openapi > openapi.json"
    )]
    Schema(cmd::SchemaArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Worker(args) => cmd::worker::run(args, config).await,
            Command::Api(args) => cmd::api::run(args, config).await,
            Command::Topology(command) => cmd::topology::run(command, config).await,
            Command::Enqueue(args) => cmd::enqueue::run(args, config).await,
            Command::Inbound(command) => cmd::window::run_inbound(command, config).await,
            Command::Window(command) => cmd::window::run_window(command, config).await,
            Command::Status(args) => cmd::status::run(args, config).await,
            Command::Suppress(command) => cmd::suppress::run(command, config).await,
            Command::Dlq(command) => cmd::dlq::run(command, config).await,
            Command::MockVendor(args) => cmd::mock_vendor::run(args).await,
            Command::Bench(command) => cmd::bench::run(command, config).await,
            Command::Config(command) => cmd::config::run(command, config),
            Command::Schema(args) => cmd::print_schema(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {}", cmd::error_text(&e));
            cmd::Exit::of(&e).code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command a user can run, with its path (`dlq show`).
    fn leaves(command: &clap::Command, path: String) -> Vec<(String, clap::Command)> {
        let visible: Vec<_> = command
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .collect();
        if visible.is_empty() {
            return vec![(path, command.clone())];
        }
        visible
            .into_iter()
            .flat_map(|c| leaves(c, format!("{path} {}", c.get_name())))
            .collect()
    }

    #[test]
    fn every_command_has_an_example_and_every_option_a_description() {
        let mut root = Cli::command();
        root.build();
        for (path, command) in leaves(&root, "herald".into()) {
            let help = [command.get_after_help(), command.get_after_long_help()]
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect::<String>();
            assert!(help.contains("Example"), "`{path}` has no example");
            let runs_it = help
                .lines()
                .any(|line| path.split(' ').all(|word| line.contains(word)));
            assert!(runs_it, "`{path}`'s examples do not run it");
            for arg in command.get_arguments() {
                let described = arg
                    .get_help()
                    .is_some_and(|h| !h.to_string().trim().is_empty());
                assert!(
                    described,
                    "`{path}` option {} has no description",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn the_help_documents_logging_and_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "HERALD_LOG_FORMAT",
            "RUST_LOG",
            "Exit status",
            "2  input rejected",
            "4  the broker or Redis",
        ] {
            assert!(help.contains(needle), "{needle} missing from herald --help");
        }
    }

    #[test]
    fn an_error_names_each_cause_once_and_ends_with_its_marked_status() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        // What lapin does: its own text repeats its source's.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "IO error: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        use cmd::OrExit;
        let error = Err::<(), _>(Wrapper(refused))
            .or_exit(cmd::Exit::Unavailable, || "cannot connect".into())
            .unwrap_err();
        assert_eq!(
            cmd::error_text(&error),
            "cannot connect: IO error: Connection refused"
        );
        assert_eq!(cmd::Exit::of(&error), cmd::Exit::Unavailable);
        let outer = error.context("while enqueueing");
        assert_eq!(
            cmd::Exit::of(&outer),
            cmd::Exit::Unavailable,
            "seen through context"
        );
        assert_eq!(cmd::Exit::of(&anyhow::anyhow!("boom")), cmd::Exit::Failed);
        let vendor_accounts = anyhow::Error::new(herald_core::ConfigErrors::from(
            herald_core::ConfigError::new("providers.kaleyra.default.sid", "is required"),
        ))
        .context("invalid configuration");
        assert_eq!(
            cmd::Exit::of(&vendor_accounts),
            cmd::Exit::Rejected,
            "from the worker's start"
        );
    }
}
