//! What the mock received: the last requests in full, and counts since the
//! last clear. The log is bounded so a long benchmark cannot exhaust memory;
//! the counts are not.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vendors::Provider;

/// How many requests are kept in full; older ones are dropped (still counted).
const LOG_CAPACITY: usize = 100_000;

/// One request as the mock received it. Credentials are recorded as sent:
/// checking them is what the record is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub provider: Provider,
    pub path: String,
    /// Header names lower-cased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a form body as an object of strings; a body that is
    /// neither, as a string.
    pub body: Value,
    pub received_at: DateTime<Utc>,
    /// The status the mock answered (or will, after its delay); `None` for a
    /// request left hanging for good.
    pub status: Option<u16>,
}

/// Counts for one provider since the last clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStats {
    pub requests: u64,
    /// By answered status (`"200"`, `"429"` …), `"hang"` for no answer.
    pub statuses: BTreeMap<String, u64>,
}

/// Counts for every provider, zeros included.
pub type Stats = BTreeMap<Provider, ProviderStats>;

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    log: VecDeque<Received>,
    stats: BTreeMap<Provider, ProviderStats>,
}

impl Recorder {
    /// The 1-based number the next request to `provider` will get.
    pub fn next_seq(&self, provider: Provider) -> u64 {
        self.stats.get(&provider).map_or(0, |s| s.requests) + 1
    }

    pub fn record(&mut self, received: Received) {
        let stats = self.stats.entry(received.provider).or_default();
        stats.requests += 1;
        let status = received
            .status
            .map_or_else(|| "hang".to_owned(), |s| s.to_string());
        *stats.statuses.entry(status).or_default() += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(received);
    }

    pub fn requests(&self, provider: Option<Provider>) -> Vec<Received> {
        self.log
            .iter()
            .filter(|r| provider.is_none_or(|p| r.provider == p))
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> Stats {
        Provider::ALL
            .into_iter()
            .map(|p| (p, self.stats.get(&p).cloned().unwrap_or_default()))
            .collect()
    }

    pub fn clear(&mut self) {
        *self = Recorder::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(provider: Provider, status: Option<u16>) -> Received {
        Received {
            provider,
            path: "/".into(),
            headers: BTreeMap::new(),
            body: Value::Null,
            received_at: Utc::now(),
            status,
        }
    }

    #[test]
    fn counts_per_provider_and_status() {
        let mut recorder = Recorder::default();
        assert_eq!(recorder.next_seq(Provider::Kaleyra), 1);
        recorder.record(received(Provider::Kaleyra, Some(200)));
        recorder.record(received(Provider::Kaleyra, Some(500)));
        recorder.record(received(Provider::Pingup, None));
        assert_eq!(recorder.next_seq(Provider::Kaleyra), 3);
        let stats = recorder.stats();
        assert_eq!(stats.len(), Provider::ALL.len());
        assert_eq!(stats[&Provider::Kaleyra].requests, 2);
        assert_eq!(stats[&Provider::Kaleyra].statuses["500"], 1);
        assert_eq!(stats[&Provider::Pingup].statuses["hang"], 1);
        assert_eq!(stats[&Provider::PayHero], ProviderStats::default());
        assert_eq!(recorder.requests(Some(Provider::Pingup)).len(), 1);
        recorder.clear();
        assert!(recorder.requests(None).is_empty());
        assert_eq!(recorder.next_seq(Provider::Kaleyra), 1);
    }
}
