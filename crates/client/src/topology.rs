//! The broker topology of CONTRACT §2, as data ([`Topology`]) and as the
//! idempotent declarations that make it real.
//!
//! Every queue is a quorum queue. Queues that dead-letter do so at least once
//! (`x-dead-letter-strategy=at-least-once` needs `x-overflow=reject-publish`),
//! so a message moving between queues cannot be lost in transit.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};
use serde::Serialize;

use herald_core::Config;
use herald_core::config::format_duration;
use herald_core::protocol::{
    DEAD_EXCHANGE, DEAD_QUEUE, DELAY_EXCHANGE, DELAY_TIER_HEADER, EVENTS_EXCHANGE, SEND_EXCHANGE,
    delay_queue, send_queue,
};

/// What to declare: derived from configuration, so every replica and the
/// CLI agree on queue arguments (a mismatch would fail the declaration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub providers: Vec<String>,
    pub delay_tiers: Vec<Duration>,
    pub delivery_limit: u32,
}

/// One queue's depth and consumers; both `None` when the queue does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub queue: String,
    pub exists: bool,
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
}

impl Topology {
    pub fn from_config(config: &Config) -> Topology {
        Topology {
            providers: config.provider_names().map(str::to_owned).collect(),
            delay_tiers: config.delay_tiers(),
            delivery_limit: config.amqp.delivery_limit,
        }
    }

    /// A delay tier's name, as used in queue names and the routing header.
    pub fn tier_name(delay: Duration) -> String {
        format_duration(delay)
    }

    /// The shortest tier at least `delay` long, else the longest tier.
    pub fn tier_for(&self, delay: Duration) -> Duration {
        self.delay_tiers
            .iter()
            .copied()
            .find(|t| *t >= delay)
            .or_else(|| self.delay_tiers.last().copied())
            .expect("a topology has at least one delay tier")
    }

    /// Every queue, in the order `status` prints them.
    pub fn queues(&self) -> Vec<String> {
        let sends = self.providers.iter().map(|p| send_queue(p));
        let delays = self
            .delay_tiers
            .iter()
            .map(|t| delay_queue(&Topology::tier_name(*t)));
        sends.chain(delays).chain([DEAD_QUEUE.to_owned()]).collect()
    }

    /// Declares every exchange, queue and binding. Safe to run again and
    /// from every replica at once; fails naming the queue whose existing
    /// arguments differ.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                DEAD_EXCHANGE.into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        let mut send_args = FieldTable::default();
        send_args.insert("alternate-exchange".into(), string(DEAD_EXCHANGE));
        channel
            .exchange_declare(
                SEND_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable,
                send_args,
            )
            .await?;
        channel
            .exchange_declare(
                DELAY_EXCHANGE.into(),
                ExchangeKind::Headers,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;

        declare_queue(channel, DEAD_QUEUE, quorum()).await?;
        bind(
            channel,
            DEAD_QUEUE,
            DEAD_EXCHANGE,
            "",
            FieldTable::default(),
        )
        .await?;

        for provider in &self.providers {
            let queue = send_queue(provider);
            declare_queue(channel, &queue, self.send_queue_arguments()).await?;
            bind(
                channel,
                &queue,
                SEND_EXCHANGE,
                provider,
                FieldTable::default(),
            )
            .await?;
        }
        for tier in &self.delay_tiers {
            let name = Topology::tier_name(*tier);
            let queue = delay_queue(&name);
            declare_queue(channel, &queue, delay_queue_arguments(*tier)).await?;
            let mut matching = FieldTable::default();
            matching.insert("x-match".into(), string("all"));
            matching.insert(DELAY_TIER_HEADER.into(), string(&name));
            bind(channel, &queue, DELAY_EXCHANGE, "", matching).await?;
        }
        Ok(())
    }

    fn send_queue_arguments(&self) -> FieldTable {
        let mut args = dead_lettering_to(DEAD_EXCHANGE);
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(self.delivery_limit as i32),
        );
        args
    }

    /// Deletes every queue and exchange [`Topology::declare`] makes, with
    /// whatever they hold: for tearing down a local or test set-up only.
    /// What does not exist is skipped.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for queue in self.queues() {
            channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await?;
        }
        for exchange in [
            SEND_EXCHANGE,
            DELAY_EXCHANGE,
            DEAD_EXCHANGE,
            EVENTS_EXCHANGE,
        ] {
            channel
                .exchange_delete(exchange.into(), Default::default())
                .await?;
        }
        Ok(())
    }

    /// Depth and consumers of every queue, read with passive declarations;
    /// a missing queue is reported as such and the others still are.
    pub async fn status(&self, connection: &Connection) -> Result<Vec<QueueStatus>, lapin::Error> {
        let mut channel = connection.create_channel().await?;
        let mut statuses = Vec::new();
        for queue in self.queues() {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await;
            statuses.push(match declared {
                Ok(declared) => QueueStatus {
                    queue,
                    exists: true,
                    messages: Some(declared.message_count()),
                    consumers: Some(declared.consumer_count()),
                },
                Err(e) if is_not_found(&e) => {
                    // The broker closes a channel that asked for a missing queue.
                    channel = connection.create_channel().await?;
                    QueueStatus {
                        queue,
                        exists: false,
                        messages: None,
                        consumers: None,
                    }
                }
                Err(e) => return Err(e),
            });
        }
        channel.close(200, "status read".into()).await.ok();
        Ok(statuses)
    }
}

/// The broker's answer to a passive declaration of a queue that does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

/// A delay tier holds each copy for exactly its TTL (queue-level, since
/// messages expire only at the head of a queue), then dead-letters it back
/// to `herald.send`, keeping the routing key (the provider).
fn delay_queue_arguments(tier: Duration) -> FieldTable {
    let mut args = dead_lettering_to(SEND_EXCHANGE);
    let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("quorum"));
    args
}

fn dead_lettering_to(exchange: &str) -> FieldTable {
    let mut args = quorum();
    args.insert("x-dead-letter-exchange".into(), string(exchange));
    args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    args.insert("x-overflow".into(), string("reject-publish"));
    args
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(queue.into(), options, args).await?;
    Ok(())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            args,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            providers: vec!["kaleyra".into()],
            delay_tiers: ["1s", "5s", "30s"]
                .iter()
                .map(|d| herald_core::config::parse_duration(d).unwrap())
                .collect(),
            delivery_limit: 5,
        }
    }

    #[test]
    fn tier_for_picks_the_shortest_tier_that_is_long_enough() {
        let t = topology();
        assert_eq!(
            t.tier_for(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(t.tier_for(Duration::from_secs(2)), Duration::from_secs(5));
        assert_eq!(t.tier_for(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(
            t.tier_for(Duration::from_secs(3600)),
            Duration::from_secs(30),
            "the longest repeats"
        );
    }

    #[test]
    fn queues_are_named_by_provider_and_tier() {
        assert_eq!(
            topology().queues(),
            [
                "herald.send.kaleyra",
                "herald.delay.1s",
                "herald.delay.5s",
                "herald.delay.30s",
                "herald.dead"
            ]
        );
    }
}
