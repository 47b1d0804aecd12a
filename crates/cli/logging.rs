//! Logs via `tracing`: human by default, JSON with `HERALD_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`). Logs go to stderr so commands
//! with `--json` keep stdout clean for scripts, and are coloured only when
//! stderr is a terminal (no escape codes in files and log collectors).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: Herald's own logs at `info`, none of lapin's. lapin
/// logs at ERROR every channel the broker closes, the answers Herald expects
/// included (a passive declaration of a missing queue, a goodbye at
/// shutdown); every broker error that matters reaches Herald as a result and
/// is reported by it. `RUST_LOG=info,lapin=debug` shows them again.
const DEFAULT_FILTER: &str = "info,lapin=off";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("HERALD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
