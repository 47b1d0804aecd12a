//! `herald bench pipeline`: jobs through the whole path — confirmed publish,
//! `herald worker`'s pipeline (idempotency, rate limiter, vendor call,
//! settle, ack) and an in-process mock vendor — on the configured broker and
//! Redis, in a scratch vhost of its own that is deleted afterwards.
//!
//! Printed figures, not pass/fail: publish rate, end-to-end jobs per second
//! for each prefetch and vendor latency, and the process's peak memory.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_client::bulk::{self, Row};
use herald_client::{JobBuilder, Publisher, Topology};
use herald_core::Config;
use herald_mock_vendor::{FaultSpec, Faults, MockVendor};
use tokio_util::sync::CancellationToken;
use url::Url;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  herald bench pipeline --jobs 500 --prefetch 32 --latency 0ms\n  herald bench pipeline --jobs 1000 --prefetch 32,128 --latency 0ms,20ms\n\nThe figures in the README come from the defaults: herald bench pipeline (release build)"
)]
pub struct PipelineArgs {
    /// Jobs per run.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Prefetch values to compare (unacked deliveries per provider queue).
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    prefetch: Vec<u16>,
    /// Vendor latencies to compare.
    #[arg(long, value_delimiter = ',', value_parser = herald_core::config::parse_duration, default_value = "0ms,20ms")]
    latency: Vec<Duration>,
    /// RabbitMQ management API, used to create and delete the scratch vhost.
    #[arg(
        long,
        default_value = "http://guest:guest@127.0.0.1:15672",
        value_name = "URL"
    )]
    rabbitmq_api: Url,
}

/// One run's figures.
struct Figures {
    publish_per_sec: f64,
    jobs_per_sec: f64,
}

