//! The two reference points Herald is measured against, on the same queue
//! and jobs: the broker's consume+ack ceiling (in the benchmark's process),
//! and a minimal hand-written worker — a process of its own like `herald
//! worker`, started as the hidden `herald bench pipeline-handwritten` with
//! the rig's configuration file.
//!
//! The hand-written worker does per job only what sending needs at the
//! least: GET `sent:<id>`, GET the contact's `inbound:` key, the vendor's
//! form POST, SET `sent:<id>` EX, ack; as many jobs at once as the prefetch
//! lets in. No rate limit, pacing, retries, events or dead-lettering. It
//! writes the key names of CONTRACT §5 by hand, as any other worker would.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use serde::Deserialize;
use tokio_util::task::TaskTracker;

use super::rig::{ACCOUNT, PROVIDER, VENDOR_KEY_VAR};

/// How the broker ceiling acks its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Each ack sent before the next delivery is taken, as
    /// `../shared/bench/ceiling` does (the targets refer to it).
    OneByOne,
    /// Acks sent while the next deliveries are taken, as a worker with
    /// `prefetch` jobs in hand does: the broker's own limit.
    Pipelined,
}

/// Consumes `jobs` messages from `queue` with `prefetch`, acking each;
/// returns how long that took.
pub async fn consume_and_ack(
    connection: &lapin::Connection,
    queue: &str,
    prefetch: u16,
    jobs: u64,
    mode: Acks,
) -> anyhow::Result<Duration> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let started = std::time::Instant::now();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut acks = FuturesUnordered::new();
    let mut received = 0;
    while received < jobs || !acks.is_empty() {
        let wait_for_ack = !acks.is_empty() && (mode == Acks::OneByOne || received == jobs);
        tokio::select! {
            Some(acked) = acks.next(), if !acks.is_empty() => {
                acked?;
            }
            delivery = consumer.next(), if !wait_for_ack => {
                let delivery = delivery.context("the broker ended the consumer")??;
                received += 1;
                acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
            }
        }
    }
    let took = started.elapsed();
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    channel.close(200, "done".into()).await.ok();
    Ok(took)
}

/// What the hand-written worker reads of a job.
#[derive(Deserialize)]
struct JobFields {
    id: String,
    to: String,
    message: MessageFields,
}

#[derive(Deserialize)]
struct MessageFields {
    #[serde(rename = "type")]
    kind: String,
    body: String,
}

/// Everything one job needs, shared by every job.
struct Worker {
    redis: redis::aio::MultiplexedConnection,
    http: reqwest::Client,
    url: String,
    from: String,
    api_key: String,
    sent_key_prefix: String,
    inbound_key_prefix: String,
    window_ms: i64,
    remember_secs: u64,
}

/// `herald bench pipeline-handwritten`: the hand-written worker, until
/// SIGTERM; then it finishes the jobs it holds and exits.
pub async fn handwritten(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = crate::cmd::load_config(config)?;
    let account = config
        .account(PROVIDER, ACCOUNT)
        .with_context(|| format!("no [providers.{PROVIDER}.{ACCOUNT}] in the configuration"))?;
    let setting = |key: &str| {
        account
            .settings
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("providers.{PROVIDER}.{ACCOUNT}.{key} is missing"))
    };
    let api_key = std::env::var(VENDOR_KEY_VAR).with_context(|| {
        format!(
            "{VENDOR_KEY_VAR} is not set; this subcommand is started by `herald bench pipeline`"
        )
    })?;
    let prefix = &config.redis.prefix;
    let worker = Arc::new(Worker {
        redis: redis::Client::open(config.redis.url.as_str())
            // The parser's message may quote the URL, password and all.
            .map_err(|e| anyhow!("redis.url is not a Redis URL ({:?})", e.kind()))?
            .get_multiplexed_async_connection()
            .await
            .context("cannot reach Redis")?,
        http: reqwest::Client::builder()
            .timeout(account.timeout)
            .build()?,
        url: format!(
            "{}/v1/{}/messages",
            account.base_url.trim_end_matches('/'),
            setting("sid")?
        ),
        from: setting("from")?,
        api_key,
        sent_key_prefix: format!("{prefix}sent:"),
        inbound_key_prefix: format!("{prefix}inbound:{PROVIDER}:{ACCOUNT}:"),
        window_ms: config.window.open_for().as_millis() as i64,
        remember_secs: config.idempotency.ttl.as_secs(),
    });

    let shutdown = crate::cmd::shutdown_on_signals()?;
    let connection = herald_client::connect(&config.amqp.url, "bench hand-written worker")
        .await
        .context("cannot reach the broker")?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let queue = herald_core::protocol::send_queue(PROVIDER);
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let jobs = TaskTracker::new();
    loop {
        let delivery = tokio::select! {
            next = consumer.next() => next.context("the broker ended the consumer")??,
            _ = shutdown.cancelled() => break,
        };
        let worker = worker.clone();
        jobs.spawn(async move {
            if let Err(e) = worker.handle(delivery).await {
                eprintln!("hand-written worker: {e:#}");
            }
        });
    }
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    jobs.close();
    jobs.wait().await;
    connection.close(200, "done".into()).await.ok();
    Ok(ExitCode::SUCCESS)
}

impl Worker {
    /// One job: GET, GET, POST, SET, ack. A job it could not send is
    /// reported and requeued, to be tried again.
    async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        match self.send(&delivery.data).await {
            Ok(()) => {
                delivery.ack(BasicAckOptions::default()).await?;
                Ok(())
            }
            Err(e) => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                delivery.nack(requeue).await?;
                Err(e)
            }
        }
    }

    async fn send(&self, body: &[u8]) -> anyhow::Result<()> {
        let job: JobFields = serde_json::from_slice(body).context("not a job")?;
        let mut redis = self.redis.clone();
        let sent_key = format!("{}{}", self.sent_key_prefix, job.id);
        let sent: Option<String> = redis::cmd("GET")
            .arg(&sent_key)
            .query_async(&mut redis)
            .await?;
        if sent.is_some() {
            return Ok(());
        }
        let digits = job.to.trim_start_matches('+');
        let last_inbound: Option<i64> = redis::cmd("GET")
            .arg(format!("{}{digits}", self.inbound_key_prefix))
            .query_async(&mut redis)
            .await?;
        let now = chrono::Utc::now().timestamp_millis();
        if last_inbound.is_none_or(|at| now - at >= self.window_ms) {
            bail!("job {}: the window is closed", job.id);
        }
        let form = [
            ("to", job.to.as_str()),
            ("type", job.message.kind.as_str()),
            ("channel", "whatsapp"),
            ("from", self.from.as_str()),
            ("body", job.message.body.as_str()),
        ];
        let response = self
            .http
            .post(&self.url)
            .header("api-key", &self.api_key)
            .form(&form)
            .send()
            .await?;
        let status = response.status();
        // Read to the end, so the connection goes back to the pool.
        response.bytes().await?;
        if !status.is_success() {
            bail!("job {}: the vendor answered {status}", job.id);
        }
        redis::cmd("SET")
            .arg(&sent_key)
            .arg("1")
            .arg("EX")
            .arg(self.remember_secs)
            .query_async::<()>(&mut redis)
            .await?;
        Ok(())
    }
}
