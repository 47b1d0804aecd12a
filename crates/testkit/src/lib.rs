//! Test support shared by every integration test: where the real RabbitMQ and
//! Redis are, and an isolated corner of each for one test.
//!
//! Owns: finding the services (environment first, then the local defaults,
//! then testcontainers where a Docker engine exists) and isolation: each
//! [`TestEnv`] gets a fresh RabbitMQ vhost and a fresh Redis key prefix, both
//! removed when it drops, so tests run in parallel and leave nothing behind.
//! Must not touch: Herald's own logic. Tests talk to the real broker and Redis
//! through this crate; nothing here fakes them.
//!
//! Environment:
//! - `HERALD_TEST_AMQP_URL`   broker without vhost, default `amqp://guest:guest@127.0.0.1:5672`
//! - `HERALD_TEST_RABBITMQ_API` management API, default `http://guest:guest@127.0.0.1:15672`
//! - `HERALD_TEST_REDIS_URL`  default `redis://127.0.0.1:6379`

use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use tokio::sync::OnceCell;
use url::Url;

/// Where the services are, found once per test process.
#[derive(Debug, Clone)]
pub struct Services {
    /// Broker URL without a vhost path.
    pub amqp_base: String,
    /// Management API base, with credentials in the userinfo.
    pub rabbitmq_api: Url,
    pub redis_url: String,
}

static SERVICES: OnceCell<Services> = OnceCell::const_new();

impl Services {
    /// The services every test uses: from the environment, the local
    /// defaults when they answer, else containers (needs a Docker engine).
    pub async fn get() -> &'static Services {
        SERVICES
            .get_or_init(|| async {
                match Services::from_env_or_local().await {
                    Ok(s) => s,
                    Err(local) => containers::start().await.unwrap_or_else(|docker| {
                        panic!(
                            "no RabbitMQ/Redis for tests: {local:#}; and no Docker fallback: {docker:#}. \
                             Start them locally or set HERALD_TEST_AMQP_URL, HERALD_TEST_RABBITMQ_API, HERALD_TEST_REDIS_URL"
                        )
                    }),
                }
            })
            .await
    }

    async fn from_env_or_local() -> anyhow::Result<Services> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let services = Services {
            amqp_base: env("HERALD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"),
            rabbitmq_api: Url::parse(&env(
                "HERALD_TEST_RABBITMQ_API",
                "http://guest:guest@127.0.0.1:15672",
            ))?,
            redis_url: env("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        };
        if services.check().await.is_err() && std::env::var_os("HERALD_TEST_RABBITMQ_API").is_none()
        {
            enable_local_management().await;
        }
        services.check().await?;
        Ok(services)
    }

    async fn check(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_multiplexed_async_connection(),
        )
        .await
        .context("redis connect timed out")??;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let overview =
            api_request(reqwest::Method::GET, &self.rabbitmq_api, "/api/overview").await?;
        overview
            .error_for_status()
            .context("rabbitmq management API")?;
        Ok(())
    }
}

