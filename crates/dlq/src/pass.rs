//! One pass over the dead-letter queue: every letter that was in it when the
//! pass began, once, and nothing that arrives later.
//!
//! The queue's depth is read first (passive declare) and the pass ends after
//! that many deliveries, so a replay terminates even while replayed jobs die
//! again (the "retry all loops forever" of sidekiq#6481). A letter the
//! command leaves alone is *held*: not acked and not requeued while the pass
//! runs (requeued now, it would come straight back into this same pass).
//! [`Pass::finish`] requeues every held letter at once; the broker puts
//! returned messages back ahead of the rest in their original order, so the
//! queue looks as it did, except for the quorum queue's `x-delivery-count`.
//! If the process dies instead, closing the connection requeues them too.
//!
//! The broker closes a channel whose delivery stays unacked past its consumer
//! timeout (30 min by default): a pass over a very large queue at a slow
//! `--rate` should be split with `--limit`.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, Consumer};

use herald_core::protocol::DEAD_QUEUE;

use crate::letter::{DeadLetter, Envelope};
use crate::{DlqError, Progress, Selection};

/// How long the pass waits for a letter the depth promised. Only reached
/// when something else consumed letters from the queue meanwhile.
const STALL: Duration = Duration::from_secs(5);

/// A letter read by a pass, with the handle to remove it.
pub struct Taken {
    pub letter: DeadLetter,
    acker: Acker,
}

impl Taken {
    /// Removes the letter from the queue. Call only once whatever it was
    /// forwarded to is confirmed.
    pub async fn remove(self) -> Result<(), DlqError> {
        let acked = self.acker.ack(Default::default()).await?;
        if acked {
            Ok(())
        } else {
            Err(DlqError::AckLost)
        }
    }
}

/// What a pass saw: letters selected, and letters left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub matched: u64,
    pub skipped: u64,
}

pub struct Pass {
    channel: Channel,
    consumer: Consumer,
    total: u32,
    read: u32,
}

impl Pass {
    pub async fn open(connection: &Connection) -> Result<Pass, DlqError> {
        let channel = connection.create_channel().await?;
        let depth = channel
            .queue_declare(
                DEAD_QUEUE.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(DlqError::NoDeadQueue)?
            .message_count();
        // Unlimited prefetch: held letters stay unacked, so any limit would
        // stall the pass once that many were held.
        channel.basic_qos(0, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                DEAD_QUEUE.into(),
                "herald-dlq".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Pass {
            channel,
            consumer,
            total: depth,
            read: 0,
        })
    }

    /// Letters in the queue when the pass began.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The next letter, or `None` once every letter present at the start was
    /// read. Dropping the returned letter holds it.
    async fn next(&mut self) -> Result<Option<Taken>, DlqError> {
        if self.read >= self.total {
            return Ok(None);
        }
        let delivery = match tokio::time::timeout(STALL, self.consumer.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) => return Err(DlqError::ConsumerCancelled),
            Err(_elapsed) => return Ok(None),
        };
        self.read += 1;
        let envelope = Envelope {
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties,
            body: delivery.data,
        };
        Ok(Some(Taken {
            letter: DeadLetter::read(envelope),
            acker: delivery.acker,
        }))
    }

    /// Reads the pass, handing each letter `selection` picks to `on_match`
    /// (until its limit) and holding the others. Does not end the pass, so a
    /// caller can make its work durable before [`Pass::finish`].
    pub async fn select(
        &mut self,
        selection: &Selection,
        progress: &dyn Progress,
        mut on_match: impl AsyncFnMut(Taken) -> Result<(), DlqError>,
    ) -> Result<Tally, DlqError> {
        progress.start(u64::from(self.total));
        let mut tally = Tally::default();
        while selection.limit.is_none_or(|limit| tally.matched < limit) {
            let Some(taken) = self.next().await? else {
                break;
            };
            if selection.filter.matches(&taken.letter) {
                tally.matched += 1;
                on_match(taken).await?;
            } else {
                tally.skipped += 1;
            }
            progress.step();
        }
        Ok(tally)
    }

    /// Ends the pass: stops the deliveries, then requeues every letter still
    /// held (and any the broker pushed beyond the pass) in one go.
    pub async fn finish(self) -> Result<(), DlqError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await?;
        // Delivery tag 0 with `multiple` means every outstanding delivery.
        self.channel
            .basic_nack(
                0,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await?;
        self.channel.close(200, "dlq pass done".into()).await?;
        Ok(())
    }
}
