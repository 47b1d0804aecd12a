//! Confirmed publishing. A message counts as published only once the broker
//! has confirmed it *and* routed it somewhere: publishes are `mandatory`, so
//! an unroutable message comes back as an error instead of vanishing.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};

use herald_core::protocol::SEND_EXCHANGE;
use herald_core::{Job, JobErrors};

/// Why a publish did not succeed. None of these means "maybe published":
/// the caller must keep (not ack) whatever it was forwarding.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for exchange {exchange:?} with routing key {routing_key:?}")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    /// A job the worker could only dead-letter; nothing was published.
    #[error("refused, not published: {0}")]
    Refused(JobErrors),
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// Whether an unroutable publish is an error (the default). Only
    /// broadcasts nobody may be listening to yet, like events, turn it off.
    pub mandatory: bool,
}

impl<'a> Outgoing<'a> {
    /// Persistent JSON, the way every Herald message is published.
    pub fn json(exchange: &'a str, routing_key: &'a str, body: &'a [u8]) -> Self {
        Outgoing {
            exchange,
            routing_key,
            body,
            properties: persistent_json(),
            mandatory: true,
        }
    }

    /// Allows the message to be dropped when nothing is bound to receive it.
    pub fn unrouted_ok(mut self) -> Self {
        self.mandatory = false;
        self
    }

    pub fn with_headers(mut self, headers: FieldTable) -> Self {
        self.properties = self.properties.with_headers(headers);
        self
    }

    pub fn with_message_id(mut self, id: &str) -> Self {
        self.properties = self.properties.with_message_id(ShortString::from(id));
        self
    }
}

/// Properties producers set (CONTRACT §1): persistent, JSON.
pub fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
}

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

/// A publish the broker has not confirmed yet.
#[must_use = "a publish is not done until its confirm is awaited"]
pub struct PendingConfirm {
    confirm: PublisherConfirm,
    exchange: String,
    routing_key: String,
}

impl PendingConfirm {
    /// Waits for the broker's answer.
    pub async fn wait(self) -> Result<(), PublishError> {
        match self.confirm.await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable {
                exchange: self.exchange,
                routing_key: self.routing_key,
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            // Only on channels without confirms, which a Publisher never has.
            Confirmation::NotRequested => Ok(()),
        }
    }
}

impl Publisher {
    /// Opens a channel of its own on `connection` and turns confirms on.
    pub async fn new(connection: &Connection) -> Result<Publisher, lapin::Error> {
        let channel = connection.create_channel().await?;
        Publisher::on_channel(channel).await
    }

    /// Turns confirms on for an existing channel.
    pub async fn on_channel(channel: Channel) -> Result<Publisher, lapin::Error> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    /// Publishes without waiting, so many publishes can be in flight at once.
    pub async fn start(&self, message: Outgoing<'_>) -> Result<PendingConfirm, PublishError> {
        let confirm = self
            .channel
            .basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                BasicPublishOptions {
                    mandatory: message.mandatory,
                    ..BasicPublishOptions::default()
                },
                message.body,
                message.properties,
            )
            .await?;
        Ok(PendingConfirm {
            confirm,
            exchange: message.exchange.to_owned(),
            routing_key: message.routing_key.to_owned(),
        })
    }

    /// Publishes and waits for the confirm.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), PublishError> {
        self.start(message).await?.wait().await
    }

    /// Publishes a job to `herald.send` the way CONTRACT §1 says producers
    /// should: routing key = provider, persistent, `message_id` = job id.
    /// A job its provider cannot send, or already expired, is
    /// [`PublishError::Refused`] ([`Job::check_sendable`]).
    pub async fn start_job(&self, job: &Job) -> Result<PendingConfirm, PublishError> {
        job.check_sendable(chrono::Utc::now())
            .map_err(PublishError::Refused)?;
        let body = job.to_body();
        self.start(job_message(job, &body)).await
    }

    /// [`Publisher::start_job`] and wait for the confirm.
    pub async fn publish_job(&self, job: &Job) -> Result<(), PublishError> {
        self.start_job(job).await?.wait().await
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// The message a job is published as. Its `timestamp` (Unix seconds) is
/// when the producer published it: the worker measures end-to-end latency
/// from it.
pub fn job_message<'a>(job: &'a Job, body: &'a [u8]) -> Outgoing<'a> {
    let mut message = Outgoing::json(SEND_EXCHANGE, &job.provider, body).with_message_id(&job.id);
    message.properties = message.properties.with_timestamp(unix_now());
    message
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `headers` minus the named ones (a new copy of a message drops the
/// broker's per-trip bookkeeping, a replay drops the old verdict …).
pub fn without_headers(headers: &FieldTable, names: &[&str]) -> FieldTable {
    headers
        .inner()
        .iter()
        .filter(|(name, _)| !names.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

/// Reads an integer header whatever integer type the publisher chose.
pub fn header_u32(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let value = headers?.inner().get(name)?;
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// Reads a string header.
pub fn header_str<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}
