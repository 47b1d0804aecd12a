//! Vendor adapters: one module per Business Solution Provider behind the
//! [`Adapter`] trait, and [`Vendors`], every configured account with one
//! pooled HTTP client.
//!
//! Owns: each vendor's wire format (path, auth, encoding, field names, phone
//! format), its account keys in configuration, the reading of its answers and
//! the classification of failures. Adapters are pure functions over plain
//! data; only [`VendorAccount::send`] does IO.
//!
//! Must not touch: the broker, Redis, retries or the 24-hour window: it
//! answers "what did the vendor say", never "what happens to the job next".
//! Secrets never leave this crate: requests carry them, errors, logs and
//! recorded responses never do.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{Config, ConfigError, ConfigErrors, Message};

mod classify;
mod digital99;
mod http;
mod kaleyra;
pub mod meta;
mod payhero;
mod pingup;
mod replyhero;
mod settings;

use settings::Settings;

/// What replaces a secret wherever text leaves this crate.
pub const REDACTED: &str = "[redacted]";

/// A rendered vendor request: plain data. `Debug` redacts header values and
/// secret body fields.
#[derive(Clone, PartialEq)]
pub struct VendorRequest {
    /// Relative to the account's `base_url`, e.g. `/v1/HXAP1XXXXXX17XX/messages`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: RequestBody,
    /// Top-level body fields that carry a secret (99digital's `apiKey`).
    pub secret_fields: &'static [&'static str],
}

/// How a request body is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

impl RequestBody {
    /// A copy with the values of `fields` replaced by [`REDACTED`].
    fn redacted(&self, fields: &[&str]) -> RequestBody {
        match self {
            RequestBody::Json(value) => {
                let mut value = value.clone();
                if let Some(object) = value.as_object_mut() {
                    for (name, v) in object.iter_mut() {
                        if fields.contains(&name.as_str()) {
                            *v = REDACTED.into();
                        }
                    }
                }
                RequestBody::Json(value)
            }
            RequestBody::Form(pairs) => RequestBody::Form(
                pairs
                    .iter()
                    .map(|(name, v)| {
                        let v = if fields.contains(&name.as_str()) {
                            REDACTED
                        } else {
                            v
                        };
                        (name.clone(), v.to_owned())
                    })
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for VendorRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every header a vendor request carries is an auth header.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), REDACTED))
            .collect();
        f.debug_struct("VendorRequest")
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body", &self.body.redacted(self.secret_fields))
            .finish()
    }
}

/// How one vendor answer is classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Sent {
        vendor_message_id: Option<String>,
    },
    Retryable {
        retry_after: Option<Duration>,
        /// HTTP 429 or a vendor's own rate-limit answer.
        rate_limited: bool,
        detail: String,
    },
    Permanent {
        /// The vendor's own error code, e.g. `E13009`.
        code: Option<String>,
        detail: String,
        cause: PermanentCause,
    },
}

/// What a permanent refusal means beyond "do not send this again": the
/// worker acts on the window and on opt-outs, not only on the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentCause {
    /// The request itself was refused (invalid number, bad credentials,
    /// validation, template problems).
    Rejected,
    /// WhatsApp's "re-engagement" error (131047): the 24-hour window is closed.
    WindowClosed,
    /// The recipient opted out of this business's messages (Meta 131050):
    /// the contact is to be suppressed.
    OptedOut,
}

impl Verdict {
    fn map_detail(self, f: impl FnOnce(String) -> String) -> Verdict {
        match self {
            Verdict::Sent { .. } => self,
            Verdict::Retryable {
                retry_after,
                rate_limited,
                detail,
            } => Verdict::Retryable {
                retry_after,
                rate_limited,
                detail: f(detail),
            },
            Verdict::Permanent {
                code,
                detail,
                cause,
            } => Verdict::Permanent {
                code,
                detail: f(detail),
                cause,
            },
        }
    }
}

/// A vendor's answer with what a dead letter records.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorAnswer {
    pub verdict: Verdict,
    /// HTTP status; `None` for network errors and timeouts.
    pub status: Option<u16>,
    /// Body text, secrets redacted, at most
    /// [`herald_core::protocol::MAX_VENDOR_RESPONSE_BYTES`].
    pub response: Option<String>,
}

/// Why a message cannot be rendered for a vendor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{provider} cannot send {kind} messages")]
    Unsupported {
        provider: &'static str,
        kind: &'static str,
    },
    #[error("{field}: {problem}")]
    InvalidOption { field: String, problem: String },
}

/// One vendor's wire format for one configured account. Pure: no IO.
pub trait Adapter: Send + Sync + fmt::Debug + 'static {
    fn provider(&self) -> &'static str;
    /// The per-message option keys (CONTRACT §6) this vendor takes. Any other
    /// key is refused by [`VendorAccount::render`]: adapters never check keys.
    fn options(&self) -> &'static [&'static str];
    /// `to` is E.164 (`+…`); `options` are the job's per-message options,
    /// possibly with keys outside [`Adapter::options`] (the caller refuses those).
    fn render(
        &self,
        to: &str,
        message: &Message,
        options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError>;
    /// Classifies an HTTP answer; a 2xx with a failure in the body is a
    /// failure. `retry_after` is the parsed `Retry-After` header.
    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict;
}

