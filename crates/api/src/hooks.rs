//! Vendors' inbound-message callbacks read into one shape: who wrote, when
//! (the vendor's own timestamp) and the vendor's message id. Pure: no IO,
//! so every vendor's payload is tested from samples.
//!
//! Shapes understood:
//! - Meta-style, for any provider: `entry[].changes[].value.messages[]`, or
//!   the same `messages[]` at the top level as Kaleyra relays it;
//!   each message has `from`, `id`, `timestamp`.
//! - 99digital: `{"hook":"new","unique","from","timestamp",…}`; other hooks
//!   are not customer messages.
//! - Kaleyra's callback profile: `from`, `created_at`, `wanumber`, and a
//!   message id in `id` or `message_id` when the profile includes one.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use herald_core::Problem;
use herald_core::job::is_e164;

/// One customer's message to the business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The vendor's message id: what a repeated delivery is recognised by.
    pub id: String,
    /// The customer's number, digits only.
    pub from: String,
    /// When the customer sent it, by the vendor's clock.
    pub at: DateTime<Utc>,
    /// What the customer wrote, for a text message (stop keywords).
    pub text: Option<String>,
}

/// What a callback says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// Customers' messages (one Meta-style callback may carry several).
    Messages(Vec<InboundMessage>),
    /// Something else (a delivery status, a system notice): nothing to record.
    NotInbound(String),
}

/// Reads `provider`'s callback, or says what in it could not be read.
pub fn read(provider: &str, payload: &Value) -> Result<Callback, Vec<Problem>> {
    if is_meta_style(payload) {
        return meta_style(payload);
    }
    match provider {
        "99digital" => digital99(payload),
        "kaleyra" => kaleyra(payload),
        _ => Err(vec![problem(
            "$",
            format!(
                "not a callback Herald can read for provider `{provider}`: \
                 expected a Meta-style payload (entry[].changes[].value.messages[])"
            ),
        )]),
    }
}

pub(crate) fn is_meta_style(payload: &Value) -> bool {
    ["entry", "messages", "statuses"]
        .iter()
        .any(|key| payload.get(key).is_some_and(Value::is_array))
}

/// Every `value` of a Meta-style callback with the path naming it in
/// problems: `entry[].changes[].value`, or the payload itself when a vendor
/// relays the value alone (Kaleyra). Shared by messages and statuses.
pub(crate) fn meta_values(payload: &Value) -> Vec<(String, &Value)> {
    match payload.get("entry").and_then(Value::as_array) {
        Some(entries) => entries
            .iter()
            .enumerate()
            .flat_map(|(e, entry)| {
                let changes = entry.get("changes").and_then(Value::as_array);
                changes
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(c, change)| {
                        (format!("entry[{e}].changes[{c}].value."), &change["value"])
                    })
            })
            .collect(),
        None => vec![(String::new(), payload)],
    }
}

fn meta_style(payload: &Value) -> Result<Callback, Vec<Problem>> {
    let values = meta_values(payload);
    let mut messages = Vec::new();
    let mut problems = Vec::new();
    for (path, value) in values {
        let listed = value.get("messages").and_then(Value::as_array);
        for (i, message) in listed.into_iter().flatten().enumerate() {
            let fields = Fields {
                path: format!("{path}messages[{i}]."),
                id: &["id"],
                from: &["from"],
                at: "timestamp",
                text: "/text/body",
            };
            match fields.read(message) {
                Ok(message) => messages.push(message),
                Err(mut found) => problems.append(&mut found),
            }
        }
    }
    if !problems.is_empty() {
        Err(problems)
    } else if messages.is_empty() {
        Ok(Callback::NotInbound(
            "no customer message in this callback (a delivery status or another event)".into(),
        ))
    } else {
        Ok(Callback::Messages(messages))
    }
}

