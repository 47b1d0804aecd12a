//! Names on the wire: exchanges, queues, headers, dead-letter reasons and
//! outcome events (CONTRACT §2–§4). Plain data; nothing here talks to a broker.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Producers publish here with routing key = provider.
pub const SEND_EXCHANGE: &str = "herald.send";
/// Retry and schedule copies, matched on [`DELAY_TIER_HEADER`].
pub const DELAY_EXCHANGE: &str = "herald.delay";
/// The dead-letter fanout exchange, and the queue bound to it.
pub const DEAD_EXCHANGE: &str = "herald.dead";
pub const DEAD_QUEUE: &str = "herald.dead";
/// Outcome events, routing key `<status>.<provider>`.
pub const EVENTS_EXCHANGE: &str = "herald.events";

/// Deliberately not `x-`-prefixed: a headers exchange ignores `x-` headers
/// unless the binding says `x-match: all-with-x`.
pub const DELAY_TIER_HEADER: &str = "herald-delay";

/// The queue of one provider.
pub fn send_queue(provider: &str) -> String {
    format!("{SEND_EXCHANGE}.{provider}")
}

/// The queue of one delay tier.
pub fn delay_queue(tier: &str) -> String {
    format!("{DELAY_EXCHANGE}.{tier}")
}

/// The message kinds (`Message::kind`) each provider can send, CONTRACT §6.
/// The one statement of it: the vendor adapters refuse what it leaves out,
/// and producers refuse it at publish time ([`crate::Job::check_sendable`]).
const PROVIDER_KINDS: &[(&str, &[&str])] = &[
    ("payhero", &["text"]),
    ("pingup", &["text"]),
    ("kaleyra", &["text", "template"]),
    ("99digital", &["text"]),
    ("replyhero", &["text", "media", "template"]),
];

/// The message kinds `provider` can send; `None` for a provider Herald has
/// no adapter for (whether it may be sent to is the configuration's call).
pub fn message_kinds(provider: &str) -> Option<&'static [&'static str]> {
    PROVIDER_KINDS
        .iter()
        .find(|(name, _)| *name == provider)
        .map(|(_, kinds)| *kinds)
}

/// Headers Herald maintains on jobs and dead letters.
pub mod header {
    /// Vendor calls made for the job, throttled ones included.
    pub const ATTEMPT: &str = "x-herald-attempt";
    /// Of those, the calls the vendor throttled (429): they do not count
    /// against `retry.max_attempts`.
    pub const THROTTLED: &str = "x-herald-throttled";
    pub const FIRST_ATTEMPT_AT: &str = "x-herald-first-attempt-at";
    pub const LAST_ERROR: &str = "x-herald-last-error";
    pub const DEAD_REASON: &str = "x-herald-dead-reason";
    pub const DEAD_DETAIL: &str = "x-herald-dead-detail";
    pub const DEAD_AT: &str = "x-herald-dead-at";
    pub const PROVIDER: &str = "x-herald-provider";
    pub const VENDOR_STATUS: &str = "x-herald-vendor-status";
    pub const VENDOR_RESPONSE: &str = "x-herald-vendor-response";
    pub const REPLAYED: &str = "x-herald-replayed";
    /// Set by the broker when it dead-letters (delivery limit, rejection).
    pub const X_DEATH: &str = "x-death";
}

/// The most of a vendor's answer kept in a dead letter.
pub const MAX_VENDOR_RESPONSE_BYTES: usize = 2048;

/// Why a letter sits in the dead-letter queue, read from its headers.
///
/// Herald stamps [`header::DEAD_REASON`] on what it dead-letters; the broker
/// records in `x-death` when it gave up redelivering (`broker_gave_up`, see
/// [`broker_gave_up`]); a job whose routing key no queue is bound to arrives
/// through the alternate exchange with neither, which can only mean an
/// unknown provider.
pub fn classify_dead_letter(dead_reason: Option<&str>, broker_gave_up: bool) -> Option<DeadReason> {
    match dead_reason {
        Some(code) => code.parse().ok(),
        None if broker_gave_up => Some(DeadReason::DeliveryLimit),
        None => Some(DeadReason::UnknownProvider),
    }
}

/// One entry of the broker's `x-death` header: which queue dead-lettered the
/// message and why (`rejected`, `expired`, `maxlen`, `delivery_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerDeath<'a> {
    pub queue: &'a str,
    pub reason: &'a str,
}