/// Builds a provider's adapter from its account keys.
type Build = fn(&mut Settings) -> Result<Box<dyn Adapter>, ConfigError>;

/// Every provider Herald has an adapter for.
const ADAPTERS: &[(&str, Build)] = &[
    (payhero::PROVIDER, payhero::build),
    (pingup::PROVIDER, pingup::build),
    (kaleyra::PROVIDER, kaleyra::build),
    (digital99::PROVIDER, digital99::build),
    (replyhero::PROVIDER, replyhero::build),
    (meta::PROVIDER, meta::build),
];

/// Every configured account, sharing one pooled HTTP client.
#[derive(Debug)]
pub struct Vendors {
    accounts: BTreeMap<String, BTreeMap<String, VendorAccount>>,
}

/// Which part of a `(provider, account)` pair is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Herald has no adapter for the provider, or none of its accounts is configured.
    UnknownProvider,
    /// The provider exists but this account is not configured.
    UnknownAccount,
}

impl Vendors {
    /// Builds adapters for every `[providers.<p>.<a>]` in the configuration,
    /// checking each vendor's own keys strictly: an unknown key, a missing
    /// `sid` or secret is an error naming e.g. `providers.kaleyra.default.sid`.
    /// Every account is checked, so all missing secrets are named at once.
    pub fn from_config(config: &Config) -> Result<Vendors, ConfigErrors> {
        let client = http::client().map_err(|e| {
            ConfigError::new("providers", format!("cannot build the HTTP client: {e}"))
        })?;
        let mut accounts = BTreeMap::new();
        let mut problems = Vec::new();
        for (provider, configured) in &config.providers {
            let Some((_, build)) = ADAPTERS.iter().find(|(name, _)| name == provider) else {
                let known: Vec<&str> = ADAPTERS.iter().map(|(name, _)| *name).collect();
                problems.push(ConfigError::new(
                    format!("providers.{provider}"),
                    format!("no adapter for this provider (known: {})", known.join(", ")),
                ));
                continue;
            };
            let mut built = BTreeMap::new();
            for (account, account_config) in configured {
                let mut settings = Settings::new(provider, account, &account_config.settings);
                let secrets =
                    build(&mut settings).and_then(|adapter| Ok((adapter, settings.finish()?)));
                match secrets {
                    Ok((adapter, secrets)) => {
                        built.insert(
                            account.clone(),
                            VendorAccount {
                                adapter,
                                base_url: account_config.base_url.trim_end_matches('/').to_owned(),
                                timeout: account_config.timeout,
                                secrets,
                                client: client.clone(),
                            },
                        );
                    }
                    Err(problem) => problems.push(problem),
                }
            }
            accounts.insert(provider.clone(), built);
        }
        ConfigErrors::check(problems, Vendors { accounts })
    }

    /// The configured account, or which half of the pair is unknown. A
    /// provider this deployment has no account for is unknown here, adapter
    /// or not: there is nothing to send it with (and no queue for it).
    pub fn account(&self, provider: &str, account: &str) -> Result<&VendorAccount, Lookup> {
        let accounts = self.accounts.get(provider).ok_or(Lookup::UnknownProvider)?;
        accounts.get(account).ok_or(Lookup::UnknownAccount)
    }

    /// Every configured account as `(provider, account, vendor)`, for a
    /// caller that keeps them in a registry of its own.
    pub fn into_accounts(self) -> impl Iterator<Item = (String, String, VendorAccount)> {
        self.accounts.into_iter().flat_map(|(provider, accounts)| {
            accounts
                .into_iter()
                .map(move |(account, vendor)| (provider.clone(), account, vendor))
        })
    }

    /// Configured provider names.
    pub fn providers(&self) -> Vec<&str> {
        self.accounts.keys().map(String::as_str).collect()
    }

    /// Whether an adapter exists for `name`, configured or not.
    pub fn is_known_provider(name: &str) -> bool {
        ADAPTERS.iter().any(|(known, _)| *known == name)
    }
}

/// One configured account: its adapter, where and how long to call, and
/// its secrets (kept to scrub them from everything that leaves the crate).
#[derive(Debug)]
pub struct VendorAccount {
    adapter: Box<dyn Adapter>,
    base_url: String,
    timeout: Duration,
    secrets: Vec<Secret>,
    client: reqwest::Client,
}

