//! Fault injection: what the operator asked for ([`Faults`], [`FaultSpec`]),
//! what one request gets ([`Reply`]), and the pure choice between them given
//! the request's number and a random roll.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herald_core::config::{format_duration, parse_duration};
use serde::{Deserialize, Serialize};

use crate::vendors::Provider;

/// The faults of the whole server: one spec for every provider, and
/// per-provider specs that replace it (not merge with it) for that provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub global: FaultSpec,
    pub providers: BTreeMap<Provider, FaultSpec>,
}

/// How one provider misbehaves. Rates are fractions of requests in `0..=1`;
/// the rate-based faults are exclusive bands of one roll, so their sum must
/// not exceed 1. The default is a perfectly healthy vendor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    /// Added before every answer.
    pub latency_ms: u64,
    /// The latency varies uniformly by up to this much either way.
    pub jitter_ms: u64,
    /// Fraction answered 500 or 503 (half each).
    pub error_rate: f64,
    /// Fraction answered 429.
    pub rate_limit_rate: f64,
    /// Every Nth request to the provider is answered 429 (0: never).
    pub rate_limit_every: u64,
    /// The `Retry-After` seconds sent with a 429 (0 is sent as 1).
    pub retry_after_secs: u64,
    /// Fraction refused with the vendor's own permanent error.
    pub permanent_rate: f64,
    /// Fraction refused with WhatsApp's 131047 (24-hour window closed).
    pub window_closed_rate: f64,
    /// Fraction that hang.
    pub hang_rate: f64,
    /// A hung request succeeds after this long; absent, it never answers.
    pub hang_ms: Option<u64>,
}

impl Faults {
    /// The same spec for every provider.
    pub fn everywhere(spec: FaultSpec) -> Faults {
        Faults {
            global: spec,
            providers: BTreeMap::new(),
        }
    }

    /// The spec that applies to `provider`.
    pub fn for_provider(&self, provider: Provider) -> &FaultSpec {
        self.providers.get(&provider).unwrap_or(&self.global)
    }

    /// Names the first thing that makes no sense, e.g.
    /// `providers.kaleyra.error_rate must be within 0..=1, not 1.5`.
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        let specs = std::iter::once(("global".to_owned(), &self.global)).chain(
            self.providers
                .iter()
                .map(|(p, s)| (format!("providers.{p}"), s)),
        );
        for (at, spec) in specs {
            spec.validate()
                .map_err(|problem| InvalidFaults(format!("{at}.{problem}")))?;
        }
        Ok(())
    }
}

impl FaultSpec {
    /// The rate-based faults as exclusive bands of one roll, in order.
    fn bands(&self) -> [Band; 5] {
        [
            ("hang_rate", self.hang_rate, |s, _| Reply::Hang {
                answer_after: s.hang_ms.map(Duration::from_millis),
            }),
            ("error_rate", self.error_rate, |_, within| {
                Reply::ServerError(if within < 0.5 { 500 } else { 503 })
            }),
            ("rate_limit_rate", self.rate_limit_rate, |s, _| {
                s.rate_limited()
            }),
            ("permanent_rate", self.permanent_rate, |_, _| {
                Reply::Permanent
            }),
            ("window_closed_rate", self.window_closed_rate, |_, _| {
                Reply::WindowClosed
            }),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        let bands = self.bands();
        if let Some((name, rate, _)) = bands
            .iter()
            .find(|(_, rate, _)| !(0.0..=1.0).contains(rate))
        {
            return Err(format!("{name} must be within 0..=1, not {rate}"));
        }
        let total: f64 = bands.iter().map(|(_, r, _)| r).sum();
        if total > 1.0 + f64::EPSILON {
            return Err(format!("*_rate: the rates add up to {total}, more than 1"));
        }
        Ok(())
    }

    /// The delay before answering, `roll` in `0..1` placing it within the jitter.
    pub(crate) fn latency(&self, roll: f64) -> Duration {
        let jitter = self.jitter_ms as f64 * (2.0 * roll - 1.0);
        Duration::from_secs_f64((self.latency_ms as f64 + jitter).max(0.0) / 1000.0)
    }

    /// The reply to the `seq`-th request (from 1) to a provider, `roll` in
    /// `0..1` choosing among the rate bands.
    pub(crate) fn decide(&self, seq: u64, roll: f64) -> Reply {
        if self.rate_limit_every > 0 && seq.is_multiple_of(self.rate_limit_every) {
            return self.rate_limited();
        }
        let mut edge = 0.0;
        for (_, rate, pick) in self.bands() {
            if roll < edge + rate {
                return pick(self, (roll - edge) / rate);
            }
            edge += rate;
        }
        Reply::Ok
    }

    fn rate_limited(&self) -> Reply {
        Reply::RateLimited {
            retry_after_secs: self.retry_after_secs.max(1),
        }
    }
}

/// A rate fault: its key, its rate, and the reply it picks given where in
/// its band (`0..1`) the roll fell.
type Band = (&'static str, f64, fn(&FaultSpec, f64) -> Reply);

/// Faults that make no sense, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFaults(pub String);

impl fmt::Display for InvalidFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid faults: {}", self.0)
    }
}

