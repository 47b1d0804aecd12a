//! One scenario's world: a fresh vhost on the local RabbitMQ, a private
//! Redis, replicas of the real `herald worker` process, and a mock vendor
//! per worker process so every vendor request is known to come from one
//! process. Everything started here is stopped when the cluster drops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use herald_client::{Outgoing, Publisher, Topology};
use herald_core::Config;
use herald_core::protocol::{DEAD_QUEUE, SEND_EXCHANGE};
use herald_mock_vendor::{Faults, MockVendor, MockVendorHandle, Provider};
use herald_testkit::TestEnv;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::check::{Acceptance, Attempted, History, Kill, Letter};
use crate::load::{self, Planned};
use crate::redis::{Persistence, PrivateRedis};

/// The vendor call timeout of every account: the longest a call can be in
/// flight, hence the window in which a SIGKILL can orphan an acceptance.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the workers get to finish in-flight jobs after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Nothing new at the vendor for this long (longer than a call can take)
/// means the workers have run out of work.
const QUIET: Duration = Duration::from_secs(3);

const REDIS_PREFIX: &str = "herald:";

/// Retries generous enough that a brownout or a Redis outage of the suite's
/// length never exhausts them: a dead `retries_exhausted` is a wrong reason.
/// The load accounts are rate-limited to `rate` (shared by the replicas),
/// so deliveries queue up inside the workers as they would under real load.
fn config_toml(keys: &Path, rate: f64) -> String {
    let key = |name: &str| format!("{:?}", keys.join(name).display().to_string());
    let timeout = herald_core::config::format_duration(CALL_TIMEOUT);
    let grace = herald_core::config::format_duration(SHUTDOWN_GRACE);
    let load = format!("enforce_window = false\nrate_per_second = {rate}\n");
    let kaleyra = format!(
        "sid = \"HXFAULTS\"\nfrom = \"+12025550123\"\napi_key_file = {}\n",
        key("kaleyra.key")
    );
    let accounts = [
        ("kaleyra", "default", format!("{kaleyra}{load}")),
        ("kaleyra", load::WINDOWED_ACCOUNT, kaleyra.clone()),
        (
            "pingup",
            "default",
            format!(
                "business = \"faults\"\napi_key_file = {}\n{load}",
                key("pingup.key")
            ),
        ),
        (
            "payhero",
            "default",
            format!(
                "session = \"faults\"\nbasic_token_file = {}\n{load}",
                key("payhero.key")
            ),
        ),
    ];
    let mut toml = format!(
        r#"[http]
listen = "127.0.0.1:0"

[amqp]
prefetch = 16

[retry]
immediate = 1
delays = ["1s", "2s", "5s"]
max_attempts = 20

[worker]
shutdown_grace = "{grace}"
"#
    );
    // Each worker process gets its own vendor through
    // HERALD_PROVIDERS__<provider>__<account>__base_url.
    for (provider, account, settings) in accounts {
        let _ = write!(
            toml,
            "\n[providers.{provider}.{account}]\nbase_url = \"http://127.0.0.1:9\"\ntimeout = \"{timeout}\"\n{settings}"
        );
    }
    toml
}

/// One `herald worker` process and the mock vendor only it talks to.
struct Worker {
    name: String,
    vendor: MockVendorHandle,
    process: Option<Child>,
    log: PathBuf,
    killed_at: Option<DateTime<Utc>>,
}

pub struct Cluster {
    herald: PathBuf,
    env: TestEnv,
    pub redis: PrivateRedis,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    connection: lapin::Connection,
    channel: lapin::Channel,
    faults: Faults,
    /// Every worker process started, in order.
    workers: Vec<Worker>,
    /// For each replica slot, the index in `workers` of its current process.
    slots: Vec<usize>,
    /// What happened that the counts do not show.
    pub notes: Vec<String>,
}