/// Whether `x-death` says the broker gave up on a job: a provider queue
/// dead-lettered it after its delivery limit or a rejection. A delay tier's
/// `expired` entry is an ordinary retry hop, not a death.
pub fn broker_gave_up<'a>(deaths: impl IntoIterator<Item = BrokerDeath<'a>>) -> bool {
    let provider_queue = format!("{SEND_EXCHANGE}.");
    deaths.into_iter().any(|death| {
        death.queue.starts_with(&provider_queue)
            && matches!(death.reason, "delivery_limit" | "rejected")
    })
}

/// Why a job was dead-lettered (CONTRACT §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    InvalidJob,
    UnknownProvider,
    UnknownAccount,
    UnsupportedMessage,
    WindowClosed,
    RejectedByVendor,
    RetriesExhausted,
    Expired,
    DeliveryLimit,
    Suppressed,
    StoreError,
}

impl DeadReason {
    pub const ALL: [DeadReason; 11] = [
        DeadReason::InvalidJob,
        DeadReason::UnknownProvider,
        DeadReason::UnknownAccount,
        DeadReason::UnsupportedMessage,
        DeadReason::WindowClosed,
        DeadReason::RejectedByVendor,
        DeadReason::RetriesExhausted,
        DeadReason::Expired,
        DeadReason::DeliveryLimit,
        DeadReason::Suppressed,
        DeadReason::StoreError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::InvalidJob => "invalid_job",
            DeadReason::UnknownProvider => "unknown_provider",
            DeadReason::UnknownAccount => "unknown_account",
            DeadReason::UnsupportedMessage => "unsupported_message",
            DeadReason::WindowClosed => "window_closed",
            DeadReason::RejectedByVendor => "rejected_by_vendor",
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::Expired => "expired",
            DeadReason::DeliveryLimit => "delivery_limit",
            DeadReason::Suppressed => "suppressed",
            DeadReason::StoreError => "store_error",
        }
    }
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeadReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeadReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown dead-letter reason {s:?} (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// The outcome an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Sent,
    Retrying,
    Dead,
    Duplicate,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Sent => "sent",
            EventStatus::Retrying => "retrying",
            EventStatus::Dead => "dead",
            EventStatus::Duplicate => "duplicate",
        }
    }
}

/// An outcome event on `herald.events` (CONTRACT §4). Every field is always
/// present (null when it does not apply) so consumers can rely on the shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub job_id: String,
    pub provider: String,
    pub account: String,
    pub to: String,
    pub status: EventStatus,
    pub vendor_message_id: Option<String>,
    pub attempt: u32,
    pub fallback_used: bool,
    pub reason: Option<DeadReason>,
    pub detail: Option<String>,
    pub at: String,
    pub metadata: Option<Map<String, Value>>,
}

impl Event {
    /// `<status>.<provider>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.status.as_str(), self.provider)
    }
}

/// Times on the wire: RFC 3339, UTC, millisecond precision.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_codes() {
        for reason in DeadReason::ALL {
            assert_eq!(reason.as_str().parse::<DeadReason>(), Ok(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert!("nope".parse::<DeadReason>().unwrap_err().contains("nope"));
    }

    #[test]
    fn only_a_provider_queue_giving_up_is_a_delivery_limit_death() {
        let death = |queue, reason| BrokerDeath { queue, reason };
        let tier_hop = death("herald.delay.5s", "expired");
        assert!(
            !broker_gave_up([tier_hop]),
            "a delay tier's expiry is a retry hop"
        );
        assert!(broker_gave_up([
            tier_hop,
            death("herald.send.kaleyra", "delivery_limit")
        ]));
        assert!(broker_gave_up([death("herald.send.payhero", "rejected")]));
        assert!(!broker_gave_up([death("herald.dead", "rejected")]));
        assert!(!broker_gave_up([]));

        assert_eq!(
            classify_dead_letter(Some("window_closed"), true),
            Some(DeadReason::WindowClosed)
        );
        assert_eq!(
            classify_dead_letter(None, true),
            Some(DeadReason::DeliveryLimit)
        );
        assert_eq!(
            classify_dead_letter(None, false),
            Some(DeadReason::UnknownProvider)
        );
        assert_eq!(classify_dead_letter(Some("nonsense"), false), None);
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("short", 2048), "short");
    }
}