pub async fn pipeline(args: PipelineArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    if args.jobs == 0 || args.prefetch.contains(&0) {
        bail!("--jobs and every --prefetch must be at least 1");
    }
    let base = super::super::load_config(config)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Herald pipeline benchmark: {} jobs per run, Kaleyra wire format, mock vendor in-process",
        args.jobs
    );
    println!(
        "Caveat: {cores} CPU core(s) shared by this process, RabbitMQ and Redis; compare ratios within one run."
    );
    println!();
    println!(
        "  {:>8}  {:>10}  {:>11}  {:>10}  {:>8}",
        "prefetch", "vendor lat", "publish/s", "sent/s", "vs first"
    );
    let mut first = None;
    for &latency in &args.latency {
        for &prefetch in &args.prefetch {
            let figures = run_once(&args, &base, prefetch, latency).await?;
            let baseline = *first.get_or_insert(figures.jobs_per_sec);
            println!(
                "  {prefetch:>8}  {:>10}  {:>11.0}  {:>10.0}  {:>7.2}×",
                format!("{}ms", latency.as_millis()),
                figures.publish_per_sec,
                figures.jobs_per_sec,
                figures.jobs_per_sec / baseline
            );
        }
    }
    println!();
    if let Some(peak) = peak_rss_kib() {
        println!(
            "Peak resident memory of this process (publisher, worker and mock vendor together): {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    println!(
        "With vendor latency L and prefetch P, one worker's ceiling is about P/L per provider queue: \
         prefetch is the knob that bounds in-flight sends (and memory)."
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_once(
    args: &PipelineArgs,
    base: &Config,
    prefetch: u16,
    latency: Duration,
) -> anyhow::Result<Figures> {
    let vhost = format!("herald-bench-{}-{}", std::process::id(), rand_suffix());
    let api = ScratchVhost::create(&args.rabbitmq_api, &vhost).await?;
    let result = measure(args, base, &vhost, prefetch, latency).await;
    api.delete().await?;
    result
}

async fn measure(
    args: &PipelineArgs,
    base: &Config,
    vhost: &str,
    prefetch: u16,
    latency: Duration,
) -> anyhow::Result<Figures> {
    let spec = FaultSpec {
        latency_ms: latency.as_millis() as u64,
        ..FaultSpec::default()
    };
    let mock = MockVendor::start("127.0.0.1:0".parse()?, Faults::everywhere(spec)).await?;
    let key_file = tempfile_with("bench-key")?;
    let config = bench_config(base, vhost, prefetch, &mock.base_url(), &key_file)?;

    let connection = herald_client::connect(&config.amqp.url, "bench")
        .await
        .context("cannot reach the broker")?;
    let channel = connection.create_channel().await?;
    Topology::from_config(&config).declare(&channel).await?;
    let publisher = Publisher::new(&connection).await?;
    let run = rand_suffix();
    let rows = (0..args.jobs).map(|i| {
        let job = JobBuilder::template(
            format!("bench-{run}-{i}"),
            "kaleyra",
            "+254712345678",
            "order_update",
            "en",
            vec![i.to_string()],
        )
        .build();
        Ok(Row {
            line: i as u64 + 1,
            job,
        })
    });
    let started = Instant::now();
    let report = bulk::publish(&publisher, rows, bulk::DEFAULT_IN_FLIGHT, |_| {}).await;
    let publish_per_sec = report.published as f64 / started.elapsed().as_secs_f64();
    if report.published != args.jobs as u64 {
        bail!(
            "only {} of {} jobs were confirmed",
            report.published,
            args.jobs
        );
    }

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(herald_worker::run(config, shutdown.clone()));
    let started = Instant::now();
    while sent(&mock) < args.jobs as u64 {
        if worker.is_finished() {
            bail!("the worker stopped early");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let jobs_per_sec = args.jobs as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    worker.await??;
    connection.close(200, "bench done".into()).await.ok();
    mock.shutdown().await?;
    std::fs::remove_file(&key_file).ok();
    Ok(Figures {
        publish_per_sec,
        jobs_per_sec,
    })
}

fn sent(mock: &herald_mock_vendor::MockVendorHandle) -> u64 {
    mock.stats()
        .values()
        .map(|s| s.statuses.get("200").copied().unwrap_or(0))
        .sum()
}

/// The operator's configuration, pointed at the scratch vhost and mock, with
/// short-lived Redis keys under a prefix of their own.
fn bench_config(
    base: &Config,
    vhost: &str,
    prefetch: u16,
    vendor: &str,
    key_file: &Path,
) -> anyhow::Result<Config> {
    let mut amqp = Url::parse(&base.amqp.url).context("amqp.url")?;
    amqp.set_path(&format!("/{vhost}"));
    let text = format!(
        "[amqp]\nurl = {amqp:?}\nprefetch = {prefetch}\n\
         [redis]\nurl = {redis:?}\nprefix = {prefix:?}\n\
         [idempotency]\nttl = \"1m\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [providers.kaleyra.default]\nbase_url = {vendor:?}\nsid = \"HXAP1XXXXXX17XX\"\nfrom = \"+12025550123\"\n\
         api_key_file = {key:?}\nenforce_window = false\n",
        amqp = amqp.as_str(),
        redis = base.redis.url,
        prefix = format!("{}{vhost}:", base.redis.prefix),
        key = key_file.display().to_string(),
    );
    Ok(Config::from_toml_with_env(&text, &[])?)
}

fn tempfile_with(contents: &str) -> std::io::Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "herald-bench-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, contents)?;
    Ok(path)
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{nanos:08x}")
}

/// `VmHWM` of this process, KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A vhost made for one run through the management API.
struct ScratchVhost {
    client: reqwest::Client,
    url: Url,
    user: String,
    password: String,
}

impl ScratchVhost {
    async fn create(api: &Url, vhost: &str) -> anyhow::Result<ScratchVhost> {
        let user = api.username().to_owned();
        let password = api.password().unwrap_or_default().to_owned();
        let mut base = api.clone();
        base.set_username("").ok();
        base.set_password(None).ok();
        let encoded: String = url::form_urlencoded::byte_serialize(vhost.as_bytes()).collect();
        let vhost_url = base.join(&format!("/api/vhosts/{encoded}"))?;
        let permissions = base.join(&format!("/api/permissions/{encoded}/{user}"))?;
        let scratch = ScratchVhost {
            client: reqwest::Client::new(),
            url: vhost_url,
            user,
            password,
        };
        scratch
            .client
            .put(scratch.url.clone())
            .basic_auth(&scratch.user, Some(&scratch.password))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context(
                "cannot create a scratch vhost (is the management plugin on? see --rabbitmq-api)",
            )?;
        scratch
            .client
            .put(permissions)
            .basic_auth(&scratch.user, Some(&scratch.password))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("cannot grant permissions on the scratch vhost")?;
        Ok(scratch)
    }

    async fn delete(self) -> anyhow::Result<()> {
        self.client
            .delete(self.url.clone())
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("cannot delete the scratch vhost")?;
        Ok(())
    }
}
