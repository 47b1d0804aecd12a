//! Kaleyra (`kaleyra-whatsapp-send-text.txt`): text and templates.
//!
//! `POST /v1/<SID>/messages`, form-encoded `{to, type, channel=whatsapp, from,
//! body | template_name + params, callback_url, ref, ref1, ref2}`,
//! `api-key: <key>`. Numbers are E.164 with `+`. A template is named, not
//! localised: this API has no language field, the template name selects it.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::config::Secret;
use herald_core::{ConfigError, Message};
use serde_json::Value;

use crate::classify::{self, Failure, Reading};
use crate::settings::{self, Settings};
use crate::{Adapter, RenderError, RequestBody, VendorRequest, Verdict};

pub(crate) const PROVIDER: &str = "kaleyra";

/// Per-message options, sent as form fields of the same name.
const OPTIONS: &[&str] = &["callback_url", "ref", "ref1", "ref2"];

/// Kaleyra's limit on `ref`, `ref1` and `ref2`.
const MAX_REF_CHARS: usize = 255;

/// Kaleyra's validation errors (from, to, HTML in parameters): the request
/// itself is wrong, whatever status it came with.
const VALIDATION_CODES: &[&str] = &["E13008", "E13009", "E413"];

#[derive(Debug)]
pub(crate) struct Kaleyra {
    sid: String,
    from: String,
    api_key: Secret,
    callback_url: Option<String>,
}

pub(crate) fn build(s: &mut Settings) -> Result<Box<dyn Adapter>, ConfigError> {
    Ok(Box::new(Kaleyra {
        sid: s.required_checked("sid", settings::is_path_segment, "one URL path segment")?,
        from: s.required_checked("from", settings::is_e164, "E.164 (+ then 8–15 digits)")?,
        api_key: s.secret("api_key")?,
        callback_url: s.optional("callback_url")?,
    }))
}

impl Adapter for Kaleyra {
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
        let content = match message {
            Message::Text { body } => vec![("type", "text".to_owned()), ("body", body.clone())],
            Message::Template {
                name,
                header: None,
                body,
                ..
            } => vec![
                ("type", "template".to_owned()),
                ("template_name", name.clone()),
                ("params", params(body)),
            ],
            // The form API's templates carry body parameters only; media
            // headers go through an upload this API does not take.
            Message::Template {
                header: Some(_), ..
            } => {
                return Err(RenderError::Unsupported {
                    provider: PROVIDER,
                    kind: "template header",
                });
            }
            Message::Media { .. } => return Err(crate::unsupported(PROVIDER, message)),
        };
        for key in ["ref", "ref1", "ref2"] {
            if options
                .get(key)
                .is_some_and(|v| v.chars().count() > MAX_REF_CHARS)
            {
                return Err(RenderError::InvalidOption {
                    field: format!("options.{key}"),
                    problem: format!("at most {MAX_REF_CHARS} characters"),
                });
            }
        }
        let mut form = vec![
            ("to", to.to_owned()),
            ("channel", "whatsapp".to_owned()),
            ("from", self.from.clone()),
        ];
        form.extend(content);
        // A job's own callback wins over the account's.
        if let Some(url) = options.get("callback_url").or(self.callback_url.as_ref()) {
            form.push(("callback_url", url.clone()));
        }
        for key in ["ref", "ref1", "ref2"] {
            if let Some(value) = options.get(key) {
                form.push((key, value.clone()));
            }
        }
        Ok(VendorRequest {
            path: format!("/v1/{}/messages", self.sid),
            headers: vec![("api-key".into(), self.api_key.expose().to_owned())],
            body: RequestBody::Form(form.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            secret_fields: &[],
        })
    }

    fn classify(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
        classify::answer(status, retry_after, body, read)
    }
}

