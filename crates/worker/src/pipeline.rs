//! The send pipeline, one delivery at a time:
//!
//! validate → schedule/expiry → route (provider, account, message kind) →
//! idempotency → window → rate limit → in-flight claim → vendor call
//! (with immediate retries) → classify.
//!
//! Each step returns `Err(outcome)` to end the pipeline early, so `run`
//! reads as the list above. The steps that need no IO live in
//! [`crate::steps`]; the ones here talk to Redis or a vendor, and nothing
//! here touches the broker: publishing the outcome is [`crate::settle`]'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use tracing::{info, warn};

use herald_core::{AccountConfig, Config, DeadReason, Job, Message};
use herald_store::{Contact, Limiter, RecipientPacer, Store, StoreError, WindowState};
use herald_vendors::{
    Lookup, RenderError, VendorAccount, VendorAnswer, VendorRequest, Vendors, Verdict,
};

use crate::metrics;
use crate::outcome::{Dead, Later, LaterWhy, Outcome, Processed};
use crate::steps;

/// A pause shorter than this is waited out while holding the delivery;
/// a longer one sends the job to a delay tier instead, so a delivery is
/// never held near the broker's consumer timeout.
const MAX_HOLD: Duration = Duration::from_secs(30);
/// 429s in a row a delivery waits out in-process before it is deferred.
const MAX_THROTTLED_CALLS: u32 = 3;
/// Pause applied after a 429 that carries no `Retry-After`.
const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);
/// How much longer than the vendor call's timeout the in-flight mark lives.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// How long `record_sent` keeps trying after the vendor accepted a message.
const RECORD_ATTEMPTS: usize = 8;

/// Everything the pipeline needs, built once per process.
pub struct Pipeline {
    config: Arc<Config>,
    vendors: Vendors,
    store: Store,
    tiers: Vec<Duration>,
    /// By provider, then account, like `[providers.<provider>.<account>]`.
    limits: HashMap<String, HashMap<String, AccountLimits>>,
}

/// The rate limits of one provider account.
struct AccountLimits {
    limiter: Limiter,
    pacer: Option<RecipientPacer>,
}

/// What a routed job is sent with: its account's settings, vendor and limits.
struct Route<'a> {
    settings: &'a AccountConfig,
    vendor: &'a VendorAccount,
    limits: &'a AccountLimits,
}