impl Cluster {
    /// Declares the topology in a fresh vhost, starts the private Redis and
    /// `replicas` workers sending at most `rate` a second per load account,
    /// the vendor misbehaving as `faults` says.
    pub async fn start(
        herald: &Path,
        persistence: Persistence,
        replicas: usize,
        rate: f64,
        faults: Faults,
    ) -> anyhow::Result<Cluster> {
        ensure!(
            herald.exists(),
            "no herald binary at {}: build it first",
            herald.display()
        );
        let env = TestEnv::new().await;
        let dir = tempfile::tempdir().context("temp dir")?;
        for (file, secret) in [
            ("kaleyra.key", "faults-kaleyra-key"),
            ("pingup.key", "faults-pingup-key"),
            ("payhero.key", "faults-payhero-token"),
        ] {
            std::fs::write(dir.path().join(file), secret).context("write a secret")?;
        }
        let toml = config_toml(dir.path(), rate);
        let config_path = dir.path().join("herald.toml");
        std::fs::write(&config_path, &toml).context("write the configuration")?;
        let config = Config::from_toml_with_env(&toml, &[])
            .map_err(|e| anyhow::anyhow!("the suite's own configuration: {e}"))?;
        let redis_dir = dir.path().join("redis");
        std::fs::create_dir(&redis_dir).context("redis dir")?;
        let redis = PrivateRedis::start(&redis_dir, persistence).await?;

        let connection = herald_client::connect(&env.amqp_url, "fault suite").await?;
        let channel = connection.create_channel().await?;
        Topology::from_config(&config).declare(&channel).await?;

        let mut cluster = Cluster {
            herald: herald.to_owned(),
            env,
            redis,
            dir,
            config_path,
            config,
            connection,
            channel,
            faults,
            workers: Vec::new(),
            slots: Vec::new(),
            notes: Vec::new(),
        };
        for slot in 0..replicas {
            let index = cluster.spawn_worker(slot).await?;
            cluster.slots.push(index);
        }
        Ok(cluster)
    }

    /// Keeps the configuration, the worker logs and Redis's files after
    /// the cluster is gone, for a failed scenario to be looked into.
    pub fn keep_files(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_owned()
    }

    /// A producer on the cluster's connection (publishes with confirms).
    pub async fn producer(&self) -> anyhow::Result<Producer> {
        Ok(Producer {
            publisher: Publisher::new(&self.connection).await?,
        })
    }

