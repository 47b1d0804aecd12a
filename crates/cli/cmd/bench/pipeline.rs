//! `herald bench pipeline`: Herald's send path against the two things it
//! should be compared with, in one run, on the same jobs, queue and mock
//! vendor — the broker's consume+ack ceiling and a minimal hand-written
//! worker — plus three modes for the other targets: a slow vendor
//! (200 ms), the memory of draining a large backlog, and a soak at a fixed
//! publish rate.
//!
//! Printed figures, not pass/fail. The workers run as processes of their
//! own (`herald worker`, and the hidden `herald bench pipeline-handwritten`)
//! so their CPU time and memory are read from `/proc/<pid>`; Redis commands
//! come from `INFO commandstats` before and after. Everything happens in a
//! scratch vhost and under a Redis prefix of its own, both removed at the end.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_core::config::{format_duration, parse_duration};
use serde::Serialize;
use url::Url;

mod baseline;
mod probe;
mod process;
mod rig;

use baseline::Acks;
pub use baseline::handwritten;
use process::{Drain, Kind, WorkerProcess};
use rig::{Rig, RigSpec};

/// The targets, printed next to the figures.
const TARGET_VS_HANDWRITTEN: f64 = 0.9;
const TARGET_VS_CEILING: f64 = 0.6;
const TARGET_COMMANDS_PER_JOB: f64 = 3.0;
const TARGET_SLOW_VENDOR_PER_SEC: f64 = 1000.0;
const TARGET_PEAK_RSS_MIB: f64 = 32.0;
/// Meta's highest throughput tier, messages a second to one number.
const HIGHEST_TIER_PER_SEC: f64 = 1000.0;
/// How often the soak publishes what its rate says is due.
const SOAK_TICK: Duration = Duration::from_millis(20);

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  # The ceiling, the hand-written worker and Herald, on a few jobs (the README's
  # figures come from the defaults, 20000 jobs, in a release build):
  herald bench pipeline --jobs 500
  herald bench pipeline --jobs 500 --prefetch 32 --json
  # Herald alone: a 200 ms vendor at Meta's 1000/s tier, a backlog's peak memory,
  # memory over a soak at a fixed publish rate:
  herald bench pipeline --mode slow-vendor --jobs 500
  herald bench pipeline --mode memory --jobs 2000
  herald bench pipeline --mode soak --rate 100 --duration 5s")]
pub struct PipelineArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Compare)]
    mode: Mode,
    /// Jobs per measurement [default: compare 20000, slow-vendor 10000,
    /// memory 100000; soak: rate × duration].
    #[arg(long)]
    jobs: Option<usize>,
    /// `amqp.prefetch`. Herald keeps at least the account's rate × 1 s in
    /// flight; the ceiling and both workers use that same figure.
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
    /// The account's global `rate_per_second` [default: 1000 in slow-vendor
    /// mode (Meta's highest tier), else the prefetch]. Its burst covers
    /// every job of the run, so it is checked for each job but holds none
    /// back; Herald keeps rate × 1 s deliveries in flight if that is more
    /// than the prefetch.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// The mock vendor's latency [default: 200ms in slow-vendor mode, else 0ms].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    latency: Option<Duration>,
    /// soak: jobs published per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// soak: how long to publish.
    #[arg(long, value_parser = parse_duration, default_value = "10m", value_name = "DURATION")]
    duration: Duration,
    /// soak: memory samples taken while publishing (start and end included).
    #[arg(long, default_value_t = 11)]
    samples: u32,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// RabbitMQ management API, used to create and delete the scratch vhost.
    #[arg(
        long,
        default_value = "http://guest:guest@127.0.0.1:15672",
        value_name = "URL"
    )]
    rabbitmq_api: Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Broker ceiling, hand-written worker and Herald, one after another.
    Compare,
    /// Herald alone with a slow vendor: what one process sustains.
    SlowVendor,
    /// Herald alone draining a large backlog: its peak memory.
    Memory,
    /// Herald alone at a fixed publish rate: its memory over time.
    Soak,
}

impl Mode {
    fn default_jobs(self) -> usize {
        match self {
            Mode::Compare => 20_000,
            Mode::SlowVendor => 10_000,
            Mode::Memory => 100_000,
            Mode::Soak => 0,
        }
    }

    fn default_latency(self) -> Duration {
        match self {
            Mode::SlowVendor => Duration::from_millis(200),
            _ => Duration::ZERO,
        }
    }
}

