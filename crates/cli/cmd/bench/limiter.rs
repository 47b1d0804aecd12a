//! `herald bench limiter`: what the rate limiter costs per permit and how
//! close it holds a configured rate, with one process or several sharing it.
//!
//! Printed figures, not pass/fail. Several processes are this same binary
//! started again with a hidden subcommand (`bench limiter-process`); they
//! share one fresh key prefix and report their counts as JSON on stdout.
//! The limiter's keys expire by themselves a second after their last use,
//! so the benchmark leaves nothing in Redis.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use herald_core::RateScope;
use herald_store::{Limiter, Rate, Store};
use serde::{Deserialize, Serialize};

/// Hands the Redis URL to child processes without putting it (and any
/// password in it) on their command line.
const REDIS_URL_VAR: &str = "HERALD_BENCH_REDIS_URL";
/// Time for the child processes to start before the measured window opens.
const START_DELAY: Duration = Duration::from_millis(1500);
/// Permits timed for the overhead figure.
const OVERHEAD_PERMITS: u32 = 2000;
/// A rate no run reaches, with a burst no run uses up: no permit waits, so
/// each costs only the limiter itself.
const UNLIMITED_ISH: f64 = 1e6;
/// The provider name the benchmark's limits are keyed under.
const PROVIDER: &str = "bench";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  herald bench limiter --rates 100 --processes 1 --seconds 1
  herald bench limiter --rates 10,100 --processes 1,2 --seconds 1

The figures in the README come from the defaults: herald bench limiter")]
pub struct LimiterArgs {
    /// Configured rates to measure, permits per second.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    rates: Vec<f64>,
    /// Numbers of processes sharing each rate.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    processes: Vec<u32>,
    /// Length of each measured run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    account: String,
    #[arg(long)]
    rate: f64,
    /// The measured window, epoch ms: [start, end).
    #[arg(long)]
    start_ms: u64,
    #[arg(long)]
    end_ms: u64,
}

/// What one process reports on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct ProcessReport {
    permits: u64,
}

pub async fn limiter(args: LimiterArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let config = super::super::load_config(config)?;
    let redis_url = config.redis.url.clone();
    let prefix = format!(
        "{}bench-{}-{}:",
        config.redis.prefix,
        std::process::id(),
        epoch_ms(SystemTime::now())
    );
    let store = Store::connect(&redis_url, &prefix)
        .await
        .context("cannot reach Redis (configuration key redis.url)")?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Herald rate limiter benchmark");
    println!(
        "Caveat: {cores} CPU core(s), shared with Redis and whatever else runs here; \
         figures are indicative, not a guarantee. Rerun for spread."
    );
    println!();

    let global = overhead(&Limiter::new(
        &store,
        PROVIDER,
        "overhead",
        Rate::per_second(UNLIMITED_ISH, OVERHEAD_PERMITS),
        RateScope::Global,
    ))
    .await;
    let local = overhead(&Limiter::new(
        &store,
        PROVIDER,
        "overhead",
        Rate::per_second(UNLIMITED_ISH, OVERHEAD_PERMITS),
        RateScope::Local,
    ))
    .await;
    println!("Overhead per permit ({OVERHEAD_PERMITS} permits in a row, one task):");
    println!("  global (one Redis round trip)  {global:>9.1} µs");
    println!("  local  (in process)            {local:>9.1} µs");
    println!(
        "  global / local                 {:>9.0}×",
        global / local.max(f64::EPSILON)
    );
    println!();

    println!(
        "Accuracy (global limit shared through Redis, burst 1, {}s per run):",
        args.seconds
    );
    println!(
        "  {:>8}  {:>9}  {:>8}  {:>10}  {:>7}  {:>7}",
        "rate/s", "processes", "permits", "achieved/s", "ratio", "error %"
    );
    for (run, (&rate, &processes)) in args
        .rates
        .iter()
        .flat_map(|r| args.processes.iter().map(move |p| (r, p)))
        .enumerate()
    {
        let permits = shared_run(
            &redis_url,
            &prefix,
            &format!("run-{run}"),
            rate,
            processes,
            args.seconds,
        )
        .await?;
        let achieved = permits as f64 / args.seconds;
        let ratio = achieved / rate;
        println!(
            "  {rate:>8}  {processes:>9}  {permits:>8}  {achieved:>10.2}  {ratio:>7.3}  {:>+7.1}",
            (ratio - 1.0) * 100.0
        );
    }
    println!();
    println!(
        "Each process takes permits one after another, as one task: a permit costs a \
         Redis round trip and the wait is rounded up to the timer's 1 ms tick, so one \
         sequential caller falls short of rates near 1/(1 ms + round trip). The worker \
         asks from many deliveries at once, like several processes here."
    );
    Ok(ExitCode::SUCCESS)
}