    /// `herald --config … <args>` with the cluster's broker and Redis.
    fn herald(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.herald);
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("HERALD_CONFIG")
            .env("HERALD_AMQP_URL", &self.env.amqp_url)
            .env("HERALD_REDIS_URL", self.redis.url())
            .env("HERALD_REDIS_PREFIX", REDIS_PREFIX)
            .env("HERALD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs a `herald` command to completion; fails naming its stderr.
    pub async fn run_herald(&self, args: &[&str]) -> anyhow::Result<Output> {
        let output = self.herald(args).output().await?;
        if !output.status.success() {
            bail!(
                "herald {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }

    /// Starts a `herald` command, its stderr in a log file of the run.
    pub fn spawn_herald(&self, args: &[&str], log: &str) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.path().join(log))?;
        Ok(self
            .herald(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    /// Starts a worker process for `slot` with a vendor of its own; returns
    /// its index in `workers`.
    async fn spawn_worker(&mut self, slot: usize) -> anyhow::Result<usize> {
        let generation = self
            .workers
            .iter()
            .filter(|w| w.name.starts_with(&format!("w{slot}.")))
            .count();
        let name = format!("w{slot}.{generation}");
        let vendor = MockVendor::start(([127, 0, 0, 1], 0).into(), self.faults.clone()).await?;
        let log = self.dir.path().join(format!("{name}.log"));
        let mut command = self.herald(&["worker"]);
        for (provider, accounts) in &self.config.providers {
            for account in accounts.keys() {
                command.env(
                    format!("HERALD_PROVIDERS__{provider}__{account}__base_url"),
                    vendor.base_url(),
                );
            }
        }
        let process = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start worker {name}"))?;
        self.workers.push(Worker {
            name,
            vendor,
            process: Some(process),
            log,
            killed_at: None,
        });
        Ok(self.workers.len() - 1)
    }

    /// Stops `slot`'s worker with `signal` and starts a new one in its place.
    pub async fn replace(&mut self, slot: usize, signal: Signal) -> anyhow::Result<()> {
        self.stop(self.slots[slot], signal).await?;
        self.slots[slot] = self.spawn_worker(slot).await?;
        Ok(())
    }

    /// Signals a worker and waits for it to exit. A SIGTERM that is not
    /// obeyed within the grace period (and a margin) is noted, then killed.
    async fn stop(&mut self, index: usize, signal: Signal) -> anyhow::Result<()> {
        let worker = &mut self.workers[index];
        let Some(mut process) = worker.process.take() else {
            return Ok(());
        };
        let pid = process.id().context("a running worker has a pid")?;
        let asked = Instant::now();
        let asked_at = Utc::now();
        if signal == Signal::SIGKILL {
            worker.killed_at = Some(asked_at);
        }
        kill(Pid::from_raw(pid as i32), signal)?;
        let patience = SHUTDOWN_GRACE + Duration::from_secs(5);
        let note = match tokio::time::timeout(patience, process.wait()).await {
            Ok(status) => format!(
                "{signal} {} at {}: exited ({}) after {} ms",
                worker.name,
                asked_at.format("%H:%M:%S%.3f"),
                status?,
                asked.elapsed().as_millis()
            ),
            Err(_) => {
                process.kill().await?;
                format!(
                    "{signal} {}: still running after {patience:?}; killed",
                    worker.name
                )
            }
        };
        self.notes.push(note);
        Ok(())
    }

    /// Closes every worker connection through the management API, as a
    /// broker restart or a network cut would. The API lists a new
    /// connection only after its next statistics tick (about 5 s), so this
    /// waits for workers that have just reconnected to show up.
    pub async fn drop_worker_connections(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut closed = 0;
        while closed < self.slots.len() && Instant::now() < deadline {
            closed += self.env.close_connections("herald worker").await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.notes.push(format!(
            "closed {closed} worker connections through the management API"
        ));
        Ok(())
    }

    /// The vendor misbehaves as `faults` says from now on, for every worker.
    pub fn set_faults(&mut self, faults: Faults) -> anyhow::Result<()> {
        for worker in &self.workers {
            worker.vendor.set_faults(faults.clone())?;
        }
        self.faults = faults;
        Ok(())
    }

    /// Messages ready in `queue`.
    async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = self
            .channel
            .queue_declare(queue.into(), passive, Default::default())
            .await
            .with_context(|| format!("read the depth of {queue}"))?;
        Ok(declared.message_count())
    }

    /// Copies waiting in the provider queues and delay tiers.
    async fn pending(&self) -> anyhow::Result<u32> {
        let mut pending = 0;
        for queue in Topology::from_config(&self.config).queues() {
            if queue != DEAD_QUEUE {
                pending += self.depth(&queue).await?;
            }
        }
        Ok(pending)
    }

    /// Waits until `herald.dead` holds at least `n` letters.
    pub async fn wait_for_dead(&self, n: u32, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.depth(DEAD_QUEUE).await? < n {
            ensure!(
                Instant::now() < deadline,
                "fewer than {n} dead letters within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// The last time any vendor received a request, and the distinct jobs
    /// they accepted.
    fn vendor_progress(&self) -> (Option<DateTime<Utc>>, usize) {
        let mut last = None;
        let mut accepted = HashSet::new();
        for worker in &self.workers {
            for request in worker.vendor.requests() {
                last = last.max(Some(request.received_at));
                if request.status == Some(200)
                    && let Some(id) = load::job_id_in(&request.body)
                {
                    accepted.insert(id);
                }
            }
        }
        (last, accepted.len())
    }

    /// Runs the workers until every job is accounted for and nothing is
    /// queued or being sent, then stops them gracefully. Copies the broker
    /// hands back at the stop (unacked) get the workers started again.
    pub async fn drain(&mut self, attempted: &[Attempted], within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.wait_until_idle(attempted.len(), deadline).await?;
            for slot in 0..self.slots.len() {
                self.stop(self.slots[slot], Signal::SIGTERM).await?;
            }
            let pending = self.pending().await?;
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.notes.push(format!(
                    "{pending} copies still queued when the drain gave up after {within:?}"
                ));
                return Ok(());
            }
            self.notes.push(format!(
                "{pending} copies queued after the workers stopped; started them again"
            ));
            for slot in 0..self.slots.len() {
                self.slots[slot] = self.spawn_worker(slot).await?;
            }
        }
    }

    async fn wait_until_idle(&self, jobs: usize, deadline: Instant) -> anyhow::Result<()> {
        let quiet = chrono::Duration::from_std(QUIET)?;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (last_call, accepted) = self.vendor_progress();
            let dead = self.depth(DEAD_QUEUE).await? as usize;
            let quiet_vendor = last_call.is_none_or(|at| Utc::now() - at > quiet);
            if accepted + dead >= jobs && quiet_vendor && self.pending().await? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// What the vendors answered, per provider and status, over every
    /// worker's vendor: evidence that the faults bit.
    pub fn vendor_answers(&self) -> String {
        let mut totals: BTreeMap<Provider, BTreeMap<String, u64>> = BTreeMap::new();
        for worker in &self.workers {
            for (provider, stats) in worker.vendor.stats() {
                for (status, n) in stats.statuses {
                    *totals
                        .entry(provider)
                        .or_default()
                        .entry(status)
                        .or_default() += n;
                }
            }
        }
        let providers: Vec<String> = totals
            .iter()
            .map(|(provider, statuses)| {
                let statuses: Vec<String> =
                    statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
                format!("{provider} {}", statuses.join(" "))
            })
            .collect();
        format!("vendor answers: {}", providers.join("; "))
    }

    /// What the vendors accepted, what is dead, and who was killed when.
    pub async fn history(&self, attempted: Vec<Attempted>) -> anyhow::Result<History> {
        let mut acceptances = Vec::new();
        let mut kills = HashMap::new();
        let mut logged_any = false;
        for worker in &self.workers {
            for request in worker.vendor.requests() {
                if request.status != Some(200) {
                    continue;
                }
                let job_id = load::job_id_in(&request.body).with_context(|| {
                    format!("a vendor request without a job id: {}", request.body)
                })?;
                acceptances.push(Acceptance {
                    job_id,
                    at: request.received_at,
                    by: worker.name.clone(),
                });
            }
            let log = std::fs::read_to_string(&worker.log)
                .with_context(|| format!("read {}", worker.log.display()))?;
            let logged_sent = sent_in_log(&log);
            logged_any |= !logged_sent.is_empty();
            if let Some(at) = worker.killed_at {
                kills.insert(worker.name.clone(), Kill { at, logged_sent });
            }
        }
        // The SIGKILL criterion reads the logs: a log format that no longer
        // says `sent` must stop the run, not explain every duplicate.
        ensure!(
            logged_any || acceptances.is_empty(),
            "the vendors accepted {} requests but no worker log has a `sent` line (message \"sent\", field job_id): did the log format change?",
            acceptances.len()
        );
        let letters = herald_dlq::collect(&self.connection, &Default::default())
            .await?
            .into_iter()
            .map(|letter| Letter {
                job_id: letter.job_id.unwrap_or_default(),
                reason: letter.reason,
            })
            .collect();
        Ok(History {
            attempted,
            acceptances,
            letters,
            kills,
            call_window: CALL_TIMEOUT,
        })
    }
}

/// Job ids a worker's JSON log reports as `sent`.
fn sent_in_log(log: &str) -> HashSet<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "sent")
        .filter_map(|line| line["fields"]["job_id"].as_str().map(str::to_owned))
        .collect()
}

/// Publishes a scenario's load with publisher confirms.
pub struct Producer {
    publisher: Publisher,
}

impl Producer {
    /// Publishes `plan` evenly over `over`; returns the jobs the broker
    /// confirmed (only those count as attempted).
    pub async fn publish(
        &self,
        plan: &[Planned],
        over: Duration,
    ) -> anyhow::Result<Vec<Attempted>> {
        let started = tokio::time::Instant::now();
        let step = over / plan.len().max(1) as u32;
        let mut pending = Vec::with_capacity(plan.len());
        for (i, job) in plan.iter().enumerate() {
            tokio::time::sleep_until(started + step * i as u32).await;
            let message =
                Outgoing::json(SEND_EXCHANGE, &job.routing_key, &job.body).with_message_id(&job.id);
            pending.push((job, self.publisher.start(message).await?));
        }
        let mut attempted = Vec::with_capacity(plan.len());
        for (job, confirm) in pending {
            if confirm.wait().await.is_ok() {
                attempted.push(job.attempted());
            }
        }
        Ok(attempted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sent_lines_of_the_json_log_count() {
        let log = r#"{"timestamp":"…","level":"INFO","fields":{"message":"sent","job_id":"a","attempt":1},"target":"herald_worker::supervisor"}
{"timestamp":"…","level":"INFO","fields":{"message":"duplicate: already sent, not sent again","job_id":"b"}}
not json at all
{"timestamp":"…","level":"INFO","fields":{"message":"sent","job_id":"c"}}"#;
        let sent = sent_in_log(log);
        assert_eq!(sent, HashSet::from(["a".to_owned(), "c".to_owned()]));
    }

    #[test]
    fn the_suite_configuration_is_valid() {
        let toml = config_toml(Path::new("/run/keys"), 20.0);
        let config = Config::from_toml_with_env(&toml, &[]).expect("valid");
        assert_eq!(config.providers["kaleyra"].len(), 2);
    }
}
