//! Pingup (`pingup-send-text-message.txt`): text only.
//!
//! `POST /ext/v2/<business>/messages`, JSON `{message_type: "text", client?,
//! client_phone, client_name?, text_message}`, `Authorization: Bearer <key>`.
//! The vendor's `delay` is not used: scheduling is Herald's `not_before`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{ConfigError, Message};
use serde_json::{Value, json};

use crate::classify::{self, Failure, Reading};
use crate::settings::{self, Settings};
use crate::{Adapter, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "pingup";

/// Per-message options: Pingup's own client id and display name.
const OPTIONS: &[&str] = &["client", "client_name"];

#[derive(Debug)]
pub(crate) struct Pingup {
    business: String,
    api_key: Secret,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    Ok(Box::new(Pingup {
        business: s.required_checked(
            "business",
            settings::is_path_segment,
            "one URL path segment",
        )?,
        api_key: s.secret("api_key")?,
    }))
}

impl Adapter for Pingup {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn options(&self) -> &'static [&'static str] {
        OPTIONS
    }

    fn render(
        &self,
        to: &str,
        message: &Message,
        options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError> {
        let body = crate::text_only(PROVIDER, message)?;
        let mut fields = json!({
            "message_type": "text",
            // The doc's numbers are international digits without `+` (3931212321).
            "client_phone": crate::digits(to),
            "text_message": body,
        });
        for key in OPTIONS {
            if let Some(value) = options.get(*key) {
                fields[*key] = value.as_str().into();
            }
        }
        Ok(VendorRequest {
            path: format!("/ext/v2/{}/messages", self.business),
            headers: vec![(
                "Authorization".into(),
                format!("Bearer {}", self.api_key.expose()),
            )],
            body: RequestBody::Json(fields),
            secret_fields: &[],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        classify::answer(status, retry_after, body, read)
    }
}

/// `{"success": true|false, "data": {"message_id": …}}`.
fn read(body: &Value) -> Reading {
    if body["success"] == Value::Bool(false) {
        return Err(Failure {
            detail: classify::message_of(body).unwrap_or_else(|| "success: false".into()),
            ..Failure::default()
        });
    }
    Ok(classify::text_of(&body["data"]["message_id"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermanentCause;

    fn adapter() -> Pingup {
        Pingup {
            business: "acme".into(),
            api_key: Secret::new("SECREY_KEY"),
        }
    }

    #[test]
    fn renders_the_doc_example() {
        let options = BTreeMap::from([
            ("client".to_owned(), "client_id".to_owned()),
            ("client_name".to_owned(), "Jon doe".to_owned()),
        ]);
        let message = Message::Text {
            body: "Text message to send".into(),
        };
        let request = adapter().render("+3931212321", &message, &options).unwrap();
        assert_eq!(request.path, "/ext/v2/acme/messages");
        assert_eq!(
            request.headers,
            vec![("Authorization".to_owned(), "Bearer SECREY_KEY".to_owned())]
        );
        assert_eq!(
            request.body,
            RequestBody::Json(json!({
                "message_type": "text",
                "client": "client_id",
                "client_phone": "3931212321",
                "client_name": "Jon doe",
                "text_message": "Text message to send"
            }))
        );
        // Without options the optional fields are absent, not empty.
        let plain = adapter()
            .render("+3931212321", &message, &BTreeMap::new())
            .unwrap();
        let RequestBody::Json(body) = plain.body else {
            panic!("JSON")
        };
        assert!(body.get("client").is_none() && body.get("client_name").is_none());
    }

    #[test]
    fn only_text_and_its_options() {
        let media = Message::Media {
            media: herald_core::MediaKind::Image,
            url: "https://x/y.png".into(),
            caption: None,
            filename: None,
        };
        assert_eq!(
            adapter().render("+3931212321", &media, &BTreeMap::new()),
            Err(RenderError::Unsupported {
                provider: "pingup",
                kind: "media"
            })
        );
        let delay = BTreeMap::from([("delay".to_owned(), "1m".to_owned())]);
        let text = Message::Text { body: "hi".into() };
        assert!(matches!(
            crate::render(&adapter(), "+3931212321", &text, &delay),
            Err(RenderError::InvalidOption { field, .. }) if field == "options.delay"
        ));
    }

    #[test]
    fn classifies_the_documented_answers() {
        let ok = include_bytes!("../tests/fixtures/pingup_success.json");
        assert_eq!(
            adapter().classify(200, None, ok),
            Verdict::Sent {
                vendor_message_id: Some("message_id".into())
            }
        );
        let refused = include_bytes!("../tests/fixtures/pingup_failure.json");
        assert!(matches!(
            adapter().classify(200, None, refused),
            Verdict::Permanent {
                cause: PermanentCause::Rejected,
                ..
            }
        ));
    }
}