fn check(args: &LimiterArgs) -> anyhow::Result<()> {
    if let Some(rate) = args
        .rates
        .iter()
        .find(|r| Rate::per_second(**r, 1).is_none())
    {
        bail!("--rates: {rate} is not a positive number");
    }
    if args.processes.contains(&0) {
        bail!("--processes: every count must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds: must be a positive number");
    }
    Ok(())
}

/// Mean µs per permit over [`OVERHEAD_PERMITS`] permits in a row.
async fn overhead(limiter: &Limiter) -> f64 {
    let started = Instant::now();
    for _ in 0..OVERHEAD_PERMITS {
        limiter.acquire().await;
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(OVERHEAD_PERMITS)
}

/// Runs `processes` copies of this binary against one limit for `seconds`;
/// the permits all of them got inside the window.
async fn shared_run(
    redis_url: &str,
    prefix: &str,
    account: &str,
    rate: f64,
    processes: u32,
    seconds: f64,
) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("cannot find this executable to start processes")?;
    let start = SystemTime::now() + START_DELAY;
    let end = start + Duration::from_secs_f64(seconds);
    let children = (0..processes)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args([
                    "bench",
                    "limiter-process",
                    "--prefix",
                    prefix,
                    "--account",
                    account,
                ])
                .args(["--rate", &rate.to_string()])
                .args(["--start-ms", &epoch_ms(start).to_string()])
                .args(["--end-ms", &epoch_ms(end).to_string()])
                .env(REDIS_URL_VAR, redis_url)
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a benchmark process")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut total = 0;
    for child in children {
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!("a benchmark process failed ({})", output.status);
        }
        let report: ProcessReport = serde_json::from_slice(&output.stdout)
            .context("a benchmark process reported something unreadable")?;
        total += report.permits;
    }
    Ok(total)
}

/// One process of a shared run: takes permits until the window ends and
/// reports how many it got inside the window.
pub async fn limiter_process(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let redis_url = std::env::var(REDIS_URL_VAR).with_context(|| {
        format!("{REDIS_URL_VAR} is not set; this subcommand is started by `herald bench limiter`")
    })?;
    let store = Store::connect(&redis_url, &args.prefix).await?;
    let rate = Rate::per_second(args.rate, 1).context("--rate must be a positive number")?;
    let limiter = Limiter::new(
        &store,
        PROVIDER,
        &args.account,
        Some(rate),
        RateScope::Global,
    );
    let (start, end) = (at_epoch_ms(args.start_ms), at_epoch_ms(args.end_ms));
    if let Ok(until_start) = start.duration_since(SystemTime::now()) {
        tokio::time::sleep(until_start).await;
    }
    let mut permits = 0;
    loop {
        limiter.acquire().await;
        if SystemTime::now() >= end {
            break;
        }
        permits += 1;
    }
    println!("{}", serde_json::to_string(&ProcessReport { permits })?);
    Ok(ExitCode::SUCCESS)
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn at_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
