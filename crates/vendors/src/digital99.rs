//! 99digital (`99digital-send-message.txt`): text only.
//!
//! `POST /whatsapp/v2/sendMessage`, JSON `{apiKey, from, to, body, replyTo?}`:
//! the API key travels in the body, so it is a secret field of the request.
//! Numbers are international digits without `+`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{ConfigError, Message};
use serde_json::{Value, json};

use crate::classify::{self, Failure, Reading};
use crate::settings::{self, Settings};
use crate::{Adapter, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "99digital";

const PATH: &str = "/whatsapp/v2/sendMessage";

/// The body field that carries the API key.
const API_KEY_FIELD: &str = "apiKey";

#[derive(Debug)]
pub(crate) struct Digital99 {
    from: String,
    api_key: Secret,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    Ok(Box::new(Digital99 {
        from: s.required_checked(
            "from",
            settings::is_international_digits,
            "an international number without + (e.g. 972771234567)",
        )?,
        api_key: s.secret("api_key")?,
    }))
}

impl Adapter for Digital99 {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn options(&self) -> &'static [&'static str] {
        &["reply_to"]
    }

    fn render(
        &self,
        to: &str,
        message: &Message,
        options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError> {
        let body = crate::text_only(PROVIDER, message)?;
        let mut fields = json!({
            API_KEY_FIELD: self.api_key.expose(),
            "from": self.from,
            "to": crate::digits(to),
            "body": body,
        });
        if let Some(reply_to) = options.get("reply_to") {
            fields["replyTo"] = reply_to.as_str().into();
        }
        Ok(VendorRequest {
            path: PATH.to_owned(),
            headers: Vec::new(),
            body: RequestBody::Json(fields),
            secret_fields: &[API_KEY_FIELD],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        classify::answer(status, retry_after, body, read)
    }
}

/// `{"status": "OK"|"FAIL", "unique", "templateTimeLeft", "reason", …}`.
fn read(body: &Value) -> Reading {
    if body["status"] != "FAIL" {
        return Ok(classify::text_of(&body["unique"]));
    }
    let reason = classify::text_of(&body["reason"]);
    Err(Failure {
        detail: match &reason {
            Some(reason) => format!("status FAIL, reason {reason}"),
            None => "status FAIL".to_owned(),
        },
        code: reason,
        // templateTimeLeft counts the minutes left since the client's last
        // message; at zero only a template may be sent.
        window_closed: body["templateTimeLeft"]
            .as_f64()
            .is_some_and(|left| left <= 0.0),
        ..Failure::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermanentCause;

    fn adapter() -> Digital99 {
        Digital99 {
            from: "972771234567".into(),
            api_key: Secret::new("k-99-secret"),
        }
    }

    #[test]
    fn renders_the_doc_example() {
        let message = Message::Text {
            body: "your message".into(),
        };
        let options =
            BTreeMap::from([("reply_to".to_owned(), "65dfd4r4dref34rdfxd34r".to_owned())]);
        let request = adapter()
            .render("+972501234567", &message, &options)
            .unwrap();
        assert_eq!(request.path, "/whatsapp/v2/sendMessage");
        assert!(request.headers.is_empty());
        assert_eq!(
            request.body,
            RequestBody::Json(json!({
                "apiKey": "k-99-secret",
                "from": "972771234567",
                "to": "972501234567",
                "body": "your message",
                "replyTo": "65dfd4r4dref34rdfxd34r"
            }))
        );
        assert!(!format!("{request:?}").contains("k-99-secret"));
    }

    #[test]
    fn only_text() {
        let template = Message::Template {
            name: "t".into(),
            language: "he".into(),
            header: None,
            body: vec![],
        };
        assert_eq!(
            adapter().render("+972501234567", &template, &BTreeMap::new()),
            Err(RenderError::Unsupported {
                provider: "99digital",
                kind: "template"
            })
        );
    }

    #[test]
    fn classifies_the_documented_answers() {
        let ok = include_bytes!("../tests/fixtures/99digital_success.json");
        assert_eq!(
            adapter().classify(200, None, ok),
            Verdict::Sent {
                vendor_message_id: Some("65dfd4r4dref34rdfxd34r".into())
            }
        );
        let fail = br#"{"status":"FAIL","reason":3,"templateTimeLeft":600}"#;
        assert_eq!(
            adapter().classify(200, None, fail),
            Verdict::Permanent {
                code: Some("3".into()),
                detail: "status FAIL, reason 3".into(),
                cause: PermanentCause::Rejected
            }
        );
        let closed = br#"{"status":"FAIL","reason":2,"templateTimeLeft":0}"#;
        assert!(matches!(
            adapter().classify(200, None, closed),
            Verdict::Permanent {
                cause: PermanentCause::WindowClosed,
                ..
            }
        ));
    }
}