impl std::error::Error for InvalidFaults {}

/// How the mock answers one request. Scripts are lists of these; in JSON
/// each is a short string: `ok` (or `200`), `401`, `429` or `429:<secs>`,
/// `500`…`599`, `permanent`, `window_closed`, `hang` or `hang:<duration>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Reply {
    /// The vendor's documented success body.
    Ok,
    /// The vendor's 401 for a bad credential.
    Unauthorized,
    /// 429 with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// A 5xx status.
    ServerError(u16),
    /// The vendor's own permanent refusal (e.g. Kaleyra E13009).
    Permanent,
    /// WhatsApp's 131047, relayed in the vendor's error shape.
    WindowClosed,
    /// No answer until `answer_after` (then success), or ever.
    Hang { answer_after: Option<Duration> },
}

impl FromStr for Reply {
    type Err = String;

    fn from_str(text: &str) -> Result<Reply, String> {
        let (head, arg) = match text.split_once(':') {
            Some((head, arg)) => (head, Some(arg)),
            None => (text, None),
        };
        let reply = match (head, arg) {
            ("ok" | "200", None) => Reply::Ok,
            ("401" | "unauthorized", None) => Reply::Unauthorized,
            ("permanent", None) => Reply::Permanent,
            ("window_closed" | "131047", None) => Reply::WindowClosed,
            ("429", secs) => Reply::RateLimited {
                retry_after_secs: secs
                    .map_or(Ok(1), str::parse)
                    .map_err(|_| bad_reply(text))?,
            },
            ("hang", after) => Reply::Hang {
                answer_after: after.map(parse_duration).transpose()?,
            },
            (code, None) => match code.parse::<u16>() {
                Ok(code @ 500..=599) => Reply::ServerError(code),
                _ => return Err(bad_reply(text)),
            },
            _ => return Err(bad_reply(text)),
        };
        Ok(reply)
    }
}

fn bad_reply(text: &str) -> String {
    format!(
        "{text:?} is not a reply: use ok, 401, 429, 429:<secs>, 500..599, permanent, window_closed, hang or hang:<duration>"
    )
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => f.write_str("ok"),
            Reply::Unauthorized => f.write_str("401"),
            Reply::RateLimited { retry_after_secs } => write!(f, "429:{retry_after_secs}"),
            Reply::ServerError(code) => write!(f, "{code}"),
            Reply::Permanent => f.write_str("permanent"),
            Reply::WindowClosed => f.write_str("window_closed"),
            Reply::Hang { answer_after: None } => f.write_str("hang"),
            Reply::Hang {
                answer_after: Some(after),
            } => write!(f, "hang:{}", format_duration(*after)),
        }
    }
}

impl TryFrom<String> for Reply {
    type Error = String;
    fn try_from(text: String) -> Result<Reply, String> {
        text.parse()
    }
}