/// Template parameters as Kaleyra lists them: each double-quoted, comma
/// separated (`"Raman","IELTS"`), so a comma inside a value stays in it.
fn params(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Success: `{"id", "data": [{"message_id", "recipient"}], "error": {}}`;
/// failure: a non-empty `error`, with the code at the top (`"code": "E13009"`)
/// or inside the error.
fn read(body: &Value) -> Reading {
    let failed = match &body["error"] {
        Value::Object(error) => !error.is_empty(),
        Value::String(error) => !error.is_empty(),
        _ => false,
    };
    if !failed {
        let id = classify::text_of(&body["data"][0]["message_id"])
            .or_else(|| classify::text_of(&body["id"]));
        return Ok(id);
    }
    let code =
        classify::text_of(&body["code"]).or_else(|| classify::text_of(&body["error"]["code"]));
    let detail = match classify::message_of(body) {
        Some(message) => format!("{message} ({})", body["error"]),
        None => body["error"].to_string(),
    };
    Err(Failure {
        permanent: code
            .as_deref()
            .is_some_and(|c| VALIDATION_CODES.contains(&c)),
        code,
        detail,
        ..Failure::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermanentCause;

    fn adapter() -> Kaleyra {
        Kaleyra {
            sid: "HXAP1XXXXXX17XX".into(),
            from: "+12025550123".into(),
            api_key: Secret::new("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            callback_url: Some("https://webhook.site/XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX".into()),
        }
    }

    fn form(request: &VendorRequest) -> Vec<(&str, &str)> {
        let RequestBody::Form(pairs) = &request.body else {
            panic!("Kaleyra is form-encoded")
        };
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn renders_the_doc_template_sample() {
        let template = Message::Template {
            name: "british_council".into(),
            language: "en".into(),
            header: None,
            body: vec!["Raman".into()],
        };
        let request = adapter()
            .render("+12025550199", &template, &BTreeMap::new())
            .unwrap();
        assert_eq!(request.path, "/v1/HXAP1XXXXXX17XX/messages");
        assert_eq!(
            request.headers,
            vec![(
                "api-key".to_owned(),
                "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".to_owned()
            )]
        );
        assert_eq!(
            form(&request),
            vec![
                ("to", "+12025550199"),
                ("channel", "whatsapp"),
                ("from", "+12025550123"),
                ("type", "template"),
                ("template_name", "british_council"),
                ("params", "\"Raman\""),
                (
                    "callback_url",
                    "https://webhook.site/XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX"
                ),
            ]
        );
    }

    #[test]
    fn renders_a_text_with_every_option() {
        let options = BTreeMap::from([
            (
                "callback_url".to_owned(),
                "https://example.com/cb".to_owned(),
            ),
            ("ref".to_owned(), "Customer Name".to_owned()),
            ("ref1".to_owned(), "Company Name".to_owned()),
            ("ref2".to_owned(), "Designation".to_owned()),
        ]);
        let text = Message::Text {
            body: "Hi, Your order has been shipped.".into(),
        };
        let request = adapter().render("+12025555555", &text, &options).unwrap();
        assert_eq!(
            form(&request),
            vec![
                ("to", "+12025555555"),
                ("channel", "whatsapp"),
                ("from", "+12025550123"),
                ("type", "text"),
                ("body", "Hi, Your order has been shipped."),
                ("callback_url", "https://example.com/cb"),
                ("ref", "Customer Name"),
                ("ref1", "Company Name"),
                ("ref2", "Designation"),
            ]
        );
    }

    #[test]
    fn params_keep_commas_inside_values() {
        assert_eq!(
            params(&["Raman".into(), "IELTS, Academic".into()]),
            r#""Raman","IELTS, Academic""#
        );
    }

    #[test]
    fn refuses_media_headers_and_long_refs() {
        let media = Message::Media {
            media: herald_core::MediaKind::Document,
            url: "https://x/y.pdf".into(),
            caption: None,
            filename: None,
        };
        assert_eq!(
            adapter().render("+12025550199", &media, &BTreeMap::new()),
            Err(RenderError::Unsupported {
                provider: "kaleyra",
                kind: "media"
            })
        );
        let headed = Message::Template {
            name: "t".into(),
            language: "en".into(),
            header: Some(herald_core::TemplateHeader::Text { text: "h".into() }),
            body: vec![],
        };
        assert!(matches!(
            adapter().render("+12025550199", &headed, &BTreeMap::new()),
            Err(RenderError::Unsupported { .. })
        ));
        let long = BTreeMap::from([("ref1".to_owned(), "x".repeat(256))]);
        let text = Message::Text { body: "hi".into() };
        assert!(matches!(
            adapter().render("+12025550199", &text, &long),
            Err(RenderError::InvalidOption { field, .. }) if field == "options.ref1"
        ));
    }

    #[test]
    fn classifies_the_documented_success() {
        let ok = include_bytes!("../tests/fixtures/kaleyra_success.json");
        assert_eq!(
            adapter().classify(202, None, ok),
            Verdict::Sent {
                vendor_message_id: Some("cc8074ae-990d-40f5-b604-115XXXe2ab32:0".into())
            }
        );
        let without_data = br#"{"id":"cc8074ae","error":{}}"#;
        assert_eq!(
            adapter().classify(200, None, without_data),
            Verdict::Sent {
                vendor_message_id: Some("cc8074ae".into())
            }
        );
    }

    #[test]
    fn classifies_each_documented_error_code() {
        let fixtures: [(&str, &[u8]); 3] = [
            (
                "E13008",
                include_bytes!("../tests/fixtures/kaleyra_e13008.json"),
            ),
            (
                "E13009",
                include_bytes!("../tests/fixtures/kaleyra_e13009.json"),
            ),
            (
                "E413",
                include_bytes!("../tests/fixtures/kaleyra_e413.json"),
            ),
        ];
        for (expected, body) in fixtures {
            // Permanent whether it came as a 2xx, a 400, or even a 5xx.
            for status in [200, 400, 503] {
                let verdict = adapter().classify(status, None, body);
                let Verdict::Permanent {
                    code,
                    detail,
                    cause: PermanentCause::Rejected,
                } = verdict
                else {
                    panic!("{expected} over HTTP {status}: {verdict:?}");
                };
                assert_eq!(code.as_deref(), Some(expected));
                assert!(detail.contains("Invalid or"), "{detail}");
            }
        }
    }
}
