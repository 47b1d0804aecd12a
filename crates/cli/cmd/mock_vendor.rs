//! `herald mock-vendor`: the flags become a [`FaultSpec`] for every provider;
//! everything else lives in `herald-mock-vendor`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use herald_core::config::parse_duration;
use herald_mock_vendor::{FaultSpec, Faults, MockVendor, endpoints};
use tracing::info;

#[derive(Debug, clap::Args)]
#[command(
    after_help = format!("{EXAMPLES}\nSee --help for the paths served, the control endpoint and an example configuration."),
    after_long_help = long_help()
)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9900", value_name = "ADDR")]
    listen: SocketAddr,

    /// Delay before every answer, e.g. 50ms.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    latency: Option<Duration>,

    /// Vary the latency uniformly by up to this much either way.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    jitter: Option<Duration>,

    /// Fraction of requests answered 500 or 503.
    #[arg(long, value_parser = fraction, default_value_t = 0.0, value_name = "FRACTION")]
    error_rate: f64,

    /// Fraction of requests answered 429.
    #[arg(long, value_parser = fraction, default_value_t = 0.0, value_name = "FRACTION")]
    rate_limit_rate: f64,

    /// Answer every Nth request to a provider 429.
    #[arg(long, value_name = "N")]
    rate_limit_every: Option<u64>,

    /// Seconds sent in `Retry-After` with each 429.
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    retry_after: u64,

    /// Fraction refused with the vendor's own permanent error (Kaleyra
    /// E13009, PayHero "didn't find a session", 99digital FAIL, Meta 131026, …).
    #[arg(long, value_parser = fraction, default_value_t = 0.0, value_name = "FRACTION")]
    permanent_rate: f64,

    /// Fraction refused with WhatsApp's 131047 (24-hour window closed).
    #[arg(long, value_parser = fraction, default_value_t = 0.0, value_name = "FRACTION")]
    window_closed_rate: f64,

    /// Fraction of requests that hang.
    #[arg(long, value_parser = fraction, default_value_t = 0.0, value_name = "FRACTION")]
    hang_rate: f64,

    /// A hung request succeeds after this long; without it, it never answers.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    hang_for: Option<Duration>,
}

impl Args {
    fn fault_spec(&self) -> FaultSpec {
        let millis = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as u64);
        FaultSpec {
            latency_ms: millis(self.latency),
            jitter_ms: millis(self.jitter),
            error_rate: self.error_rate,
            rate_limit_rate: self.rate_limit_rate,
            rate_limit_every: self.rate_limit_every.unwrap_or(0),
            retry_after_secs: self.retry_after,
            permanent_rate: self.permanent_rate,
            window_closed_rate: self.window_closed_rate,
            hang_rate: self.hang_rate,
            hang_ms: self.hang_for.map(|d| d.as_millis() as u64),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let faults = Faults::everywhere(args.fault_spec());
    let mock = MockVendor::start(args.listen, faults)
        .await
        .with_context(|| format!("cannot serve the mock vendor on {}", args.listen))?;
    let paths: Vec<String> = endpoints()
        .iter()
        .map(|e| format!("{} POST {}", e.provider(), e.path()))
        .collect();
    info!(listen = %mock.addr(), paths = %paths.join(", "), "mock vendor serving; control under /_mock");
    let shutdown = super::shutdown_on_signals().context("cannot listen for SIGINT/SIGTERM")?;
    shutdown.cancelled().await;
    mock.shutdown()
        .await
        .context("mock vendor stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{text:?} is not a fraction between 0 and 1, like 0.05"
        )),
    }
}

const EXAMPLES: &str = "\
Examples:
  herald mock-vendor --listen 127.0.0.1:9900 --latency 20ms --error-rate 0.05
  curl localhost:9900/_mock/stats
";

/// The paths come from the mock's own table, so the help cannot drift.
fn long_help() -> String {
    let mut help = format!(
        "{EXAMPLES}\nPaths served (all POST; any non-empty credential is accepted, none is checked):\n"
    );
    for e in endpoints() {
        let auth = e.provider().auth().to_string();
        let _ = writeln!(
            help,
            "  {:<10} {:<30} {auth}",
            e.provider().as_str(),
            e.path()
        );
    }
    help.push_str(CONTROL_HELP);
    help
}

const CONTROL_HELP: &str = r#"
Each answers with its vendor's documented success body, with a fresh message
id. A missing credential gets the vendor's 401; a missing required field, 400.

What it received (provider, path, headers, body as JSON, time, status):
  curl 'localhost:9900/_mock/requests?provider=kaleyra'
  curl localhost:9900/_mock/stats                 counts per provider and status
  curl -X DELETE localhost:9900/_mock/requests    forget them

Faults at run time (JSON; replaces the faults from the flags; a provider's
entry replaces the global one for that provider):
  curl -d '{"global": {"latency_ms": 50, "jitter_ms": 20},
            "providers": {"kaleyra": {"error_rate": 0.2, "rate_limit_every": 10,
                                      "retry_after_secs": 2}}}' \
       localhost:9900/_mock/faults
  keys: latency_ms jitter_ms error_rate rate_limit_rate rate_limit_every
        retry_after_secs permanent_rate window_closed_rate hang_rate hang_ms
  curl localhost:9900/_mock/faults                the faults and pending scripts
  curl -X DELETE localhost:9900/_mock/faults      no faults, no scripts

Scripted replies, ahead of the faults (here: fail twice, then succeed; or
rate-limit the next two requests):
  curl localhost:9900/_mock/script -d '{"provider": "kaleyra", "replies": ["500", "500", "ok"]}'
  curl localhost:9900/_mock/script -d '{"provider": "pingup", "replies": ["429:5", "429:5"]}'
  replies: ok  401  429[:secs]  500..599  permanent  window_closed  hang[:duration]

Point Herald at it (one base_url for every provider; keys can be anything,
e.g. KALEYRA_API_KEY=mock):
  [providers.kaleyra.default]
  base_url = "http://127.0.0.1:9900"
  sid = "HXMOCK"
  from = "+12025550123"
  api_key_env = "KALEYRA_API_KEY"

  [providers.payhero.default]
  base_url = "http://127.0.0.1:9900"
  session = "mock"
  basic_token_env = "PAYHERO_BASIC_TOKEN"

  [providers.meta.default]
  base_url = "http://127.0.0.1:9900"
  phone_number_id = "106540352242922"
  access_token_env = "META_ACCESS_TOKEN"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_outside_zero_to_one_are_refused() {
        assert_eq!(fraction("0.05"), Ok(0.05));
        assert!(fraction("1.5").unwrap_err().contains("between 0 and 1"));
        assert!(fraction("ten").is_err());
    }

    #[test]
    fn the_help_lists_every_path() {
        let help = long_help();
        for e in endpoints() {
            assert!(help.contains(e.path()), "{}", e.path());
        }
    }
}
