//! The set-up every measurement shares: a scratch vhost with Herald's
//! topology, a Redis prefix of its own, the in-process mock vendor, the
//! benchmark's jobs, and the configuration file both worker processes read.
//! [`Rig::teardown`] removes the vhost, the Redis keys and the files.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use herald_client::bulk::{self, Row};
use herald_client::{JobBuilder, Publisher, Topology};
use herald_core::config::WindowConfig;
use herald_core::{AccountConfig, Config, Job, JobErrors, RateScope};
use herald_mock_vendor::{FaultSpec, Faults, MockVendor, MockVendorHandle, Provider};
use herald_store::{Contact, Store};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use redis::aio::MultiplexedConnection;
use url::Url;

use super::probe;

/// The provider every job goes to: Kaleyra's form API, as in the issue's
/// measurements and the shared `ceiling` program.
pub const PROVIDER: &str = "kaleyra";
pub const ACCOUNT: &str = "default";
/// The environment variable the vendor key reaches both workers in; not a
/// `HERALD_*` name, so the configuration never reads it as an override.
pub const VENDOR_KEY_VAR: &str = "BENCH_VENDOR_KEY";
const VENDOR_KEY: &str = "bench-vendor-key";
/// Distinct recipients at most. With pacing on (one message per recipient
/// per [`PACING`]) a recipient comes round again only after this many jobs,
/// so pacing is checked for every job but binds only above
/// `RECIPIENTS / PACING` jobs per second.
const MAX_RECIPIENTS: usize = 100_000;
/// Per-recipient pacing: the WhatsApp pair rate (about one message every
/// 6 s to one user).
pub const PACING: Duration = Duration::from_secs(6);
/// Publishes in flight while filling a queue.
const PUBLISH_IN_FLIGHT: usize = 1_000;
/// Window openings sent to Redis at once.
const WINDOW_WRITES_IN_FLIGHT: usize = 256;

/// What a rig is built for.
#[derive(Debug, Clone, Copy)]
pub struct RigSpec {
    /// `amqp.prefetch`; Herald may keep more in flight (see [`Rig::prefetch`]).
    pub prefetch: u16,
    /// The account's global `rate_per_second`; its burst is `jobs`.
    pub rate_limit: f64,
    pub latency: Duration,
    /// Jobs the rig will publish in all, to size the recipient pool.
    pub jobs: usize,
}

pub struct Rig {
    /// Deliveries in flight per queue for every consumer: `amqp.prefetch`
    /// of the workers' configuration, raised the way `herald worker` raises
    /// it for the account's rate, so all three measurements run alike.
    pub prefetch: u16,
    pub latency: Duration,
    /// The configuration both worker processes read.
    pub config_path: PathBuf,
    /// Holds the configuration and the workers' logs; removed at teardown.
    pub dir: PathBuf,
    vhost: ScratchVhost,
    prefix: String,
    recipients: usize,
    io: Connected,
}

impl Rig {
    /// Builds the rig on the operator's broker and Redis (`base`); the
    /// management API at `rabbitmq_api` makes the scratch vhost. What was
    /// made before a failure is removed again.
    pub async fn start(base: &Config, rabbitmq_api: &Url, spec: RigSpec) -> anyhow::Result<Rig> {
        let name = format!("herald-bench-{}-{}", std::process::id(), rand_suffix());
        let dir = private_dir(&name)?;
        let vhost = match ScratchVhost::create(rabbitmq_api, &name).await {
            Ok(vhost) => vhost,
            Err(e) => {
                std::fs::remove_dir_all(&dir).ok();
                return Err(e);
            }
        };
        let prefix = format!("{}{name}:", base.redis.prefix);
        match Connected::open(base, &vhost.name, &prefix, &dir, spec).await {
            Ok(io) => Ok(Rig {
                prefetch: io.prefetch,
                latency: spec.latency,
                config_path: io.config_path.clone(),
                dir,
                vhost,
                prefix,
                recipients: spec.jobs.clamp(1, MAX_RECIPIENTS),
                io,
            }),
            Err(e) => {
                vhost.delete().await.ok();
                std::fs::remove_dir_all(&dir).ok();
                Err(e)
            }
        }
    }