fn digital99(payload: &Value) -> Result<Callback, Vec<Problem>> {
    match payload.get("hook").and_then(Value::as_str) {
        Some("new") => Fields {
            path: String::new(),
            id: &["unique"],
            // `from` is an opaque user id when the customer hides their number.
            from: &["from", "phone"],
            at: "timestamp",
            text: "/body",
        }
        .read(payload)
        .map(|message| Callback::Messages(vec![message])),
        Some(other) => Ok(Callback::NotInbound(format!(
            "a 99digital `{other}` hook, not a customer message"
        ))),
        None => Err(vec![problem(
            "hook",
            "missing: expected a 99digital webhook like {\"hook\":\"new\",\"unique\",\"from\",\"timestamp\",…}",
        )]),
    }
}

fn kaleyra(payload: &Value) -> Result<Callback, Vec<Problem>> {
    let is_message = payload.get("from").is_some() || payload.get("created_at").is_some();
    if !is_message {
        return if payload.get("status").is_some() {
            Ok(Callback::NotInbound(
                "a Kaleyra status callback, not a customer message".into(),
            ))
        } else {
            Err(vec![problem(
                "$",
                "expected Kaleyra's inbound callback (from, created_at, wanumber, …) or a Meta-style payload",
            )])
        };
    }
    let fields = Fields {
        path: String::new(),
        id: &["id", "message_id"],
        from: &["from"],
        at: "created_at",
        text: "/body",
    };
    match fields.read(payload) {
        Ok(message) => Ok(Callback::Messages(vec![message])),
        // A callback profile without a message id: one sender at one instant
        // is one message as far as the window is concerned.
        Err(problems) if problems.iter().all(|p| p.field == "id") => {
            let mut message = fields.read_without_id(payload)?;
            message.id = format!("{}@{}", message.from, message.at.timestamp_millis());
            Ok(Callback::Messages(vec![message]))
        }
        Err(problems) => Err(problems),
    }
}

/// Where one vendor keeps a message's fields (first present name wins).
struct Fields<'a> {
    /// Prefix naming the message in problems, e.g. `entry[0].changes[0].value.messages[1].`.
    path: String,
    id: &'a [&'a str],
    from: &'a [&'a str],
    at: &'a str,
    /// JSON pointer to a text message's body.
    text: &'a str,
}

