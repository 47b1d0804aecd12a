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
//! Browsing (list, show, stats, export) holds nothing instead: it reads one
//! letter at a time and puts each back at once as a copy at the tail
//! ([`Pass::rotate`]), so looking never returns a message to the queue. A
//! quorum queue counts every return in `x-delivery-count`, and RabbitMQ 4.x
//! drops a message returned more than its delivery limit (20 by default)
//! with nowhere to dead-letter it from `herald.dead`.
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

use herald_client::{Outgoing, Publisher};
use herald_core::protocol::{DEAD_EXCHANGE, DEAD_QUEUE};

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
    cancelled: bool,
}

impl Pass {
    /// A pass that may hold letters ([`Pass::select`]).
    pub async fn open(connection: &Connection) -> Result<Pass, DlqError> {
        // Unlimited prefetch: held letters stay unacked, so any limit would
        // stall the pass once that many were held.
        Pass::open_with_prefetch(connection, 0).await
    }

    /// A pass that holds nothing ([`Pass::rotate`]).
    pub async fn open_one_at_a_time(connection: &Connection) -> Result<Pass, DlqError> {
        Pass::open_with_prefetch(connection, 1).await
    }

    async fn open_with_prefetch(connection: &Connection, prefetch: u16) -> Result<Pass, DlqError> {
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
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
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
            cancelled: false,
        })
    }

    /// Reads the whole pass, showing each selected letter (up to
    /// `selection`'s limit) to `visit` and putting every letter back at once:
    /// a copy at the tail, published with a confirm, then the original acked.
    /// Nothing returns to the queue, so no delivery count grows, and since the
    /// pass always goes round the whole queue it leaves the queue in its
    /// order. One letter is delivered at a time, and the consumer is
    /// cancelled before the last one is acked, so the broker never pushes a
    /// letter beyond the pass.
    pub async fn rotate(
        mut self,
        connection: &Connection,
        selection: &Selection,
        progress: &dyn Progress,
        mut visit: impl FnMut(&DeadLetter) -> Result<(), DlqError>,
    ) -> Result<Tally, DlqError> {
        let publisher = Publisher::new(connection).await?;
        progress.start(u64::from(self.total));
        let mut tally = Tally::default();
        let limited = |tally: &Tally| selection.limit.is_some_and(|limit| tally.matched >= limit);
        while let Some(taken) = self.next().await? {
            if !limited(&tally) && selection.filter.matches(&taken.letter) {
                tally.matched += 1;
                visit(&taken.letter)?;
            } else {
                tally.skipped += 1;
            }
            let copy = taken.letter.envelope.clone().without_delivery_count();
            publisher
                .publish(Outgoing {
                    exchange: DEAD_EXCHANGE,
                    routing_key: &copy.routing_key,
                    body: &copy.body,
                    properties: copy.properties.clone(),
                    mandatory: true,
                })
                .await?;
            if self.read >= self.total {
                self.cancel().await?;
            }
            taken.remove().await?;
            progress.step();
        }
        self.finish().await?;
        Ok(tally)
    }

    async fn cancel(&mut self) -> Result<(), DlqError> {
        if !self.cancelled {
            self.channel
                .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
                .await?;
            self.cancelled = true;
        }
        Ok(())
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
    pub async fn finish(mut self) -> Result<(), DlqError> {
        self.cancel().await?;
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
