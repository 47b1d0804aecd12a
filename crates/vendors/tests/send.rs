//! `VendorAccount::send` over real HTTP to a fake vendor (wiremock): the
//! exact request each vendor receives, how its answers are classified, and
//! that no secret survives into an answer or a log line.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Secrets, vendors};
use herald_core::protocol::MAX_VENDOR_RESPONSE_BYTES;
use herald_core::{Message, TemplateHeader};
use herald_vendors::{VendorAnswer, Vendors, Verdict};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-live-7f3a9c1e5b";

/// One account of `provider` pointed at `base_url`; `keys` are its vendor
/// keys, with `{secret}` standing for the path of a file holding [`KEY`].
fn account(secrets: &Secrets, provider: &str, base_url: &str, keys: &str) -> Vendors {
    let keys = keys.replace("{secret}", &secrets.file("key", KEY));
    vendors(&format!(
        "[providers.{provider}.default]\nbase_url = \"{base_url}\"\ntimeout = \"500ms\"\n{keys}"
    ))
    .unwrap()
}

async fn send(
    vendors: &Vendors,
    provider: &str,
    to: &str,
    message: &Message,
    options: &[(&str, &str)],
) -> VendorAnswer {
    let options: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let account = vendors.account(provider, "default").unwrap();
    let request = account.render(to, message, &options).unwrap();
    account.send(&request).await
}

fn text(body: &str) -> Message {
    Message::Text { body: body.into() }
}

#[tokio::test]
async fn payhero_gets_its_json_and_basic_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/whatspp/sendText"))
        .and(header("authorization", format!("Basic {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"message": "My First Text", "phone_number": "254787877878", "session": "18gdPWKzoXXXX"})))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"success": true}"#))
        .expect(1)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "payhero",
        &server.uri(),
        "session = \"18gdPWKzoXXXX\"\nbasic_token_file = \"{secret}\"",
    );
    let answer = send(
        &vendors,
        "payhero",
        "+254787877878",
        &text("My First Text"),
        &[],
    )
    .await;
    assert_eq!(
        answer.verdict,
        Verdict::Sent {
            vendor_message_id: None
        }
    );
    assert_eq!(answer.status, Some(200));
}

#[tokio::test]
async fn pingup_gets_its_json_and_bearer_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ext/v2/acme/messages"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_json(json!({
            "message_type": "text",
            "client": "client_id",
            "client_phone": "3931212321",
            "client_name": "Jon doe",
            "text_message": "Text message to send"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "data": {"message_id": "pm-1"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "pingup",
        &server.uri(),
        "business = \"acme\"\napi_key_file = \"{secret}\"",
    );
    let options = [("client", "client_id"), ("client_name", "Jon doe")];
    let answer = send(
        &vendors,
        "pingup",
        "+3931212321",
        &text("Text message to send"),
        &options,
    )
    .await;
    assert_eq!(
        answer.verdict,
        Verdict::Sent {
            vendor_message_id: Some("pm-1".into())
        }
    );
}

