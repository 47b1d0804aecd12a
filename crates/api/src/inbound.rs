//! `POST /v1/inbound` (record a customer's inbound message) and
//! `GET /v1/window/{provider}/{account}/{contact}` (is the window open).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use herald_core::Config;
use herald_core::job::{DEFAULT_ACCOUNT, is_e164, with_plus};
use herald_core::protocol::rfc3339;
use herald_store::{Contact, StoreError, WindowState, inbound_time};

use crate::error::{self, ApiError, problem};
use crate::openapi::{Recorded, Window};
use crate::{Api, metrics};

/// A customer's inbound message.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRequest {
    provider: String,
    /// Default `default`.
    account: Option<String>,
    /// E.164.
    contact: String,
    /// RFC 3339, when the customer wrote; default now.
    at: Option<String>,
}

pub async fn post(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Recorded>, ApiError> {
    let body = error::body(body)?;
    let now = Utc::now();
    let (contact, at) = read_inbound(&body, api.config(), now)?;
    let stored = record(&api, &contact, at).await?;
    metrics::inbound_recorded(&contact.provider, "api");
    let window = window_body(
        &contact,
        &WindowState::at(Some(stored), now, &api.config().window),
    );
    Ok(Json(Recorded {
        window,
        recorded: rfc3339(at),
    }))
}

pub async fn window(
    State(api): State<Api>,
    Path((provider, account, number)): Path<(String, String, String)>,
) -> Result<Json<Window>, ApiError> {
    // A `+` is awkward in a URL path, so the digits alone are accepted too.
    let number = with_plus(&number);
    let contact = configured_contact(api.config(), &provider, &account, &number)
        .map_err(|problems| ApiError::invalid("cannot tell whose window that is", problems))?;
    let last = api
        .store()
        .last_inbound(&contact)
        .await
        .map_err(store_unavailable)?;
    let state = WindowState::at(last, Utc::now(), &api.config().window);
    Ok(Json(window_body(&contact, &state)))
}

/// Records an inbound message at `at`; answers the last-inbound time now
/// stored (later than `at` when a later message was already known).
pub async fn record(api: &Api, contact: &Contact, at: DateTime<Utc>) -> Result<i64, ApiError> {
    api.store()
        .record_inbound(contact, at.timestamp_millis(), &api.config().window)
        .await
        .map_err(store_unavailable)
}

/// The contact and the instant of a `/v1/inbound` request, or every problem.
fn read_inbound(
    body: &[u8],
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(Contact, DateTime<Utc>), ApiError> {
    let invalid = |problems| {
        ApiError::invalid(
            "the inbound message is invalid; nothing was recorded",
            problems,
        )
    };
    let request: InboundRequest = serde_json::from_value(error::json_body(body)?)
        .map_err(|e| invalid(vec![problem("$", e.to_string())]))?;
    let account = request.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
    let contact = configured_contact(config, &request.provider, account, &request.contact);
    let at = match request.at.as_deref().map(DateTime::parse_from_rfc3339) {
        None => Ok(now),
        Some(Ok(at)) => Ok(inbound_time(at.to_utc(), now)),
        Some(Err(e)) => Err(problem(
            "at",
            format!("not an RFC 3339 time like 2026-11-21T10:00:00Z ({e})"),
        )),
    };
    match (contact, at) {
        (Ok(contact), Ok(at)) => Ok((contact, at)),
        (contact, at) => {
            let mut problems = contact.err().unwrap_or_default();
            problems.extend(at.err());
            Err(invalid(problems))
        }
    }
}

/// A contact of a configured account: a window kept for an account that
/// does not exist is a typo nobody would notice.
fn configured_contact(
    config: &Config,
    provider: &str,
    account: &str,
    number: &str,
) -> Result<Contact, Vec<Value>> {
    let mut problems = Vec::new();
    if !config.providers.contains_key(provider) {
        problems.push(problem(
            "provider",
            format!("no provider `{provider}` is configured"),
        ));
    } else if config.account(provider, account).is_none() {
        problems.push(problem(
            "account",
            format!("provider `{provider}` has no account `{account}` (expected [providers.{provider}.{account}])"),
        ));
    }
    if !is_e164(number) {
        problems.push(problem(
            "contact",
            format!("{number:?} is not E.164 (`+` then 8–15 digits)"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Contact {
        provider: provider.to_owned(),
        account: account.to_owned(),
        digits: number.trim_start_matches('+').to_owned(),
    })
}

/// `{"provider","account","contact","open","last_inbound","closes_at"}`.
pub fn window_body(contact: &Contact, state: &WindowState) -> Window {
    Window {
        provider: contact.provider.clone(),
        account: contact.account.clone(),
        contact: format!("+{}", contact.digits),
        open: state.open,
        last_inbound: state.last_inbound.map(rfc3339),
        closes_at: state.closes_at.map(rfc3339),
    }
}

pub fn store_unavailable(error: StoreError) -> ApiError {
    ApiError::unavailable(format!(
        "the window store is unavailable, try again: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let toml = "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n";
        Config::from_toml_with_env(toml, &[]).expect("valid configuration")
    }

    fn read(body: Value, now: DateTime<Utc>) -> Result<(Contact, DateTime<Utc>), ApiError> {
        read_inbound(body.to_string().as_bytes(), &config(), now)
    }

    #[test]
    fn an_inbound_message_defaults_to_the_default_account_and_now() {
        let now = Utc::now();
        let (contact, at) = read(
            json!({"provider": "kaleyra", "contact": "+254712345678"}),
            now,
        )
        .unwrap();
        assert_eq!(contact.account, "default");
        assert_eq!(contact.digits, "254712345678");
        assert_eq!(at, now);
    }

    #[test]
    fn at_is_read_in_any_offset_and_never_later_than_now() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .to_utc();
        let body = |at: &str| json!({"provider": "kaleyra", "contact": "+254712345678", "at": at});
        let (_, at) = read(body("2026-11-21T12:00:00+02:00"), now).unwrap();
        assert_eq!(rfc3339(at), "2026-11-21T10:00:00.000Z");
        let (_, at) = read(body("2026-11-22T12:00:00Z"), now).unwrap();
        assert_eq!(at, now, "a future time is clamped to now");
    }

    #[test]
    fn every_problem_is_named() {
        let error = read(
            json!({"provider": "kaleyra", "account": "typo", "contact": "0712", "at": "soon"}),
            Utc::now(),
        )
        .unwrap_err();
        let fields: Vec<&str> = error
            .problems
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["account", "contact", "at"]);
        let error = read(
            json!({"provider": "kaleyra", "contact": "+254712345678", "when": "x"}),
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            error.problems[0]["problem"]
                .as_str()
                .unwrap()
                .contains("when")
        );
    }
}