impl Pipeline {
    pub fn new(config: Arc<Config>, vendors: Vendors, store: Store) -> Pipeline {
        let limits = config
            .providers
            .iter()
            .map(|(provider, accounts)| {
                let accounts = accounts
                    .iter()
                    .map(|(account, settings)| {
                        let account_limits = AccountLimits {
                            limiter: Limiter::for_account(&store, provider, account, settings),
                            pacer: RecipientPacer::for_account(&store, provider, account, settings),
                        };
                        (account.clone(), account_limits)
                    })
                    .collect();
                (provider.clone(), accounts)
            })
            .collect();
        Pipeline {
            tiers: config.delay_tiers(),
            config,
            vendors,
            store,
            limits,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs one delivery's body through the pipeline. `attempt` is the
    /// vendor calls made for this job before this delivery.
    pub async fn process(&self, body: &[u8], routing_key: &str, attempt: u32) -> Processed {
        let job = match steps::validate(body) {
            Ok(job) => job,
            Err(dead) => {
                return Processed {
                    job: None,
                    attempt,
                    outcome: dead.into(),
                };
            }
        };
        let mut attempt = attempt;
        let outcome = self
            .run(&job, routing_key, &mut attempt)
            .await
            .unwrap_or_else(|early| early);
        Processed {
            job: Some(job),
            attempt,
            outcome,
        }
    }

    async fn run(
        &self,
        job: &Job,
        routing_key: &str,
        attempt: &mut u32,
    ) -> Result<Outcome, Outcome> {
        if let Err(late_or_early) = steps::check_time(job, Utc::now(), &self.tiers) {
            // A job sent before its ack was lost must read as a duplicate,
            // not as expired, whenever it comes back: ask before judging.
            if matches!(&late_or_early, Outcome::Dead(d) if d.reason == DeadReason::Expired) {
                self.check_not_sent(job).await?;
            }
            return Err(late_or_early);
        }
        let route = self.route(job)?;
        steps::check_queue(job, routing_key)?;
        // Rendered before anything else, so a kind the vendor cannot send is
        // refused without touching Redis; only a fallback renders again.
        let own_request = render(route.vendor, job, &job.message)?;
        self.check_not_sent(job).await?;
        let (message, fallback_used) = self.choose_message(job, route.settings).await?;
        let request = if fallback_used {
            render(route.vendor, job, message)?
        } else {
            own_request
        };
        // From here on this delivery holds the in-flight mark whenever
        // `call_vendor` returns an answer; every early return released it
        // (or never took it).
        let answer = self.call_vendor(job, &route, &request, attempt).await?;
        let unit = rand::random::<f64>();
        let outcome = match steps::judge(answer, *attempt, &self.config.retry, unit) {
            Outcome::Sent {
                vendor_message_id, ..
            } => {
                self.record_sent(job, vendor_message_id.as_deref()).await;
                Outcome::Sent {
                    vendor_message_id,
                    fallback_used,
                }
            }
            other => {
                if matches!(&other, Outcome::Dead(d) if d.reason == DeadReason::WindowClosed) {
                    self.forget_inbound(job).await;
                }
                self.release(job).await;
                other
            }
        };
        Ok(outcome)
    }

    /// The provider and account must exist in configuration.
    fn route(&self, job: &Job) -> Result<Route<'_>, Outcome> {
        let vendor = self
            .vendors
            .account(&job.provider, &job.account)
            .map_err(|lookup| {
                let (reason, what) = match lookup {
                    Lookup::UnknownProvider => (
                        DeadReason::UnknownProvider,
                        format!("provider {:?}", job.provider),
                    ),
                    Lookup::UnknownAccount => (
                        DeadReason::UnknownAccount,
                        format!("account {:?} of provider {:?}", job.account, job.provider),
                    ),
                };
                Outcome::from(Dead::new(reason, format!("no configured {what}")))
            })?;
        let limits = self
            .limits
            .get(&job.provider)
            .and_then(|a| a.get(&job.account));
        let (Some(settings), Some(limits)) =
            (self.config.account(&job.provider, &job.account), limits)
        else {
            unreachable!("vendors and limits are built from the same configuration")
        };
        Ok(Route {
            settings,
            vendor,
            limits,
        })
    }

    /// Idempotency: a job whose id is remembered as sent is not sent again.
    async fn check_not_sent(&self, job: &Job) -> Result<(), Outcome> {
        match self.store.sent(&job.id).await {
            Ok(None) => Ok(()),
            Ok(Some(vendor_message_id)) => Err(Outcome::Duplicate {
                vendor_message_id: Some(vendor_message_id).filter(|id| !id.is_empty()),
            }),
            Err(e) => Err(redis_unavailable(&self.tiers, e)),
        }
    }

    /// The 24-hour window: session messages need an open window; when it is
    /// closed the job's fallback template goes instead, if it has one.
    async fn choose_message<'j>(
        &self,
        job: &'j Job,
        settings: &AccountConfig,
    ) -> Result<(&'j Message, bool), Outcome> {
        if !job.message.is_session() || !settings.enforce_window {
            return Ok((&job.message, false));
        }
        let last_inbound = self
            .store
            .last_inbound(&contact(job))
            .await
            .map_err(|e| redis_unavailable(&self.tiers, e))?;
        let window = WindowState::at(last_inbound, Utc::now(), &self.config.window);
        if window.open {
            return Ok((&job.message, false));
        }
        if let Some(fallback) = &job.fallback_template {
            return Ok((fallback, true));
        }
        let detail = match window.last_inbound {
            Some(at) => format!(
                "the 24-hour window closed: last inbound message at {}",
                herald_core::protocol::rfc3339(at)
            ),
            None => "the 24-hour window is closed: no inbound message from this contact".to_owned(),
        };
        Err(Dead::new(DeadReason::WindowClosed, detail).into())
    }

