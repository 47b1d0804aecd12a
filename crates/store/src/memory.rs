//! The send path's state in memory: what [`crate::Store`]'s scripts answer,
//! kept in maps, so the pipeline can be unit-tested without Redis. Shared
//! rate limits are not modelled (a permit never waits here); they are
//! tested against Redis.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::lifecycle::{Acceptance, Death, Lifecycle, lifecycle_from_fields};
use crate::state::{Admission, Admit, Claim, Recorded, SendState, Unrecorded};
use crate::window::oldest_open_inbound;
use crate::{Contact, StoreError};

#[derive(Debug, Default)]
pub struct MemoryState {
    memory: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    sent: HashMap<String, String>,
    /// job id → its lifecycle record's fields, as the record script writes them
    lifecycles: HashMap<String, HashMap<String, String>>,
    /// (provider, vendor message id) → job id
    correlations: HashMap<(String, String), String>,
    /// job id → (claim token, expiry)
    claims: HashMap<String, (String, Instant)>,
    suppressed: HashSet<Contact>,
    paused: HashMap<(String, String), Instant>,
    inbound: HashMap<Contact, i64>,
    /// When a vendor's answer closed a contact's window.
    vendor_closed: HashMap<Contact, i64>,
    /// Errors the next operations answer with, in order.
    failures: VecDeque<StoreError>,
}

impl Memory {
    fn fail(&mut self) -> Result<(), StoreError> {
        self.failures.pop_front().map_or(Ok(()), Err)
    }

    fn claim_left(&self, job_id: &str, now: Instant) -> Option<(&str, Duration)> {
        let (token, expiry) = self.claims.get(job_id)?;
        (*expiry > now).then(|| (token.as_str(), *expiry - now))
    }

    fn release(&mut self, claim: &Claim) {
        if self
            .claims
            .get(claim.job_id())
            .is_some_and(|(token, _)| token == claim.token())
        {
            self.claims.remove(claim.job_id());
        }
    }
}

impl MemoryState {
    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A customer's inbound message at `at_ms` (epoch ms).
    pub fn record_inbound(&self, contact: &Contact, at_ms: i64) {
        let mut memory = self.memory();
        let stored = memory.inbound.entry(contact.clone()).or_insert(at_ms);
        *stored = (*stored).max(at_ms);
    }

    pub fn last_inbound(&self, contact: &Contact) -> Option<i64> {
        self.memory().inbound.get(contact).copied()
    }

    /// A job's lifecycle record, as the send path wrote it.
    pub fn lifecycle(&self, job_id: &str) -> Option<Lifecycle> {
        lifecycle_from_fields(self.memory().lifecycles.get(job_id)?)
    }

    /// The job a vendor message id is correlated to.
    pub fn correlated(&self, provider: &str, vendor_message_id: &str) -> Option<String> {
        let key = (provider.to_owned(), vendor_message_id.to_owned());
        self.memory().correlations.get(&key).cloned()
    }

    pub fn is_suppressed(&self, contact: &Contact) -> bool {
        self.memory().suppressed.contains(contact)
    }

    /// Whether a delivery holds a live claim on the job.
    pub fn is_claimed(&self, job_id: &str) -> bool {
        self.memory().claim_left(job_id, Instant::now()).is_some()
    }

    /// The next operation (of any kind) fails with `error`.
    pub fn fail_next(&self, error: StoreError) {
        self.memory().failures.push_back(error);
    }
}