impl Fields<'_> {
    fn read(&self, message: &Value) -> Result<InboundMessage, Vec<Problem>> {
        let id = self.id.iter().find_map(|name| scalar(message.get(name)?));
        let read = self.read_without_id(message);
        match (id, read) {
            (Some(id), Ok(message)) if !id.is_empty() => Ok(InboundMessage { id, ..message }),
            (_, result) => {
                let mut problems = result.err().unwrap_or_default();
                problems.insert(
                    0,
                    problem(
                        &self.name(self.id.first().copied().unwrap_or("id")),
                        "missing: the vendor's message id is how a repeated delivery is recognised",
                    ),
                );
                Err(problems)
            }
        }
    }

    fn read_without_id(&self, message: &Value) -> Result<InboundMessage, Vec<Problem>> {
        let mut problems = Vec::new();
        let from = self.from.iter().find_map(|name| {
            let digits = scalar(message.get(name)?)?;
            let digits = digits.trim_start_matches('+').to_owned();
            is_e164(&format!("+{digits}")).then_some(digits)
        });
        if from.is_none() {
            problems.push(problem(
                &self.name(self.from[0]),
                "missing or not a phone number (8–15 digits, international format)",
            ));
        }
        let at = message.get(self.at).and_then(vendor_time);
        if at.is_none() {
            problems.push(problem(
                &self.name(self.at),
                "missing or not a time (epoch seconds or milliseconds, RFC 3339, or `YYYY-MM-DD hh:mm:ss`)",
            ));
        }
        match (from, at) {
            (Some(from), Some(at)) => Ok(InboundMessage {
                id: String::new(),
                from,
                at,
                text: message
                    .pointer(self.text)
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            _ => Err(problems),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }
}

/// A string or a number, as text: vendors send ids and numbers either way.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A vendor's timestamp: epoch seconds (or milliseconds, told apart by
/// size) as a number or a string, RFC 3339, or `YYYY-MM-DD hh:mm:ss[+hh:mm]`
/// (UTC when no offset is given).
pub fn vendor_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = scalar(value)?;
    if let Ok(n) = text.parse::<i64>() {
        // 10^11 seconds is the year 5138: anything larger is milliseconds.
        return match n {
            ..=0 => None,
            1..100_000_000_000 => DateTime::from_timestamp(n, 0),
            _ => DateTime::from_timestamp_millis(n),
        };
    }
    DateTime::parse_from_rfc3339(&text)
        .or_else(|_| DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%:z"))
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
}

pub(crate) fn problem(field: &str, problem: impl Into<String>) -> Problem {
    Problem {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn messages(callback: Callback) -> Vec<InboundMessage> {
        match callback {
            Callback::Messages(messages) => messages,
            Callback::NotInbound(why) => panic!("expected messages, got: {why}"),
        }
    }

    #[test]
    fn meta_style_messages_are_read_for_any_provider() {
        let payload = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1229", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550984277", "phone_number_id": "1148"},
                "contacts": [{"profile": {"name": "Lee"}, "wa_id": "60173526233"}],
                "messages": [
                    {"from": "60173526233", "id": "wamid.A", "timestamp": "1694427240", "type": "text", "text": {"body": "Hi"}},
                    {"from": "60173526233", "id": "wamid.B", "timestamp": "1694427250", "type": "text", "text": {"body": "again"}}
                ]
            }}]}]
        });
        for provider in ["replyhero", "pingup", "kaleyra"] {
            let read = messages(read(provider, &payload).unwrap());
            assert_eq!(
                read,
                vec![
                    InboundMessage {
                        id: "wamid.A".into(),
                        from: "60173526233".into(),
                        at: at(1_694_427_240),
                        text: Some("Hi".into()),
                    },
                    InboundMessage {
                        id: "wamid.B".into(),
                        from: "60173526233".into(),
                        at: at(1_694_427_250),
                        text: Some("again".into()),
                    },
                ]
            );
        }
    }

    #[test]
    fn meta_style_status_callbacks_are_not_inbound() {
        let payload = json!({"entry": [{"changes": [{"value": {"statuses": [
            {"id": "wamid.X", "status": "delivered", "timestamp": "1694492484", "recipient_id": "60173526233"}
        ]}}]}]});
        assert!(matches!(
            read("replyhero", &payload),
            Ok(Callback::NotInbound(_))
        ));
    }

    #[test]
    fn top_level_messages_as_kaleyra_relays_them_are_meta_style() {
        let payload = json!({
            "contacts": [{"profile": {"name": "Test"}, "wa_id": "12025550163"}],
            "messages": [{"from": "12025550163", "id": "ABGGFlA5Fpa", "timestamp": "1600517209",
                          "text": {"body": "Hello"}, "type": "text"}]
        });
        let read = messages(read("kaleyra", &payload).unwrap());
        assert_eq!(read[0].id, "ABGGFlA5Fpa");
        assert_eq!(read[0].at, at(1_600_517_209));
    }

    #[test]
    fn a_meta_style_message_without_its_fields_is_named_by_path() {
        let payload = json!({"entry": [{"changes": [{"value": {"messages": [
            {"from": "60173526233", "id": "wamid.A", "timestamp": "1694427240"},
            {"from": "not-a-number", "timestamp": "yesterday"}
        ]}}]}]});
        let problems = read("replyhero", &payload).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "entry[0].changes[0].value.messages[1].id",
                "entry[0].changes[0].value.messages[1].from",
                "entry[0].changes[0].value.messages[1].timestamp",
            ]
        );
    }

    #[test]
    fn digital99_new_hook_is_a_customer_message() {
        let payload = json!({
            "status": "OK", "hook": "new", "unique": "92E004B950CCEA3C386FCFA2AAF8558A",
            "from": "972507654321", "from_id": "IL.1605856887361213", "to": "972501234567",
            "senderName": "Ronen", "type": "text", "body": "hello", "timestamp": "1600517209",
            "conversationTimeLeft": "600"
        });
        assert_eq!(
            messages(read("99digital", &payload).unwrap()),
            vec![InboundMessage {
                id: "92E004B950CCEA3C386FCFA2AAF8558A".into(),
                from: "972507654321".into(),
                at: at(1_600_517_209),
                text: Some("hello".into()),
            }]
        );
    }

    #[test]
    fn digital99_hidden_sender_falls_back_to_phone() {
        let payload = json!({"hook": "new", "unique": "U1", "from": "IL.1605856887361213",
                             "phone": "972507654321", "timestamp": 1600517209});
        assert_eq!(
            messages(read("99digital", &payload).unwrap())[0].from,
            "972507654321"
        );
    }

    #[test]
    fn digital99_other_hooks_are_not_inbound() {
        let payload = json!({"status": "OK", "hook": "ack", "unique": "U1", "ack": "read"});
        let Ok(Callback::NotInbound(why)) = read("99digital", &payload) else {
            panic!("an ack hook is not a message");
        };
        assert!(why.contains("`ack`"), "{why}");
        assert_eq!(
            read("99digital", &json!({"body": "x"})).unwrap_err()[0].field,
            "hook"
        );
    }

    #[test]
    fn kaleyra_callback_profile_with_and_without_a_message_id() {
        let with_id = json!({
            "body": "Hi", "from": "919900000008", "name": "John", "type": "text",
            "created_at": "1613630227", "wanumber": "918000000000", "id": "kal-1"
        });
        let read_with = messages(read("kaleyra", &with_id).unwrap());
        assert_eq!(
            read_with,
            vec![InboundMessage {
                id: "kal-1".into(),
                from: "919900000008".into(),
                at: at(1_613_630_227),
                text: Some("Hi".into()),
            }]
        );

        let mut without_id = with_id.clone();
        without_id.as_object_mut().unwrap().remove("id");
        let read_without = messages(read("kaleyra", &without_id).unwrap());
        assert_eq!(read_without[0].id, "919900000008@1613630227000");
        assert_eq!(read_without[0].at, at(1_613_630_227));
    }

    #[test]
    fn kaleyra_status_callbacks_are_not_inbound_and_garbage_is_named() {
        let status = json!({"status": "delivered", "id": "cc80:0", "to": "919900000008"});
        assert!(matches!(
            read("kaleyra", &status),
            Ok(Callback::NotInbound(_))
        ));
        let problems = read("kaleyra", &json!({"from": "919900000008"})).unwrap_err();
        assert!(
            problems.iter().any(|p| p.field == "created_at"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_provider_without_a_known_shape_is_refused_by_name() {
        let problems = read("payhero", &json!({"phone": "254712345678"})).unwrap_err();
        assert!(problems[0].problem.contains("`payhero`"), "{problems:?}");
    }

    #[test]
    fn vendor_times_in_every_spelling() {
        let expected = at(1_600_517_209);
        for spelling in [
            json!(1600517209),
            json!("1600517209"),
            json!("1600517209000"),
            json!("2020-09-19T12:06:49Z"),
            json!("2020-09-19T14:06:49+02:00"),
            json!("2020-09-19 12:06:49+00:00"),
            json!("2020-09-19 12:06:49"),
        ] {
            assert_eq!(vendor_time(&spelling), Some(expected), "{spelling}");
        }
        for bad in [json!(0), json!(-5), json!("soon"), json!(null), json!(true)] {
            assert_eq!(vendor_time(&bad), None, "{bad}");
        }
    }
}
