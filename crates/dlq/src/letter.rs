//! One dead letter as plain data: the message exactly as it sits in the queue
//! ([`Envelope`]) and what its headers say about its death ([`DeadLetter`]).

use chrono::{DateTime, TimeZone, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

use herald_client::{header_str, header_u32, without_headers};
use herald_core::protocol::{BrokerDeath, broker_gave_up, classify_dead_letter, header};

/// Added by a quorum queue each time a message is requeued. It describes the
/// queue's handling of the copy, not the letter: browsing bumps it, so it is
/// never exported, replayed or compared.
pub const DELIVERY_COUNT: &str = "x-delivery-count";

/// A message as published: what a replay or an import must reproduce.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn headers(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }

    /// The same message without broker bookkeeping ([`DELIVERY_COUNT`]).
    pub fn without_delivery_count(mut self) -> Envelope {
        if let Some(headers) = self.headers() {
            let headers = without_headers(headers, &[DELIVERY_COUNT]);
            self.properties = self.properties.with_headers(headers);
        }
        self
    }
}

/// One entry of the broker's `x-death` header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XDeath {
    pub queue: String,
    pub reason: String,
    pub count: u32,
    pub exchange: Option<String>,
    pub time: Option<DateTime<Utc>>,
}

/// What the dead-letter headers say, read once so filters, tables and
/// reports work on plain fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The job id: `message_id`, else the body's `id` (absent for a body that
    /// is not a job at all).
    pub job_id: Option<String>,
    pub provider: String,
    /// A code of CONTRACT §3, or the header's own text when it is not one.
    pub reason: String,
    pub detail: Option<String>,
    /// When it died: `x-herald-dead-at`, else the time the broker gave up.
    pub dead_at: Option<DateTime<Utc>>,
    pub attempt: u32,
    pub replayed: u32,
    pub vendor_status: Option<u32>,
    pub vendor_response: Option<String>,
    pub broker_deaths: Vec<XDeath>,
    #[serde(skip)]
    pub envelope: Envelope,
}

impl DeadLetter {
    pub fn read(envelope: Envelope) -> DeadLetter {
        let headers = envelope.headers();
        let broker_deaths = x_deaths(headers);
        let gave_up = broker_gave_up(broker_deaths.iter().map(|d| BrokerDeath {
            queue: &d.queue,
            reason: &d.reason,
        }));
        let stamped_reason = header_str(headers, header::DEAD_REASON);
        let reason = classify_dead_letter(stamped_reason, gave_up)
            .map(|r| r.as_str().to_owned())
            .or_else(|| stamped_reason.map(str::to_owned))
            .unwrap_or_default();
        let dead_at = header_str(headers, header::DEAD_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| broker_deaths.iter().filter_map(|d| d.time).max());
        DeadLetter {
            job_id: job_id(&envelope),
            provider: header_str(headers, header::PROVIDER)
                .unwrap_or(&envelope.routing_key)
                .to_owned(),
            reason,
            detail: header_str(headers, header::DEAD_DETAIL).map(str::to_owned),
            dead_at,
            attempt: header_u32(headers, header::ATTEMPT).unwrap_or(0),
            replayed: header_u32(headers, header::REPLAYED).unwrap_or(0),
            vendor_status: header_u32(headers, header::VENDOR_STATUS),
            vendor_response: header_str(headers, header::VENDOR_RESPONSE).map(str::to_owned),
            broker_deaths,
            envelope,
        }
    }
}

/// Headers as plain JSON for people and scripts to read: strings as text,
/// numbers as numbers, tables and arrays nested. The export format
/// ([`crate::line`]) is the one that keeps AMQP types.
pub fn plain_headers(headers: Option<&FieldTable>) -> serde_json::Map<String, serde_json::Value> {
    headers
        .map(|h| {
            h.inner()
                .iter()
                .map(|(name, value)| (name.to_string(), plain(value)))
                .collect()
        })
        .unwrap_or_default()
}

fn plain(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::Boolean(v) => Value::from(*v),
        AMQPValue::ShortShortInt(v) => Value::from(*v),
        AMQPValue::ShortShortUInt(v) => Value::from(*v),
        AMQPValue::ShortInt(v) => Value::from(*v),
        AMQPValue::ShortUInt(v) => Value::from(*v),
        AMQPValue::LongInt(v) => Value::from(*v),
        AMQPValue::LongUInt(v) => Value::from(*v),
        AMQPValue::LongLongInt(v) => Value::from(*v),
        AMQPValue::Float(v) => Value::from(*v),
        AMQPValue::Double(v) => Value::from(*v),
        AMQPValue::DecimalValue(d) => Value::from(f64::from(d.value) / 10f64.powi(d.scale.into())),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(items) => items.as_slice().iter().map(plain).collect(),
        AMQPValue::Timestamp(t) => i64::try_from(*t)
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .map_or(Value::from(*t), |t| {
                Value::from(herald_core::protocol::rfc3339(t))
            }),
        AMQPValue::FieldTable(t) => Value::Object(plain_headers(Some(t))),
        AMQPValue::ByteArray(b) => Value::from(format!("<{} bytes>", b.len())),
        AMQPValue::Void => Value::Null,
    }
}

