//! `POST /webhooks/{provider}/{account}`: a vendor's inbound-message
//! callback. Authenticated by the account's secret, read per vendor
//! ([`crate::hooks`]), de-duplicated by vendor message id, recorded at the
//! vendor's timestamp, and answered at once: vendors retry slow webhooks.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use herald_core::protocol::rfc3339;
use herald_store::{Contact, StoreError, inbound_time};

use crate::auth::WEBHOOK_SECRET_HEADER;
use crate::error::{self, ApiError};
use crate::hooks::{self, Callback};
use crate::inbound::record;
use crate::{Api, metrics};

/// How long a message id is remembered: longer than any vendor keeps
/// retrying a webhook (Meta retries for up to 7 days).
const REMEMBER_FOR: Duration = Duration::from_secs(8 * 24 * 3600);

pub async fn post(
    State(api): State<Api>,
    Path((provider, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let presented = presented_secret(&headers, query.as_deref());
    api.webhook_secrets()
        .check(api.config(), &provider, &account, presented.as_deref())
        .map_err(|refusal| {
            metrics::webhook(&provider, "unauthorized");
            refusal.into_error(&provider, &account)
        })?;
    let body = error::body(body)?;
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

/// The secret from the header, else from `?secret=`.
fn presented_secret(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(WEBHOOK_SECRET_HEADER) {
        return value.to_str().ok().map(str::to_owned);
    }
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "secret")
        .map(|(_, value)| value.into_owned())
}

/// The callback as JSON; a form-encoded callback becomes an object of strings.
fn payload(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return error::json_body(body);
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
        assert!(
            super::payload(&HeaderMap::new(), b"from=1").is_err(),
            "JSON unless said otherwise"
        );
    }
}
