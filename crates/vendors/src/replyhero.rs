//! ReplyHero (`replyhero-whatsapp-api.txt`): text, media by link, templates.
//!
//! `POST /whatsapp/messages/send` for text and media, `POST
//! /whatsapp/template/send` for templates; JSON; `X-API-KEY: <key>`. The
//! recipient is ReplyHero's own customer id (`options.customer_id`), not a
//! phone number; session, user and organisation ids come from the account.
//!
//! The doc's template endpoint names no recipient and "sends to all the
//! recipients grouped under the same organization". A Herald job is one
//! message to one recipient, so the template request carries `customerId`
//! like the message endpoint does: a job must never turn into a broadcast.
//! The template body has no language field; the template name selects it.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{ConfigError, Message};
use serde_json::{Value, json};

use crate::classify::{self, Failure, Reading};
use crate::meta;
use crate::settings::Settings;
use crate::{Adapter, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "replyhero";

const MESSAGE_PATH: &str = "/whatsapp/messages/send";
const TEMPLATE_PATH: &str = "/whatsapp/template/send";

#[derive(Debug)]
pub(crate) struct ReplyHero {
    session_id: String,
    user_id: String,
    org_id: String,
    api_key: Secret,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    Ok(Box::new(ReplyHero {
        session_id: s.required("session_id")?,
        user_id: s.required("user_id")?,
        org_id: s.required("org_id")?,
        api_key: s.secret("api_key")?,
    }))
}

impl Adapter for ReplyHero {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn options(&self) -> &'static [&'static str] {
        &["customer_id"]
    }

    /// `to` is not sent: ReplyHero addresses its own customer ids.
    fn render(
        &self,
        _to: &str,
        message: &Message,
        options: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RenderError> {
        let customer_id = options
            .get("customer_id")
            .ok_or_else(|| RenderError::InvalidOption {
                field: "options.customer_id".into(),
                problem: "is required: ReplyHero addresses recipients by its own customer id"
                    .into(),
            })?;
        let (path, mut body) = match message {
            Message::Text { body } => (
                MESSAGE_PATH,
                json!({"message": {"type": "text", "text": {"body": body}}}),
            ),
            Message::Media {
                media,
                url,
                caption,
                filename,
            } => {
                // The doc: filename is "only with document media", as Meta's.
                let object =
                    meta::media_object(*media, url, caption.as_deref(), filename.as_deref());
                let kind = media.as_str();
                (
                    MESSAGE_PATH,
                    json!({"message": {"type": kind, kind: object}}),
                )
            }
            Message::Template {
                name, header, body, ..
            } => (
                TEMPLATE_PATH,
                json!({"templateName": name, "components": meta::components(header.as_ref(), body)}),
            ),
        };
        body["sessionId"] = self.session_id.as_str().into();
        body["customerId"] = customer_id.as_str().into();
        body["userId"] = self.user_id.as_str().into();
        body["orgId"] = self.org_id.as_str().into();
        Ok(VendorRequest {
            path: path.to_owned(),
            headers: vec![("X-API-KEY".into(), self.api_key.expose().to_owned())],
            body: RequestBody::Json(body),
            secret_fields: &[],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        classify::answer(status, retry_after, body, read)
    }
}

/// The message endpoint answers one object, the template endpoint a list of
/// them; either carries WhatsApp's id in `response.messages[0].id` and
/// ReplyHero's own in `id`. A relayed WhatsApp failure comes as `error`.
fn read(body: &Value) -> Reading {
    let first = body.get(0).unwrap_or(body);
    if !first["error"].is_null() {
        return Err(Failure {
            detail: classify::message_of(first).unwrap_or_else(|| first["error"].to_string()),
            code: classify::text_of(&first["error"]["code"]),
            ..Failure::default()
        });
    }
    Ok(classify::text_of(&first["response"]["messages"][0]["id"])
        .or_else(|| classify::text_of(&first["id"])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermanentCause;
    use herald_core::{MediaKind, TemplateHeader};

    fn adapter() -> ReplyHero {
        ReplyHero {
            session_id: "SESSION_ID".into(),
            user_id: "USER_ID".into(),
            org_id: "ORG_ID".into(),
            api_key: Secret::new("eUG3uKs0r6YoHmkRZVXe0nCEmJY19r"),
        }
    }

    fn customer() -> BTreeMap<String, String> {
        BTreeMap::from([("customer_id".to_owned(), "CUSTOMER_ID".to_owned())])
    }

    fn json_body(request: &VendorRequest) -> &Value {
        let RequestBody::Json(value) = &request.body else {
            panic!("ReplyHero takes JSON")
        };
        value
    }

    #[test]
    fn renders_the_doc_text_example() {
        let request = adapter()
            .render(
                "+60181234567",
                &Message::Text {
                    body: "testing msg".into(),
                },
                &customer(),
            )
            .unwrap();
        assert_eq!(request.path, "/whatsapp/messages/send");
        assert_eq!(
            request.headers,
            vec![(
                "X-API-KEY".to_owned(),
                "eUG3uKs0r6YoHmkRZVXe0nCEmJY19r".to_owned()
            )]
        );
        assert_eq!(
            json_body(&request),
            &json!({
                "message": {"type": "text", "text": {"body": "testing msg"}},
                "sessionId": "SESSION_ID",
                "customerId": "CUSTOMER_ID",
                "userId": "USER_ID",
                "orgId": "ORG_ID"
            })
        );
    }

    #[test]
    fn renders_media_by_link() {
        let image = Message::Media {
            media: MediaKind::Image,
            url: "https://example.com/bot.png".into(),
            caption: Some("testing".into()),
            filename: Some("bot.png".into()),
        };
        let request = adapter()
            .render("+60181234567", &image, &customer())
            .unwrap();
        assert_eq!(request.path, "/whatsapp/messages/send");
        assert_eq!(
            json_body(&request),
            &json!({
                "message": {"type": "image", "image": {"link": "https://example.com/bot.png", "caption": "testing"}},
                "sessionId": "SESSION_ID",
                "customerId": "CUSTOMER_ID",
                "userId": "USER_ID",
                "orgId": "ORG_ID"
            })
        );
        let document = Message::Media {
            media: MediaKind::Document,
            url: "https://example.com/a.pdf".into(),
            caption: None,
            filename: Some("a.pdf".into()),
        };
        let request = adapter()
            .render("+60181234567", &document, &customer())
            .unwrap();
        assert_eq!(
            json_body(&request)["message"],
            json!({"type": "document", "document": {"link": "https://example.com/a.pdf", "filename": "a.pdf"}})
        );
    }

    #[test]
    fn renders_the_doc_template_example_with_a_header_by_link() {
        let template = Message::Template {
            name: "template_name".into(),
            language: "en".into(),
            header: Some(TemplateHeader::Image {
                url: "https://example.com/h.png".into(),
            }),
            body: vec![
                "https://replyhero.io/".into(),
                "https://replyhero.io/".into(),
            ],
        };
        let request = adapter()
            .render("+60181234567", &template, &customer())
            .unwrap();
        assert_eq!(request.path, "/whatsapp/template/send");
        assert_eq!(
            json_body(&request),
            &json!({
                "templateName": "template_name",
                "sessionId": "SESSION_ID",
                "orgId": "ORG_ID",
                "userId": "USER_ID",
                "customerId": "CUSTOMER_ID",
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/h.png"}}]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "https://replyhero.io/"},
                        {"type": "text", "text": "https://replyhero.io/"}
                    ]}
                ]
            })
        );
        let bare = Message::Template {
            name: "hello".into(),
            language: "en".into(),
            header: None,
            body: vec![],
        };
        let request = adapter()
            .render("+60181234567", &bare, &customer())
            .unwrap();
        assert_eq!(json_body(&request)["components"], json!([]));
    }

    #[test]
    fn customer_id_is_required() {
        let text = Message::Text { body: "hi".into() };
        assert_eq!(
            adapter().render("+60181234567", &text, &BTreeMap::new()),
            Err(RenderError::InvalidOption {
                field: "options.customer_id".into(),
                problem: "is required: ReplyHero addresses recipients by its own customer id"
                    .into()
            })
        );
        // A mistyped key is named as itself, not as the missing customer_id.
        let mistyped = BTreeMap::from([("customer".to_owned(), "CUSTOMER_ID".to_owned())]);
        assert_eq!(
            crate::render(&adapter(), "+60181234567", &text, &mistyped),
            Err(RenderError::InvalidOption {
                field: "options.customer".into(),
                problem: "not an option of replyhero (known: customer_id)".into()
            })
        );
    }

    #[test]
    fn classifies_the_documented_answers() {
        let message = include_bytes!("../tests/fixtures/replyhero_message_success.json");
        assert_eq!(
            adapter().classify(200, None, message),
            Verdict::Sent {
                vendor_message_id: Some("wamid.HBgL*****REY1RjIA".into())
            }
        );
        let template = include_bytes!("../tests/fixtures/replyhero_template_success.json");
        assert_eq!(
            adapter().classify(200, None, template),
            Verdict::Sent {
                vendor_message_id: Some("wamid.HBgL*****REY1RjIA".into())
            }
        );
        let only_own_id = br#"{"id":"MESSAGE_ID","response":{}}"#;
        assert_eq!(
            adapter().classify(200, None, only_own_id),
            Verdict::Sent {
                vendor_message_id: Some("MESSAGE_ID".into())
            }
        );
    }

    #[test]
    fn a_relayed_re_engagement_error_closes_the_window() {
        let relayed = include_bytes!("../tests/fixtures/whatsapp_131047.json");
        for status in [200, 400] {
            let verdict = adapter().classify(status, None, relayed);
            assert!(
                matches!(
                    verdict,
                    Verdict::Permanent {
                        cause: PermanentCause::WindowClosed,
                        ..
                    }
                ),
                "{verdict:?}"
            );
        }
        let Verdict::Permanent { code, detail, .. } = adapter().classify(400, None, relayed) else {
            unreachable!()
        };
        assert_eq!(code.as_deref(), Some("131047"));
        assert!(detail.contains("Re-engagement"), "{detail}");
    }
}
