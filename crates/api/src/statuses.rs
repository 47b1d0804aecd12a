//! The message lifecycle's HTTP side (CONTRACT §10): status reports from
//! `POST /v1/statuses` and from vendors' webhooks are applied to their
//! job's lifecycle (herald-store, one atomic script), announced on
//! `herald.events`, and acted on (a late window-closed failure sends the
//! job's fallback template once; an opt-out suppresses the contact);
//! `GET /v1/messages/{id}` tells a job's whole story.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{error, info, warn};

use herald_core::job::DEFAULT_ACCOUNT;
use herald_core::protocol::rfc3339;
use herald_core::{Event, EventStatus, Job, LifecycleEvent};
use herald_store::{Applied, Change, Contact, Lifecycle, State, StatusReport, StoreError};

use crate::error::{self, ApiError, problem};
use crate::inbound::configured_account;
use crate::status_hooks::VendorStatus;
use crate::{Api, Inner, metrics, openapi};

/// WhatsApp's error for a session message outside the 24-hour window.
const WINDOW_CLOSED: &str = "131047";
/// WhatsApp's error for a recipient who stopped marketing messages.
const OPTED_OUT: &str = "131050";
/// How often held statuses are looked at for their acceptance.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a failure asks Herald to do beyond recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateAction {
    /// The window closed: clear the stored inbound time, send the fallback.
    WindowClosed,
    /// The recipient opted out: suppress the contact.
    OptedOut,
    None,
}