impl From<Reply> for String {
    fn from(reply: Reply) -> String {
        reply.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_bands_split_the_roll_in_order() {
        let spec = FaultSpec {
            hang_rate: 0.1,
            error_rate: 0.2,
            rate_limit_rate: 0.1,
            permanent_rate: 0.1,
            window_closed_rate: 0.1,
            retry_after_secs: 3,
            ..FaultSpec::default()
        };
        assert_eq!(spec.decide(1, 0.05), Reply::Hang { answer_after: None });
        assert_eq!(spec.decide(1, 0.15), Reply::ServerError(500));
        assert_eq!(spec.decide(1, 0.25), Reply::ServerError(503));
        assert_eq!(
            spec.decide(1, 0.35),
            Reply::RateLimited {
                retry_after_secs: 3
            }
        );
        assert_eq!(spec.decide(1, 0.45), Reply::Permanent);
        assert_eq!(spec.decide(1, 0.55), Reply::WindowClosed);
        assert_eq!(spec.decide(1, 0.65), Reply::Ok);
        assert_eq!(FaultSpec::default().decide(1, 0.0), Reply::Ok);
    }

    #[test]
    fn every_nth_request_is_rate_limited() {
        let spec = FaultSpec {
            rate_limit_every: 3,
            ..FaultSpec::default()
        };
        let replies: Vec<Reply> = (1..=6).map(|seq| spec.decide(seq, 0.9)).collect();
        let limited = Reply::RateLimited {
            retry_after_secs: 1,
        };
        assert_eq!(
            replies,
            [Reply::Ok, Reply::Ok, limited, Reply::Ok, Reply::Ok, limited]
        );
    }

    #[test]
    fn latency_jitters_both_ways_and_never_below_zero() {
        let spec = FaultSpec {
            latency_ms: 100,
            jitter_ms: 20,
            ..FaultSpec::default()
        };
        assert_eq!(spec.latency(0.0), Duration::from_millis(80));
        assert_eq!(spec.latency(0.5), Duration::from_millis(100));
        assert_eq!(spec.latency(1.0), Duration::from_millis(120));
        let wild = FaultSpec {
            latency_ms: 10,
            jitter_ms: 50,
            ..FaultSpec::default()
        };
        assert_eq!(wild.latency(0.0), Duration::ZERO);
    }

    #[test]
    fn nonsense_is_named() {
        let mut faults = Faults::default();
        faults.providers.insert(
            Provider::Kaleyra,
            FaultSpec {
                error_rate: 1.5,
                ..FaultSpec::default()
            },
        );
        let err = faults.validate().unwrap_err().to_string();
        assert!(err.contains("providers.kaleyra.error_rate"), "{err}");
        let crowded = Faults::everywhere(FaultSpec {
            error_rate: 0.6,
            hang_rate: 0.6,
            ..FaultSpec::default()
        });
        assert!(
            crowded
                .validate()
                .unwrap_err()
                .to_string()
                .contains("add up to")
        );
        let typo = serde_json::from_str::<Faults>(r#"{"global":{"eror_rate":0.1}}"#).unwrap_err();
        assert!(typo.to_string().contains("eror_rate"), "{typo}");
    }

    #[test]
    fn provider_spec_replaces_the_global_one() {
        let mut faults = Faults::everywhere(FaultSpec {
            latency_ms: 5,
            ..FaultSpec::default()
        });
        faults.providers.insert(
            Provider::Pingup,
            FaultSpec {
                error_rate: 1.0,
                ..FaultSpec::default()
            },
        );
        assert_eq!(faults.for_provider(Provider::Pingup).latency_ms, 0);
        assert_eq!(faults.for_provider(Provider::Kaleyra).latency_ms, 5);
    }

    #[test]
    fn replies_round_trip_through_text() {
        for text in [
            "ok",
            "401",
            "429:7",
            "503",
            "permanent",
            "window_closed",
            "hang",
            "hang:30s",
        ] {
            assert_eq!(text.parse::<Reply>().unwrap().to_string(), text);
        }
        assert_eq!("200".parse::<Reply>(), Ok(Reply::Ok));
        assert_eq!(
            "429".parse::<Reply>(),
            Ok(Reply::RateLimited {
                retry_after_secs: 1
            })
        );
        for bad in ["404", "429:x", "500:1", "hang:soon", "fine"] {
            assert!(bad.parse::<Reply>().is_err(), "{bad}");
        }
    }
}
