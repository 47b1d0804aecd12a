//! Making a decision durable: the delay copy or dead letter, then the event,
//! each confirmed by the broker, and only then may the delivery be acked.
//! A crash anywhere before the ack leaves the delivery to be redelivered.

use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use herald_client::{
    Outgoing, PublishError, Publisher, Topology, header_str, header_u32, without_headers,
};
use herald_core::protocol::{
    DEAD_EXCHANGE, DELAY_EXCHANGE, DELAY_TIER_HEADER, EVENTS_EXCHANGE, MAX_VENDOR_RESPONSE_BYTES,
    header, rfc3339, truncate_utf8,
};
use herald_core::{Event, EventStatus};

use crate::outcome::{Calls, Dead, Later, LaterWhy, Outcome, Processed};

/// A delivery as the pipeline needs it, independent of the channel it came on.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub body: Vec<u8>,
    pub routing_key: String,
    pub properties: BasicProperties,
}

impl Incoming {
    /// Vendor calls already made for this job (`x-herald-attempt`,
    /// `x-herald-throttled`).
    pub fn calls(&self) -> Calls {
        let headers = self.properties.headers().as_ref();
        Calls {
            attempts: header_u32(headers, header::ATTEMPT).unwrap_or(0),
            throttled: header_u32(headers, header::THROTTLED).unwrap_or(0),
        }
    }
}

/// What a new copy of a job does not carry over: the delay-tier routing
/// header (set again when a copy goes to a tier) and the broker's headers
/// about one trip through a queue (they would only grow, and `x-death` from
/// a delay tier must not read as a broker-side death later).
const DROPPED_ON_COPY: [&str; 9] = [
    DELAY_TIER_HEADER,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
];

pub struct Settler {
    publisher: Publisher,
    topology: Topology,
}

impl Settler {
    pub fn new(publisher: Publisher, topology: Topology) -> Settler {
        Settler {
            publisher,
            topology,
        }
    }

    /// Publishes what `processed` calls for and waits for every confirm.
    /// `Ok` means the delivery may now be acked.
    pub async fn settle(
        &self,
        incoming: &Incoming,
        processed: &Processed,
    ) -> Result<(), PublishError> {
        let hop = match &processed.outcome {
            Outcome::Later(later) => Some(self.delay_copy(incoming, processed.calls, later)),
            Outcome::Dead(dead) => Some(dead_letter(incoming, processed.calls, dead)),
            Outcome::Sent { .. } | Outcome::Duplicate { .. } | Outcome::Abandoned => None,
        };
        let event = event_for(incoming, processed)
            .map(|e| serde_json::to_vec(&e).map(|body| (e.routing_key(), body)));
        // Start both publishes before waiting, so the confirms overlap.
        let hop_confirm = match &hop {
            Some((exchange, properties)) => Some(
                self.publisher
                    .start(Outgoing {
                        exchange,
                        routing_key: &incoming.routing_key,
                        body: &incoming.body,
                        properties: properties.clone(),
                        mandatory: true,
                    })
                    .await?,
            ),
            None => None,
        };
        let event_confirm = match &event {
            Some(Ok((routing_key, body))) => Some(
                self.publisher
                    .start(Outgoing::json(EVENTS_EXCHANGE, routing_key, body).unrouted_ok())
                    .await?,
            ),
            _ => None,
        };
        if let Some(confirm) = hop_confirm {
            confirm.wait().await?;
        }
        if let Some(confirm) = event_confirm {
            confirm.wait().await?;
        }
        Ok(())
    }

    fn delay_copy(
        &self,
        incoming: &Incoming,
        calls: Calls,
        later: &Later,
    ) -> (&'static str, BasicProperties) {
        let tier = Topology::tier_name(self.topology.tier_for(later.delay));
        let mut headers = carried_headers(&incoming.properties);
        set(&mut headers, DELAY_TIER_HEADER, text(&tier));
        set_calls(&mut headers, calls);
        if header_str(Some(&headers), header::FIRST_ATTEMPT_AT).is_none() && calls.attempts > 0 {
            set(
                &mut headers,
                header::FIRST_ATTEMPT_AT,
                text(&rfc3339(Utc::now())),
            );
        }
        if later.why != LaterWhy::Schedule {
            set(
                &mut headers,
                header::LAST_ERROR,
                text(truncate_utf8(&later.detail, MAX_VENDOR_RESPONSE_BYTES)),
            );
        }
        (
            DELAY_EXCHANGE,
            incoming.properties.clone().with_headers(headers),
        )
    }
}

/// The dead letter: the job byte for byte, its history headers, and why.
fn dead_letter(incoming: &Incoming, calls: Calls, dead: &Dead) -> (&'static str, BasicProperties) {
    let mut headers = carried_headers(&incoming.properties);
    set(
        &mut headers,
        header::DEAD_REASON,
        text(dead.reason.as_str()),
    );
    set(
        &mut headers,
        header::DEAD_DETAIL,
        text(truncate_utf8(&dead.detail, MAX_VENDOR_RESPONSE_BYTES)),
    );
    set(&mut headers, header::DEAD_AT, text(&rfc3339(Utc::now())));
    set(&mut headers, header::PROVIDER, text(&incoming.routing_key));
    set_calls(&mut headers, calls);
    if let Some(status) = dead.vendor_status {
        set(
            &mut headers,
            header::VENDOR_STATUS,
            AMQPValue::LongInt(status.into()),
        );
    }
    if let Some(response) = &dead.vendor_response {
        set(
            &mut headers,
            header::VENDOR_RESPONSE,
            text(truncate_utf8(response, MAX_VENDOR_RESPONSE_BYTES)),
        );
    }
    (
        DEAD_EXCHANGE,
        incoming.properties.clone().with_headers(headers),
    )
}