#[tokio::test]
async fn kaleyra_gets_its_form_and_api_key_header() {
    let server = MockServer::start().await;
    let expected_form = [
        ("to", "+12025550199"),
        ("channel", "whatsapp"),
        ("from", "+12025550123"),
        ("type", "template"),
        ("template_name", "british_council"),
        ("params", "\"Raman\""),
        (
            "callback_url",
            "https://webhook.site/XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX",
        ),
    ];
    let form_is = move |request: &Request| {
        let sent: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        sent.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .eq(expected_form.iter().copied())
    };
    Mock::given(method("POST"))
        .and(path("/v1/HXAP1XXXXXX17XX/messages"))
        .and(header("api-key", KEY))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(form_is)
        .respond_with(ResponseTemplate::new(202).set_body_raw(
            include_bytes!("fixtures/kaleyra_success.json").to_vec(),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "kaleyra",
        &server.uri(),
        "sid = \"HXAP1XXXXXX17XX\"\nfrom = \"+12025550123\"\napi_key_file = \"{secret}\"\n\
         callback_url = \"https://webhook.site/XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX\"",
    );
    let template = Message::Template {
        name: "british_council".into(),
        language: "en".into(),
        header: None,
        body: vec!["Raman".into()],
    };
    let answer = send(&vendors, "kaleyra", "+12025550199", &template, &[]).await;
    assert_eq!(
        answer.verdict,
        Verdict::Sent {
            vendor_message_id: Some("cc8074ae-990d-40f5-b604-115XXXe2ab32:0".into())
        }
    );
    assert_eq!(answer.status, Some(202));
}

#[tokio::test]
async fn digital99_gets_its_key_in_the_json_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/whatsapp/v2/sendMessage"))
        .and(body_json(json!({"apiKey": KEY, "from": "972771234567", "to": "972501234567", "body": "your message"})))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(include_bytes!("fixtures/99digital_success.json").to_vec(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "99digital",
        &server.uri(),
        "from = \"972771234567\"\napi_key_file = \"{secret}\"",
    );
    let answer = send(
        &vendors,
        "99digital",
        "+972501234567",
        &text("your message"),
        &[],
    )
    .await;
    assert_eq!(
        answer.verdict,
        Verdict::Sent {
            vendor_message_id: Some("65dfd4r4dref34rdfxd34r".into())
        }
    );
}

#[tokio::test]
async fn replyhero_gets_messages_and_templates_on_their_own_paths() {
    let server = MockServer::start().await;
    let ids = json!({"sessionId": "SESSION_ID", "customerId": "CUSTOMER_ID", "userId": "USER_ID", "orgId": "ORG_ID"});
    let with_ids = |mut body: serde_json::Value| {
        body.as_object_mut()
            .unwrap()
            .extend(ids.as_object().unwrap().clone());
        body
    };
    Mock::given(method("POST"))
        .and(path("/whatsapp/messages/send"))
        .and(header("x-api-key", KEY))
        .and(body_json(with_ids(
            json!({"message": {"type": "text", "text": {"body": "testing msg"}}}),
        )))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            include_bytes!("fixtures/replyhero_message_success.json").to_vec(),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/whatsapp/template/send"))
        .and(header("x-api-key", KEY))
        .and(body_json(with_ids(json!({
            "templateName": "order_update",
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "Order"}]},
                {"type": "body", "parameters": [{"type": "text", "text": "1234"}]}
            ]
        }))))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            include_bytes!("fixtures/replyhero_template_success.json").to_vec(),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "replyhero",
        &server.uri(),
        "session_id = \"SESSION_ID\"\nuser_id = \"USER_ID\"\norg_id = \"ORG_ID\"\napi_key_file = \"{secret}\"",
    );
    let customer = [("customer_id", "CUSTOMER_ID")];
    let answer = send(
        &vendors,
        "replyhero",
        "+60181234567",
        &text("testing msg"),
        &customer,
    )
    .await;
    assert_eq!(
        answer.verdict,
        Verdict::Sent {
            vendor_message_id: Some("wamid.HBgL*****REY1RjIA".into())
        }
    );
    let template = Message::Template {
        name: "order_update".into(),
        language: "en".into(),
        header: Some(TemplateHeader::Text {
            text: "Order".into(),
        }),
        body: vec!["1234".into()],
    };
    let answer = send(&vendors, "replyhero", "+60181234567", &template, &customer).await;
    assert!(matches!(answer.verdict, Verdict::Sent { .. }), "{answer:?}");
}

/// A Pingup account whose vendor answers every send with `response`.
async fn pingup_answering(response: ResponseTemplate) -> (MockServer, Secrets, Vendors) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "pingup",
        &server.uri(),
        "business = \"acme\"\napi_key_file = \"{secret}\"",
    );
    (server, secrets, vendors)
}

