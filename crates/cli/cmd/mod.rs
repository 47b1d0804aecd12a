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
pub mod status;
pub mod suppress;
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
