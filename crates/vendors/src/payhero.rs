//! PayHero (`payhero-whatsapp-send-text.txt`): text only, over a
//! WhatsApp-Web-style session named in the account.
//!
//! `POST /api/v2/whatspp/sendText` (sic), JSON `{message, phone_number,
//! session}`, `Authorization: Basic <token>`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::ConfigError;
use herald_core::Message;
use herald_core::config::Secret;
use serde_json::{Value, json};

use crate::classify::{self, Failure, Reading};
use crate::settings::Settings;
use crate::{Adapter, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "payhero";

/// The vendor's path, misspelling included.
const PATH: &str = "/api/v2/whatspp/sendText";

#[derive(Debug)]
pub(crate) struct PayHero {
    session: String,
    basic_token: Secret,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    Ok(Box::new(PayHero {
        session: s.required("session")?,
        basic_token: s.secret("basic_token")?,
    }))
}

impl Adapter for PayHero {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn options(&self) -> &'static [&'static str] {
        &[]
    }

    fn render(
        &self,
        to: &str,
        message: &Message,
        _options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError> {
        let body = crate::text_only(PROVIDER, message)?;
        Ok(VendorRequest {
            path: PATH.to_owned(),
            headers: vec![(
                "Authorization".into(),
                format!("Basic {}", self.basic_token.expose()),
            )],
            body: RequestBody::Json(json!({
                "message": body,
                // The doc's example is a Kenyan local number (0787877878), but a
                // job's recipient may be in any country, and turning E.164 into a
                // local number needs that country's trunk prefix. The session
                // behind this API is WhatsApp-Web style (its errors are those of
                // a `POST /sessions/start` session server), which addresses chats
                // by international digits (`254787877878@c.us`), so the
                // international digits without `+` are the one format that works
                // for every country.
                "phone_number": crate::digits(to),
                "session": self.session,
            })),
            secret_fields: &[],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        classify::answer(status, retry_after, body, read)
    }
}

/// `{"success": true}`, or `{"error_code", "error_message", "status_code"}`.
/// PayHero gives no message id.
fn read(body: &Value) -> Reading {
    let code = classify::text_of(&body["error_code"]);
    let message = classify::text_of(&body["error_message"]);
    if code.is_none() && message.is_none() && body["success"] != Value::Bool(false) {
        return Ok(None);
    }
    let detail = message
        .or_else(|| code.clone())
        .unwrap_or_else(|| "success: false".into());
    Err(Failure {
        // A missing session comes back as status_code 500, but retrying cannot
        // start it: an operator has to.
        permanent: detail.contains("find a session"),
        vendor_status: body["status_code"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok()),
        code,
        detail,
        window_closed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermanentCause;

    fn adapter() -> PayHero {
        // The doc's example session and token.
        PayHero {
            session: "18gdPWKzoXXXX".into(),
            basic_token: Secret::new("MThPQ014dGxGeDRuWmdkUFdLem86ZFQ5Vj"),
        }
    }

    fn text(body: &str) -> Message {
        Message::Text { body: body.into() }
    }

    #[test]
    fn renders_the_doc_example() {
        let request = adapter()
            .render("+254787877878", &text("My First Text"), &BTreeMap::new())
            .unwrap();
        assert_eq!(request.path, "/api/v2/whatspp/sendText");
        assert_eq!(
            request.headers,
            vec![(
                "Authorization".to_owned(),
                "Basic MThPQ014dGxGeDRuWmdkUFdLem86ZFQ5Vj".to_owned()
            )]
        );
        assert_eq!(
            request.body,
            RequestBody::Json(json!({
                "message": "My First Text",
                "phone_number": "254787877878",
                "session": "18gdPWKzoXXXX"
            }))
        );
    }

    #[test]
    fn only_text_without_options() {
        let template = Message::Template {
            name: "t".into(),
            language: "en".into(),
            header: None,
            body: vec![],
        };
        assert_eq!(
            adapter().render("+254787877878", &template, &BTreeMap::new()),
            Err(RenderError::Unsupported {
                provider: "payhero",
                kind: "template"
            })
        );
        let options = BTreeMap::from([("ref".to_owned(), "x".to_owned())]);
        assert!(matches!(
            crate::render(&adapter(), "+254787877878", &text("hi"), &options),
            Err(RenderError::InvalidOption { field, .. }) if field == "options.ref"
        ));
        // A message it cannot send is unsupported, whatever its options.
        assert!(matches!(
            crate::render(&adapter(), "+254787877878", &template, &options),
            Err(RenderError::Unsupported { .. })
        ));
    }

    #[test]
    fn classifies_the_documented_answers() {
        let ok = include_bytes!("../tests/fixtures/payhero_success.json");
        assert_eq!(
            adapter().classify(200, None, ok),
            Verdict::Sent {
                vendor_message_id: None
            }
        );

        // The doc's error carries status_code 500, but a missing session is permanent.
        let no_session = include_bytes!("../tests/fixtures/payhero_no_session.json");
        for status in [200, 500] {
            let Verdict::Permanent {
                code,
                detail,
                cause,
            } = adapter().classify(status, None, no_session)
            else {
                panic!("a missing session must be permanent (HTTP {status})");
            };
            assert_eq!(code.as_deref(), Some("INTERNAL"));
            assert!(
                detail.contains("We didn't find a session with name 'XXXX'"),
                "{detail}"
            );
            assert_eq!(cause, PermanentCause::Rejected);
        }
    }

    #[test]
    fn other_internal_errors_follow_their_status() {
        let busy =
            br#"{"error_code":"INTERNAL","error_message":"upstream timeout","status_code":500}"#;
        assert!(matches!(
            adapter().classify(200, None, busy),
            Verdict::Retryable { .. }
        ));
        let refused = br#"{"success":false}"#;
        assert!(matches!(
            adapter().classify(200, None, refused),
            Verdict::Permanent { .. }
        ));
    }
}