impl VendorAccount {
    pub fn provider(&self) -> &'static str {
        self.adapter.provider()
    }

    pub fn render(
        &self,
        to: &str,
        message: &Message,
        options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError> {
        render(self.adapter.as_ref(), to, message, options)
    }

    /// Sends with the account's timeout. Network errors and timeouts are
    /// `Retryable` with no status. The response text and every detail are
    /// passed through [`VendorAccount::redact`].
    pub async fn send(&self, request: &VendorRequest) -> VendorAnswer {
        let url = format!("{}{}", self.base_url, request.path);
        let raw = http::send(
            &self.client,
            &url,
            self.timeout,
            request,
            self.adapter.as_ref(),
        )
        .await;
        let answer = VendorAnswer {
            verdict: raw.verdict.map_detail(|detail| self.redact(&detail)),
            status: raw.status,
            // Redact before truncating: a cut could leave half a secret that
            // no longer matches.
            response: raw.body.map(|body| {
                let text = self.redact(&String::from_utf8_lossy(&body));
                herald_core::protocol::truncate_utf8(
                    &text,
                    herald_core::protocol::MAX_VENDOR_RESPONSE_BYTES,
                )
                .to_owned()
            }),
        };
        tracing::debug!(
            provider = self.provider(),
            path = %request.path,
            status = ?answer.status,
            verdict = ?answer.verdict,
            "vendor answered"
        );
        answer
    }

    /// Replaces every secret of this account in `text` with [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }
}

fn redact(secrets: &[Secret], text: &str) -> String {
    secrets
        .iter()
        .flat_map(|secret| spellings(secret.expose()))
        .fold(text.to_owned(), |text, spelling| {
            text.replace(&spelling, REDACTED)
        })
}

/// How a secret may come back in a vendor's echo: as sent, JSON-escaped, or
/// with `/` escaped as `\/` the way PHP's `json_encode` does (base64 tokens
/// often contain `/`).
fn spellings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("a string serializes");
    let json = json[1..json.len() - 1].to_owned();
    let mut spellings = vec![secret.to_owned(), json.replace('/', "\\/"), json];
    // Longest first, so no spelling is cut by a shorter one inside it.
    spellings.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    spellings.dedup();
    spellings
}

/// Renders `message` with `adapter`, refusing option keys it does not take so
/// a typo is not silently dropped.
///
/// When a job has several problems, the one reported is: a message the vendor
/// cannot send at all comes first (the job is unsupported whatever its
/// options; [`herald_core::protocol::message_kinds`] says which), then an
/// unknown key, then the adapter's own complaints about option values: a
/// mistyped `customer` reads better as itself than as the missing
/// `customer_id` it was meant to be.
fn render(
    adapter: &dyn Adapter,
    to: &str,
    message: &Message,
    options: &BTreeMap<String, String>,
) -> Result<VendorRequest, RenderError> {
    let provider = adapter.provider();
    if herald_core::protocol::message_kinds(provider).is_some_and(|k| !k.contains(&message.kind()))
    {
        return Err(unsupported(provider, message));
    }
    check_options(provider, options, adapter.options())?;
    adapter.render(to, message, options)
}

/// The first key of `options` that is not in `known`, as an `InvalidOption`.
fn check_options(
    provider: &str,
    options: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), RenderError> {
    match options.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) => Err(RenderError::InvalidOption {
            field: format!("options.{key}"),
            problem: if known.is_empty() {
                format!("{provider} takes no options")
            } else {
                format!("not an option of {provider} (known: {})", known.join(", "))
            },
        }),
    }
}

/// The E.164 number without its `+`: the international digits most vendors want.
fn digits(to: &str) -> &str {
    to.strip_prefix('+').unwrap_or(to)
}

/// The message kind a vendor cannot send.
fn unsupported(provider: &'static str, message: &Message) -> RenderError {
    RenderError::Unsupported {
        provider,
        kind: message.kind(),
    }
}

/// The body of a text message, for the vendors that send nothing else.
fn text_only<'m>(provider: &'static str, message: &'m Message) -> Result<&'m str, RenderError> {
    match message {
        Message::Text { body } => Ok(body),
        _ => Err(unsupported(provider, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_of_a_request_hides_auth_headers_and_secret_fields() {
        let request = VendorRequest {
            path: "/send".into(),
            headers: vec![("Authorization".into(), "Bearer top-secret".into())],
            body: RequestBody::Json(json!({"apiKey": "top-secret", "to": "972501234567"})),
            secret_fields: &["apiKey"],
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(
            shown.contains("Authorization") && shown.contains("972501234567"),
            "{shown}"
        );
    }

    #[test]
    fn secrets_are_recognised_however_an_echo_escapes_them() {
        let secrets = [Secret::new("ab/c\"d")];
        assert_eq!(
            redact(&secrets, r#"raw ab/c"d json ab/c\"d php ab\/c\"d"#),
            "raw [redacted] json [redacted] php [redacted]"
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let options = BTreeMap::from([("reff".to_owned(), "x".to_owned())]);
        let err = check_options("kaleyra", &options, &["ref"]).unwrap_err();
        assert_eq!(
            err,
            RenderError::InvalidOption {
                field: "options.reff".into(),
                problem: "not an option of kaleyra (known: ref)".into()
            }
        );
        assert!(check_options("kaleyra", &BTreeMap::new(), &[]).is_ok());
    }

    #[test]
    fn providers_are_known_by_their_contract_names() {
        for name in [
            "payhero",
            "pingup",
            "kaleyra",
            "99digital",
            "replyhero",
            "meta",
        ] {
            assert!(Vendors::is_known_provider(name), "{name}");
        }
        assert!(!Vendors::is_known_provider("twilio"));
    }
}