    /// Removes everything the rig made; the first failure is reported after
    /// trying the rest.
    pub async fn teardown(self) -> anyhow::Result<()> {
        let Rig {
            dir,
            vhost,
            prefix,
            io:
                Connected {
                    mut redis,
                    mock,
                    connection,
                    ..
                },
            ..
        } = self;
        connection.close(200, "bench done".into()).await.ok();
        let vhost = vhost.delete().await;
        let keys = delete_keys(&mut redis, &prefix).await;
        let mock = mock.shutdown().await.context("the mock vendor failed");
        let files = std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()));
        vhost.and(keys).and(mock).and(files)
    }

    /// Where the scratch state lives, for the report.
    pub fn scratch(&self) -> (&str, &str) {
        (&self.vhost.name, &self.prefix)
    }

    /// The provider queue every worker consumes.
    pub fn queue(&self) -> String {
        herald_core::protocol::send_queue(PROVIDER)
    }

    pub fn connection(&self) -> &lapin::Connection {
        &self.io.connection
    }

    /// Opens the 24-hour window of every recipient the jobs go to, the way
    /// an inbound message does.
    pub async fn open_windows(&self) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        futures::stream::iter(0..self.recipients)
            .map(|r| {
                let contact = Contact {
                    provider: PROVIDER.to_owned(),
                    account: ACCOUNT.to_owned(),
                    digits: recipient(r).trim_start_matches('+').to_owned(),
                };
                async move {
                    self.io
                        .store
                        .record_inbound(&contact, now, &self.io.window)
                        .await
                }
            })
            .buffer_unordered(WINDOW_WRITES_IN_FLIGHT)
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("cannot open the recipients' windows in Redis")
    }

    /// Publishes jobs `range` of the run `tag`, confirmed; returns how long
    /// it took.
    pub async fn publish(&self, tag: &str, range: Range<usize>) -> anyhow::Result<Duration> {
        let wanted = range.len() as u64;
        let rows = range.map(|i| {
            Ok(Row {
                line: i as u64 + 1,
                job: self.job(tag, i),
            })
        });
        let started = Instant::now();
        let report = bulk::publish(&self.io.publisher, rows, PUBLISH_IN_FLIGHT, |_| {}).await;
        if report.published != wanted {
            bail!(
                "only {} of {wanted} jobs were confirmed by the broker",
                report.published
            );
        }
        Ok(started.elapsed())
    }

    /// Job `i` of run `tag`: a ~400-byte text message (a session message,
    /// so the window is checked) to one of the rig's recipients.
    fn job(&self, tag: &str, i: usize) -> Result<Job, JobErrors> {
        let order = 100_000 + i;
        let body = format!(
            "Your order {order} has left our warehouse and is on its way to you. \
             Follow it at any time in the app, or reply HELP and one of our team will \
             get back to you. It should reach you within two to three working days. \
             Thank you for shopping with us!"
        );
        let metadata = serde_json::json!({ "order": order, "campaign": "bench" });
        JobBuilder::text(
            format!("bench-{tag}-{i}"),
            PROVIDER,
            recipient(i % self.recipients),
            body,
        )
        .metadata(metadata.as_object().cloned().unwrap_or_default())
        .build()
    }

    /// Vendor calls the mock accepted so far.
    pub fn sent(&self) -> u64 {
        self.io
            .mock
            .stats()
            .get(&Provider::Kaleyra)
            .and_then(|s| s.statuses.get("200").copied())
            .unwrap_or(0)
    }

    /// Vendor calls the mock answered with anything but 200 so far.
    pub fn refused(&self) -> u64 {
        self.io
            .mock
            .stats()
            .get(&Provider::Kaleyra)
            .map_or(0, |s| s.requests)
            .saturating_sub(self.sent())
    }

    /// Ready messages and consumers of the provider queue (a passive
    /// declaration: exact, unlike the management API's lagging figures).
    pub async fn queue_state(&self) -> anyhow::Result<(u32, u32)> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = self
            .io
            .channel
            .queue_declare(self.queue().as_str().into(), passive, FieldTable::default())
            .await?;
        Ok((queue.message_count(), queue.consumer_count()))
    }

    /// Calls per command Redis has served so far (every client's, and
    /// commands run inside scripts included).
    pub async fn redis_calls(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut redis = self.io.redis.clone();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut redis)
            .await
            .context("INFO commandstats")?;
        Ok(probe::command_calls(&info))
    }
}

/// The rig's connections and mock, made inside its vhost and directory.
struct Connected {
    config_path: PathBuf,
    prefetch: u16,
    window: WindowConfig,
    store: Store,
    redis: MultiplexedConnection,
    mock: MockVendorHandle,
    connection: lapin::Connection,
    channel: lapin::Channel,
    publisher: Publisher,
}

impl Connected {
    async fn open(
        base: &Config,
        vhost: &str,
        prefix: &str,
        dir: &Path,
        spec: RigSpec,
    ) -> anyhow::Result<Connected> {
        let mock = MockVendor::start(
            "127.0.0.1:0".parse()?,
            Faults::everywhere(FaultSpec {
                latency_ms: spec.latency.as_millis() as u64,
                ..FaultSpec::default()
            }),
        )
        .await
        .context("cannot start the mock vendor")?;
        let config = worker_config(base, vhost, prefix, spec, &mock.base_url())?;
        let config_path = dir.join("herald.toml");
        write_private(&config_path, &toml::to_string(&config)?)?;
        let connection = herald_client::connect(&config.amqp.url, "bench")
            .await
            .context("cannot reach the broker (amqp.url)")?;
        let channel = connection.create_channel().await?;
        Topology::from_config(&config).declare(&channel).await?;
        let publisher = Publisher::new(&connection).await?;
        let store = Store::connect(&config.redis.url, prefix)
            .await
            .context("cannot reach Redis (redis.url)")?;
        let redis = redis::Client::open(config.redis.url.as_str())
            .map_err(|e| anyhow!("redis.url is not a Redis URL ({:?})", e.kind()))?
            .get_multiplexed_async_connection()
            .await
            .context("cannot reach Redis (redis.url)")?;
        Ok(Connected {
            config_path,
            prefetch: config.amqp.prefetch,
            window: config.window.clone(),
            store,
            redis,
            mock,
            connection,
            channel,
            publisher,
        })
    }
}

