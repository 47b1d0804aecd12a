//! Opt-outs (CONTRACT §11): `POST /v1/suppressions` suppresses a contact of
//! one account, `DELETE /v1/suppressions/{provider}/{account}/{contact}`
//! releases it, `GET /v1/suppressions/{provider}/{account}` lists them. The
//! worker's admission refuses a suppressed contact without a vendor call.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::DateTime;
use serde::Deserialize;

use herald_core::job::DEFAULT_ACCOUNT;
use herald_core::protocol::rfc3339;
use herald_store::{Contact, StoreError};

use crate::Api;
use crate::error::{self, ApiError, problem};
use crate::inbound::{configured_account, configured_contact};
use crate::openapi::{Suppressed, Suppression, Suppressions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressRequest {
    provider: String,
    account: Option<String>,
    contact: String,
}

/// `POST /v1/suppressions`.
pub async fn post(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Suppression>, ApiError> {
    let body = error::body(body)?;
    let invalid =
        |problems| ApiError::invalid("the suppression is invalid; nothing was changed", problems);
    let request: SuppressRequest = serde_json::from_value(error::json_body(&body)?)
        .map_err(|e| invalid(vec![problem("$", e.to_string())]))?;
    let account = request.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
    let contact = configured_contact(api.config(), &request.provider, account, &request.contact)
        .map_err(invalid)?;
    api.store().suppress(&contact).await.map_err(unavailable)?;
    Ok(Json(Suppression {
        contact: format!("+{}", contact.digits),
        provider: contact.provider,
        account: contact.account,
        suppressed: true,
    }))
}

/// `DELETE /v1/suppressions/{provider}/{account}/{contact}`; `404` when the
/// contact was not suppressed.
pub async fn delete(
    State(api): State<Api>,
    Path((provider, account, number)): Path<(String, String, String)>,
) -> Result<Json<Suppression>, ApiError> {
    let contact = path_contact(&api, &provider, &account, &number)?;
    let released = api
        .store()
        .release_suppression(&contact)
        .await
        .map_err(unavailable)?;
    if !released {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "+{} is not suppressed on {provider}/{account}",
                contact.digits
            ),
        ));
    }
    Ok(Json(Suppression {
        provider,
        account,
        contact: format!("+{}", contact.digits),
        suppressed: false,
    }))
}

/// `GET /v1/suppressions/{provider}/{account}`.
pub async fn list(
    State(api): State<Api>,
    Path((provider, account)): Path<(String, String)>,
) -> Result<Json<Suppressions>, ApiError> {
    let problems = configured_account(api.config(), &provider, &account);
    if !problems.is_empty() {
        return Err(ApiError::invalid("no such account", problems));
    }
    let suppressed = api
        .store()
        .suppressed(&provider, &account)
        .await
        .map_err(unavailable)?;
    let suppressed = suppressed
        .into_iter()
        .map(|(digits, since)| Suppressed {
            contact: format!("+{digits}"),
            since: DateTime::from_timestamp_millis(since).map(rfc3339),
        })
        .collect();
    Ok(Json(Suppressions {
        provider,
        account,
        suppressed,
    }))
}

/// The contact of a path; a `+` is awkward in a URL, so digits alone are accepted.
fn path_contact(
    api: &Api,
    provider: &str,
    account: &str,
    number: &str,
) -> Result<Contact, ApiError> {
    let number = format!("+{}", number.trim_start_matches('+'));
    configured_contact(api.config(), provider, account, &number)
        .map_err(|problems| ApiError::invalid("cannot tell whose suppression that is", problems))
}

fn unavailable(error: StoreError) -> ApiError {
    ApiError::unavailable(format!(
        "the suppression store is unavailable, try again: {error}"
    ))
}
