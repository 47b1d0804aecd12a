//! What the send path asks of its state, as one small trait: the Redis
//! [`crate::Store`] implements it for real, [`crate::MemoryState`] in memory
//! so the whole pipeline can be unit-tested without Redis.
//!
//! A send is two round trips: [`SendState::admit`] before the vendor call
//! (every check and the claim, atomically), then [`SendState::record_sent`]
//! or [`SendState::release`] after it. Both consume the [`Claim`], so a
//! claim can be settled once and only by the delivery that holds it.

use std::future::Future;
use std::time::Duration;

use herald_core::config::WindowConfig;

use crate::{Acceptance, Contact, Death, Rate, StoreError};

/// One delivery's right to call the vendor for a job. Redis keeps it with a
/// TTL, so a worker that dies holding one blocks the job only that long;
/// otherwise it must be consumed by recording the send or releasing it.
#[must_use = "a claim must be released, or consumed by recording the send"]
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    job_id: String,
    /// Tells this delivery's claim from a later one on the same job.
    token: String,
}

impl Claim {
    pub(crate) fn new(job_id: &str) -> Claim {
        Claim {
            job_id: job_id.to_owned(),
            token: format!("{:032x}", rand::random::<u128>()),
        }
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

/// What a delivery asks before calling the vendor.
#[derive(Debug, Clone, Copy)]
pub struct Admit<'a> {
    pub job_id: &'a str,
    pub contact: &'a Contact,
    /// How long the claim lives once the permits' wait is over: the vendor
    /// call's timeout and a margin.
    pub claim_for: Duration,
    /// The 24-hour window, when this message needs it open.
    pub window: Option<&'a WindowConfig>,
    /// Whether a fallback template may go when the window is closed.
    pub has_fallback: bool,
    /// The account's rate shared by every replica.
    pub rate: Option<Rate>,
    /// The pacing of messages to one recipient shared by every replica.
    pub pacing: Option<Rate>,
}

/// The answer to [`Admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Call the vendor after `wait` (the reserved permits' slot), holding
    /// `claim`; with `fallback` the window is closed and the fallback
    /// template goes instead.
    Admitted {
        claim: Claim,
        wait: Duration,
        fallback: bool,
    },
    /// The job was sent before.
    Duplicate { vendor_message_id: Option<String> },
    /// The contact opted out on this account.
    Suppressed,
    /// Another delivery of this job holds the claim for `claim_left`.
    Busy { claim_left: Duration },
    /// The vendor paused the account for `left`.
    Paused { left: Duration },
    /// The window is closed and the job has no fallback template.
    /// `closed_by_vendor_ms`: no inbound message since a vendor's answer
    /// (WhatsApp 131047) closed the window, at that time.
    WindowClosed {
        last_inbound_ms: Option<i64>,
        closed_by_vendor_ms: Option<i64>,
    },
}

/// What recording a send found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    First,
    /// Another delivery recorded the job as sent before this one: it was
    /// sent twice. The first record stays.
    AlreadySent {
        vendor_message_id: Option<String>,
    },
}

/// A send that could not be recorded: the claim comes back for another try.
#[derive(Debug)]
pub struct Unrecorded {
    pub claim: Claim,
    pub error: StoreError,
}

/// The state the send pipeline needs.
pub trait SendState: Send + Sync + 'static {
    fn admit(
        &self,
        admit: &Admit<'_>,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Remembers the job as sent for `remember_for`, with its lifecycle
    /// record and vendor id correlation (CONTRACT §10), and releases the
    /// claim if it is still this delivery's.
    fn record_sent(
        &self,
        claim: Claim,
        acceptance: &Acceptance<'_>,
        remember_for: Duration,
    ) -> impl Future<Output = Result<Recorded, Unrecorded>> + Send;

    /// Remembers a job's dead letter for `remember_for`, so its story can be
    /// asked for (CONTRACT §10).
    fn record_dead(
        &self,
        death: &Death<'_>,
        remember_for: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the claim up without a send, if it is still this delivery's.
    fn release(&self, claim: Claim) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The vendor message id of a job remembered as sent.
    fn sent(&self, job_id: &str)
    -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// How much longer the vendor's pause of the account lasts, if any.
    fn paused_for(
        &self,
        provider: &str,
        account: &str,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Pauses an account for every replica (the vendor throttled it).
    fn pause_account(
        &self,
        provider: &str,
        account: &str,
        for_: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a contact's last inbound time (the vendor said the window is closed).
    fn clear_inbound(
        &self,
        contact: &Contact,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Suppresses a contact (the vendor said the recipient opted out).
    fn suppress(&self, contact: &Contact) -> impl Future<Output = Result<(), StoreError>> + Send;
}
