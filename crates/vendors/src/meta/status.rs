//! Meta's status callbacks: what became of a message after the Cloud API
//! accepted it (`entry[].changes[].value.statuses[]`), read into plain data
//! for the message lifecycle (CONTRACT §10). Pure: no IO.
//!
//! Meta sends them out of order and more than once; ordering and
//! de-duplication are the lifecycle's business, not this reader's.

use chrono::{DateTime, Utc};
use herald_core::Problem;
use serde_json::Value;

/// One status of one outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The `wamid.…` Meta answered when it accepted the message.
    pub id: String,
    /// Meta's word: `sent`, `delivered`, `read`, `failed`, …
    pub status: String,
    /// When it happened, by Meta's clock.
    pub at: DateTime<Utc>,
    /// The recipient's WhatsApp id (their number's digits).
    pub recipient_id: String,
    /// Why a `failed` status failed.
    pub errors: Vec<StatusError>,
}

/// One reason a message failed, e.g. `131050` "Unable to deliver the message…".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    /// Meta's error code; `None` if Meta sent none.
    pub code: Option<u64>,
    pub title: String,
}

/// Every status of a Meta webhook payload, in payload order; an empty list
/// when it carries none (a customer's message, say). A status without its
/// id, status or time is named by its path.
pub fn statuses(payload: &Value) -> Result<Vec<StatusUpdate>, Vec<Problem>> {
    let mut read = Vec::new();
    let mut problems = Vec::new();
    let entries = payload["entry"].as_array().into_iter().flatten();
    for (e, entry) in entries.enumerate() {
        let changes = entry["changes"].as_array().into_iter().flatten();
        for (c, change) in changes.enumerate() {
            let listed = change["value"]["statuses"].as_array().into_iter().flatten();
            for (s, status) in listed.enumerate() {
                let path = format!("entry[{e}].changes[{c}].value.statuses[{s}].");
                match status_update(status, &path) {
                    Ok(update) => read.push(update),
                    Err(mut found) => problems.append(&mut found),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(read)
    } else {
        Err(problems)
    }
}

fn status_update(status: &Value, path: &str) -> Result<StatusUpdate, Vec<Problem>> {
    let text = |name: &str| status[name].as_str().filter(|s| !s.is_empty());
    let at = text("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0));
    let fields = (text("id"), text("status"), at, text("recipient_id"));
    let (Some(id), Some(state), Some(at), Some(recipient_id)) = fields else {
        let missing = [
            ("id", fields.0.is_none()),
            ("status", fields.1.is_none()),
            ("timestamp", fields.2.is_none()),
            ("recipient_id", fields.3.is_none()),
        ];
        return Err(missing
            .into_iter()
            .filter(|(_, missing)| *missing)
            .map(|(name, _)| Problem {
                field: format!("{path}{name}"),
                problem: "missing or malformed".into(),
            })
            .collect());
    };
    let errors = status["errors"].as_array().into_iter().flatten();
    Ok(StatusUpdate {
        id: id.to_owned(),
        status: state.to_owned(),
        at,
        recipient_id: recipient_id.to_owned(),
        errors: errors
            .map(|error| StatusError {
                code: error["code"].as_u64(),
                title: error["title"].as_str().unwrap_or_default().to_owned(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The status webhook's documented syntax, filled with the example values
    /// Meta's references use
    /// (https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/).
    fn payload(statuses: Value) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "102290129340398",
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                        "statuses": statuses
                    },
                    "field": "messages"
                }]
            }]
        })
    }

    #[test]
    fn reads_a_delivered_and_a_failed_status() {
        let payload = payload(json!([
            {
                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
                "status": "delivered",
                "timestamp": "1750263773",
                "recipient_id": "16505551234",
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}
            },
            {
                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4MjZGRDA0OUE2OTQ3RkEyMzcA",
                "status": "failed",
                "timestamp": "1750263780",
                "recipient_id": "16505551234",
                "errors": [{
                    "code": 131050,
                    "title": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
                    "message": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
                    "error_data": {"details": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business"},
                    "href": "/docs/whatsapp/cloud-api/support/error-codes/"
                }]
            }
        ]));
        let read = statuses(&payload).unwrap();
        assert_eq!(
            read[0],
            StatusUpdate {
                id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA".into(),
                status: "delivered".into(),
                at: DateTime::from_timestamp(1_750_263_773, 0).unwrap(),
                recipient_id: "16505551234".into(),
                errors: vec![],
            }
        );
        assert_eq!(read[1].status, "failed");
        assert_eq!(read[1].errors[0].code, Some(131050));
        assert!(
            read[1].errors[0].title.starts_with("Unable to deliver"),
            "{:?}",
            read[1].errors
        );
    }

    #[test]
    fn a_customer_message_carries_no_status() {
        let inbound = json!({"entry": [{"changes": [{"value": {"messages": [
            {"from": "16505551234", "id": "wamid.A", "timestamp": "1749416383", "type": "text"}
        ]}}]}]});
        assert_eq!(statuses(&inbound), Ok(vec![]));
    }

    #[test]
    fn a_status_without_its_fields_is_named_by_path() {
        let payload = payload(json!([
            {"id": "wamid.A", "status": "read", "timestamp": "1750263773", "recipient_id": "16505551234"},
            {"status": "sent", "timestamp": "soon", "recipient_id": "16505551234"}
        ]));
        let fields: Vec<String> = statuses(&payload)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "entry[0].changes[0].value.statuses[1].id",
                "entry[0].changes[0].value.statuses[1].timestamp",
            ]
        );
    }
}
