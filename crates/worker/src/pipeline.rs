//! The send pipeline, one delivery at a time:
//!
//! validate → schedule/expiry → route (provider, account, message kind) →
//! admit (idempotency, suppression, claim, vendor pause, 24-hour window,
//! shared rate limits: one atomic Redis script) → vendor call (blips retried
//! in-process, throttling waited out) → decide ([`steps::after_call`]) →
//! record the send or release the claim.
//!
//! Each step returns `Err(outcome)` to end the pipeline early, so `run`
//! reads as the list above. The decisions are pure functions in
//! [`crate::steps`]; the state lives behind [`SendState`] (Redis in
//! production, memory in unit tests); nothing here touches the broker:
//! publishing the outcome is [`crate::settle`]'s.
//!
//! Redis policy, in one place ([`Pipeline::ask`]): while Redis is
//! unavailable a delivery is held and asked again (the prefetch fills and
//! consumption pauses by itself, instead of churning every job through the
//! delay tiers); a Redis that answers with an error is asked a few times,
//! then the job is dead-lettered as `store_error`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use herald_core::{Config, DeadReason, Job, Message};
use herald_store::{
    Acceptance, Admission, Admit, Claim, Contact, Death, Recorded, SendState, Store, StoreError,
    Unrecorded, WindowState,
};
use herald_vendors::{PermanentCause, RenderError, VendorAccount, VendorRequest, Vendors, Verdict};

use crate::accounts::{Account, Accounts};
use crate::metrics;
use crate::outcome::{Calls, Dead, Later, LaterWhy, Outcome, Processed};
use crate::steps::{self, MAX_HOLD, Next};

/// How much longer than the vendor call's timeout a claim lives.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Longest a delivery is held waiting for an unavailable Redis before it
/// goes to the shortest delay tier (well within the broker's 30-minute
/// consumer timeout).
const REDIS_HOLD: Duration = Duration::from_secs(300);
/// How often a Redis that answers with an error is asked before the job is
/// dead-lettered as `store_error`.
const STORE_REFUSALS: u32 = 3;
/// How often a held delivery looks at its lease while it waits.
const LEASE_CHECK: Duration = Duration::from_millis(250);

/// Whether a delivery may still be acked. A delivery whose channel is gone
/// is redelivered by the broker to another consumer, so it must not call
/// the vendor any more.
pub trait Lease: Send + Sync {
    fn held(&self) -> bool;
}

/// Everything the pipeline needs, built once per process.
pub struct Pipeline<S = Store> {
    config: Arc<Config>,
    accounts: Accounts,
    state: S,
    tiers: Vec<Duration>,
}

