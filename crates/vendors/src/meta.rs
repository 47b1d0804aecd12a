//! Meta's WhatsApp Cloud API, direct (CONTRACT §14): text, media by link,
//! templates with header and body parameters.
//!
//! `POST /<api_version>/<phone_number_id>/messages`, JSON as Meta documents
//! it (`messaging_product: "whatsapp"`, `to`, `type`, then the object named
//! by the type), `Authorization: Bearer <access token>`. The answer carries
//! the message id in `messages[0].id` (a `wamid.…`); a failure is Graph
//! API's `{"error": {"message", "type", "code", "error_data", "fbtrace_id"}}`,
//! classified by its `code` as Meta recommends, not by the HTTP status.
//!
//! The template `components` and the media object are the Cloud API's own
//! shapes; vendors that relay the Cloud API (ReplyHero) render them here too.

pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{ConfigError, MediaKind, Message, TemplateHeader};
use serde_json::{Value, json};

use crate::classify::{self, Failure, Reading};
use crate::settings::Settings;
use crate::{Adapter, PermanentCause, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "meta";

/// The Graph API version used when the account names none.
const DEFAULT_API_VERSION: &str = "v21.0";

/// How long Meta's pair rate asks a business to wait between two messages
/// to the same user (about one every 6 seconds).
const PAIR_RATE_WAIT: Duration = Duration::from_secs(6);

#[derive(Debug)]
pub(crate) struct Meta {
    api_version: String,
    phone_number_id: String,
    access_token: Secret,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    let api_version = match s.optional("api_version")? {
        Some(version) if is_api_version(&version) => version,
        Some(version) => {
            return Err(s.invalid(
                "api_version",
                format!("{version:?} must be a Graph API version like {DEFAULT_API_VERSION}"),
            ));
        }
        None => DEFAULT_API_VERSION.to_owned(),
    };
    let adapter = Meta {
        api_version,
        phone_number_id: s.required_checked(
            "phone_number_id",
            is_numeric_id,
            "Meta's numeric phone number ID (e.g. 106540352242922)",
        )?,
        access_token: s.secret("access_token")?,
    };
    // The API checks webhooks with these; read here too, so a typo in their
    // names or a secret that cannot be read stops the worker as well.
    s.optional_secret("app_secret")?;
    s.optional_secret("verify_token")?;
    Ok(Box::new(adapter))
}

/// `v21.0`: a `v`, a major and a minor number.
fn is_api_version(value: &str) -> bool {
    value
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| is_numeric_id(major) && is_numeric_id(minor))
}

fn is_numeric_id(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_digit())
}

impl Adapter for Meta {
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
        let (kind, content) = match message {
            Message::Text { body } => ("text", json!({ "body": body })),
            Message::Media {
                media,
                url,
                caption,
                filename,
            } => (
                media.as_str(),
                media_object(*media, url, caption.as_deref(), filename.as_deref()),
            ),
            Message::Template {
                name,
                language,
                header,
                body,
            } => {
                let mut template = json!({ "name": name, "language": { "code": language } });
                let components = components(header.as_ref(), body);
                if !components.is_empty() {
                    template["components"] = components.into();
                }
                ("template", template)
            }
        };
        Ok(VendorRequest {
            path: format!("/{}/{}/messages", self.api_version, self.phone_number_id),
            headers: vec![(
                "Authorization".into(),
                format!("Bearer {}", self.access_token.expose()),
            )],
            body: RequestBody::Json(json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": kind,
                kind: content,
            })),
            secret_fields: &[],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match error_code(&json).and_then(|code| by_code(code, retry_after, &json)) {
            Some(verdict) => verdict,
            None => classify::answer(status, retry_after, body, read),
        }
    }
}

/// A Cloud API media object by link. Meta shows a filename only on
/// documents, so it is left out of images and videos.
pub(crate) fn media_object(
    media: MediaKind,
    url: &str,
    caption: Option<&str>,
    filename: Option<&str>,
) -> Value {
    let mut object = json!({ "link": url });
    if let Some(caption) = caption {
        object["caption"] = caption.into();
    }
    if let (MediaKind::Document, Some(filename)) = (media, filename) {
        object["filename"] = filename.into();
    }
    object
}

