//! Vendors' status callbacks read into one shape: which vendor message, what
//! happened to it, when, and the vendor's error. Pure: no IO, so every
//! vendor's documented payload is tested as a sample.
//!
//! Shapes read natively:
//! - Meta-style `entry[].changes[].value.statuses[]` (`{id, status,
//!   timestamp, recipient_id, errors:[{code, title, message,
//!   error_data:{details}}]}`): Meta's Cloud API, ReplyHero (which relays it),
//!   and Kaleyra, which relays the value alone (`statuses[]` at the top).
//!
//! Any other source reports through `POST /v1/statuses`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use herald_core::Problem;
use herald_store::State;

use crate::hooks::{meta_values, problem, scalar, vendor_time};

/// One status of one vendor message, as the vendor reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorStatus {
    pub vendor_message_id: String,
    /// `None` for a status Herald does not follow (Meta's `deleted`, `warning`).
    pub state: Option<State>,
    pub at: DateTime<Utc>,
    pub error_code: Option<String>,
    pub detail: Option<String>,
}

/// The statuses in a callback (none when it carries none), or every problem.
pub fn read(payload: &Value) -> Result<Vec<VendorStatus>, Vec<Problem>> {
    meta_statuses(payload)
}

/// The statuses of a Meta-style callback, each field named by its path
/// when it cannot be read.
pub fn meta_statuses(payload: &Value) -> Result<Vec<VendorStatus>, Vec<Problem>> {
    let mut statuses = Vec::new();
    let mut problems = Vec::new();
    for (path, value) in meta_values(payload) {
        let listed = value.get("statuses").and_then(Value::as_array);
        for (i, status) in listed.into_iter().flatten().enumerate() {
            match meta_status(&format!("{path}statuses[{i}]."), status) {
                Ok(status) => statuses.push(status),
                Err(mut found) => problems.append(&mut found),
            }
        }
    }
    if problems.is_empty() {
        Ok(statuses)
    } else {
        Err(problems)
    }
}

fn meta_status(path: &str, status: &Value) -> Result<VendorStatus, Vec<Problem>> {
    let mut problems = Vec::new();
    let id = status
        .get("id")
        .and_then(scalar)
        .filter(|id| !id.is_empty());
    if id.is_none() {
        problems.push(problem(
            &format!("{path}id"),
            "missing: the vendor's message id is how the status finds its job",
        ));
    }
    let state = match status.get("status").and_then(Value::as_str) {
        Some(name) => Ok(name.parse::<State>().ok().filter(|s| *s != State::Accepted)),
        None => Err(problem(
            &format!("{path}status"),
            "missing: expected sent, delivered, read or failed",
        )),
    };
    let at = status.get("timestamp").and_then(vendor_time);
    if at.is_none() {
        problems.push(problem(
            &format!("{path}timestamp"),
            "missing or not a time (epoch seconds)",
        ));
    }
    problems.extend(state.as_ref().err().cloned());
    let error = status
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first());
    match (id, state, at) {
        (Some(vendor_message_id), Ok(state), Some(at)) if problems.is_empty() => Ok(VendorStatus {
            vendor_message_id,
            state,
            at,
            error_code: error.and_then(|e| e.get("code")).and_then(scalar),
            detail: error.and_then(error_text),
        }),
        _ => Err(problems),
    }
}

/// Meta's words for an error: the title, and the details when given.
fn error_text(error: &Value) -> Option<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let title = text(error.get("title")).or_else(|| text(error.get("message")));
    let details = text(error.pointer("/error_data/details"));
    match (title, details) {
        (Some(title), Some(details)) if details != title => Some(format!("{title}: {details}")),
        (title, details) => title.or(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// Meta's documented status notification (Cloud API webhooks reference).
    fn meta_delivered() -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "statuses": [{
                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
                    "status": "delivered",
                    "timestamp": "1750263773",
                    "recipient_id": "16505551234",
                    "conversation": {"id": "CONVERSATION_ID", "origin": {"type": "utility"}},
                    "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}
                }]
            }}]}]
        })
    }

    #[test]
    fn meta_delivered_status_is_read_from_its_documented_example() {
        assert_eq!(
            read(&meta_delivered()).unwrap(),
            vec![VendorStatus {
                vendor_message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"
                    .into(),
                state: Some(State::Delivered),
                at: at(1_750_263_773),
                error_code: None,
                detail: None,
            }]
        );
    }

    #[test]
    fn meta_failed_status_carries_its_code_and_text() {
        let payload = json!({"entry": [{"changes": [{"value": {"statuses": [{
            "id": "wamid.F", "status": "failed", "timestamp": "1750263800",
            "recipient_id": "16505551234",
            "errors": [{"code": 131047, "title": "Re-engagement message",
                        "message": "Re-engagement message",
                        "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
        }]}}]}]});
        let status = &read(&payload).unwrap()[0];
        assert_eq!(status.state, Some(State::Failed));
        assert_eq!(status.error_code.as_deref(), Some("131047"));
        let detail = status.detail.as_deref().unwrap();
        assert!(
            detail.starts_with("Re-engagement message: Message failed"),
            "{detail}"
        );
    }

    #[test]
    fn kaleyra_relays_the_statuses_at_the_top_level() {
        // Kaleyra's status callback relays Meta's value alone.
        let payload = json!({"statuses": [{
            "id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU", "recipient_id": "16315551234",
            "status": "read", "timestamp": "1518694700"
        }]});
        let status = &read(&payload).unwrap()[0];
        assert_eq!(status.vendor_message_id, "gBEGkYiEB1VXAglK1ZEqA1YKPrU");
        assert_eq!(status.state, Some(State::Read));
        assert_eq!(status.at, at(1_518_694_700));
    }

    #[test]
    fn statuses_herald_does_not_follow_are_read_without_a_state() {
        let payload = json!({"statuses": [
            {"id": "wamid.D", "status": "deleted", "timestamp": "1750263800"},
            {"id": "wamid.A", "status": "accepted", "timestamp": "1750263800"}
        ]});
        let read = read(&payload).unwrap();
        assert!(read.iter().all(|s| s.state.is_none()), "{read:?}");
    }

    #[test]
    fn a_status_without_its_fields_is_named_by_path() {
        let payload = json!({"entry": [{"changes": [{"value": {"statuses": [
            {"id": "wamid.ok", "status": "sent", "timestamp": "1750263800"},
            {"timestamp": "soon"}
        ]}}]}]});
        let problems = read(&payload).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "entry[0].changes[0].value.statuses[1].id",
                "entry[0].changes[0].value.statuses[1].timestamp",
                "entry[0].changes[0].value.statuses[1].status",
            ]
        );
    }

    #[test]
    fn a_callback_without_statuses_has_none() {
        let inbound = json!({"entry": [{"changes": [{"value": {"messages": [
            {"from": "60173526233", "id": "wamid.A", "timestamp": "1694427240"}
        ]}}]}]});
        assert_eq!(read(&inbound).unwrap(), vec![]);
        assert_eq!(read(&json!({"hook": "new"})).unwrap(), vec![]);
    }
}
