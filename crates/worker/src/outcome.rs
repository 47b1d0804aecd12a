//! What the pipeline decided for one delivery: plain data, so every step can
//! be tested by looking at the value it returns, and the one place that does
//! IO about it ([`crate::settle`]) reads like the contract.

use std::time::Duration;

use herald_core::{DeadReason, Job};

/// The decision for one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The vendor accepted the message.
    Sent {
        vendor_message_id: Option<String>,
        fallback_used: bool,
    },
    /// The job was sent before (its id is remembered); nothing was called.
    Duplicate { vendor_message_id: Option<String> },
    /// Try again later through a delay tier.
    Later(Later),
    /// Give up: the job goes to the dead-letter queue with this reason.
    Dead(Dead),
    /// The delivery's channel went away before the vendor was called: the
    /// broker redelivers the job, so nothing is published or acked here.
    Abandoned,
}

/// A copy of the job to publish to a delay tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Later {
    /// How long to wait; the copy goes to the tier that fits it.
    pub delay: Duration,
    pub why: LaterWhy,
    /// A human-readable cause, kept in `x-herald-last-error` for retries.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterWhy {
    /// A retryable vendor failure: the attempt was spent.
    Retry,
    /// Nothing counted against the retry budget (Redis unreachable, the
    /// account paused or throttled by the vendor, another delivery mid-call
    /// on the same id).
    Defer,
    /// `not_before` is still ahead: a hop towards the scheduled time.
    Schedule,
}

/// Why a job is dead-lettered, with what the dead letter records.
#[derive(Debug, Clone, PartialEq)]
pub struct Dead {
    pub reason: DeadReason,
    pub detail: String,
    pub vendor_status: Option<u16>,
    pub vendor_response: Option<String>,
}

impl Dead {
    pub fn new(reason: DeadReason, detail: impl Into<String>) -> Dead {
        Dead {
            reason,
            detail: detail.into(),
            vendor_status: None,
            vendor_response: None,
        }
    }
}

impl From<Dead> for Outcome {
    fn from(dead: Dead) -> Outcome {
        Outcome::Dead(dead)
    }
}

impl From<Later> for Outcome {
    fn from(later: Later) -> Outcome {
        Outcome::Later(later)
    }
}

/// Vendor calls made for a job so far, across deliveries
/// (`x-herald-attempt`, `x-herald-throttled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// Every call, throttled ones included.
    pub attempts: u32,
    /// The calls the vendor throttled (429 or its own rate-limit answer).
    pub throttled: u32,
}

impl Calls {
    /// The calls that count against `retry.max_attempts`.
    pub fn spent(self) -> u32 {
        self.attempts.saturating_sub(self.throttled)
    }
}

/// A delivery once processed: the job (when it could be read), the vendor
/// calls made so far including this delivery's, and the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub job: Option<Job>,
    pub calls: Calls,
    pub outcome: Outcome,
}