/// Recipient `r`: `+2547` and eight digits.
fn recipient(r: usize) -> String {
    format!("+2547{r:08}")
}

/// The operator's configuration pointed at the scratch vhost, prefix and
/// mock, with one Kaleyra account that has every feature on: a global rate
/// limit, per-recipient pacing, the 24-hour window. `amqp.prefetch` is what
/// `herald worker` would keep in flight for that rate, so the hand-written
/// worker, reading the same file, runs at the same concurrency.
fn worker_config(
    base: &Config,
    vhost: &str,
    prefix: &str,
    spec: RigSpec,
    vendor: &str,
) -> anyhow::Result<Config> {
    let mut config = base.clone();
    let mut amqp = Url::parse(&base.amqp.url).context("amqp.url is not a URL")?;
    amqp.set_path(&format!("/{vhost}"));
    config.amqp.url = amqp.into();
    config.redis.prefix = prefix.to_owned();
    config.http.listen = "127.0.0.1:0".parse()?;
    let mut settings = toml::Table::new();
    settings.insert("sid".into(), "HXBENCH0000001".into());
    settings.insert("from".into(), "+12025550123".into());
    settings.insert("api_key_env".into(), VENDOR_KEY_VAR.into());
    let account = AccountConfig {
        base_url: vendor.to_owned(),
        rate_per_second: Some(spec.rate_limit),
        // Enough for every job of the run: the limit is checked for each
        // job (its cost is what is measured) but never holds one back.
        burst: u32::try_from(spec.jobs).unwrap_or(u32::MAX).max(1),
        rate_scope: RateScope::Global,
        per_recipient_interval: Some(PACING),
        enforce_window: true,
        timeout: Duration::from_secs(10),
        settings,
    };
    config.providers = BTreeMap::from([(
        PROVIDER.to_owned(),
        BTreeMap::from([(ACCOUNT.to_owned(), account)]),
    )]);
    config.amqp.prefetch = spec.prefetch;
    config.amqp.prefetch = herald_worker::accounts::prefetch_for(&config, PROVIDER);
    // Through the parser, so the file the workers read is known to load.
    Config::from_toml_with_env(&toml::to_string(&config)?, &[])
        .context("the benchmark's worker configuration")
}

/// The vendor key, for the worker processes' environment.
pub fn vendor_key() -> (&'static str, &'static str) {
    (VENDOR_KEY_VAR, VENDOR_KEY)
}

/// A directory only this user can read: the configuration in it holds the
/// broker's and Redis's URLs, passwords included.
fn private_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Deletes every key under `prefix` (SCAN, then UNLINK a page at a time).
async fn delete_keys(redis: &mut MultiplexedConnection, prefix: &str) -> anyhow::Result<()> {
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .context("cannot list the benchmark's Redis keys")?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(redis)
                .await
                .context("cannot delete the benchmark's Redis keys")?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{nanos:08x}")
}

/// A vhost made for one run through the management API.
struct ScratchVhost {
    name: String,
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
            name: vhost.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prefetch: u16, rate_limit: f64) -> RigSpec {
        RigSpec {
            prefetch,
            rate_limit,
            latency: Duration::ZERO,
            jobs: 1,
        }
    }

    #[test]
    fn the_workers_configuration_has_every_feature_on_in_the_scratch_vhost() {
        let base = Config::default();
        let config = worker_config(
            &base,
            "scratch",
            "herald:scratch:",
            spec(48, 20.0),
            "http://127.0.0.1:9",
        )
        .unwrap();
        assert!(config.amqp.url.ends_with("/scratch"), "{}", config.amqp.url);
        assert_eq!(config.amqp.prefetch, 48);
        assert_eq!(config.redis.prefix, "herald:scratch:");
        let account = config.account(PROVIDER, ACCOUNT).unwrap();
        assert_eq!(account.rate_per_second, Some(20.0));
        assert_eq!(account.burst, 1, "the burst covers the run's jobs");
        assert_eq!(account.rate_scope, RateScope::Global);
        assert_eq!(account.per_recipient_interval, Some(PACING));
        assert!(account.enforce_window);
        assert_eq!(account.base_url, "http://127.0.0.1:9");
        assert_eq!(config.providers.len(), 1);
    }

    #[test]
    fn the_prefetch_is_raised_as_herald_raises_it_for_the_rate() {
        let config =
            worker_config(&Config::default(), "v", "p:", spec(64, 500.0), "http://x").unwrap();
        assert_eq!(config.amqp.prefetch, 500);
    }

    #[test]
    fn recipients_are_distinct_e164_numbers() {
        assert_eq!(recipient(0), "+254700000000");
        assert_eq!(recipient(99_999), "+254700099999");
    }
}
