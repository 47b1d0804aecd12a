//! Replay: dead letters back to `herald.send`, each one removed from the
//! dead-letter queue only after the broker confirmed its republish.

use std::time::Duration;

use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection};
use serde::Serialize;
use tokio::time::{Interval, MissedTickBehavior};

use herald_client::{Outgoing, Publisher, without_headers};
use herald_core::protocol::{SEND_EXCHANGE, header};

use crate::letter::{DELIVERY_COUNT, Envelope};
use crate::pass::Pass;
use crate::{DlqError, Progress, Selection};

/// Headers a replay drops: the quorum queue's delivery count, the attempt
/// count, and the verdict of the death being undone. A replayed job that later dies at
/// the broker (delivery limit) must not be reported under its old reason, so
/// these go; everything else (`x-death`, first attempt, last error, the
/// producer's own headers) is history and stays.
const DROPPED: [&str; 8] = [
    DELIVERY_COUNT,
    header::ATTEMPT,
    header::THROTTLED,
    header::DEAD_REASON,
    header::DEAD_DETAIL,
    header::DEAD_AT,
    header::VENDOR_STATUS,
    header::VENDOR_RESPONSE,
];

/// The properties a replayed job is republished with: the original ones,
/// the attempt count reset, the verdict removed, `x-herald-replayed` + 1.
pub fn replayed_properties(envelope: &Envelope) -> BasicProperties {
    let replayed = herald_client::header_u32(envelope.headers(), header::REPLAYED).unwrap_or(0);
    let mut headers = envelope
        .headers()
        .map(|h| without_headers(h, &DROPPED))
        .unwrap_or_default();
    headers.insert(
        header::REPLAYED.into(),
        AMQPValue::LongInt(i32::try_from(replayed.saturating_add(1)).unwrap_or(i32::MAX)),
    );
    envelope.properties.clone().with_headers(headers)
}

/// At most this many messages per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
}

impl Rate {
    /// Parses `50/s`, `600/m` or a bare `50` (per second).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, per) = match text.split_once('/') {
            Some((count, "s")) => (count, 1.0),
            Some((count, "m")) => (count, 60.0),
            Some(_) => return Err(format!("{text:?}: the unit must be /s or /m, e.g. 50/s")),
            None => (text, 1.0),
        };
        match count.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(Rate {
                per_second: n / per,
            }),
            _ => Err(format!(
                "{text:?} is not a positive rate like 50/s or 600/m"
            )),
        }
    }

    fn interval(self) -> Interval {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / self.per_second));
        // After a slow confirm, carry on at the rate rather than bursting.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub selection: Selection,
    /// Count what would be replayed; change nothing.
    pub dry_run: bool,
    pub rate: Option<Rate>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Republished and removed (with `dry_run`: would have been).
    pub replayed: u64,
    /// Not selected; left in place.
    pub skipped: u64,
    /// Selected, but the republish failed; left in place.
    pub failed: u64,
    pub dry_run: bool,
}

/// Replays the selected letters in one pass. A letter whose republish the
/// broker refuses stays in place and is counted as failed; a broken
/// connection stops the replay with an error (unacked letters stay).
pub async fn replay(
    connection: &Connection,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> Result<ReplayReport, DlqError> {
    let publisher = Publisher::new(connection).await?;
    let mut pace = options.rate.map(Rate::interval);
    let mut report = ReplayReport {
        dry_run: options.dry_run,
        ..ReplayReport::default()
    };
    let mut pass = Pass::open(connection).await?;
    let tally = pass
        .select(&options.selection, progress, async |taken| {
            if options.dry_run {
                report.replayed += 1;
                return Ok(());
            }
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            let envelope = &taken.letter.envelope;
            let outgoing = Outgoing {
                exchange: SEND_EXCHANGE,
                routing_key: &envelope.routing_key,
                body: &envelope.body,
                properties: replayed_properties(envelope),
                mandatory: true,
            };
            match publisher.publish(outgoing).await {
                Ok(()) => {
                    taken.remove().await?;
                    report.replayed += 1;
                }
                Err(e) => {
                    tracing::warn!(job_id = ?taken.letter.job_id, error = %e, "replay refused; the letter stays");
                    report.failed += 1;
                }
            }
            Ok(())
        })
        .await;
    pass.finish().await?;
    report.skipped = tally?.skipped;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letter::tests::envelope;
    use herald_client::{header_str, header_u32};

    fn text(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    #[test]
    fn a_replay_resets_the_attempt_drops_the_verdict_and_counts_itself() {
        let dead = envelope(
            "kaleyra",
            "{}",
            &[
                (header::ATTEMPT, AMQPValue::LongInt(6)),
                (header::DEAD_REASON, text("retries_exhausted")),
                (header::DEAD_DETAIL, text("503 six times")),
                (header::DEAD_AT, text("2026-11-21T10:00:00Z")),
                (header::VENDOR_STATUS, AMQPValue::LongInt(503)),
                (header::VENDOR_RESPONSE, text("busy")),
                (header::PROVIDER, text("kaleyra")),
                (header::FIRST_ATTEMPT_AT, text("2026-11-21T09:00:00Z")),
                (header::REPLAYED, AMQPValue::LongInt(1)),
                (DELIVERY_COUNT, AMQPValue::LongLongInt(3)),
                ("x-death", AMQPValue::FieldArray(Default::default())),
                ("producer-trace", text("abc")),
            ],
        );
        let replayed = replayed_properties(&dead);
        let h = replayed.headers().as_ref();
        assert_eq!(header_u32(h, header::REPLAYED), Some(2));
        for gone in DROPPED {
            assert!(!h.unwrap().contains_key(gone), "{gone} removed");
        }
        assert_eq!(
            header_str(h, header::FIRST_ATTEMPT_AT),
            Some("2026-11-21T09:00:00Z")
        );
        assert_eq!(header_str(h, header::PROVIDER), Some("kaleyra"));
        assert_eq!(header_str(h, "producer-trace"), Some("abc"));
        assert!(h.unwrap().contains_key("x-death"), "broker history kept");
    }

    #[test]
    fn a_first_replay_is_number_one_and_other_properties_are_kept() {
        let mut dead = envelope("kaleyra", "{}", &[]);
        dead.properties = dead
            .properties
            .with_message_id("job-1".into())
            .with_delivery_mode(2);
        let replayed = replayed_properties(&dead);
        assert_eq!(
            header_u32(replayed.headers().as_ref(), header::REPLAYED),
            Some(1)
        );
        assert_eq!(
            replayed.message_id().as_ref().map(|s| s.as_str()),
            Some("job-1")
        );
        assert_eq!(*replayed.delivery_mode(), Some(2));
    }

    #[test]
    fn rates_are_per_second_or_per_minute() {
        assert_eq!(Rate::parse("50/s"), Ok(Rate { per_second: 50.0 }));
        assert_eq!(Rate::parse("50"), Ok(Rate { per_second: 50.0 }));
        assert_eq!(Rate::parse("600/m"), Ok(Rate { per_second: 10.0 }));
        for bad in ["0/s", "-1", "fast", "5/h", "NaN"] {
            assert!(Rate::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