/// What one run measures, after defaults.
#[derive(Debug, Clone, Copy)]
struct Plan {
    mode: Mode,
    jobs: usize,
    spec: RigSpec,
}

fn plan(args: &PipelineArgs) -> anyhow::Result<Plan> {
    if args.prefetch == 0 {
        bail!("--prefetch must be at least 1");
    }
    let rate_limit = match (args.mode, args.rate_limit) {
        (_, Some(rate)) if !(rate.is_finite() && rate > 0.0) => {
            bail!("--rate-limit must be a positive number")
        }
        (_, Some(rate)) => rate,
        (Mode::SlowVendor, None) => HIGHEST_TIER_PER_SEC,
        (_, None) => f64::from(args.prefetch),
    };
    let jobs = match args.mode {
        Mode::Soak => {
            if args.rate == 0 || args.duration.is_zero() {
                bail!("--rate and --duration must be more than zero");
            }
            if args.samples < 2 {
                bail!("--samples must be at least 2 (start and end)");
            }
            if args.jobs.is_some() {
                bail!("--jobs does not apply to --mode soak: it publishes --rate × --duration");
            }
            (f64::from(args.rate) * args.duration.as_secs_f64()).ceil() as usize
        }
        mode => args.jobs.unwrap_or(mode.default_jobs()),
    };
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    Ok(Plan {
        mode: args.mode,
        jobs,
        spec: RigSpec {
            prefetch: args.prefetch,
            rate_limit,
            latency: args.latency.unwrap_or(args.mode.default_latency()),
            jobs,
        },
    })
}