/// A local broker may run without its management plugin (a fresh machine's
/// default); the tests need it to make vhosts, so turn it on and wait for it.
async fn enable_local_management() {
    let enabled = tokio::process::Command::new("rabbitmq-plugins")
        .args(["-q", "enable", "rabbitmq_management"])
        .status()
        .await;
    if !enabled.is_ok_and(|status| status.success()) {
        return;
    }
    let api = Url::parse("http://guest:guest@127.0.0.1:15672").expect("valid");
    for _ in 0..60 {
        if api_request(reqwest::Method::GET, &api, "/api/overview")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn api_request(
    method: reqwest::Method,
    base: &Url,
    path: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut url = base.join(path)?;
    let (user, pass) = (
        url.username().to_owned(),
        url.password().unwrap_or("").to_owned(),
    );
    url.set_username("").ok();
    url.set_password(None).ok();
    let response = reqwest::Client::new()
        .request(method, url)
        .basic_auth(user, Some(pass))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    Ok(response)
}

/// One test's isolated corner of the broker and Redis.
#[derive(Debug)]
pub struct TestEnv {
    pub services: Services,
    /// The fresh vhost's name.
    pub vhost: String,
    /// `amqp://…/<vhost>`: connect here.
    pub amqp_url: String,
    pub redis_url: String,
    /// A fresh Redis key prefix, e.g. `test-1a2b3c:`; every key under it is
    /// deleted when the environment drops.
    pub prefix: String,
}

impl TestEnv {
    /// Creates a fresh vhost (full permissions for the broker user) and prefix.
    pub async fn new() -> TestEnv {
        let services = Services::get().await.clone();
        let tag: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(10)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        let vhost = format!("herald-test-{tag}");
        create_vhost(&services, &vhost)
            .await
            .expect("create test vhost");
        let amqp_url = format!("{}/{}", services.amqp_base.trim_end_matches('/'), vhost);
        TestEnv {
            redis_url: services.redis_url.clone(),
            prefix: format!("herald-test-{tag}:"),
            services,
            vhost,
            amqp_url,
        }
    }

    /// A new connection to this test's vhost.
    pub async fn amqp(&self) -> lapin::Connection {
        lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
            .await
            .expect("connect to test vhost")
    }

    /// A new Redis connection (keys must use [`TestEnv::prefix`]).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }

    /// Messages ready in a queue of this vhost, from the management API
    /// (which lags by a few seconds: prefer reading the queue where exactness matters).
    pub async fn queue_info(&self, queue: &str) -> anyhow::Result<serde_json::Value> {
        let path = format!(
            "/api/queues/{}/{}",
            urlencode(&self.vhost),
            urlencode(queue)
        );
        let response =
            api_request(reqwest::Method::GET, &self.services.rabbitmq_api, &path).await?;
        if !response.status().is_success() {
            bail!("queue {queue}: HTTP {}", response.status());
        }
        Ok(response.json().await?)
    }
}

impl TestEnv {
    /// Force-closes, through the management API, every connection to this
    /// vhost whose name contains `name_part` (e.g. `herald worker`), as a
    /// broker restart or network cut would. Returns how many were closed.
    pub async fn close_connections(&self, name_part: &str) -> anyhow::Result<usize> {
        let api = &self.services.rabbitmq_api;
        let path = format!("/api/vhosts/{}/connections", urlencode(&self.vhost));
        let connections: Vec<serde_json::Value> = api_request(reqwest::Method::GET, api, &path)
            .await?
            .json()
            .await?;
        let mut closed = 0;
        for connection in connections {
            let client_name = connection["client_properties"]["connection_name"]
                .as_str()
                .unwrap_or("");
            if client_name.contains(name_part) {
                let name = connection["name"].as_str().unwrap_or_default();
                let path = format!("/api/connections/{}", urlencode(name));
                api_request(reqwest::Method::DELETE, api, &path)
                    .await?
                    .error_for_status()?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let services = self.services.clone();
        let vhost = self.vhost.clone();
        let prefix = self.prefix.clone();
        // Drop cannot await, and may run inside a runtime: clean up on a
        // thread of its own and wait for it, so nothing outlives the test.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let path = format!("/api/vhosts/{}", urlencode(&vhost));
                api_request(reqwest::Method::DELETE, &services.rabbitmq_api, &path).await?;
                delete_prefix(&services.redis_url, &prefix).await
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("testkit: cleanup of {} failed: {e:#}", self.vhost);
        }
    }
}

async fn create_vhost(services: &Services, vhost: &str) -> anyhow::Result<()> {
    let api = &services.rabbitmq_api;
    api_request(
        reqwest::Method::PUT,
        api,
        &format!("/api/vhosts/{}", urlencode(vhost)),
    )
    .await?
    .error_for_status()?;
    let user = api.username();
    let path = format!("/api/permissions/{}/{}", urlencode(vhost), urlencode(user));
    let mut url = api.join(&path)?;
    url.set_username("").ok();
    url.set_password(None).ok();
    reqwest::Client::new()
        .put(url)
        .basic_auth(user, api.password())
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn delete_prefix(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> =
            redis::AsyncCommands::scan_match(&mut conn, format!("{prefix}*")).await?;
        let mut keys = Vec::new();
        while let Some(key) = futures_next(&mut iter).await {
            keys.push(key);
        }
        keys
    };
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

async fn futures_next(iter: &mut redis::AsyncIter<'_, String>) -> Option<String> {
    iter.next_item().await.and_then(Result::ok)
}

fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A unique suffix for names inside one test (ids, accounts).
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}-{n:016x}")
}

mod containers {
    //! The fallback for machines with a Docker engine and no local services.

    use super::*;
    use testcontainers::ImageExt;
    use testcontainers::runners::AsyncRunner;
    use testcontainers_modules::{rabbitmq::RabbitMq, redis::Redis};

    pub async fn start() -> anyhow::Result<Services> {
        let rabbit = RabbitMq::default()
            .with_tag("3.13-management")
            .start()
            .await?;
        let redis = Redis::default().with_tag("7.2").start().await?;
        let host = rabbit.get_host().await?;
        let amqp_port = rabbit.get_host_port_ipv4(5672).await?;
        let api_port = rabbit.get_host_port_ipv4(15672).await?;
        let redis_port = redis.get_host_port_ipv4(6379).await?;
        let services = Services {
            amqp_base: format!("amqp://guest:guest@{host}:{amqp_port}"),
            rabbitmq_api: Url::parse(&format!("http://guest:guest@{host}:{api_port}"))?,
            redis_url: format!("redis://{host}:{redis_port}"),
        };
        // The containers live as long as the test process.
        std::mem::forget(rabbit);
        std::mem::forget(redis);
        services.check().await?;
        Ok(services)
    }
}
