//! Rate limits per provider account and pacing per recipient.
//!
//! Global limits are shared by every replica: one GCRA state per limit in
//! Redis, advanced by one atomic script per permit that says how long the
//! caller waits for its slot. Local limits (`rate_scope = "local"`) are
//! per process (governor). Waiting never drops a job.
//!
//! When Redis does not answer, a global limit fails safe: callers wait on a
//! local limiter running at a quarter of the configured rate
//! ([`FALLBACK_SHARE`]). A replica cannot know how many others are running
//! while the shared state is away; a quarter keeps up to four replicas
//! within the vendor's limit and still lets every one make progress, where
//! "unlimited" could get the account throttled or banned and "stop" would
//! turn a Redis blip into an outage. Redis is tried again every
//! [`REDIS_RETRY_INTERVAL`].

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use herald_core::{AccountConfig, RateScope};
use tracing::{info, warn};

use crate::{Contact, Store, StoreError};

/// While Redis is away, a global limit runs locally at this fraction of its rate.
pub const FALLBACK_SHARE: u32 = 4;
/// While Redis is away, how often a global limit tries it again.
pub const REDIS_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Recipients a local pacer remembers before it forgets the idle ones.
const PACED_RECIPIENTS_KEPT: usize = 10_000;

/// A rate: one permit every `interval`, up to `burst` at once after a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Duration,
    burst: NonZeroU32,
}

impl Rate {
    /// `per_second` permits a second; `None` unless it is a positive number.
    /// A burst of 0 means 1.
    pub fn per_second(per_second: f64, burst: u32) -> Option<Rate> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let interval = Duration::try_from_secs_f64(per_second.recip()).ok()?;
        Rate::every(interval).map(|rate| Rate {
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            ..rate
        })
    }

    /// One permit every `interval`, no burst; `None` for a zero interval.
    pub fn every(interval: Duration) -> Option<Rate> {
        (!interval.is_zero()).then_some(Rate {
            interval,
            burst: NonZeroU32::MIN,
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The conservative local rate used while the shared state is away.
    pub fn fallback(&self) -> Rate {
        Rate {
            interval: self.interval.saturating_mul(FALLBACK_SHARE),
            burst: NonZeroU32::MIN,
        }
    }

    fn quota(&self) -> Quota {
        Quota::with_period(self.interval)
            .expect("a Rate's interval is never zero")
            .allow_burst(self.burst)
    }
}

/// One account's request rate.
pub struct Limiter {
    scope: LimiterScope,
}

enum LimiterScope {
    Global {
        shared: SharedLimit,
        key: String,
        fallback: DefaultDirectRateLimiter,
    },
    Local(DefaultDirectRateLimiter),
    Unlimited,
}

impl Limiter {
    /// The limiter an account's configuration asks for: unlimited without
    /// `rate_per_second`, else global unless `rate_scope = "local"`.
    pub fn for_account(
        store: &Store,
        provider: &str,
        account: &str,
        cfg: &AccountConfig,
    ) -> Limiter {
        let rate = cfg
            .rate_per_second
            .and_then(|per_second| Rate::per_second(per_second, cfg.burst));
        Limiter::new(store, provider, account, rate, cfg.rate_scope)
    }

    pub fn new(
        store: &Store,
        provider: &str,
        account: &str,
        rate: Option<Rate>,
        scope: RateScope,
    ) -> Limiter {
        let scope = match (rate, scope) {
            (None, _) => LimiterScope::Unlimited,
            (Some(rate), RateScope::Local) => return Limiter::local(rate),
            (Some(rate), RateScope::Global) => LimiterScope::Global {
                shared: SharedLimit::new(store, rate, format!("{provider}/{account}")),
                key: store.rate_key(provider, account),
                fallback: RateLimiter::direct(rate.fallback().quota()),
            },
        };
        Limiter { scope }
    }

    /// A limit of this process alone.
    pub fn local(rate: Rate) -> Limiter {
        Limiter {
            scope: LimiterScope::Local(RateLimiter::direct(rate.quota())),
        }
    }

    /// Waits until one request may be sent.
    pub async fn acquire(&self) {
        match &self.scope {
            LimiterScope::Global {
                shared,
                key,
                fallback,
            } => match shared.reserve(key).await {
                Some(wait) => sleep(wait).await,
                None => fallback.until_ready().await,
            },
            LimiterScope::Local(limiter) => limiter.until_ready().await,
            LimiterScope::Unlimited => {}
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            LimiterScope::Global { shared, .. } => write!(f, "Limiter::Global({:?})", shared.rate),
            LimiterScope::Local(_) => f.write_str("Limiter::Local"),
            LimiterScope::Unlimited => f.write_str("Limiter::Unlimited"),
        }
    }
}

/// Spaces out messages to one recipient (`per_recipient_interval`), like
/// the vendors' own pair rate limits.
pub struct RecipientPacer {
    scope: PacerScope,
}

enum PacerScope {
    Global {
        shared: SharedLimit,
        provider: String,
        account: String,
        fallback: DefaultKeyedRateLimiter<String>,
    },
    Local(DefaultKeyedRateLimiter<String>),
}

impl RecipientPacer {
    /// The account's pacer, if it has a `per_recipient_interval`; global
    /// unless `rate_scope = "local"`.
    pub fn for_account(
        store: &Store,
        provider: &str,
        account: &str,
        cfg: &AccountConfig,
    ) -> Option<RecipientPacer> {
        let rate = Rate::every(cfg.per_recipient_interval?)?;
        Some(RecipientPacer::new(
            store,
            provider,
            account,
            rate,
            cfg.rate_scope,
        ))
    }

    pub fn new(
        store: &Store,
        provider: &str,
        account: &str,
        rate: Rate,
        scope: RateScope,
    ) -> RecipientPacer {
        let scope = match scope {
            RateScope::Local => return RecipientPacer::local(rate),
            RateScope::Global => PacerScope::Global {
                shared: SharedLimit::new(
                    store,
                    rate,
                    format!("{provider}/{account} recipient pacing"),
                ),
                provider: provider.to_owned(),
                account: account.to_owned(),
                fallback: RateLimiter::keyed(rate.fallback().quota()),
            },
        };
        RecipientPacer { scope }
    }

    /// Pacing kept by this process alone.
    pub fn local(rate: Rate) -> RecipientPacer {
        RecipientPacer {
            scope: PacerScope::Local(RateLimiter::keyed(rate.quota())),
        }
    }

    /// Waits until a message may go to `digits` (E.164 without `+`).
    pub async fn acquire(&self, digits: &str) {
        match &self.scope {
            PacerScope::Global {
                shared,
                provider,
                account,
                fallback,
            } => {
                let contact = Contact {
                    provider: provider.clone(),
                    account: account.clone(),
                    digits: digits.to_owned(),
                };
                match shared.reserve(&shared.store.pace_key(&contact)).await {
                    Some(wait) => sleep(wait).await,
                    None => keyed_until_ready(fallback, digits).await,
                }
            }
            PacerScope::Local(limiter) => keyed_until_ready(limiter, digits).await,
        }
    }
}

impl fmt::Debug for RecipientPacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            PacerScope::Global { shared, .. } => {
                write!(f, "RecipientPacer::Global({:?})", shared.rate)
            }
            PacerScope::Local(_) => f.write_str("RecipientPacer::Local"),
        }
    }
}