fn job_id(envelope: &Envelope) -> Option<String> {
    if let Some(id) = envelope.properties.message_id() {
        return Some(id.to_string());
    }
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_slice::<IdOnly>(&envelope.body)
        .ok()
        .map(|j| j.id)
}

fn x_deaths(headers: Option<&FieldTable>) -> Vec<XDeath> {
    let Some(AMQPValue::FieldArray(entries)) = headers.and_then(|h| h.inner().get(header::X_DEATH))
    else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(table) => Some(x_death(table)),
            _ => None,
        })
        .collect()
}

fn x_death(table: &FieldTable) -> XDeath {
    let text = |name| header_str(Some(table), name).map(str::to_owned);
    let count = match table.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        _ => header_u32(Some(table), "count").unwrap_or(1),
    };
    let time = match table.inner().get("time") {
        Some(AMQPValue::Timestamp(secs)) => i64::try_from(*secs)
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        _ => None,
    };
    XDeath {
        queue: text("queue").unwrap_or_default(),
        reason: text("reason").unwrap_or_default(),
        count,
        exchange: text("exchange"),
        time,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString, ShortString};

    fn text(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    pub(crate) fn envelope(
        routing_key: &str,
        body: &str,
        headers: &[(&str, AMQPValue)],
    ) -> Envelope {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(ShortString::from(*k), v.clone());
        }
        Envelope {
            routing_key: routing_key.to_owned(),
            properties: BasicProperties::default().with_headers(table),
            body: body.as_bytes().to_vec(),
        }
    }

    fn death(queue: &str, reason: &str, time: u64) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert("queue".into(), text(queue));
        t.insert("reason".into(), text(reason));
        t.insert("count".into(), AMQPValue::LongLongInt(3));
        t.insert("time".into(), AMQPValue::Timestamp(time));
        AMQPValue::FieldTable(t)
    }

    #[test]
    fn a_worker_dead_letter_reads_its_stamp() {
        let letter = DeadLetter::read(envelope(
            "kaleyra",
            r#"{"id":"job-1"}"#,
            &[
                (header::DEAD_REASON, text("window_closed")),
                (header::DEAD_DETAIL, text("no template")),
                (header::DEAD_AT, text("2026-11-21T10:00:00.000Z")),
                (header::PROVIDER, text("kaleyra")),
                (header::ATTEMPT, AMQPValue::LongInt(2)),
                (header::VENDOR_STATUS, AMQPValue::LongInt(400)),
                (header::REPLAYED, AMQPValue::ShortShortUInt(1)),
            ],
        ));
        assert_eq!(letter.job_id.as_deref(), Some("job-1"));
        assert_eq!(letter.reason, "window_closed");
        assert_eq!(letter.detail.as_deref(), Some("no template"));
        assert_eq!(
            letter.dead_at.unwrap().to_rfc3339(),
            "2026-11-21T10:00:00+00:00"
        );
        assert_eq!((letter.attempt, letter.replayed), (2, 1));
        assert_eq!(letter.vendor_status, Some(400));
    }

    #[test]
    fn broker_deaths_are_delivery_limit_unless_only_a_delay_hop() {
        let tier_hop = death("herald.delay.5s", "expired", 1_700_000_000);
        let gave_up = death("herald.send.kaleyra", "delivery_limit", 1_700_000_100);
        let both = AMQPValue::FieldArray(FieldArray::from(vec![gave_up, tier_hop.clone()]));
        let letter = DeadLetter::read(envelope("kaleyra", "{}", &[(header::X_DEATH, both)]));
        assert_eq!(letter.reason, "delivery_limit");
        assert_eq!(letter.broker_deaths.len(), 2);
        assert_eq!(letter.broker_deaths[0].count, 3);
        assert_eq!(letter.dead_at.unwrap().timestamp(), 1_700_000_100);

        let hop_only = AMQPValue::FieldArray(FieldArray::from(vec![tier_hop]));
        let letter = DeadLetter::read(envelope("nosuch", "{}", &[(header::X_DEATH, hop_only)]));
        assert_eq!(letter.reason, "unknown_provider");
        assert_eq!(
            letter.provider, "nosuch",
            "the routing key names the provider"
        );
    }

    #[test]
    fn a_letter_with_no_stamp_and_no_broker_death_is_an_unknown_provider() {
        let letter = DeadLetter::read(envelope("whatsnext", "not json", &[]));
        assert_eq!(letter.reason, "unknown_provider");
        assert_eq!(letter.job_id, None);
        assert_eq!(letter.dead_at, None);
    }

    #[test]
    fn an_unknown_stamped_code_is_shown_as_written() {
        let letter = DeadLetter::read(envelope(
            "kaleyra",
            "{}",
            &[(header::DEAD_REASON, text("from_the_future"))],
        ));
        assert_eq!(letter.reason, "from_the_future");
    }

    #[test]
    fn the_delivery_count_is_dropped_and_nothing_else() {
        let e = envelope(
            "kaleyra",
            "{}",
            &[
                (DELIVERY_COUNT, AMQPValue::LongLongInt(2)),
                ("custom", text("kept")),
            ],
        )
        .without_delivery_count();
        let headers = e.headers().unwrap().inner();
        assert!(!headers.contains_key(DELIVERY_COUNT));
        assert!(headers.contains_key("custom"));
    }
}
