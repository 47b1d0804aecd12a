//! Reading without consuming: every letter goes back, as a copy published
//! before the original is acked ([`Pass::rotate`]), so looking never raises a
//! letter's delivery count.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::Connection;
use serde::Serialize;

use crate::letter::DeadLetter;
use crate::pass::{Pass, Tally};
use crate::{DlqError, Progress, Selection};

/// Hands every selected letter to `visit`, putting each back.
pub async fn browse(
    connection: &Connection,
    selection: &Selection,
    progress: &dyn Progress,
    visit: impl FnMut(&DeadLetter) -> Result<(), DlqError>,
) -> Result<Tally, DlqError> {
    Pass::open_one_at_a_time(connection)
        .await?
        .rotate(connection, selection, progress, visit)
        .await
}

/// The selected letters, all left in place.
pub async fn collect(
    connection: &Connection,
    selection: &Selection,
) -> Result<Vec<DeadLetter>, DlqError> {
    let mut letters = Vec::new();
    browse(connection, selection, &(), |letter| {
        letters.push(letter.clone());
        Ok(())
    })
    .await?;
    Ok(letters)
}

/// Counts of the selected letters.
pub async fn stats(connection: &Connection, selection: &Selection) -> Result<Stats, DlqError> {
    let mut stats = Stats::default();
    browse(connection, selection, &(), |letter| {
        stats.add(letter);
        Ok(())
    })
    .await?;
    Ok(stats)
}

/// How many letters, by provider and by reason, and their time span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub total: u64,
    pub by_provider: BTreeMap<String, u64>,
    pub by_reason: BTreeMap<String, u64>,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

impl Stats {
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        *self.by_provider.entry(letter.provider.clone()).or_default() += 1;
        *self.by_reason.entry(letter.reason.clone()).or_default() += 1;
        if let Some(at) = letter.dead_at {
            self.oldest = Some(self.oldest.map_or(at, |t| t.min(at)));
            self.newest = Some(self.newest.map_or(at, |t| t.max(at)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letter::tests::envelope;
    use herald_core::protocol::header;
    use lapin::types::AMQPValue;

    fn letter(provider: &str, reason: &str, at: &str) -> DeadLetter {
        DeadLetter::read(envelope(
            provider,
            "{}",
            &[
                (header::DEAD_REASON, AMQPValue::LongString(reason.into())),
                (header::DEAD_AT, AMQPValue::LongString(at.into())),
            ],
        ))
    }

    #[test]
    fn stats_count_by_provider_and_reason_and_span_the_times() {
        let mut stats = Stats::default();
        for l in [
            letter("kaleyra", "expired", "2026-11-21T10:00:00Z"),
            letter("kaleyra", "window_closed", "2026-11-20T10:00:00Z"),
            letter("payhero", "expired", "2026-11-22T10:00:00Z"),
        ] {
            stats.add(&l);
        }
        stats.add(&DeadLetter::read(envelope("nosuch", "{}", &[])));
        assert_eq!(stats.total, 4);
        assert_eq!(stats.by_provider["kaleyra"], 2);
        assert_eq!(stats.by_provider["nosuch"], 1);
        assert_eq!(stats.by_reason["expired"], 2);
        assert_eq!(stats.by_reason["unknown_provider"], 1);
        assert_eq!(
            stats.oldest.unwrap().to_rfc3339(),
            "2026-11-20T10:00:00+00:00"
        );
        assert_eq!(
            stats.newest.unwrap().to_rfc3339(),
            "2026-11-22T10:00:00+00:00"
        );
    }
}
