//! The worker processes under measurement — `herald worker` and the
//! hand-written worker — started from this same binary with the rig's
//! configuration, so each one's CPU time and memory are its own; and the
//! measurement of one of them draining a backlog.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use super::probe;
use super::rig::{Rig, vendor_key};

/// How often progress is read while a worker drains.
const POLL: Duration = Duration::from_millis(5);
/// A worker that sends nothing for this long (plus the vendor's latency)
/// has stalled: the measurement fails instead of waiting for ever.
const STALL: Duration = Duration::from_secs(30);
/// How long a worker may take to finish after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Which worker a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Herald,
    Handwritten,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Herald => "herald worker",
            Kind::Handwritten => "hand-written worker",
        }
    }

    fn subcommand(self) -> &'static [&'static str] {
        match self {
            Kind::Herald => &["worker"],
            Kind::Handwritten => &["bench", "pipeline-handwritten"],
        }
    }

    fn log_name(self) -> &'static str {
        match self {
            Kind::Herald => "herald-worker.log",
            Kind::Handwritten => "handwritten-worker.log",
        }
    }
}

/// A running worker process; killed if dropped before [`WorkerProcess::stop`].
pub struct WorkerProcess {
    kind: Kind,
    child: tokio::process::Child,
    pid: u32,
    log: std::path::PathBuf,
}

impl WorkerProcess {
    /// Starts `kind` on the rig's configuration. `HERALD_*` variables of
    /// this process are not passed on (they would override the rig's
    /// configuration); logs go at `info`, as in production, to a file.
    pub fn start(rig: &Rig, kind: Kind) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let log = rig.dir.join(kind.log_name());
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("--config")
            .arg(&rig.config_path)
            .args(kind.subcommand());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(name);
            }
        }
        let (key_var, key) = vendor_key();
        let child = command
            .env(key_var, key)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the {}", kind.label()))?;
        let pid = child.id().context("the worker exited at once")?;
        Ok(WorkerProcess {
            kind,
            child,
            pid,
            log,
        })
    }

    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        probe::cpu_time(self.pid)
    }

    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        probe::peak_rss(self.pid)
    }

    pub fn rss(&self) -> anyhow::Result<u64> {
        probe::rss(self.pid)
    }

    /// Fails, with the end of its log, if the worker has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "the {} exited ({status}); end of its log:\n{}",
                self.kind.label(),
                self.log_tail()
            ),
        }
    }

    /// SIGTERM, then waits for the worker to finish what it holds.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM)
            .with_context(|| format!("cannot signal the {}", self.kind.label()))?;
        let status = tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .with_context(|| format!("the {} did not stop after SIGTERM", self.kind.label()))??;
        if !status.success() {
            bail!(
                "the {} ended with {status}; end of its log:\n{}",
                self.kind.label(),
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// One worker draining a backlog of jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    pub jobs: u64,
    /// From the first vendor call to the last.
    pub seconds: f64,
    pub jobs_per_sec: f64,
    /// The worker process's user + system CPU over its whole life, start-up
    /// included, per job sent.
    pub cpu_us_per_job: f64,
    /// `VmHWM` of the worker process.
    pub peak_rss_bytes: u64,
    /// Commands Redis served from the worker's start to its stop, per job
    /// sent: every client's (other users of a shared Redis too), and the
    /// commands a script runs as well as the script call itself.
    pub redis_commands_per_job: f64,
    /// Of those, script calls (`EVAL`, `EVALSHA`, `FCALL`): one round trip
    /// each, however many commands the script runs.
    pub redis_script_calls_per_job: f64,
    /// The same, per command.
    pub redis_by_command: BTreeMap<String, f64>,
}

/// Starts `kind` on a rig whose queue holds `jobs` jobs and measures it
/// until the mock vendor has accepted all of them; then stops it.
pub async fn drain(rig: &Rig, kind: Kind, jobs: u64) -> anyhow::Result<Drain> {
    let calls_before = rig.redis_calls().await?;
    let sent_before = rig.sent();
    let mut worker = WorkerProcess::start(rig, kind)?;
    let (seconds, cpu, peak_rss) = {
        let sent = || rig.sent() - sent_before;
        let watched = wait_for_sends(rig, &mut worker, jobs, sent).await;
        match watched {
            Ok(seconds) => (seconds, worker.cpu_time()?, worker.peak_rss()?),
            Err(e) => {
                worker.stop().await.ok();
                return Err(e);
            }
        }
    };
    // After the stop, so the records of the last jobs sent are counted.
    worker.stop().await?;
    let calls = probe::calls_between(&calls_before, &rig.redis_calls().await?);
    let per_job = |n: u64| n as f64 / jobs as f64;
    Ok(Drain {
        jobs,
        seconds,
        jobs_per_sec: jobs as f64 / seconds,
        cpu_us_per_job: cpu.as_secs_f64() * 1e6 / jobs as f64,
        peak_rss_bytes: peak_rss,
        redis_commands_per_job: per_job(calls.values().sum()),
        redis_script_calls_per_job: per_job(probe::script_calls(&calls)),
        redis_by_command: calls.into_iter().map(|(c, n)| (c, per_job(n))).collect(),
    })
}

/// Waits until `sent()` reaches `jobs`; seconds from the first send to the
/// last. Fails when the worker exits or stops making progress.
pub async fn wait_for_sends(
    rig: &Rig,
    worker: &mut WorkerProcess,
    jobs: u64,
    sent: impl Fn() -> u64,
) -> anyhow::Result<f64> {
    let stall = STALL + rig.latency;
    let mut first_send = None;
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        let count = sent();
        let now = Instant::now();
        if count > 0 && first_send.is_none() {
            first_send = Some(now);
        }
        if count >= jobs {
            let first = first_send.unwrap_or(now);
            return Ok(now.duration_since(first).as_secs_f64().max(f64::EPSILON));
        }
        if count > last_count {
            (last_count, last_progress) = (count, now);
        } else if now.duration_since(last_progress) > stall {
            bail!(
                "the {} stalled at {count} of {jobs} jobs sent ({} refused by the vendor); \
                 end of its log:\n{}",
                worker.kind.label(),
                rig.refused(),
                worker.log_tail()
            );
        }
        worker.check_running()?;
        tokio::time::sleep(POLL).await;
    }
}