impl<S: SendState> Pipeline<S> {
    pub fn new(config: Arc<Config>, vendors: Vendors, state: S) -> Pipeline<S> {
        Pipeline {
            tiers: config.delay_tiers(),
            accounts: Accounts::new(&config, vendors),
            config,
            state,
        }
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    /// Runs one delivery's body through the pipeline. `calls` are the
    /// vendor calls made for this job before this delivery.
    pub async fn process(
        &self,
        body: &[u8],
        routing_key: &str,
        calls: Calls,
        lease: &dyn Lease,
    ) -> Processed {
        let job = match steps::validate(body) {
            Ok(job) => job,
            Err(dead) => {
                return Processed {
                    job: None,
                    calls,
                    outcome: dead.into(),
                };
            }
        };
        let mut calls = calls;
        let outcome = self
            .run(&job, routing_key, &mut calls, lease)
            .await
            .unwrap_or_else(|early| early);
        if let Outcome::Dead(dead) = &outcome {
            self.record_dead(&job, dead, calls).await;
        }
        Processed {
            job: Some(job),
            calls,
            outcome,
        }
    }

    async fn run(
        &self,
        job: &Job,
        routing_key: &str,
        calls: &mut Calls,
        lease: &dyn Lease,
    ) -> Result<Outcome, Outcome> {
        if let Err(late_or_early) = steps::check_time(job, Utc::now(), &self.tiers) {
            // A job sent before its ack was lost must read as a duplicate,
            // not as expired, whenever it comes back: ask before judging.
            if matches!(&late_or_early, Outcome::Dead(d) if d.reason == DeadReason::Expired) {
                let sent = self.ask(lease, || self.state.sent(&job.id)).await?;
                if let Some(vendor_message_id) = sent {
                    return Err(duplicate(vendor_message_id));
                }
            }
            return Err(late_or_early);
        }
        let account = self.accounts.route(job)?;
        steps::check_queue(job, routing_key)?;
        // Rendered before Redis is asked, so a kind the vendor cannot send
        // is refused without a round trip.
        let own = render(&account.vendor, job, &job.message)?;
        let fallback = match &job.fallback_template {
            Some(template) => Some(render(&account.vendor, job, template)?),
            None => None,
        };
        let contact = contact(job);
        let mut blips = blip_delays(&self.config, *calls).peekable();
        let mut throttled_here = 0;
        loop {
            let waiting = std::time::Instant::now();
            account.limits.wait_local(&contact.digits).await;
            let (claim, fallback_used) = self.admit(job, account, &contact, lease).await?;
            metrics::rate_limit_wait(&job.provider, waiting.elapsed());
            // Right before the call: a delivery that can no longer be acked
            // would be redelivered and sent again by another consumer.
            if !lease.held() {
                self.release(claim).await;
                return Ok(Outcome::Abandoned);
            }
            let request = match (&fallback, fallback_used) {
                (Some(fallback), true) => fallback,
                _ => &own,
            };
            let started = std::time::Instant::now();
            let answer = account.vendor.send(request).await;
            metrics::vendor_call(&job.provider, &answer, started.elapsed());
            calls.attempts += 1;
            if let Verdict::Retryable {
                rate_limited: true, ..
            } = answer.verdict
            {
                calls.throttled += 1;
                metrics::vendor_pause(&job.provider);
            }
            self.act_on_vendor_news(job, &contact, &answer.verdict)
                .await;
            let unit = rand::random::<f64>();
            let blip = blips.peek().copied();
            match steps::after_call(
                answer,
                *calls,
                throttled_here,
                blip,
                &self.config.retry,
                unit,
            ) {
                Next::Settle(Outcome::Sent {
                    vendor_message_id, ..
                }) => {
                    let acceptance = Acceptance {
                        job,
                        vendor_message_id: vendor_message_id.as_deref(),
                        attempts: calls.attempts,
                        fallback_used,
                        at: Utc::now(),
                    };
                    self.record_sent(claim, &acceptance).await;
                    return Ok(Outcome::Sent {
                        vendor_message_id,
                        fallback_used,
                    });
                }
                Next::Settle(outcome) => {
                    self.release(claim).await;
                    return Ok(outcome);
                }
                Next::CallAgain { after } => {
                    blips.next();
                    info!(job_id = %job.id, attempt = calls.attempts, ?after, "retrying a vendor blip in-process");
                    self.release(claim).await;
                    if !self.wait_holding(after, lease).await {
                        return Ok(Outcome::Abandoned);
                    }
                }
                Next::WaitOut { pause } => {
                    throttled_here += 1;
                    info!(job_id = %job.id, provider = %job.provider, account = %job.account, ?pause, "vendor throttled the account; pausing it for every replica");
                    // The re-admission finds the shared pause and waits it out.
                    self.release(claim).await;
                }
            }
        }
    }

    /// One round trip before the vendor call. Waits out a short vendor
    /// pause and the reserved permits' slot while holding the delivery.
    async fn admit(
        &self,
        job: &Job,
        account: &Account,
        contact: &Contact,
        lease: &dyn Lease,
    ) -> Result<(Claim, bool), Outcome> {
        let settings = &account.settings;
        let admit = Admit {
            job_id: &job.id,
            contact,
            claim_for: settings.timeout + CLAIM_MARGIN,
            window: (job.message.is_session() && settings.enforce_window)
                .then_some(&self.config.window),
            has_fallback: job.fallback_template.is_some(),
            rate: account.limits.shared_rate,
            pacing: account.limits.shared_pacing,
        };
        loop {
            match self.ask(lease, || self.state.admit(&admit)).await? {
                Admission::Admitted {
                    claim,
                    wait,
                    fallback,
                } => {
                    if wait.is_zero() {
                        return Ok((claim, fallback));
                    }
                    if !self.wait_holding(wait, lease).await {
                        self.release(claim).await;
                        return Err(Outcome::Abandoned);
                    }
                    // A pause set while this delivery waited for its slot
                    // still holds it: the next admission waits it out.
                    let paused = self
                        .ask(lease, || self.state.paused_for(&job.provider, &job.account))
                        .await;
                    match paused {
                        Ok(None) => return Ok((claim, fallback)),
                        Ok(Some(_)) => self.release(claim).await,
                        Err(outcome) => {
                            self.release(claim).await;
                            return Err(outcome);
                        }
                    }
                }
                Admission::Duplicate { vendor_message_id } => {
                    return Err(Outcome::Duplicate { vendor_message_id });
                }
                Admission::Suppressed => {
                    let detail = format!(
                        "the contact opted out of messages from {}/{}",
                        job.provider, job.account
                    );
                    return Err(Dead::new(DeadReason::Suppressed, detail).into());
                }
                Admission::Busy { claim_left } => {
                    return Err(self.defer(
                        claim_left,
                        "another delivery of this job is being sent".to_owned(),
                    ));
                }
                Admission::Paused { left } if left <= MAX_HOLD => {
                    if !self.wait_holding(left, lease).await {
                        return Err(Outcome::Abandoned);
                    }
                }
                Admission::Paused { left } => {
                    let detail = format!("account paused by the vendor for {}s", left.as_secs());
                    return Err(Later {
                        delay: left,
                        why: LaterWhy::Defer,
                        detail,
                    }
                    .into());
                }
                Admission::WindowClosed {
                    last_inbound_ms,
                    closed_by_vendor_ms,
                } => {
                    let window = WindowState::at(last_inbound_ms, Utc::now(), &self.config.window);
                    let detail = window_closed(&window, closed_by_vendor_ms);
                    return Err(Dead::new(DeadReason::WindowClosed, detail).into());
                }
            }
        }
    }

    /// Runs one state operation under the Redis policy (module docs).
    async fn ask<T, F, Fut>(&self, lease: &dyn Lease, op: F) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let held_since = Instant::now();
        let mut delays = redis_backoff();
        let mut refusals = 0;
        loop {
            let error = match op().await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if !error.is_unavailable() {
                refusals += 1;
                if refusals >= STORE_REFUSALS {
                    return Err(Dead::new(DeadReason::StoreError, error.to_string()).into());
                }
            } else if held_since.elapsed() >= REDIS_HOLD {
                return Err(self.defer(Duration::ZERO, error.to_string()));
            }
            let delay = delays.next().expect("endless");
            if !self.wait_holding(delay, lease).await {
                return Err(Outcome::Abandoned);
            }
        }
    }

