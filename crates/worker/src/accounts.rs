//! The account registry: every configured `[providers.<provider>.<account>]`
//! with what sending through it needs — its settings, its vendor adapter
//! and its limits — in one map built once per process.

use std::collections::HashMap;

use herald_core::{AccountConfig, Config, DeadReason, Job, RateScope};
use herald_store::{Limiter, Rate, RecipientPacer};
use herald_vendors::{VendorAccount, Vendors};

use crate::outcome::{Dead, Outcome};

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