pub async fn pipeline(args: PipelineArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let base = crate::cmd::load_config(config)?;
    let interrupted = crate::cmd::shutdown_on_signals()?;
    let rig = Rig::start(&base, &args.rabbitmq_api, plan.spec).await?;
    // Interrupted, the measurement is dropped (its worker processes are
    // killed with it) and the rig is still taken down.
    let report = tokio::select! {
        report = measure(&rig, &plan, &args) => report,
        _ = interrupted.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    let teardown = rig.teardown().await;
    let report = report?;
    teardown.context("the benchmark finished but could not clean up")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything a run printed, for `--json`.
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    jobs: usize,
    prefetch: u16,
    /// Deliveries in flight per queue, for every consumer.
    in_flight: u16,
    rate_limit: f64,
    vendor_latency_ms: u64,
    cores: usize,
    scratch_vhost: String,
    redis_prefix: String,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Figures {
    Compare(Compare),
    Alone(Alone),
    Soak(Soak),
}

#[derive(Debug, Serialize)]
struct Compare {
    publish_per_sec: f64,
    /// Acks one by one, as `../shared/bench/ceiling`: the ratios' reference.
    ceiling_jobs_per_sec: f64,
    /// Acks pipelined: what the broker itself can do.
    pipelined_ceiling_jobs_per_sec: f64,
    handwritten: Drain,
    herald: Drain,
    herald_vs_handwritten: f64,
    herald_vs_ceiling: f64,
    /// Jobs per CPU-second, Herald's over the hand-written worker's: the
    /// throughput ratio the two would reach where the worker's CPU is the
    /// bottleneck, which a shared, busy machine's wall clock may not show.
    herald_vs_handwritten_per_cpu: f64,
}

/// Herald alone draining a backlog (slow-vendor and memory modes).
#[derive(Debug, Serialize)]
struct Alone {
    herald: Drain,
    /// With vendor latency L, P deliveries in flight cap one worker at P / L jobs/s.
    prefetch_bound_per_sec: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Soak {
    rate: u32,
    seconds: f64,
    published_per_sec: f64,
    samples: Vec<Sample>,
    peak_rss_bytes: u64,
    cpu_us_per_job: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    at_secs: f64,
    rss_bytes: u64,
    sent: u64,
}

async fn measure(rig: &Rig, plan: &Plan, args: &PipelineArgs) -> anyhow::Result<Report> {
    rig.open_windows().await?;
    let figures = match plan.mode {
        Mode::Compare => Figures::Compare(compare(rig, plan.jobs).await?),
        Mode::SlowVendor | Mode::Memory => Figures::Alone(alone(rig, plan.jobs).await?),
        Mode::Soak => Figures::Soak(soak(rig, args, plan.jobs).await?),
    };
    let (vhost, prefix) = rig.scratch();
    Ok(Report {
        mode: match plan.mode {
            Mode::Compare => "compare",
            Mode::SlowVendor => "slow-vendor",
            Mode::Memory => "memory",
            Mode::Soak => "soak",
        },
        jobs: plan.jobs,
        prefetch: plan.spec.prefetch,
        in_flight: rig.prefetch,
        rate_limit: plan.spec.rate_limit,
        vendor_latency_ms: plan.spec.latency.as_millis() as u64,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        scratch_vhost: vhost.to_owned(),
        redis_prefix: prefix.to_owned(),
        figures,
    })
}

/// The three measurements, one after another, each on a fresh backlog of
/// the same jobs (ids differ, so no worker sees another's as sent).
async fn compare(rig: &Rig, jobs: usize) -> anyhow::Result<Compare> {
    let published = rig.publish("ceiling", 0..jobs).await?;
    let ceiling_jobs_per_sec = ceiling(rig, jobs, Acks::OneByOne).await?;
    rig.publish("pipelined", 0..jobs).await?;
    let pipelined_ceiling_jobs_per_sec = ceiling(rig, jobs, Acks::Pipelined).await?;
    rig.publish("handwritten", 0..jobs).await?;
    let handwritten = process::drain(rig, Kind::Handwritten, jobs as u64).await?;
    rig.publish("herald", 0..jobs).await?;
    let herald = process::drain(rig, Kind::Herald, jobs as u64).await?;
    Ok(Compare {
        publish_per_sec: jobs as f64 / published.as_secs_f64(),
        ceiling_jobs_per_sec,
        pipelined_ceiling_jobs_per_sec,
        herald_vs_handwritten: herald.jobs_per_sec / handwritten.jobs_per_sec,
        herald_vs_ceiling: herald.jobs_per_sec / ceiling_jobs_per_sec,
        herald_vs_handwritten_per_cpu: handwritten.cpu_us_per_job / herald.cpu_us_per_job,
        handwritten,
        herald,
    })
}

/// The broker's consume+ack rate on the rig's queue, which holds `jobs`.
async fn ceiling(rig: &Rig, jobs: usize, acks: Acks) -> anyhow::Result<f64> {
    let took = baseline::consume_and_ack(
        rig.connection(),
        &rig.queue(),
        rig.prefetch,
        jobs as u64,
        acks,
    )
    .await
    .context("the broker ceiling")?;
    Ok(jobs as f64 / took.as_secs_f64())
}

async fn alone(rig: &Rig, jobs: usize) -> anyhow::Result<Alone> {
    rig.publish("herald", 0..jobs).await?;
    let herald = process::drain(rig, Kind::Herald, jobs as u64).await?;
    Ok(Alone {
        herald,
        prefetch_bound_per_sec: (!rig.latency.is_zero())
            .then(|| f64::from(rig.prefetch) / rig.latency.as_secs_f64()),
    })
}

/// Herald consuming while `total` jobs are published at `--rate` for
/// `--duration`; its memory sampled evenly over that time, then once all
/// are sent.
async fn soak(rig: &Rig, args: &PipelineArgs, total: usize) -> anyhow::Result<Soak> {
    let mut worker = WorkerProcess::start(rig, Kind::Herald)?;
    let result = soak_with(rig, args, &mut worker, total).await;
    let stopped = worker.stop().await;
    let soak = result?;
    stopped?;
    Ok(soak)
}

async fn soak_with(
    rig: &Rig,
    args: &PipelineArgs,
    worker: &mut WorkerProcess,
    total: usize,
) -> anyhow::Result<Soak> {
    while rig.queue_state().await?.1 == 0 {
        worker.check_running()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_before = rig.sent();
    let sample = |started: Instant, worker: &WorkerProcess| -> anyhow::Result<Sample> {
        Ok(Sample {
            at_secs: started.elapsed().as_secs_f64(),
            rss_bytes: worker.rss()?,
            sent: rig.sent() - sent_before,
        })
    };
    let sample_every = args.duration / (args.samples - 1);
    let started = Instant::now();
    let mut samples = vec![sample(started, worker)?];
    let mut published = 0;
    while published < total {
        let due = ((f64::from(args.rate) * started.elapsed().as_secs_f64()) as usize).min(total);
        if due > published {
            rig.publish("soak", published..due).await?;
            published = due;
        }
        if started.elapsed() >= sample_every * samples.len() as u32 {
            samples.push(sample(started, worker)?);
        }
        worker.check_running()?;
        tokio::time::sleep(SOAK_TICK).await;
    }
    let published_per_sec = total as f64 / started.elapsed().as_secs_f64();
    process::wait_for_sends(rig, worker, total as u64, || rig.sent() - sent_before).await?;
    samples.push(sample(started, worker)?);
    Ok(Soak {
        rate: args.rate,
        seconds: started.elapsed().as_secs_f64(),
        published_per_sec,
        samples,
        peak_rss_bytes: worker.peak_rss()?,
        cpu_us_per_job: worker.cpu_time()?.as_secs_f64() * 1e6 / total as f64,
    })
}

impl Report {
    fn text(&self) -> String {
        let mut out = format!(
            "Herald pipeline benchmark, {} mode: {} jobs, vendor latency {}, {} deliveries in \
             flight per queue for every consumer (herald worker's max(amqp.prefetch {}, \
             rate limit × 1 s))\n\
             Jobs: ~400-byte Kaleyra text messages, every recipient's window open, on quorum \
             queue herald.send.kaleyra\n\
             Herald: global rate limit {}/s (burst = the run's jobs: checked for each, holds none back), pacing {} per recipient, \
             window enforced, events published\n\
             Caveat: {} core(s) shared with RabbitMQ, Redis and the mock vendor; compare \
             ratios within one run.\n\n",
            self.mode,
            self.jobs,
            format_duration(Duration::from_millis(self.vendor_latency_ms)),
            self.in_flight,
            self.prefetch,
            self.rate_limit,
            format_duration(rig::PACING),
            self.cores,
        );
        match &self.figures {
            Figures::Compare(c) => out.push_str(&c.text()),
            Figures::Alone(a) => out.push_str(&a.text(self.in_flight)),
            Figures::Soak(s) => out.push_str(&s.text()),
        }
        out
    }
}

const TABLE_HEAD: &str = "  measurement                     jobs/s  vs hand-written  vs ceiling  Redis cmds/job  scripts/job  CPU µs/job  jobs/CPU-s  peak RSS\n";

fn drain_row(name: &str, d: &Drain, vs_handwritten: f64, vs_ceiling: f64) -> String {
    format!(
        "  {name:<28} {:>9.0}  {:>14.2}×  {:>9.2}×  {:>14.2}  {:>11.2}  {:>10.1}  {:>10.0}  {:>5.1} MiB\n",
        d.jobs_per_sec,
        vs_handwritten,
        vs_ceiling,
        d.redis_commands_per_job,
        d.redis_script_calls_per_job,
        d.cpu_us_per_job,
        1e6 / d.cpu_us_per_job,
        probe::mib(d.peak_rss_bytes)
    )
}

/// `get 2.00, set 1.00, …`, most used first.
fn by_command(d: &Drain) -> String {
    let mut commands: Vec<_> = d.redis_by_command.iter().collect();
    commands.sort_by(|a, b| b.1.total_cmp(a.1));
    commands
        .iter()
        .filter(|(_, per_job)| **per_job >= 0.01)
        .map(|(command, per_job)| format!("{command} {per_job:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Compare {
    fn text(&self) -> String {
        let h = &self.handwritten;
        let mut out = String::from(TABLE_HEAD);
        for (name, rate) in [
            ("broker ceiling, acks 1 by 1", self.ceiling_jobs_per_sec),
            (
                "broker ceiling, acks piped",
                self.pipelined_ceiling_jobs_per_sec,
            ),
        ] {
            out.push_str(&format!(
                "  {name:<28} {rate:>9.0}  {:>15}  {:>9.2}×\n",
                "",
                rate / self.ceiling_jobs_per_sec
            ));
        }
        out.push_str(&drain_row(
            "hand-written worker",
            h,
            1.0,
            h.jobs_per_sec / self.ceiling_jobs_per_sec,
        ));
        out.push_str(&drain_row(
            "herald worker",
            &self.herald,
            self.herald_vs_handwritten,
            self.herald_vs_ceiling,
        ));
        out.push_str(&format!(
            "\nTargets for Herald: ≥ {TARGET_VS_HANDWRITTEN}× hand-written, ≥ {TARGET_VS_CEILING}× ceiling, \
             ≤ {TARGET_COMMANDS_PER_JOB} Redis round trips per job.\n\
             Per CPU-second Herald sends {:.2}× the hand-written worker's jobs: the ratio where \
             the worker's CPU is the bottleneck (on a busy machine the broker may be first).\n\
             Redis commands per job, by command, from INFO commandstats: a script call is one \
             round trip, but Redis also counts each command the script runs, and cannot tell \
             those from commands sent directly; other clients of this Redis add noise.\n  \
             hand-written: {}\n  herald:       {}\n\
             The ceiling acks each delivery before taking the next, as ../shared/bench/ceiling \
             does (the reference of the targets); with acks pipelined the broker goes further.\n\
             Publishing (confirmed): {:.0} jobs/s. Rates run from the first vendor call to the last; \
             CPU is the worker process's user + system time, start-up included.\n",
            self.herald_vs_handwritten_per_cpu,
            by_command(h),
            by_command(&self.herald),
            self.publish_per_sec,
        ));
        out
    }
}

impl Alone {
    fn text(&self, in_flight: u16) -> String {
        let d = &self.herald;
        let mut out = format!(
            "  herald worker: {:.0} jobs/s, {:.1} µs CPU per job, {:.2} Redis commands per job \
             ({:.2} script calls), peak RSS {:.1} MiB\n  Redis commands by command: {}\n",
            d.jobs_per_sec,
            d.cpu_us_per_job,
            d.redis_commands_per_job,
            d.redis_script_calls_per_job,
            probe::mib(d.peak_rss_bytes),
            by_command(d),
        );
        match self.prefetch_bound_per_sec {
            Some(bound) => {
                let limit = if d.jobs_per_sec >= 0.8 * bound {
                    "the deliveries in flight: at most P jobs at once, each for L"
                } else {
                    "not the deliveries in flight: the worker's own speed (CPU, Redis, broker) or the rate limit"
                };
                out.push_str(&format!(
                    "  Target ≥ {TARGET_SLOW_VENDOR_PER_SEC} jobs/s to one account. In flight P = {in_flight}, \
                     so P / latency = {bound:.0} jobs/s at most ({:.0}% reached); the limit is {limit}.\n",
                    100.0 * d.jobs_per_sec / bound
                ));
            }
            None => out.push_str(&format!(
                "  Target: peak RSS < {TARGET_PEAK_RSS_MIB} MiB.\n"
            )),
        }
        out
    }
}

impl Soak {
    fn text(&self) -> String {
        let mut out = format!(
            "  published {:.0} jobs/s (asked {}) for {:.0} s; herald worker {:.1} µs CPU per job, \
             peak RSS {:.1} MiB\n\n  {:>8}  {:>9}  {:>9}\n",
            self.published_per_sec,
            self.rate,
            self.seconds,
            self.cpu_us_per_job,
            probe::mib(self.peak_rss_bytes),
            "at s",
            "RSS MiB",
            "sent"
        );
        for s in &self.samples {
            out.push_str(&format!(
                "  {:>8.0}  {:>9.1}  {:>9}\n",
                s.at_secs,
                probe::mib(s.rss_bytes),
                s.sent
            ));
        }
        if let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) {
            out.push_str(&format!(
                "\n  RSS start {:.1} MiB, end {:.1} MiB (target: flat, under {TARGET_PEAK_RSS_MIB} MiB).\n",
                probe::mib(first.rss_bytes),
                probe::mib(last.rss_bytes)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PipelineArgs,
    }

    fn plan_of(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("pipeline").chain(args.iter().copied()))?;
        plan(&cli.args)
    }

    #[test]
    fn each_mode_has_its_own_jobs_and_latency_unless_told() {
        let compare = plan_of(&[]).unwrap();
        assert_eq!(
            (compare.jobs, compare.spec.latency),
            (20_000, Duration::ZERO)
        );
        let slow = plan_of(&["--mode", "slow-vendor"]).unwrap();
        assert_eq!(
            (slow.jobs, slow.spec.latency),
            (10_000, Duration::from_millis(200))
        );
        let told = plan_of(&["--mode", "memory", "--jobs", "500", "--latency", "5ms"]).unwrap();
        assert_eq!(
            (told.jobs, told.spec.latency),
            (500, Duration::from_millis(5))
        );
    }

    #[test]
    fn a_soak_publishes_rate_times_duration() {
        let soak = plan_of(&["--mode", "soak", "--rate", "250", "--duration", "2m"]).unwrap();
        assert_eq!(soak.jobs, 30_000);
    }

    #[test]
    fn nonsense_settings_are_refused_naming_the_flag() {
        for (args, flag) in [
            (&["--prefetch", "0"][..], "--prefetch"),
            (&["--rate-limit", "0"][..], "--rate-limit"),
            (&["--jobs", "0"][..], "--jobs"),
            (&["--mode", "soak", "--jobs", "10"][..], "--jobs"),
            (&["--mode", "soak", "--rate", "0"][..], "--rate"),
            (&["--mode", "soak", "--samples", "1"][..], "--samples"),
        ] {
            let error = plan_of(args).unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }
}
