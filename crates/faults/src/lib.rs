//! Herald's fault suite: real `herald worker` processes, the local RabbitMQ
//! (a fresh vhost per scenario), a private `redis-server` and mock vendors,
//! all on loopback, put through SIGKILLs, rolling SIGTERMs, dropped broker
//! connections, Redis outages, a vendor brownout, a poison flood and a
//! killed DLQ replay; then counted like Jepsen's total-queue checker.
//!
//! Owns: starting and stopping those processes, injecting the faults,
//! observing what the vendors accepted and what was dead-lettered, and
//! judging it ([`check`]). Must not touch: Herald's own logic: the suite
//! only runs the `herald` binary and reads the broker, Redis and vendors.
//!
//! Run it with `cargo test --test faults -- full` (or `short`, or scenario
//! names); see the README's "Fault suite".

pub mod check;
mod cluster;
pub mod load;
mod redis;
pub mod scenarios;

use std::path::Path;

use anyhow::bail;

pub use scenarios::{Scenario, Size};

/// What to run: a size and the scenarios (all by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub size: Size,
    pub scenarios: Vec<Scenario>,
}

impl Plan {
    /// `short|full [scenario…]`; no arguments means `short`.
    pub fn from_args(args: &[String]) -> anyhow::Result<Plan> {
        let mut size = Size::SHORT;
        let mut scenarios = Vec::new();
        for arg in args {
            match arg.as_str() {
                "short" => size = Size::SHORT,
                "full" => size = Size::FULL,
                name => match Scenario::parse(name) {
                    Some(scenario) => scenarios.push(scenario),
                    None => bail!(
                        "{name:?} is neither a size (short, full) nor a scenario ({})",
                        Scenario::ALL.map(Scenario::name).join(", ")
                    ),
                },
            }
        }
        if scenarios.is_empty() {
            scenarios = Scenario::ALL.to_vec();
        }
        Ok(Plan { size, scenarios })
    }
}

/// Runs the plan against the `herald` binary at `herald`, prints each
/// scenario's evidence and then the table; `Ok(true)` when every row passed.
/// Ctrl-C stops the run, and every process it started.
pub async fn run(herald: &Path, plan: &Plan) -> anyhow::Result<bool> {
    let mut rows = Vec::new();
    for &scenario in &plan.scenarios {
        eprintln!(
            "fault suite: {} ({} jobs over {:?})…",
            scenario.name(),
            plan.size.jobs,
            plan.size.load
        );
        let started = std::time::Instant::now();
        let mut row = tokio::select! {
            row = scenarios::run(scenario, herald, plan.size) => row.unwrap_or_else(|e| {
                check::Row::failed(scenario.name(), format!("{e:#}"))
            }),
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        };
        row.took = started.elapsed();
        eprint!("{}", check::details(&row));
        rows.push(row);
    }
    println!("\n{}", check::table(&rows));
    Ok(rows.iter().all(check::Row::passed))
}

/// A free loopback port (bound, then released for the caller to use).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_arguments_run_every_scenario_short() {
        let plan = Plan::from_args(&[]).unwrap();
        assert_eq!(plan.size, Size::SHORT);
        assert_eq!(plan.scenarios, Scenario::ALL);
    }

    #[test]
    fn a_size_and_scenario_names_pick_the_run() {
        let plan = Plan::from_args(&args(&["full", "sigkill", "poison-flood"])).unwrap();
        assert_eq!(plan.size, Size::FULL);
        assert_eq!(plan.scenarios, [Scenario::Sigkill, Scenario::PoisonFlood]);
    }

    #[test]
    fn an_unknown_argument_is_named_with_the_choices() {
        let err = Plan::from_args(&args(&["sigkil"])).unwrap_err().to_string();
        assert!(err.contains("\"sigkil\""), "{err}");
        assert!(err.contains("rolling-sigterm"), "{err}");
    }
}
