//! `POST /webhooks/{provider}/{account}`: a vendor's inbound-message
//! callback. Authenticated by the account's secret (Meta's: by its signature
//! of the raw body), read per vendor ([`crate::hooks`]), de-duplicated by
//! vendor message id, recorded at the vendor's timestamp, and answered at
//! once: vendors retry slow webhooks.
//!
//! `GET /webhooks/meta/{account}`: Meta's subscription handshake.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use herald_core::protocol::rfc3339;
use herald_store::{Contact, StoreError, inbound_time};

use crate::auth::{SIGNATURE_HEADER, WEBHOOK_SECRET_HEADER, WebhookKey, WebhookRefusal};
use crate::error::{self, ApiError};
use crate::hooks::{self, Callback};
use crate::inbound::record;
use crate::{Api, metrics};

/// How long a message id is remembered: longer than any vendor keeps
/// retrying a webhook (Meta retries for up to 7 days).
const REMEMBER_FOR: Duration = Duration::from_secs(8 * 24 * 3600);

/// The provider whose callbacks are signed, not carrying a shared secret.
const META: &str = "meta";

pub async fn post(
    State(api): State<Api>,
    Path((provider, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = error::body(body)?;
    authenticate(&api, &provider, &account, &headers, query.as_deref(), &body).map_err(
        |refusal| {
            metrics::webhook(&provider, "unauthorized");
            refusal.into_error(&provider, &account)
        },
    )?;
    let callback = payload(&headers, &body)
        .and_then(|payload| {
            hooks::read(&provider, &payload).map_err(|problems| {
                let problems = problems
                    .into_iter()
                    .map(|p| error::problem(&p.field, p.problem))
                    .collect();
                ApiError::invalid(
                    format!("not a {provider} callback Herald can read"),
                    problems,
                )
            })
        })
        .inspect_err(|_| metrics::webhook(&provider, "invalid"))?;
    let messages = match callback {
        Callback::NotInbound(why) => {
            metrics::webhook(&provider, "not_inbound");
            return Ok(Json(json!({
                "recorded": [], "duplicates": [],
                "note": format!("nothing recorded: {why}"),
            })));
        }
        Callback::Messages(messages) => messages,
    };

    let now = Utc::now();
    let mut recorded = Vec::new();
    let mut duplicates = Vec::new();
    let store = api.store();
    for message in messages {
        let first = store
            .first_webhook_sighting(&provider, &account, &message.id, REMEMBER_FOR)
            .await
            .map_err(|e| unavailable(&provider, e))?;
        if !first {
            metrics::webhook(&provider, "duplicate");
            duplicates.push(message.id);
            continue;
        }
        let contact = Contact {
            provider: provider.clone(),
            account: account.clone(),
            digits: message.from,
        };
        let at = inbound_time(message.at, now);
        if let Err(e) = record(&api, &contact, at).await {
            // Unmark it, so the vendor's retry of this webhook records it.
            if let Err(forget) = store
                .forget_webhook_sighting(&provider, &account, &message.id)
                .await
            {
                warn!(
                    provider,
                    account,
                    message_id = message.id,
                    error = %forget,
                    "could not unmark a message that was not recorded; its retry will be taken for a duplicate"
                );
            }
            metrics::webhook(&provider, "unavailable");
            return Err(e);
        }
        metrics::webhook(&provider, "recorded");
        metrics::inbound_recorded(&provider, "webhook");
        recorded.push(json!({
            "id": message.id,
            "contact": format!("+{}", contact.digits),
            "at": rfc3339(at),
        }));
    }
    info!(
        provider,
        account,
        recorded = recorded.len(),
        duplicates = duplicates.len(),
        "webhook"
    );
    let note = if duplicates.is_empty() {
        "recorded".to_owned()
    } else {
        format!(
            "{} already recorded: a repeated delivery changes nothing",
            duplicates.len()
        )
    };
    Ok(Json(
        json!({ "recorded": recorded, "duplicates": duplicates, "note": note }),
    ))
}

/// Meta signs each callback with the app secret; every other vendor's
/// callback carries the account's shared secret.
fn authenticate(
    api: &Api,
    provider: &str,
    account: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookRefusal> {
    let secrets = api.webhook_secrets();
    if provider == META {
        let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        secrets.check_signature(api.config(), provider, account, signature, body)
    } else {
        let presented = presented_secret(headers, query);
        secrets.check(
            api.config(),
            provider,
            account,
            WebhookKey::Shared,
            presented.as_deref(),
        )
    }
}

/// `GET /webhooks/meta/{account}?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`:
/// answers the challenge, as plain text, to the holder of the verify token.
pub async fn verify(
    State(api): State<Api>,
    Path((provider, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<String, ApiError> {
    if provider != META {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no webhook handshake for provider `{provider}` (only meta has one)"),
        ));
    }
    let handshake = Handshake::parse(query.as_deref()).inspect_err(|_| {
        metrics::webhook(&provider, "invalid");
    })?;
    api.webhook_secrets()
        .check(
            api.config(),
            &provider,
            &account,
            WebhookKey::VerifyToken,
            handshake.verify_token.as_deref(),
        )
        .map_err(|refusal| {
            metrics::webhook(&provider, "unauthorized");
            refusal.into_error(&provider, &account)
        })?;
    metrics::webhook(&provider, "verified");
    info!(provider, account, "webhook subscription verified");
    Ok(handshake.challenge)
}

/// Meta's subscription request.
#[derive(Debug, PartialEq)]
struct Handshake {
    verify_token: Option<String>,
    challenge: String,
}

impl Handshake {
    /// `hub.mode` must be `subscribe` and `hub.challenge` present; the
    /// token is checked by the caller.
    fn parse(query: Option<&str>) -> Result<Handshake, ApiError> {
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let mut problems = Vec::new();
        if param("hub.mode").as_deref() != Some("subscribe") {
            problems.push(error::problem("hub.mode", "must be `subscribe`"));
        }
        let challenge = param("hub.challenge").filter(|c| !c.is_empty());
        if challenge.is_none() {
            problems.push(error::problem("hub.challenge", "missing"));
        }
        match challenge {
            Some(challenge) if problems.is_empty() => Ok(Handshake {
                verify_token: param("hub.verify_token"),
                challenge,
            }),
            _ => Err(ApiError::invalid(
                "not a Meta subscription request (hub.mode=subscribe&hub.verify_token=…&hub.challenge=…)",
                problems,
            )),
        }
    }
}

/// The secret from the header, else from `?secret=`.
fn presented_secret(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(WEBHOOK_SECRET_HEADER) {
        return value.to_str().ok().map(str::to_owned);
    }
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "secret")
        .map(|(_, value)| value.into_owned())
}

/// The callback as JSON. A body that is JSON is read as JSON whatever its
/// content type says (`curl -d` labels everything form-encoded); a
/// form-encoded one becomes an object of strings; anything else is refused
/// naming the content type it came with.
fn payload(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return Ok(value);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return error::json_body(body).map_err(|e| ApiError {
            error: format!("{} (content type: {content_type})", e.error),
            ..e
        });
    }
    let fields: Map<String, Value> = url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    Ok(Value::Object(fields))
}

fn unavailable(provider: &str, error: StoreError) -> ApiError {
    metrics::webhook(provider, "unavailable");
    ApiError::unavailable(format!(
        "cannot check for repeated deliveries, try again: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_from_the_header_first_then_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            presented_secret(&headers, Some("a=1&secret=s%2F1")),
            Some("s/1".into())
        );
        assert_eq!(presented_secret(&headers, Some("a=1")), None);
        assert_eq!(presented_secret(&headers, None), None);
        headers.insert(WEBHOOK_SECRET_HEADER, "from-header".parse().unwrap());
        assert_eq!(
            presented_secret(&headers, Some("secret=q")),
            Some("from-header".into())
        );
    }

    #[test]
    fn a_handshake_needs_subscribe_and_a_challenge() {
        let parsed = Handshake::parse(Some(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
        ))
        .unwrap();
        assert_eq!(
            parsed,
            Handshake {
                verify_token: Some("meatyhamhock".into()),
                challenge: "1158201444".into(),
            }
        );
        let error = Handshake::parse(Some("hub.mode=unsubscribe&hub.verify_token=x")).unwrap_err();
        let fields: Vec<&Value> = error.problems.iter().map(|p| &p["field"]).collect();
        assert_eq!(fields, [&json!("hub.mode"), &json!("hub.challenge")]);
        assert!(Handshake::parse(None).is_err());
    }

    #[test]
    fn form_encoded_callbacks_are_read_as_objects_of_strings() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let payload = payload(&headers, b"from=919900000008&created_at=1613630227").unwrap();
        assert_eq!(
            payload,
            json!({"from": "919900000008", "created_at": "1613630227"})
        );
        let error = super::payload(&HeaderMap::new(), b"from=1").unwrap_err();
        assert!(
            error.error.contains("content type: none"),
            "{}",
            error.error
        );
    }

    #[test]
    fn a_json_callback_is_read_as_json_whatever_its_content_type() {
        // What `curl -d '{…}'` sends.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let payload = payload(&headers, br#"{"hook": "new", "from": "972507654321"}"#).unwrap();
        assert_eq!(payload, json!({"hook": "new", "from": "972507654321"}));
    }
}