/// The headers a new copy keeps.
fn carried_headers(properties: &BasicProperties) -> FieldTable {
    let Some(headers) = properties.headers() else {
        return FieldTable::default();
    };
    without_headers(headers, &DROPPED_ON_COPY)
}

/// `x-herald-attempt`, and `x-herald-throttled` once a call was throttled.
fn set_calls(headers: &mut FieldTable, calls: Calls) {
    set(
        headers,
        header::ATTEMPT,
        AMQPValue::LongInt(calls.attempts as i32),
    );
    if calls.throttled > 0 {
        set(
            headers,
            header::THROTTLED,
            AMQPValue::LongInt(calls.throttled as i32),
        );
    }
}

fn set(headers: &mut FieldTable, name: &str, value: AMQPValue) {
    headers.insert(ShortString::from(name), value);
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The outcome event (CONTRACT §4); a schedule hop is not an outcome.
pub fn event_for(incoming: &Incoming, processed: &Processed) -> Option<Event> {
    let (status, vendor_message_id, fallback_used, reason, detail) = match &processed.outcome {
        Outcome::Sent {
            vendor_message_id,
            fallback_used,
        } => (
            EventStatus::Sent,
            vendor_message_id.clone(),
            *fallback_used,
            None,
            None,
        ),
        Outcome::Duplicate { vendor_message_id } => (
            EventStatus::Duplicate,
            vendor_message_id.clone(),
            false,
            None,
            None,
        ),
        Outcome::Later(Later {
            why: LaterWhy::Schedule,
            ..
        })
        | Outcome::Abandoned => return None,
        Outcome::Later(later) => (
            EventStatus::Retrying,
            None,
            false,
            None,
            Some(later.detail.clone()),
        ),
        Outcome::Dead(dead) => (
            EventStatus::Dead,
            None,
            false,
            Some(dead.reason),
            Some(dead.detail.clone()),
        ),
    };
    let job = processed.job.as_ref();
    let message_id = incoming
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.to_string());
    Some(Event {
        job_id: job.map(|j| j.id.clone()).or(message_id).unwrap_or_default(),
        provider: job
            .map(|j| j.provider.clone())
            .unwrap_or_else(|| incoming.routing_key.clone()),
        account: job.map(|j| j.account.clone()).unwrap_or_default(),
        to: job.map(|j| j.to.clone()).unwrap_or_default(),
        status,
        vendor_message_id,
        attempt: processed.calls.attempts,
        fallback_used,
        reason,
        detail,
        at: rfc3339(Utc::now()),
        metadata: job.and_then(|j| j.metadata.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::DeadReason;

    fn incoming() -> Incoming {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::LongString("from a delay tier".into()),
        );
        headers.insert("x-trace".into(), AMQPValue::LongString("keep me".into()));
        Incoming {
            body: br#"{"not":"parsed here"}"#.to_vec(),
            routing_key: "kaleyra".into(),
            properties: BasicProperties::default()
                .with_headers(headers)
                .with_message_id("job-9".into()),
        }
    }

    #[test]
    fn a_dead_letter_keeps_history_and_says_why() {
        let dead = Dead {
            reason: DeadReason::RejectedByVendor,
            detail: "E13009: to_invalid".into(),
            vendor_status: Some(400),
            vendor_response: Some("x".repeat(5000)),
        };
        let calls = Calls {
            attempts: 3,
            throttled: 2,
        };
        let (exchange, properties) = dead_letter(&incoming(), calls, &dead);
        assert_eq!(exchange, DEAD_EXCHANGE);
        let headers = properties.headers().clone().unwrap();
        let get = |name| header_str(Some(&headers), name).map(str::to_owned);
        assert_eq!(
            get(header::DEAD_REASON).as_deref(),
            Some("rejected_by_vendor")
        );
        assert_eq!(get(header::PROVIDER).as_deref(), Some("kaleyra"));
        assert_eq!(get("x-trace").as_deref(), Some("keep me"));
        assert_eq!(
            get(header::VENDOR_RESPONSE).unwrap().len(),
            MAX_VENDOR_RESPONSE_BYTES
        );
        assert_eq!(header_u32(Some(&headers), header::VENDOR_STATUS), Some(400));
        assert_eq!(header_u32(Some(&headers), header::ATTEMPT), Some(3));
        assert_eq!(header_u32(Some(&headers), header::THROTTLED), Some(2));
        assert!(headers.inner().get("x-death").is_none());
        assert_eq!(
            properties.message_id().as_ref().map(|s| s.as_str()),
            Some("job-9")
        );
    }

    #[test]
    fn events_fall_back_to_the_message_id_for_unreadable_jobs() {
        let processed = Processed {
            job: None,
            calls: Calls::default(),
            outcome: Dead::new(DeadReason::InvalidJob, "$: not valid JSON").into(),
        };
        let event = event_for(&incoming(), &processed).unwrap();
        assert_eq!(
            (event.job_id.as_str(), event.provider.as_str()),
            ("job-9", "kaleyra")
        );
        assert_eq!(event.routing_key(), "dead.kaleyra");
        assert_eq!(event.reason, Some(DeadReason::InvalidJob));

        let hop = Processed {
            job: None,
            calls: Calls::default(),
            outcome: Later {
                delay: Default::default(),
                why: LaterWhy::Schedule,
                detail: String::new(),
            }
            .into(),
        };
        assert!(
            event_for(&incoming(), &hop).is_none(),
            "a schedule hop is not an outcome"
        );
    }
}