/// A template's `header` and `body` components with their parameters,
/// leaving out empty ones.
pub(crate) fn components(header: Option<&TemplateHeader>, body: &[String]) -> Vec<Value> {
    let header = header.map(|header| match header {
        TemplateHeader::Text { text } => json!({"type": "text", "text": text}),
        TemplateHeader::Image { url } => json!({"type": "image", "image": {"link": url}}),
        TemplateHeader::Document { url } => json!({"type": "document", "document": {"link": url}}),
        TemplateHeader::Video { url } => json!({"type": "video", "video": {"link": url}}),
    });
    let body: Vec<Value> = body
        .iter()
        .map(|text| json!({"type": "text", "text": text}))
        .collect();
    [
        ("header", header.into_iter().collect::<Vec<_>>()),
        ("body", body),
    ]
    .into_iter()
    .filter(|(_, parameters)| !parameters.is_empty())
    .map(|(kind, parameters)| json!({"type": kind, "parameters": parameters}))
    .collect()
}

/// The `code` of a Graph API error body.
fn error_code(body: &Value) -> Option<u64> {
    body["error"]["code"].as_u64()
}

/// What Meta's own error codes mean, whatever HTTP status carried them;
/// `None` for a code this table does not name (its HTTP status decides).
fn by_code(code: u64, retry_after: Option<Duration>, body: &Value) -> Option<Verdict> {
    let permanent = |cause| Verdict::Permanent {
        code: Some(code.to_string()),
        detail: detail(body),
        cause,
    };
    let retry = |retry_after, rate_limited| Verdict::Retryable {
        retry_after,
        rate_limited,
        detail: format!("{code}: {}", detail(body)),
    };
    Some(match code {
        131047 => permanent(PermanentCause::WindowClosed),
        131050 => permanent(PermanentCause::OptedOut),
        // Invalid parameter, expired token, undeliverable, template errors.
        100 | 190 | 131026 | 132000..=132016 => permanent(PermanentCause::Rejected),
        // The number's throughput, or the app's or the business account's
        // call rate: the whole account waits.
        130429 | 4 | 80007 => retry(retry_after, true),
        // Too many messages to this one user: only this message waits.
        131056 => retry(
            Some(retry_after.unwrap_or_default().max(PAIR_RATE_WAIT)),
            false,
        ),
        // Something went wrong; the business account is in maintenance.
        131000 | 131057 => retry(retry_after, false),
        _ => return None,
    })
}