async fn keyed_until_ready(limiter: &DefaultKeyedRateLimiter<String>, key: &str) {
    if limiter.len() > PACED_RECIPIENTS_KEPT {
        limiter.retain_recent();
    }
    limiter.until_key_ready(&key.to_owned()).await;
}

async fn sleep(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Permits reserved in Redis, and whether Redis is answering.
struct SharedLimit {
    store: Store,
    rate: Rate,
    /// Names the limit in logs.
    name: String,
    /// Set while Redis is away: when to try it again.
    retry_redis_at: Mutex<Option<Instant>>,
}

impl SharedLimit {
    fn new(store: &Store, rate: Rate, name: String) -> SharedLimit {
        SharedLimit {
            store: store.clone(),
            rate,
            name,
            retry_redis_at: Mutex::new(None),
        }
    }

    /// How long to wait for a permit reserved in Redis under `key`, or
    /// `None` when Redis is away and the caller must use its fallback.
    async fn reserve(&self, key: &str) -> Option<Duration> {
        if self.retry_at().is_some_and(|at| Instant::now() < at) {
            return None;
        }
        match self
            .store
            .reserve_permit(key, self.rate.interval, self.rate.burst())
            .await
        {
            Ok(wait) => {
                self.redis_answered();
                Some(wait)
            }
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    fn retry_at(&self) -> Option<Instant> {
        *self
            .retry_redis_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn redis_answered(&self) {
        let was_away = self
            .retry_redis_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some();
        if was_away {
            info!(limit = %self.name, "Redis answers again; the rate limit is shared again");
        }
    }

    fn redis_failed(&self, error: &StoreError) {
        let was_answering = self
            .retry_redis_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Instant::now() + REDIS_RETRY_INTERVAL)
            .is_none();
        if was_answering {
            warn!(
                limit = %self.name,
                %error,
                "rate limit cannot reach Redis; limiting locally at 1/{FALLBACK_SHARE} of the rate until it answers"
            );
        }
    }
}