impl SendState for MemoryState {
    async fn admit(&self, admit: &Admit<'_>) -> Result<Admission, StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        let now = Instant::now();
        let contact = admit.contact;
        if let Some(id) = memory.sent.get(admit.job_id) {
            return Ok(Admission::Duplicate {
                vendor_message_id: Some(id.clone()).filter(|id| !id.is_empty()),
            });
        }
        if memory.suppressed.contains(contact) {
            return Ok(Admission::Suppressed);
        }
        if let Some((_, claim_left)) = memory.claim_left(admit.job_id, now) {
            return Ok(Admission::Busy { claim_left });
        }
        let account = (contact.provider.clone(), contact.account.clone());
        if let Some(until) = memory.paused.get(&account).filter(|until| **until > now) {
            return Ok(Admission::Paused { left: *until - now });
        }
        let mut fallback = false;
        if let Some(window) = admit.window {
            let last = memory.inbound.get(contact).copied();
            if !last.is_some_and(|last| last > oldest_open_inbound(Utc::now(), window)) {
                if !admit.has_fallback {
                    return Ok(Admission::WindowClosed {
                        last_inbound_ms: last,
                        closed_by_vendor_ms: last
                            .is_none()
                            .then(|| memory.vendor_closed.get(contact).copied())
                            .flatten(),
                    });
                }
                fallback = true;
            }
        }
        let claim = Claim::new(admit.job_id);
        memory.claims.insert(
            admit.job_id.to_owned(),
            (claim.token().to_owned(), now + admit.claim_for),
        );
        Ok(Admission::Admitted {
            claim,
            wait: Duration::ZERO,
            fallback,
        })
    }

    async fn record_sent(
        &self,
        claim: Claim,
        acceptance: &Acceptance<'_>,
        _remember_for: Duration,
    ) -> Result<Recorded, Unrecorded> {
        let mut memory = self.memory();
        if let Err(error) = memory.fail() {
            return Err(Unrecorded { claim, error });
        }
        let recorded = match memory.sent.get(claim.job_id()) {
            Some(earlier) => Recorded::AlreadySent {
                vendor_message_id: Some(earlier.clone()).filter(|id| !id.is_empty()),
            },
            None => {
                let vendor_message_id = acceptance.vendor_message_id.unwrap_or("");
                memory
                    .sent
                    .insert(claim.job_id().to_owned(), vendor_message_id.to_owned());
                let fields = acceptance.fields().into_iter();
                memory.lifecycles.insert(
                    claim.job_id().to_owned(),
                    fields
                        .map(|(name, value)| (name.to_owned(), value))
                        .collect(),
                );
                if !vendor_message_id.is_empty() {
                    let correlation = (
                        acceptance.job.provider.clone(),
                        vendor_message_id.to_owned(),
                    );
                    memory
                        .correlations
                        .insert(correlation, claim.job_id().to_owned());
                }
                Recorded::First
            }
        };
        memory.release(&claim);
        Ok(recorded)
    }

    async fn record_dead(
        &self,
        death: &Death<'_>,
        _remember_for: Duration,
    ) -> Result<(), StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        let fields = death.fields().into_iter();
        memory.lifecycles.insert(
            death.job.id.clone(),
            fields
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        );
        Ok(())
    }

    async fn release(&self, claim: Claim) -> Result<(), StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        memory.release(&claim);
        Ok(())
    }

    async fn sent(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        Ok(memory.sent.get(job_id).cloned())
    }

    async fn paused_for(
        &self,
        provider: &str,
        account: &str,
    ) -> Result<Option<Duration>, StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        let now = Instant::now();
        Ok(memory
            .paused
            .get(&(provider.to_owned(), account.to_owned()))
            .filter(|until| **until > now)
            .map(|until| *until - now))
    }

    async fn pause_account(
        &self,
        provider: &str,
        account: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        let until = Instant::now() + for_;
        let paused = memory
            .paused
            .entry((provider.to_owned(), account.to_owned()))
            .or_insert(until);
        *paused = (*paused).max(until);
        Ok(())
    }

    async fn clear_inbound(&self, contact: &Contact) -> Result<(), StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        memory.inbound.remove(contact);
        memory
            .vendor_closed
            .insert(contact.clone(), Utc::now().timestamp_millis());
        Ok(())
    }

    async fn suppress(&self, contact: &Contact) -> Result<(), StoreError> {
        let mut memory = self.memory();
        memory.fail()?;
        memory.suppressed.insert(contact.clone());
        Ok(())
    }
}