/// `message` (which starts with the code and its title, e.g. `(#131026)
/// Message Undeliverable`) and Meta's `error_data.details` when it adds one.
fn detail(body: &Value) -> String {
    let error = &body["error"];
    let message = classify::text_of(&error["message"]);
    let details = classify::text_of(&error["error_data"]["details"]);
    match (message, details) {
        (Some(message), Some(details)) => format!("{message}: {details}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => error.to_string(),
    }
}

/// Success: `{"messaging_product", "contacts": [{"input", "wa_id"}],
/// "messages": [{"id", "message_status"?}]}`; an error whose code
/// [`by_code`] does not name is a failure classified by its HTTP status.
fn read(body: &Value) -> Reading {
    if body["error"].is_object() {
        return Err(Failure {
            code: error_code(body).map(|code| code.to_string()),
            detail: detail(body),
            ..Failure::default()
        });
    }
    Ok(classify::text_of(&body["messages"][0]["id"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> Meta {
        Meta {
            api_version: "v21.0".into(),
            phone_number_id: "106540352242922".into(),
            access_token: Secret::new("EAAJB-test-token"),
        }
    }

    fn render(message: &Message) -> VendorRequest {
        adapter()
            .render("+16505551234", message, &BTreeMap::new())
            .unwrap()
    }

    fn json_body(request: &VendorRequest) -> &Value {
        let RequestBody::Json(value) = &request.body else {
            panic!("Meta takes JSON")
        };
        value
    }

    /// A Graph API error body as Meta documents its syntax
    /// (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes/).
    fn error(code: u64, message: &str, details: &str) -> Vec<u8> {
        json!({"error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
        }})
        .to_string()
        .into_bytes()
    }

    // https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages/
    #[test]
    fn renders_the_doc_text_message() {
        let request = render(&Message::Text {
            body: "As requested, here's the link to our latest product: https://www.meta.com/quest/quest-3/".into(),
        });
        assert_eq!(request.path, "/v21.0/106540352242922/messages");
        assert_eq!(
            request.headers,
            vec![(
                "Authorization".to_owned(),
                "Bearer EAAJB-test-token".to_owned()
            )]
        );
        assert_eq!(
            json_body(&request),
            &json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+16505551234",
                "type": "text",
                "text": {"body": "As requested, here's the link to our latest product: https://www.meta.com/quest/quest-3/"}
            })
        );
    }

    // https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/image-messages/
    // https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/document-messages
    #[test]
    fn renders_the_doc_media_messages_by_link() {
        let image = render(&Message::Media {
            media: MediaKind::Image,
            url: "https://www.luckyshrub.com/assets/succulents/aloe.png".into(),
            caption: Some("The best succulent ever?".into()),
            filename: Some("aloe.png".into()),
        });
        assert_eq!(
            json_body(&image),
            &json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+16505551234",
                "type": "image",
                "image": {
                    "link": "https://www.luckyshrub.com/assets/succulents/aloe.png",
                    "caption": "The best succulent ever?"
                }
            })
        );
        let document = render(&Message::Media {
            media: MediaKind::Document,
            url: "https://www.luckyshrub.com/invoices/FmOzfD9cKf/lucky-shrub-invoice.pdf".into(),
            caption: Some("Lucky Shrub Invoice".into()),
            filename: Some("lucky-shrub-invoice.pdf".into()),
        });
        assert_eq!(
            json_body(&document)["document"],
            json!({
                "link": "https://www.luckyshrub.com/invoices/FmOzfD9cKf/lucky-shrub-invoice.pdf",
                "caption": "Lucky Shrub Invoice",
                "filename": "lucky-shrub-invoice.pdf"
            })
        );
        let video = render(&Message::Media {
            media: MediaKind::Video,
            url: "https://www.luckyshrub.com/media/ringing-bell.mp4".into(),
            caption: None,
            filename: None,
        });
        assert_eq!(json_body(&video)["type"], "video");
        assert_eq!(
            json_body(&video)["video"],
            json!({"link": "https://www.luckyshrub.com/media/ringing-bell.mp4"})
        );
    }

    // https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/components
    #[test]
    fn renders_a_template_with_header_and_body_parameters() {
        let request = render(&Message::Template {
            name: "order_confirmation".into(),
            language: "en_US".into(),
            header: Some(TemplateHeader::Image {
                url: "https://www.luckyshrub.com/assets/header.png".into(),
            }),
            body: vec!["Pablo".into(), "860198-230332".into()],
        });
        assert_eq!(
            json_body(&request)["template"],
            json!({
                "name": "order_confirmation",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "header", "parameters": [
                        {"type": "image", "image": {"link": "https://www.luckyshrub.com/assets/header.png"}}
                    ]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "Pablo"},
                        {"type": "text", "text": "860198-230332"}
                    ]}
                ]
            })
        );
        let bare = render(&Message::Template {
            name: "hello_world".into(),
            language: "en_US".into(),
            header: None,
            body: vec![],
        });
        assert_eq!(
            json_body(&bare)["template"],
            json!({"name": "hello_world", "language": {"code": "en_US"}})
        );
    }

    #[test]
    fn takes_no_options() {
        let options = BTreeMap::from([("customer_id".to_owned(), "C1".to_owned())]);
        let text = Message::Text { body: "hi".into() };
        assert_eq!(
            crate::render(&adapter(), "+16505551234", &text, &options),
            Err(RenderError::InvalidOption {
                field: "options.customer_id".into(),
                problem: "meta takes no options".into()
            })
        );
    }

    #[test]
    fn reads_the_message_id_of_a_documented_answer() {
        let sent = br#"{
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA", "message_status": "accepted"}]
        }"#;
        assert_eq!(
            adapter().classify(200, None, sent),
            Verdict::Sent {
                vendor_message_id: Some(
                    "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA".into()
                )
            }
        );
    }

    #[test]
    fn permanent_codes_keep_their_code_and_text() {
        let cases = [
            (
                131047,
                "(#131047) Re-engagement message",
                PermanentCause::WindowClosed,
            ),
            (
                131050,
                "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
                PermanentCause::OptedOut,
            ),
            (
                131026,
                "(#131026) Message Undeliverable",
                PermanentCause::Rejected,
            ),
            (
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                PermanentCause::Rejected,
            ),
            (
                132016,
                "(#132016) Template is disabled",
                PermanentCause::Rejected,
            ),
            (100, "(#100) Invalid parameter", PermanentCause::Rejected),
            (
                190,
                "Error validating access token: Session has expired",
                PermanentCause::Rejected,
            ),
        ];
        for (code, message, expected) in cases {
            // Meta's HTTP status varies by code; the code decides.
            for status in [400, 401, 500] {
                let body = error(code, message, "see the error code reference");
                let verdict = adapter().classify(status, None, &body);
                assert_eq!(
                    verdict,
                    Verdict::Permanent {
                        code: Some(code.to_string()),
                        detail: format!("{message}: see the error code reference"),
                        cause: expected,
                    },
                    "{code} over HTTP {status}"
                );
            }
        }
    }

    #[test]
    fn throughput_pauses_the_account_but_pair_rate_only_delays_the_message() {
        let throughput = error(
            130429,
            "(#130429) Rate limit hit",
            "Cloud API message throughput has been reached.",
        );
        let verdict = adapter().classify(429, Some(Duration::from_secs(2)), &throughput);
        assert!(
            matches!(
                verdict,
                Verdict::Retryable {
                    rate_limited: true,
                    retry_after: Some(wait),
                    ..
                } if wait == Duration::from_secs(2)
            ),
            "{verdict:?}"
        );
        let pair = error(
            131056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        );
        for (header, expected) in [(None, 6), (Some(1), 6), (Some(30), 30)] {
            let verdict = adapter().classify(400, header.map(Duration::from_secs), &pair);
            let Verdict::Retryable {
                rate_limited: false,
                retry_after: Some(wait),
                detail,
            } = verdict
            else {
                panic!("{verdict:?}");
            };
            assert_eq!(wait, Duration::from_secs(expected));
            assert!(detail.starts_with("131056: (#131056)"), "{detail}");
        }
    }

    #[test]
    fn unknown_errors_and_maintenance_are_retryable() {
        for (code, status) in [(131000, 500), (131057, 400), (131000, 400)] {
            let body = error(
                code,
                &format!("(#{code}) Something went wrong"),
                "Try again",
            );
            assert!(
                matches!(
                    adapter().classify(status, None, &body),
                    Verdict::Retryable {
                        rate_limited: false,
                        ..
                    }
                ),
                "{code} over HTTP {status}"
            );
        }
    }

    // The Graph API's own example error
    // (https://developers.facebook.com/docs/graph-api/guides/error-handling).
    #[test]
    fn other_codes_follow_their_http_status() {
        let other =
            br#"{"error": {"message": "Message describing the error", "type": "OAuthException",
            "code": 368, "error_subcode": 460, "fbtrace_id": "EJplcsCHuLu"}}"#;
        assert_eq!(
            adapter().classify(403, None, other),
            Verdict::Permanent {
                code: Some("368".into()),
                detail: "Message describing the error".into(),
                cause: PermanentCause::Rejected,
            }
        );
        assert!(matches!(
            adapter().classify(503, None, other),
            Verdict::Retryable { .. }
        ));
        assert!(matches!(
            adapter().classify(502, None, b"<html>Bad Gateway</html>"),
            Verdict::Retryable { .. }
        ));
    }

    #[test]
    fn api_versions_and_ids_have_meta_shapes() {
        assert!(is_api_version("v21.0") && is_api_version("v9.1"));
        assert!(!is_api_version("21.0") && !is_api_version("v21") && !is_api_version("v2x.0"));
        assert!(
            is_numeric_id("106540352242922") && !is_numeric_id("10654/0") && !is_numeric_id("")
        );
    }
}