/// The rule, pure.
pub fn late_action(state: State, error_code: Option<&str>) -> LateAction {
    match (state, error_code) {
        (State::Failed, Some(WINDOW_CLOSED)) => LateAction::WindowClosed,
        (State::Failed, Some(OPTED_OUT)) => LateAction::OptedOut,
        _ => LateAction::None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    provider: String,
    account: Option<String>,
    vendor_message_id: String,
    status: String,
    at: Option<String>,
    error_code: Option<Value>,
    detail: Option<String>,
}

/// `POST /v1/statuses`.
pub async fn post(
    AxumState(api): AxumState<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = error::body(body)?;
    let report = read_request(&body, &api, Utc::now())?;
    let outcome = apply(&api, report).await?;
    Ok(Json(outcome))
}

/// A `/v1/statuses` body, or every problem named by field.
fn read_request(body: &[u8], api: &Api, now: DateTime<Utc>) -> Result<StatusReport, ApiError> {
    let invalid =
        |problems| ApiError::invalid("the status is invalid; nothing was changed", problems);
    let request: StatusRequest = serde_json::from_value(error::json_body(body)?)
        .map_err(|e| invalid(vec![problem("$", e.to_string())]))?;
    let account = request.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
    let mut problems = configured_account(api.config(), &request.provider, account);
    if request.vendor_message_id.trim().is_empty() {
        problems.push(problem("vendor_message_id", "must not be empty"));
    }
    let state = match request.status.parse::<State>() {
        Ok(State::Accepted) | Err(_) => {
            problems.push(problem(
                "status",
                format!(
                    "{:?} is not one of sent, delivered, read, failed",
                    request.status
                ),
            ));
            None
        }
        Ok(state) => Some(state),
    };
    let at = match request.at.as_deref().map(DateTime::parse_from_rfc3339) {
        None => Some(now),
        Some(Ok(at)) => Some(at.to_utc()),
        Some(Err(e)) => {
            problems.push(problem("at", format!("not an RFC 3339 time ({e})")));
            None
        }
    };
    let error_code = match request.error_code {
        None | Some(Value::Null) => None,
        Some(Value::String(code)) => Some(code),
        Some(Value::Number(code)) => Some(code.to_string()),
        Some(_) => {
            problems.push(problem("error_code", "must be a string or a number"));
            None
        }
    };
    match (state, at) {
        (Some(state), Some(at)) if problems.is_empty() => Ok(StatusReport {
            provider: request.provider,
            account: account.to_owned(),
            vendor_message_id: request.vendor_message_id,
            state,
            at,
            error_code,
            detail: request.detail,
        }),
        _ => Err(invalid(problems)),
    }
}

/// The statuses of a vendor's webhook, applied in order; the answer lists
/// each one's outcome. Statuses Herald does not follow are skipped.
pub async fn apply_webhook(
    api: &Api,
    provider: &str,
    account: &str,
    statuses: Vec<VendorStatus>,
) -> Result<Vec<Value>, ApiError> {
    let mut outcomes = Vec::with_capacity(statuses.len());
    for status in statuses {
        let Some(state) = status.state else {
            outcomes
                .push(json!({"vendor_message_id": status.vendor_message_id, "outcome": "ignored"}));
            continue;
        };
        let report = StatusReport {
            provider: provider.to_owned(),
            account: account.to_owned(),
            vendor_message_id: status.vendor_message_id,
            state,
            at: status.at,
            error_code: status.error_code,
            detail: status.detail,
        };
        outcomes.push(apply(api, report).await?);
    }
    Ok(outcomes)
}

/// Applies one report and acts on it; `{"vendor_message_id","outcome",…}`.
pub async fn apply(api: &Api, report: StatusReport) -> Result<Value, ApiError> {
    let action = late_action(report.state, report.error_code.as_deref());
    let applied = api
        .store()
        .apply_status(&report, action == LateAction::WindowClosed)
        .await
        .map_err(unavailable)?;
    let answer =
        |outcome: &str| json!({"vendor_message_id": report.vendor_message_id, "outcome": outcome});
    let (change, lifecycle, send_fallback) = match applied {
        Applied::Held => {
            metrics::lifecycle_held(&report.provider);
            return Ok(answer("held"));
        }
        Applied::Forgotten { job_id } => {
            info!(
                job_id,
                vendor_message_id = report.vendor_message_id,
                "a status for a job no longer remembered"
            );
            return Ok(answer("forgotten"));
        }
        Applied::Applied {
            change,
            lifecycle,
            send_fallback,
        } => (change, lifecycle, send_fallback),
    };
    if change != Change::Repeated {
        metrics::lifecycle(&report.provider, report.state);
        if let (State::Delivered, Some(accepted_at)) = (report.state, lifecycle.accepted_at) {
            let took = (report.at - accepted_at).to_std().unwrap_or_default();
            metrics::time_to_delivered(&report.provider, took);
        }
    }
    if change == Change::Advanced {
        announce(api, &report, &lifecycle).await;
    }
    act(api, action, &lifecycle, send_fallback).await?;
    let mut outcome = answer(match change {
        Change::Advanced => "advanced",
        Change::Recorded => "recorded",
        Change::Repeated => "repeated",
    });
    outcome["job_id"] = json!(lifecycle.job.id);
    outcome["state"] = json!(lifecycle.state);
    Ok(outcome)
}

/// The lifecycle event, best effort: the state is already recorded, so a
/// broker that is away costs the event, not the callback.
async fn announce(api: &Api, report: &StatusReport, lifecycle: &Lifecycle) {
    let status = match report.state {
        State::Delivered => EventStatus::Delivered,
        State::Read => EventStatus::Read,
        State::Failed => EventStatus::Failed,
        // `sent` stays the acceptance's event (CONTRACT §10).
        State::Accepted | State::Sent => return,
    };
    let job = &lifecycle.job;
    let event = LifecycleEvent {
        event: Event {
            job_id: job.id.clone(),
            provider: job.provider.clone(),
            account: job.account.clone(),
            to: job.to.clone(),
            status,
            vendor_message_id: lifecycle.vendor_message_id.clone(),
            attempt: lifecycle.attempts,
            fallback_used: lifecycle.fallback_used,
            reason: None,
            detail: report.detail.clone(),
            at: rfc3339(report.at),
            metadata: job.metadata.clone(),
        },
        state: lifecycle.state.as_str().to_owned(),
        error_code: report.error_code.clone(),
    };
    if let Err(e) = api.broker().publish_event(&event).await {
        warn!(job_id = job.id, error = %e, "could not publish the lifecycle event");
    }
}

/// What a late failure asks for, beyond the record.
async fn act(
    api: &Api,
    action: LateAction,
    lifecycle: &Lifecycle,
    send_fallback: bool,
) -> Result<(), ApiError> {
    let job = &lifecycle.job;
    let contact = Contact {
        provider: job.provider.clone(),
        account: job.account.clone(),
        digits: job.to_digits().to_owned(),
    };
    let store = api.store();
    match action {
        LateAction::None => Ok(()),
        LateAction::OptedOut => store.suppress(&contact).await.map_err(unavailable),
        LateAction::WindowClosed => {
            store.clear_inbound(&contact).await.map_err(unavailable)?;
            if !send_fallback {
                return Ok(());
            }
            let Some(fallback) = fallback_job(job) else {
                error!(
                    job_id = job.id,
                    "the fallback's id `<id>:fallback` would be invalid; not sent"
                );
                return Ok(());
            };
            if let Err(e) = api
                .broker()
                .publish_all(std::slice::from_ref(&fallback))
                .await
            {
                // Given back, so the vendor's retry of this callback sends it.
                if let Err(forget) = store.forget_fallback(&job.id).await {
                    error!(job_id = job.id, error = %forget, "the fallback was not published and could not be given back");
                }
                return Err(ApiError::unavailable(format!(
                    "could not publish the fallback template, try again: {e}"
                )));
            }
            info!(
                job_id = job.id,
                fallback = fallback.id,
                "late window-closed failure: fallback template sent"
            );
            Ok(())
        }
    }
}

/// The job's fallback template as a job of its own, `<id>:fallback`, or
/// `None` when the job had none or the id would be too long.
pub fn fallback_job(job: &Job) -> Option<Job> {
    let mut fallback = job.clone();
    fallback.id = format!("{}:fallback", job.id);
    fallback.message = job.fallback_template.clone()?;
    fallback.fallback_template = None;
    fallback.not_before = None;
    // One owner of what a valid job is.
    Job::from_value(serde_json::to_value(&fallback).ok()?).ok()
}

/// `GET /v1/messages/{id}`.
pub async fn get(
    AxumState(api): AxumState<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match api.store().lifecycle(&id).await.map_err(unavailable)? {
        Some(lifecycle) => Ok(Json(story(&lifecycle))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Herald does not know a message {id:?} (never accepted by a vendor, or older than the idempotency horizon)"
            ),
        )),
    }
}

