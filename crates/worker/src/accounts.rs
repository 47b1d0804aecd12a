//! The account registry: every configured `[providers.<provider>.<account>]`
//! with what sending through it needs — its settings, its vendor adapter
//! and its limits — in one map built once per process.

use std::collections::HashMap;

use herald_core::{AccountConfig, Config, DeadReason, Job, RateScope};
use herald_store::{Limiter, Rate, RecipientPacer};
use herald_vendors::{VendorAccount, Vendors};

use crate::outcome::{Dead, Outcome};

/// How long a vendor call may take before an account's rate, rather than
/// its latency, stops being what limits it (see [`prefetch_for`]).
const LATENCY_BUDGET_SECS: f64 = 1.0;

/// Deliveries a worker keeps in flight on one provider queue: at least
/// `amqp.prefetch`, and enough for every account of the provider to reach
/// its `rate_per_second` while vendor calls take up to a second. In-flight
/// jobs are unacked deliveries (a job is acked only once its outcome is
/// durable), so this is the worker's concurrency for the provider: with a
/// fixed prefetch of 32 and a 200 ms vendor, an account could never pass
/// 160 messages a second whatever its rate.
pub fn prefetch_for(config: &Config, provider: &str) -> u16 {
    let for_rates: f64 = config
        .providers
        .get(provider)
        .into_iter()
        .flat_map(|accounts| accounts.values())
        .filter_map(|account| account.rate_per_second)
        .map(|per_second| per_second * LATENCY_BUDGET_SECS)
        .sum();
    let for_rates = for_rates.ceil().min(f64::from(u16::MAX)) as u16;
    config.amqp.prefetch.max(for_rates)
}

pub struct Accounts {
    by_provider: HashMap<String, HashMap<String, Account>>,
}

/// One configured account.
pub struct Account {
    pub settings: AccountConfig,
    pub vendor: VendorAccount,
    pub limits: Limits,
}

/// An account's limits: shared ones are reserved in the admit script,
/// local ones (`rate_scope = "local"`) are waited for in this process.
pub struct Limits {
    pub shared_rate: Option<Rate>,
    pub shared_pacing: Option<Rate>,
    local_rate: Option<Limiter>,
    local_pacing: Option<RecipientPacer>,
}

impl Limits {
    fn of(settings: &AccountConfig) -> Limits {
        let rate = settings
            .rate_per_second
            .and_then(|per_second| Rate::per_second(per_second, settings.burst));
        let pacing = settings.per_recipient_interval.and_then(Rate::every);
        match settings.rate_scope {
            RateScope::Global => Limits {
                shared_rate: rate,
                shared_pacing: pacing,
                local_rate: None,
                local_pacing: None,
            },
            RateScope::Local => Limits {
                shared_rate: None,
                shared_pacing: None,
                local_rate: rate.map(Limiter::local),
                local_pacing: pacing.map(RecipientPacer::local),
            },
        }
    }

    /// Waits for this process's own limits, if the account has any.
    pub async fn wait_local(&self, digits: &str) {
        if let Some(limiter) = &self.local_rate {
            limiter.acquire().await;
        }
        if let Some(pacer) = &self.local_pacing {
            pacer.acquire(digits).await;
        }
    }
}

impl Accounts {
    pub fn new(config: &Config, vendors: Vendors) -> Accounts {
        let mut by_provider: HashMap<String, HashMap<String, Account>> = HashMap::new();
        for (provider, account, vendor) in vendors.into_accounts() {
            let settings = config
                .account(&provider, &account)
                .expect("vendors are built from the same configuration")
                .clone();
            let limits = Limits::of(&settings);
            by_provider.entry(provider).or_default().insert(
                account,
                Account {
                    settings,
                    vendor,
                    limits,
                },
            );
        }
        Accounts { by_provider }
    }

    /// The job's account, or the dead letter naming what is not configured.
    pub fn route(&self, job: &Job) -> Result<&Account, Outcome> {
        let Some(accounts) = self.by_provider.get(&job.provider) else {
            let detail = format!("no configured provider {:?}", job.provider);
            return Err(Dead::new(DeadReason::UnknownProvider, detail).into());
        };
        accounts.get(&job.account).ok_or_else(|| {
            let detail = format!(
                "no configured account {:?} of provider {:?}",
                job.account, job.provider
            );
            Dead::new(DeadReason::UnknownAccount, detail).into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_covers_every_accounts_rate_for_a_second_of_latency() {
        let config = |accounts: &str| {
            let toml = format!("[amqp]\nprefetch = 32\n{accounts}");
            Config::from_toml_with_env(&toml, &[]).unwrap()
        };
        let account = |name: &str, rate: &str| {
            format!("[providers.kaleyra.{name}]\nbase_url = \"http://x\"\n{rate}\n")
        };
        let unlimited = config(&account("default", ""));
        assert_eq!(prefetch_for(&unlimited, "kaleyra"), 32);
        let slow = config(&account("default", "rate_per_second = 20"));
        assert_eq!(prefetch_for(&slow, "kaleyra"), 32);
        let fast = config(&format!(
            "{}{}",
            account("default", "rate_per_second = 1000"),
            account("second", "rate_per_second = 80.5")
        ));
        assert_eq!(prefetch_for(&fast, "kaleyra"), 1081);
        assert_eq!(prefetch_for(&fast, "pingup"), 32, "no such provider");
    }
}