    /// Sleeps `wait` unless the lease is lost first; `false` when it was.
    async fn wait_holding(&self, wait: Duration, lease: &dyn Lease) -> bool {
        let until = Instant::now() + wait;
        loop {
            if !lease.held() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            tokio::time::sleep((until - now).min(LEASE_CHECK)).await;
        }
    }

    /// Nothing counted against the budget; the job comes back through the
    /// tier that fits `delay` (the shortest for zero).
    fn defer(&self, delay: Duration, detail: String) -> Outcome {
        let longest = *self.tiers.last().expect("at least one delay tier");
        Later {
            delay: delay.min(longest),
            why: LaterWhy::Defer,
            detail,
        }
        .into()
    }

    /// What a vendor's answer says about more than this job: a throttled
    /// account is paused for every replica; a window the vendor says is
    /// closed was recorded wrongly; a recipient who opted out is suppressed
    /// (CONTRACT §11), so later jobs to it die without a vendor call.
    async fn act_on_vendor_news(&self, job: &Job, contact: &Contact, verdict: &Verdict) {
        let (done, what) = match verdict {
            Verdict::Retryable {
                rate_limited: true,
                retry_after,
                ..
            } => {
                let pause = retry_after.unwrap_or(steps::DEFAULT_THROTTLE_PAUSE);
                let done = self
                    .state
                    .pause_account(&job.provider, &job.account, pause)
                    .await;
                (done, "share the vendor's pause of the account")
            }
            Verdict::Permanent {
                cause: PermanentCause::WindowClosed,
                ..
            } => (
                self.state.clear_inbound(contact).await,
                "clear the stale last-inbound time",
            ),
            Verdict::Permanent {
                cause: PermanentCause::OptedOut,
                ..
            } => (
                self.state.suppress(contact).await,
                "suppress the contact that opted out",
            ),
            _ => return,
        };
        if let Err(error) = done {
            warn!(job_id = %job.id, %error, "could not {what}");
        }
    }