/// A job's whole story (CONTRACT §10), as [`openapi::Story`] describes it.
pub fn story(lifecycle: &Lifecycle) -> Value {
    let job = &lifecycle.job;
    let story = openapi::Story {
        id: job.id.clone(),
        provider: job.provider.clone(),
        account: job.account.clone(),
        to: job.to.clone(),
        state: lifecycle.state.into(),
        vendor_message_id: lifecycle.vendor_message_id.clone(),
        attempts: lifecycle.attempts,
        fallback_used: lifecycle.fallback_used,
        dead_reason: lifecycle.dead_reason.clone(),
        accepted_at: lifecycle.accepted_at.map(rfc3339),
        timeline: lifecycle
            .timeline
            .iter()
            .map(|moment| openapi::Moment {
                state: moment.state.into(),
                at: moment.at.clone(),
                detail: moment.detail.clone(),
            })
            .collect(),
    };
    serde_json::to_value(story).expect("a story is JSON")
}

/// Applies held statuses once their acceptance is recorded, and counts
/// those that waited too long, every [`SWEEP_EVERY`] until the API is gone.
pub fn sweep_held(api: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let Some(inner) = api.upgrade() else { return };
            let api = Api(inner);
            let sweep = match api.store().sweep_held().await {
                Ok(sweep) => sweep,
                Err(e) => {
                    warn!(error = %e, "could not look at the held statuses");
                    continue;
                }
            };
            metrics::lifecycle_held_expired(sweep.expired);
            for report in sweep.ready {
                if let Err(e) = apply(&api, report).await {
                    warn!(error = e.error, "a held status could not be applied");
                }
            }
        }
    });
}

impl Api {
    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.0)
    }
}

fn unavailable(error: StoreError) -> ApiError {
    ApiError::unavailable(format!(
        "the lifecycle store is unavailable, try again: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_with_the_window_or_opt_out_codes_act() {
        use LateAction::*;
        let table = [
            (State::Failed, Some("131047"), WindowClosed),
            (State::Failed, Some("131050"), OptedOut),
            (State::Failed, Some("131026"), None),
            (State::Failed, Option::None, None),
            (State::Delivered, Some("131047"), None),
        ];
        for (state, code, expected) in table {
            assert_eq!(late_action(state, code), expected, "{state} {code:?}");
        }
    }

    #[test]
    fn a_story_is_what_the_description_says() {
        let job = Job::from_value(json!({
            "id": "order-1", "provider": "kaleyra", "to": "+254712345678",
            "message": {"type": "text", "body": "hi"}
        }))
        .unwrap();
        let lifecycle = Lifecycle {
            job,
            state: State::Delivered,
            vendor_message_id: Some("wamid.1".into()),
            attempts: 1,
            fallback_used: false,
            accepted_at: Some(DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
            dead_reason: Option::None,
            timeline: vec![herald_store::Moment {
                state: State::Delivered,
                at: "2027-01-15T08:00:00Z".into(),
                detail: Option::None,
            }],
        };
        let story = story(&lifecycle);
        assert_eq!(story["state"], "delivered");
        assert_eq!(story["timeline"][0]["state"], "delivered");
        let described = &crate::openapi::document()["components"]["schemas"]["Story"]["properties"];
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&story), keys(described));
    }

    #[test]
    fn the_fallback_is_its_own_job_with_the_template_as_message() {
        let job = Job::from_value(json!({
            "id": "order-1", "provider": "kaleyra", "to": "+254712345678",
            "message": {"type": "text", "body": "hi"},
            "fallback_template": {"type": "template", "name": "order_update", "language": "en"},
            "not_before": "2026-01-01T00:00:00Z",
            "metadata": {"order": 1}
        }))
        .unwrap();
        let fallback = fallback_job(&job).unwrap();
        assert_eq!(fallback.id, "order-1:fallback");
        assert_eq!(fallback.message, job.fallback_template.clone().unwrap());
        assert_eq!(fallback.fallback_template, Option::None);
        assert_eq!(fallback.not_before, Option::None);
        assert_eq!(fallback.metadata, job.metadata);

        let mut long = job.clone();
        long.id = "x".repeat(128);
        assert_eq!(
            fallback_job(&long),
            Option::None,
            "the id would be too long"
        );
        long.id = "order-2".into();
        long.fallback_template = Option::None;
        assert_eq!(fallback_job(&long), Option::None);
    }
}
