//! The worker's lifetime: connect, declare, consume every provider queue,
//! reconnect when the broker goes away, and shut down gracefully.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use herald_client::{Publisher, Topology, redact_url};
use herald_core::Config;
use herald_core::protocol::send_queue;
use herald_store::Store;

use crate::accounts::prefetch_for;
use crate::health::Readiness;
use crate::outcome::{Outcome, Processed};
use crate::pipeline::{Lease, Pipeline};
use crate::settle::{Incoming, Settler};

/// How long shutdown waits for the broker to acknowledge a cancel or close.
const BROKER_GOODBYE: Duration = Duration::from_secs(3);
/// A broker session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Connects to Redis, retrying until it answers or shutdown is requested.
pub async fn connect_store(config: &Config, shutdown: &CancellationToken) -> Option<Store> {
    let mut delays = reconnect_backoff();
    loop {
        match Store::connect(&config.redis.url, &config.redis.prefix).await {
            Ok(store) => return Some(store),
            Err(e) => {
                let delay = delays.next().expect("endless");
                warn!(error = %e, ?delay, "Redis unreachable; not consuming until it answers");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Runs broker sessions until shutdown, reconnecting with backoff.
pub async fn consume_until_shutdown(
    config: &Config,
    pipeline: Arc<Pipeline>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    let topology = Topology::from_config(config);
    let mut delays = reconnect_backoff();
    loop {
        let started = Instant::now();
        let result = session(config, &topology, &pipeline, readiness, shutdown).await;
        readiness.set_broker(false);
        match result {
            Ok(()) => return,
            Err(e) => {
                readiness.broker_lost(&e);
                crate::metrics::broker_reconnect();
                if started.elapsed() > STABLE_SESSION {
                    delays = reconnect_backoff();
                }
                let delay = delays.next().expect("endless");
                warn!(error = %format!("{e:#}"), ?delay, "broker session ended; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// One connection's life. `Ok` only after a graceful shutdown.
async fn session(
    config: &Config,
    topology: &Topology,
    pipeline: &Arc<Pipeline>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let connection = herald_client::connect(&config.amqp.url, "worker")
        .await
        .with_context(|| format!("cannot connect to {}", redact_url(&config.amqp.url)))?;
    let setup = connection.create_channel().await?;
    topology
        .declare(&setup)
        .await
        .context("cannot declare the topology")?;
    setup.close(200, "declared".into()).await?;

    let in_flight = TaskTracker::new();
    // Cancelled when this session ends, however it ends: a delivery still
    // running then has lost its lease and must not call the vendor.
    let session_over = CancellationToken::new();
    let _end_session = session_over.clone().drop_guard();
    let mut consumers = JoinSet::new();
    for provider in &topology.providers {
        let queue = send_queue(provider);
        let channel = connection.create_channel().await?;
        let prefetch = prefetch_for(config, provider);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("cannot consume {queue}"))?;
        // A publisher per provider: a slow vendor's confirms never queue
        // behind another's.
        let settler = Arc::new(Settler::new(
            Publisher::new(&connection).await?,
            topology.clone(),
        ));
        let work = Work {
            pipeline: pipeline.clone(),
            settler,
            in_flight: in_flight.clone(),
            lease: Arc::new(ChannelLease {
                channel: channel.clone(),
                session_over: session_over.clone(),
            }),
        };
        info!(%queue, prefetch, "consuming");
        consumers.spawn(consume(queue, channel, consumer, work, shutdown.clone()));
    }
    readiness.set_broker(true);
    info!(url = %redact_url(&config.amqp.url), providers = ?topology.providers, "connected");

    let ended = tokio::select! {
        ended = consumers.join_next() => ended,
        _ = shutdown.cancelled() => None,
    };
    if let Some(ended) = ended {
        let cause = match ended {
            Ok(Err(e)) => e,
            Ok(Ok(())) => anyhow!("a consumer stopped"),
            Err(e) => anyhow!("a consumer task failed: {e}"),
        };
        return Err(cause);
    }

    // Graceful shutdown: every consumer cancels itself, then in-flight jobs
    // get the grace period to finish and are acked on their channels, which
    // their leases keep open; what does not finish stays unacked and the
    // broker redelivers it once this connection closes.
    while consumers.join_next().await.is_some() {}
    in_flight.close();
    let grace = config.worker.shutdown_grace;
    info!(
        in_flight = in_flight.len(),
        ?grace,
        "stopped consuming; finishing in-flight jobs"
    );
    if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
        warn!(
            unfinished = in_flight.len(),
            "grace period over; unfinished jobs stay unacked for redelivery"
        );
    }
    // A broker that went away mid-shutdown must not keep the process alive.
    let _ = tokio::time::timeout(BROKER_GOODBYE, connection.close(200, "shutdown".into())).await;
    Ok(())
}

/// What handling a delivery needs.
#[derive(Clone)]
struct Work {
    pipeline: Arc<Pipeline>,
    settler: Arc<Settler>,
    in_flight: TaskTracker,
    lease: Arc<ChannelLease>,
}

/// The lease of every delivery of one consumer channel. It holds a handle
/// of the channel, so the channel stays open (lapin closes a channel when
/// its last handle drops) until the deliveries taken on it are acked.
struct ChannelLease {
    channel: Channel,
    session_over: CancellationToken,
}

impl Lease for ChannelLease {
    fn held(&self) -> bool {
        !self.session_over.is_cancelled() && self.channel.status().connected()
    }
}

async fn consume(
    queue: String,
    channel: Channel,
    mut consumer: Consumer,
    work: Work,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.cancelled() => {
                let cancel = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
                let _ = tokio::time::timeout(BROKER_GOODBYE, cancel).await;
                return Ok(());
            }
        };
        match next {
            Some(Ok(delivery)) => {
                let work = work.clone();
                work.in_flight
                    .clone()
                    .spawn(async move { work.handle(delivery).await });
            }
            Some(Err(e)) => return Err(anyhow!(e).context(format!("consuming {queue}"))),
            None => return Err(anyhow!("the broker cancelled the consumer of {queue}")),
        }
    }
}

impl Work {
    /// Process, settle, then ack. Any failure before the ack leaves the job
    /// to the broker: requeued now, or redelivered when the channel closes.
    async fn handle(&self, delivery: Delivery) {
        let Delivery {
            data,
            routing_key,
            properties,
            acker,
            ..
        } = delivery;
        let _in_flight = crate::metrics::in_flight(routing_key.as_str());
        let incoming = Incoming {
            body: data,
            routing_key: routing_key.to_string(),
            properties,
        };
        let run = self.pipeline.process(
            &incoming.body,
            &incoming.routing_key,
            incoming.calls(),
            &*self.lease,
        );
        let processed = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(processed) => processed,
            Err(_) => {
                // Requeued; the queue's delivery limit dead-letters a job
                // that keeps doing this (`delivery_limit`).
                error!(routing_key = %incoming.routing_key, "the pipeline panicked on a job; requeueing it");
                requeue(&acker).await;
                return;
            }
        };
        report(&incoming, &processed);
        if processed.outcome == Outcome::Abandoned {
            return;
        }
        match self.settler.settle(&incoming, &processed).await {
            Ok(()) => {
                if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                    warn!(error = %e, "ack failed; the broker will redeliver and idempotency will catch it");
                }
            }
            Err(e) => {
                error!(error = %e, "could not publish the outcome; requeueing the job");
                requeue(&acker).await;
            }
        }
    }
}

async fn requeue(acker: &Acker) {
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(e) = acker.nack(requeue).await {
        warn!(error = %e, "nack failed; the broker redelivers when the channel closes");
    }
}

fn report(incoming: &Incoming, processed: &Processed) {
    let provider = processed
        .job
        .as_ref()
        .map_or(incoming.routing_key.as_str(), |j| j.provider.as_str());
    crate::metrics::processed(provider, processed, *incoming.properties.timestamp());
    let job_id = processed.job.as_ref().map(|j| j.id.as_str()).unwrap_or("?");
    let attempt = processed.calls.attempts;
    match &processed.outcome {
        Outcome::Sent {
            vendor_message_id,
            fallback_used,
        } => {
            info!(
                job_id,
                provider,
                attempt,
                vendor_message_id = vendor_message_id.as_deref().unwrap_or(""),
                fallback_used,
                "sent"
            )
        }
        Outcome::Duplicate { .. } => {
            info!(job_id, provider, "duplicate: already sent, not sent again")
        }
        Outcome::Later(later) => {
            info!(job_id, provider, attempt, why = ?later.why, delay = ?later.delay, detail = %later.detail, "later")
        }
        Outcome::Dead(dead) => {
            warn!(job_id, provider, attempt, reason = %dead.reason, detail = %dead.detail, "dead-lettered")
        }
        Outcome::Abandoned => {
            info!(
                job_id,
                provider, "the delivery's channel is gone; the broker redelivers it"
            )
        }
    }
}