    /// Remembers the send. The vendor accepted the message, so this is
    /// tried until Redis takes it (for as long as a delivery may be held):
    /// without the record a redelivered copy would be sent again.
    async fn record_sent(&self, claim: Claim, acceptance: &Acceptance<'_>) {
        let job = acceptance.job;
        let remember_for = self.config.idempotency.ttl;
        let held_since = Instant::now();
        let mut delays = redis_backoff();
        let mut claim = claim;
        loop {
            match self
                .state
                .record_sent(claim, acceptance, remember_for)
                .await
            {
                Ok(Recorded::First) => return,
                Ok(Recorded::AlreadySent { vendor_message_id }) => {
                    error!(job_id = %job.id, first = vendor_message_id.as_deref().unwrap_or(""), "the job was sent twice: another delivery had recorded it");
                    return;
                }
                Err(Unrecorded { claim: back, error }) => {
                    if held_since.elapsed() >= REDIS_HOLD {
                        error!(job_id = %job.id, %error, "sent, but Redis never took the record; its claim expires by itself");
                        drop(back);
                        return;
                    }
                    claim = back;
                    tokio::time::sleep(delays.next().expect("endless")).await;
                }
            }
        }
    }

    /// Keeps the dead letter's reason for `herald status`, best effort: the
    /// dead letter itself is what must not be lost.
    async fn record_dead(&self, job: &Job, dead: &Dead, calls: Calls) {
        let death = Death {
            job,
            reason: dead.reason.as_str(),
            detail: &dead.detail,
            attempts: calls.attempts,
            at: Utc::now(),
        };
        let remember_for = self.config.idempotency.ttl;
        if let Err(error) = self.state.record_dead(&death, remember_for).await {
            warn!(job_id = %job.id, %error, "could not record the dead letter's reason");
        }
    }

    async fn release(&self, claim: Claim) {
        let job_id = claim.job_id().to_owned();
        if let Err(error) = self.state.release(claim).await {
            warn!(%job_id, %error, "could not release the claim; it expires by itself");
        }
    }
}

/// The in-process retries this delivery may still make: `retry.immediate`,
/// never past the budget.
fn blip_delays(config: &Config, calls: Calls) -> impl Iterator<Item = Duration> {
    let retry = &config.retry;
    let left = retry
        .immediate
        .min(retry.max_attempts.saturating_sub(calls.spent() + 1));
    short_backoff().with_max_times(left as usize).build()
}

fn redis_backoff() -> impl Iterator<Item = Duration> {
    short_backoff().without_max_times().build()
}

/// Exponential from 100 ms to 2 s with jitter: for waits a delivery is held through.
fn short_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
}

fn render(vendor: &VendorAccount, job: &Job, message: &Message) -> Result<VendorRequest, Outcome> {
    vendor.render(&job.to, message, &job.options).map_err(|e| {
        let reason = match e {
            RenderError::Unsupported { .. } => DeadReason::UnsupportedMessage,
            RenderError::InvalidOption { .. } => DeadReason::InvalidJob,
        };
        Dead::new(reason, e.to_string()).into()
    })
}

fn duplicate(vendor_message_id: String) -> Outcome {
    Outcome::Duplicate {
        vendor_message_id: Some(vendor_message_id).filter(|id| !id.is_empty()),
    }
}

/// Why the window is closed, for the dead letter: the last inbound message
/// is too old, or the vendor's answer closed it (WhatsApp 131047) and the
/// customer has not written since, or the customer never wrote.
fn window_closed(window: &WindowState, closed_by_vendor_ms: Option<i64>) -> String {
    let rfc3339 = herald_core::protocol::rfc3339;
    let closed_by_vendor = closed_by_vendor_ms.and_then(chrono::DateTime::from_timestamp_millis);
    match (window.last_inbound, closed_by_vendor) {
        (Some(at), _) => format!(
            "the 24-hour window closed: last inbound message at {}",
            rfc3339(at)
        ),
        (None, Some(at)) => format!(
            "the 24-hour window was closed by the vendor's answer at {} (WhatsApp 131047); no inbound message from this contact since",
            rfc3339(at)
        ),
        (None, None) => {
            "the 24-hour window is closed: no inbound message from this contact".to_owned()
        }
    }
}

fn contact(job: &Job) -> Contact {
    Contact {
        provider: job.provider.clone(),
        account: job.account.clone(),
        digits: job.to_digits().to_owned(),
    }
}
