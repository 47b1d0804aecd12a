//! One module per subcommand.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use herald_core::Config;

pub mod api;
pub mod bench;
pub mod config;
pub mod dlq;
pub mod enqueue;
pub mod mock_vendor;
pub mod topology;
pub mod window;
pub mod worker;

/// How a command ended, as its exit status. `herald --help` lists them, so
/// scripts can tell "fix your input" from "try again later".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done as asked.
    Ok = 0,
    /// Anything else: a partial failure, an unexpected error.
    Failed = 1,
    /// The input was rejected: flags, configuration, or jobs that cannot be sent.
    Rejected = 2,
    /// What was asked for does not exist.
    NotFound = 3,
    /// The broker or Redis could not be reached: nothing was done; try again.
    Unavailable = 4,
}

impl Exit {
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }

    /// The status an error ends a command with: the outermost one marked by
    /// [`OrExit::or_exit`]; else [`Exit::Rejected`] for a configuration
    /// problem found deeper down (a vendor account's, the API's secrets);
    /// else [`Exit::Failed`].
    pub fn of(error: &anyhow::Error) -> Exit {
        if let Some(marked) = error.downcast_ref::<Marked>() {
            return marked.exit;
        }
        if error
            .chain()
            .any(|cause| cause.is::<herald_core::ConfigErrors>())
        {
            return Exit::Rejected;
        }
        Exit::Failed
    }
}

/// An error's message, marked with the exit status it ends a command with.
#[derive(Debug)]
struct Marked {
    exit: Exit,
    message: String,
}

impl fmt::Display for Marked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `.or_exit(Exit::Unavailable, || "cannot connect to …")`: context that also
/// says which exit status the error ends the command with.
pub trait OrExit<T> {
    fn or_exit(self, exit: Exit, message: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, exit: Exit, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| {
            e.into().context(Marked {
                exit,
                message: message(),
            })
        })
    }
}

/// An error ending a command with `exit`, with nothing beneath it.
pub fn fail(exit: Exit, message: String) -> anyhow::Error {
    anyhow::Error::msg("").context(Marked { exit, message })
}

/// The error and its causes on one line, each cause once: some libraries
/// repeat their source's text in their own (`IO error: Connection refused
/// (os error 111)` caused by `Connection refused (os error 111)`).
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if cause.is_empty() || text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Loads the configuration; a bad one stops the command naming every problem.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).or_exit(Exit::Rejected, || "invalid configuration".into())
}

/// Connects to the broker of the configuration, or says it is unavailable.
pub async fn broker(config: &Config, role: &str) -> anyhow::Result<lapin::Connection> {
    herald_client::connect(&config.amqp.url, role)
        .await
        .or_exit(Exit::Unavailable, || {
            format!(
                "cannot connect to the broker at {} (configuration key amqp.url)",
                herald_client::redact_url(&config.amqp.url)
            )
        })
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Print the OpenAPI 3.1 description of `herald api` instead (what it
    /// serves at /openapi.json).
    #[arg(long)]
    openapi: bool,
}

pub fn print_schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = if args.openapi {
        herald_api::openapi::document().clone()
    } else {
        herald_core::job::json_schema()
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}

/// A token cancelled on the first SIGTERM or SIGINT, so a command can stop
/// taking work and finish what it has. A second signal exits at once: what
/// is unfinished stays unacknowledged and the broker delivers it again.
pub fn shutdown_on_signals() -> std::io::Result<tokio_util::sync::CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        for round in 0.. {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            if round == 0 {
                tracing::info!(signal = name, "shutting down gracefully");
                cancel.cancel();
            } else {
                tracing::warn!(signal = name, "second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    Ok(token)
}

/// A progress bar on stderr drawn with `style`; hidden for scripts (`--json`)
/// and when stderr is not a terminal, so pipes and logs stay clean.
pub fn progress_bar(json: bool, style: indicatif::ProgressStyle) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar
}
