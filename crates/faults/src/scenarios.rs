//! The faults, one scenario each: load is published while the fault is
//! injected, then everything drains and the checker counts.

use std::time::Duration;

use anyhow::ensure;
use herald_mock_vendor::{FaultSpec, Faults, Provider};
use nix::sys::signal::Signal;

use crate::check::{self, Attempted, Row};
use crate::cluster::Cluster;
use crate::load;
use crate::redis::Persistence;

/// Worker processes per scenario.
const REPLICAS: usize = 3;
/// Every `POISON_EVERY`-th job of the poison flood is poison.
const POISON_EVERY: usize = 4;
/// Upper bound on a drain, so a stuck scenario ends (its jobs count as lost).
const DRAIN_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Sigkill,
    RollingSigterm,
    ConnectionDrops,
    RedisRestartKept,
    RedisRestartEmpty,
    VendorBrownout,
    PoisonFlood,
    DlqReplayKilled,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Sigkill,
        Scenario::RollingSigterm,
        Scenario::ConnectionDrops,
        Scenario::RedisRestartKept,
        Scenario::RedisRestartEmpty,
        Scenario::VendorBrownout,
        Scenario::PoisonFlood,
        Scenario::DlqReplayKilled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Sigkill => "sigkill",
            Scenario::RollingSigterm => "rolling-sigterm",
            Scenario::ConnectionDrops => "connection-drops",
            Scenario::RedisRestartKept => "redis-restart-kept",
            Scenario::RedisRestartEmpty => "redis-restart-empty",
            Scenario::VendorBrownout => "vendor-brownout",
            Scenario::PoisonFlood => "poison-flood",
            Scenario::DlqReplayKilled => "dlq-replay-killed",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    /// Jobs per scenario.
    pub jobs: usize,
    /// How long the load is published for; the faults happen within it.
    pub load: Duration,
    /// SIGKILLs in the sigkill scenario, connection drops in its own.
    pub kills: usize,
    /// How long Redis stays down.
    pub outage: Duration,
}

impl Size {
    /// The rate per load account at which the workers need a quarter longer
    /// than the load window to send everything: deliveries pile up inside
    /// the workers (up to the prefetch) while the faults happen.
    fn rate_per_account(&self) -> f64 {
        let seconds = self.load.as_secs_f64() * 1.25;
        (self.jobs as f64 / load::PROVIDERS.len() as f64 / seconds).ceil()
    }

    /// For CI: a few minutes for all scenarios.
    pub const SHORT: Size = Size {
        jobs: 240,
        load: Duration::from_secs(8),
        kills: 2,
        outage: Duration::from_secs(3),
    };
    pub const FULL: Size = Size {
        jobs: 1500,
        load: Duration::from_secs(20),
        kills: 5,
        outage: Duration::from_secs(5),
    };
}

/// A vendor answering in 5–50 ms, with 2 % 5xx and 0.5 % requests that
/// never get an answer (the worker's call times out).
fn everyday_vendor() -> FaultSpec {
    FaultSpec {
        latency_ms: 27,
        jitter_ms: 22,
        error_rate: 0.02,
        hang_rate: 0.005,
        ..FaultSpec::default()
    }
}

/// Runs one scenario in a world of its own and counts it.
pub async fn run(scenario: Scenario, herald: &std::path::Path, size: Size) -> anyhow::Result<Row> {
    let persistence = match scenario {
        Scenario::RedisRestartEmpty => Persistence::Lost,
        _ => Persistence::Kept,
    };
    let faults = Faults::everywhere(everyday_vendor());
    let rate = size.rate_per_account();
    let mut cluster = Cluster::start(herald, persistence, REPLICAS, rate, faults).await?;
    let attempted = match scenario {
        Scenario::DlqReplayKilled => replay_killed_midway(&mut cluster, size).await?,
        _ => under_load(scenario, &mut cluster, size).await?,
    };
    cluster.drain(&attempted, DRAIN_WITHIN).await?;
    let answers = cluster.vendor_answers();
    cluster.notes.push(answers);
    let history = cluster.history(attempted).await?;
    let mut row = check::check(scenario.name(), &history);
    if !row.passed() {
        let kept = cluster.keep_files();
        let kept = format!("logs and configuration kept in {}", kept.display());
        cluster.notes.push(kept);
    }
    row.notes = std::mem::take(&mut cluster.notes);
    Ok(row)
}