    /// Marks the job as being sent, so a redelivered copy (a dropped channel,
    /// a duplicate publish) waits instead of calling the vendor a second time
    /// while this call is under way. The mark outlives one call, so a worker
    /// killed mid-call blocks the job only briefly.
    async fn claim(&self, job: &Job, settings: &AccountConfig) -> Result<(), Outcome> {
        let ttl = settings.timeout + CLAIM_MARGIN;
        match self.store.claim_in_flight(&job.id, ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Later {
                delay: ttl.min(*self.tiers.last().expect("tiers")),
                why: LaterWhy::Defer,
                detail: "another delivery of this job is being sent".to_owned(),
            }
            .into()),
            Err(e) => Err(redis_unavailable(&self.tiers, e)),
        }
    }

    /// Calls the vendor, retrying network blips in-process (exponential
    /// backoff with jitter) and waiting out short vendor throttling, which
    /// does not count as an attempt.
    async fn call_vendor(
        &self,
        job: &Job,
        route: &Route<'_>,
        request: &VendorRequest,
        attempt: &mut u32,
    ) -> Result<VendorAnswer, Outcome> {
        let retry = &self.config.retry;
        let immediate = retry
            .immediate
            .min(retry.max_attempts.saturating_sub(*attempt + 1)) as usize;
        let mut blips = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(immediate)
            .with_jitter()
            .build();
        let mut throttled = 0;
        loop {
            let waiting = std::time::Instant::now();
            self.wait_for_permit(job, route).await?;
            metrics::rate_limit_wait(&job.provider, waiting.elapsed());
            self.claim(job, route.settings).await?;
            let started = std::time::Instant::now();
            let answer = route.vendor.send(request).await;
            metrics::vendor_call(&job.provider, &answer, started.elapsed());
            match &answer.verdict {
                Verdict::Retryable {
                    rate_limited: true,
                    retry_after,
                    detail,
                } => {
                    throttled += 1;
                    metrics::vendor_pause(&job.provider);
                    let pause = retry_after.unwrap_or(DEFAULT_THROTTLE_PAUSE);
                    info!(job_id = %job.id, provider = %job.provider, account = %job.account, ?pause, "vendor throttled the account; pausing it for every replica");
                    if let Err(e) = self
                        .store
                        .pause_account(&job.provider, &job.account, pause)
                        .await
                    {
                        warn!(error = %e, "could not share the vendor's pause through Redis");
                    }
                    self.release(job).await;
                    if throttled >= MAX_THROTTLED_CALLS || pause > MAX_HOLD {
                        return Err(Later {
                            delay: pause,
                            why: LaterWhy::Defer,
                            detail: detail.clone(),
                        }
                        .into());
                    }
                }
                Verdict::Retryable {
                    retry_after: None,
                    detail,
                    ..
                } => {
                    *attempt += 1;
                    match blips.next() {
                        Some(delay) => {
                            info!(job_id = %job.id, attempt = *attempt, %detail, ?delay, "retrying a vendor blip in-process");
                            self.release(job).await;
                            tokio::time::sleep(delay).await;
                        }
                        None => return Ok(answer),
                    }
                }
                _ => {
                    *attempt += 1;
                    return Ok(answer);
                }
            }
        }
    }

    /// Rate limits: the account's rate, the recipient's pacing, then the
    /// vendor's pause of the account — checked last, right before the call,
    /// so a pause set while this job waited for its permit still holds it.
    /// Waiting holds the delivery; a wait too long to hold sends the job to
    /// a delay tier instead.
    async fn wait_for_permit(&self, job: &Job, route: &Route<'_>) -> Result<(), Outcome> {
        route.limits.limiter.acquire().await;
        if let Some(pacer) = &route.limits.pacer {
            pacer.acquire(job.to_digits()).await;
        }
        loop {
            match self
                .store
                .account_paused_for(&job.provider, &job.account)
                .await
            {
                Ok(None) => return Ok(()),
                Ok(Some(pause)) if pause <= MAX_HOLD => tokio::time::sleep(pause).await,
                Ok(Some(pause)) => {
                    let detail = format!("account paused by the vendor for {}s", pause.as_secs());
                    return Err(Later {
                        delay: pause,
                        why: LaterWhy::Defer,
                        detail,
                    }
                    .into());
                }
                Err(e) => return Err(redis_unavailable(&self.tiers, e)),
            }
        }
    }

    /// Remembers the send. The vendor has accepted the message, so this must
    /// not fail the job: it is retried for a while, and if Redis stays away
    /// the in-flight mark still guards the id until it expires.
    async fn record_sent(&self, job: &Job, vendor_message_id: Option<&str>) {
        let ttl = self.config.idempotency.ttl;
        let mut delays = ExponentialBuilder::default()
            .with_max_times(RECORD_ATTEMPTS)
            .with_jitter()
            .build();
        loop {
            match self
                .store
                .record_sent(&job.id, vendor_message_id, ttl)
                .await
            {
                Ok(()) => break,
                Err(e) => match delays.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        warn!(job_id = %job.id, error = %e, "sent, but could not record it in Redis");
                        return;
                    }
                },
            }
        }
        self.release(job).await;
    }

    async fn release(&self, job: &Job) {
        if let Err(e) = self.store.release_in_flight(&job.id).await {
            warn!(job_id = %job.id, error = %e, "could not release the in-flight mark; it expires by itself");
        }
    }

    /// The vendor says the window is closed, so our record of it is wrong.
    async fn forget_inbound(&self, job: &Job) {
        if let Err(e) = self.store.clear_inbound(&contact(job)).await {
            warn!(job_id = %job.id, error = %e, "could not clear the stale last-inbound time");
        }
    }
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

fn contact(job: &Job) -> Contact {
    Contact {
        provider: job.provider.clone(),
        account: job.account.clone(),
        digits: job.to_digits().to_owned(),
    }
}

/// Without Redis nothing is sent blindly and nothing is dead-lettered for
/// it: the job waits in the shortest delay tier and comes back.
fn redis_unavailable(tiers: &[Duration], error: StoreError) -> Outcome {
    Later {
        delay: tiers.first().copied().unwrap_or(Duration::from_secs(1)),
        why: LaterWhy::Defer,
        detail: format!("Redis unavailable: {error}"),
    }
    .into()
}