#[tokio::test]
async fn server_errors_are_retryable_and_keep_status_and_response() {
    let (_server, _secrets, vendors) =
        pingup_answering(ResponseTemplate::new(503).set_body_string("x".repeat(5000))).await;
    let answer = send(&vendors, "pingup", "+3931212321", &text("hi"), &[]).await;
    assert!(
        matches!(
            answer.verdict,
            Verdict::Retryable {
                rate_limited: false,
                retry_after: None,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(answer.status, Some(503));
    assert_eq!(answer.response.unwrap().len(), MAX_VENDOR_RESPONSE_BYTES);
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let (_server, _secrets, vendors) =
        pingup_answering(ResponseTemplate::new(429).insert_header("Retry-After", "7")).await;
    let answer = send(&vendors, "pingup", "+3931212321", &text("hi"), &[]).await;
    let Verdict::Retryable {
        retry_after,
        rate_limited,
        ..
    } = answer.verdict
    else {
        panic!("{answer:?}")
    };
    assert_eq!(
        (retry_after, rate_limited, answer.status),
        (Some(Duration::from_secs(7)), true, Some(429))
    );
}

#[tokio::test]
async fn a_vendor_slower_than_the_timeout_is_retryable_without_status() {
    let (_server, _secrets, vendors) =
        pingup_answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).await;
    let started = std::time::Instant::now();
    let answer = send(&vendors, "pingup", "+3931212321", &text("hi"), &[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the 500ms account timeout applies"
    );
    let Verdict::Retryable {
        detail,
        rate_limited: false,
        ..
    } = &answer.verdict
    else {
        panic!("{answer:?}")
    };
    assert_eq!(detail, "no answer within 500ms");
    assert_eq!((answer.status, answer.response), (None, None));
}

#[tokio::test]
async fn an_unreachable_vendor_is_retryable_without_status() {
    let secrets = Secrets::new();
    // Port 9 (discard) on loopback: nothing listens there.
    let vendors = account(
        &secrets,
        "pingup",
        "http://127.0.0.1:9",
        "business = \"acme\"\napi_key_file = \"{secret}\"",
    );
    let answer = send(&vendors, "pingup", "+3931212321", &text("hi"), &[]).await;
    assert!(
        matches!(answer.verdict, Verdict::Retryable { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.status, None);
}

#[tokio::test]
async fn validation_errors_are_permanent_with_their_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            include_bytes!("fixtures/kaleyra_e13009.json").to_vec(),
            "application/json",
        ))
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "kaleyra",
        &server.uri(),
        "sid = \"HX1\"\nfrom = \"+12025550123\"\napi_key_file = \"{secret}\"",
    );
    let answer = send(&vendors, "kaleyra", "+12025550199", &text("hi"), &[]).await;
    let Verdict::Permanent {
        code,
        window_closed,
        ..
    } = &answer.verdict
    else {
        panic!("{answer:?}")
    };
    assert_eq!(
        (code.as_deref(), *window_closed, answer.status),
        (Some("E13009"), false, Some(400))
    );
    assert!(answer.response.unwrap().contains("to_invalid"));
}

/// A `MakeWriter` that keeps every log line for inspection.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn secrets_echoed_by_a_vendor_appear_in_no_answer_and_no_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // 99digital with showRequest on, answering FAIL and echoing the request
    // with its key; a rejection that quotes the key in its message.
    let echo = json!({
        "status": "FAIL",
        "reason": 4,
        "message": format!("apiKey {KEY} is not allowed to send from this number"),
        "originalRequest": {"apiKey": KEY, "from": "972771234567", "to": "972501234567", "body": "hi"}
    });
    for status in [200, 401] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(&echo))
            .mount(&server)
            .await;
        let secrets = Secrets::new();
        let vendors = account(
            &secrets,
            "99digital",
            &server.uri(),
            "from = \"972771234567\"\napi_key_file = \"{secret}\"",
        );
        let answer = send(&vendors, "99digital", "+972501234567", &text("hi"), &[]).await;
        assert!(
            matches!(answer.verdict, Verdict::Permanent { .. }),
            "{answer:?}"
        );
        let response = answer.response.clone().unwrap();
        assert!(
            response.contains("[redacted]") && response.contains("972501234567"),
            "{response}"
        );
        assert!(!format!("{answer:?}").contains(KEY), "{answer:?}");
    }

    // PayHero quoting its Authorization header in the error it puts in `detail`.
    let server = MockServer::start().await;
    let quoted = json!({
        "error_code": "UNAUTHORIZED",
        "error_message": format!("invalid credentials in header 'Authorization: Basic {KEY}'"),
        "status_code": 401
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(&quoted))
        .mount(&server)
        .await;
    let secrets = Secrets::new();
    let vendors = account(
        &secrets,
        "payhero",
        &server.uri(),
        "session = \"s\"\nbasic_token_file = \"{secret}\"",
    );
    let answer = send(&vendors, "payhero", "+254787877878", &text("hi"), &[]).await;
    let Verdict::Permanent { detail, .. } = &answer.verdict else {
        panic!("{answer:?}")
    };
    assert_eq!(
        detail,
        "invalid credentials in header 'Authorization: Basic [redacted]'"
    );
    assert!(!format!("{answer:?}").contains(KEY), "{answer:?}");

    let logs = logs.text();
    assert!(
        logs.contains("vendor answered"),
        "the sends were logged: {logs}"
    );
    assert!(!logs.contains(KEY), "{logs}");
}