/// Publishes the load while the scenario's fault happens.
async fn under_load(
    scenario: Scenario,
    cluster: &mut Cluster,
    size: Size,
) -> anyhow::Result<Vec<Attempted>> {
    let plan = match scenario {
        Scenario::PoisonFlood => load::poisoned(scenario.name(), size.jobs, POISON_EVERY),
        _ => load::healthy(scenario.name(), size.jobs),
    };
    let producer = cluster.producer().await?;
    let (attempted, injected) = tokio::join!(
        producer.publish(&plan, size.load),
        inject(scenario, cluster, size)
    );
    injected?;
    attempted
}

/// The fault, at fixed points of the load window.
async fn inject(scenario: Scenario, cluster: &mut Cluster, size: Size) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    // The k-th of n events, spread evenly inside the load window.
    let at = |k: usize, n: usize| start + size.load * (k as u32 + 1) / (n as u32 + 1);
    match scenario {
        Scenario::Sigkill => {
            for k in 0..size.kills {
                tokio::time::sleep_until(at(k, size.kills)).await;
                cluster.replace(k % REPLICAS, Signal::SIGKILL).await?;
            }
        }
        Scenario::RollingSigterm => {
            for slot in 0..REPLICAS {
                tokio::time::sleep_until(at(slot, REPLICAS)).await;
                cluster.replace(slot, Signal::SIGTERM).await?;
            }
        }
        Scenario::ConnectionDrops => {
            for k in 0..size.kills {
                tokio::time::sleep_until(at(k, size.kills)).await;
                cluster.drop_worker_connections().await?;
            }
        }
        Scenario::RedisRestartKept | Scenario::RedisRestartEmpty => {
            tokio::time::sleep_until(at(0, 2)).await;
            cluster.redis.stop().await?;
            tokio::time::sleep(size.outage).await;
            cluster.redis.restart().await?;
            let outage = format!(
                "Redis crashed (SIGKILL) and restarted after {:?}",
                size.outage
            );
            cluster.notes.push(outage);
        }
        Scenario::VendorBrownout => {
            tokio::time::sleep_until(at(0, 3)).await;
            let mut brownout = Faults::everywhere(everyday_vendor());
            brownout.providers.insert(
                Provider::Pingup,
                FaultSpec {
                    error_rate: 1.0,
                    hang_rate: 0.0,
                    ..everyday_vendor()
                },
            );
            cluster.set_faults(brownout)?;
            tokio::time::sleep_until(at(2, 3)).await;
            cluster.set_faults(Faults::everywhere(everyday_vendor()))?;
        }
        Scenario::PoisonFlood | Scenario::DlqReplayKilled => {}
    }
    Ok(())
}

/// Jobs die `window_closed`; the customer writes; an operator's replay is
/// SIGKILLed halfway and run again. Every job must then be sent once.
async fn replay_killed_midway(cluster: &mut Cluster, size: Size) -> anyhow::Result<Vec<Attempted>> {
    let plan = load::windowed(Scenario::DlqReplayKilled.name(), size.jobs);
    let attempted = cluster
        .producer()
        .await?
        .publish(&plan, Duration::ZERO)
        .await?;
    cluster
        .wait_for_dead(attempted.len() as u32, DRAIN_WITHIN)
        .await?;
    cluster
        .run_herald(&[
            "inbound",
            "record",
            "--provider",
            "kaleyra",
            "--account",
            load::WINDOWED_ACCOUNT,
            "--contact",
            load::WINDOWED_CONTACT,
        ])
        .await?;
    let rate = format!(
        "{}/s",
        (size.jobs as f64 / size.load.as_secs_f64()).ceil().max(1.0)
    );
    let replay = ["dlq", "replay", "--reason", "window_closed"];
    let mut first =
        cluster.spawn_herald(&[&replay[..], &["--rate", &rate]].concat(), "replay-1.log")?;
    tokio::time::sleep(size.load / 2).await;
    let still_running = first.try_wait()?.is_none();
    ensure!(
        still_running,
        "the first replay finished before it could be killed"
    );
    first.kill().await?;
    cluster.notes.push(format!(
        "replay at {rate} SIGKILLed after {:?}",
        size.load / 2
    ));
    cluster.run_herald(&replay).await?;
    Ok(attempted)
}
