//! `VendorAccount::send` over real HTTP to a fake vendor (wiremock): the
//! exact request each vendor receives, how its answers are classified, and
//! that no secret survives into an answer (logs: `logs.rs`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Account, KEY, answering, text};
use herald_core::protocol::MAX_VENDOR_RESPONSE_BYTES;
use herald_core::{Message, TemplateHeader};
use herald_vendors::{PermanentCause, Verdict};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

/// Expects a `POST` to `to`, the only method a vendor is called with.
fn post(to: &str) -> MockBuilder {
    Mock::given(method("POST")).and(path(to))
}

/// A JSON answer read from `tests/fixtures/<name>`.
fn fixture(status: u16, name: &str) -> ResponseTemplate {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let body = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

fn sent(vendor_message_id: Option<&str>) -> Verdict {
    Verdict::Sent {
        vendor_message_id: vendor_message_id.map(str::to_owned),
    }
}

#[tokio::test]
async fn payhero_gets_its_json_and_basic_token() {
    let server = MockServer::start().await;
    post("/api/v2/whatspp/sendText")
        .and(header("authorization", format!("Basic {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"message": "My First Text", "phone_number": "254787877878", "session": "18gdPWKzoXXXX"})))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"success": true}"#))
        .expect(1)
        .mount(&server)
        .await;
    let answer = Account::new("payhero", &server.uri())
        .send("+254787877878", &text("My First Text"), &[])
        .await;
    assert_eq!(answer.verdict, sent(None));
    assert_eq!(answer.status, Some(200));
}

#[tokio::test]
async fn pingup_gets_its_json_and_bearer_key() {
    let server = MockServer::start().await;
    post("/ext/v2/acme/messages")
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
    let options = [("client", "client_id"), ("client_name", "Jon doe")];
    let answer = Account::new("pingup", &server.uri())
        .send("+3931212321", &text("Text message to send"), &options)
        .await;
    assert_eq!(answer.verdict, sent(Some("pm-1")));
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
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .eq(expected_form.iter().copied())
    };
    post("/v1/HXAP1XXXXXX17XX/messages")
        .and(header("api-key", KEY))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(form_is)
        .respond_with(fixture(202, "kaleyra_success.json"))
        .expect(1)
        .mount(&server)
        .await;
    let template = Message::Template {
        name: "british_council".into(),
        language: "en".into(),
        header: None,
        body: vec!["Raman".into()],
    };
    let answer = Account::new("kaleyra", &server.uri())
        .send("+12025550199", &template, &[])
        .await;
    assert_eq!(
        answer.verdict,
        sent(Some("cc8074ae-990d-40f5-b604-115XXXe2ab32:0"))
    );
    assert_eq!(answer.status, Some(202));
}

#[tokio::test]
async fn digital99_gets_its_key_in_the_json_body() {
    let server = MockServer::start().await;
    post("/whatsapp/v2/sendMessage")
        .and(body_json(json!({"apiKey": KEY, "from": "972771234567", "to": "972501234567", "body": "your message"})))
        .respond_with(fixture(200, "99digital_success.json"))
        .expect(1)
        .mount(&server)
        .await;
    let answer = Account::new("99digital", &server.uri())
        .send("+972501234567", &text("your message"), &[])
        .await;
    assert_eq!(answer.verdict, sent(Some("65dfd4r4dref34rdfxd34r")));
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
    post("/whatsapp/messages/send")
        .and(header("x-api-key", KEY))
        .and(body_json(with_ids(
            json!({"message": {"type": "text", "text": {"body": "testing msg"}}}),
        )))
        .respond_with(fixture(200, "replyhero_message_success.json"))
        .expect(1)
        .mount(&server)
        .await;
    post("/whatsapp/template/send")
        .and(header("x-api-key", KEY))
        .and(body_json(with_ids(json!({
            "templateName": "order_update",
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "Order"}]},
                {"type": "body", "parameters": [{"type": "text", "text": "1234"}]}
            ]
        }))))
        .respond_with(fixture(200, "replyhero_template_success.json"))
        .expect(1)
        .mount(&server)
        .await;
    let account = Account::new("replyhero", &server.uri());
    let customer = [("customer_id", "CUSTOMER_ID")];
    let answer = account
        .send("+60181234567", &text("testing msg"), &customer)
        .await;
    assert_eq!(answer.verdict, sent(Some("wamid.HBgL*****REY1RjIA")));
    let template = Message::Template {
        name: "order_update".into(),
        language: "en".into(),
        header: Some(TemplateHeader::Text {
            text: "Order".into(),
        }),
        body: vec!["1234".into()],
    };
    let answer = account.send("+60181234567", &template, &customer).await;
    assert!(matches!(answer.verdict, Verdict::Sent { .. }), "{answer:?}");
}

#[tokio::test]
async fn meta_gets_the_cloud_api_request_and_answers_a_wamid() {
    let server = MockServer::start().await;
    post("/v21.0/106540352242922/messages")
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+16505551234",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "1234"}]}]
            }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let template = Message::Template {
        name: "order_update".into(),
        language: "en".into(),
        header: None,
        body: vec!["1234".into()],
    };
    let answer = Account::new("meta", &server.uri())
        .send("+16505551234", &template, &[])
        .await;
    assert_eq!(
        answer.verdict,
        sent(Some(
            "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
        ))
    );
}

#[tokio::test]
async fn meta_throughput_errors_throttle_and_an_expired_token_never_leaks() {
    let throughput = json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException",
        "code": 130429, "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}});
    let (_server, account) = answering(
        "meta",
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "3")
            .set_body_json(throughput),
    )
    .await;
    let answer = account.send("+16505551234", &text("hi"), &[]).await;
    assert!(
        matches!(
            answer.verdict,
            Verdict::Retryable { rate_limited: true, retry_after: Some(wait), .. } if wait == Duration::from_secs(3)
        ),
        "{answer:?}"
    );

    // Meta echoes nothing secret, but a proxy in between might: the token
    // is scrubbed from the detail and the recorded response alike.
    let expired = json!({"error": {"message": format!("Error validating access token {KEY}: Session has expired"),
        "type": "OAuthException", "code": 190, "fbtrace_id": "EJplcsCHuLu"}});
    let (_server, account) =
        answering("meta", ResponseTemplate::new(401).set_body_json(expired)).await;
    let answer = account.send("+16505551234", &text("hi"), &[]).await;
    let Verdict::Permanent {
        code,
        detail,
        cause,
    } = &answer.verdict
    else {
        panic!("{answer:?}")
    };
    assert_eq!(
        (code.as_deref(), *cause),
        (Some("190"), PermanentCause::Rejected)
    );
    assert!(
        !detail.contains(KEY) && detail.contains("Session has expired"),
        "{detail}"
    );
    assert!(!answer.response.unwrap().contains(KEY));
}

#[tokio::test]
async fn server_errors_are_retryable_and_keep_status_and_response() {
    let (_server, account) = answering(
        "pingup",
        ResponseTemplate::new(503).set_body_string("x".repeat(5000)),
    )
    .await;
    let answer = account.send("+3931212321", &text("hi"), &[]).await;
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
    let (_server, account) = answering(
        "pingup",
        ResponseTemplate::new(429).insert_header("Retry-After", "7"),
    )
    .await;
    let answer = account.send("+3931212321", &text("hi"), &[]).await;
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
    let (_server, account) = answering(
        "pingup",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(5)),
    )
    .await;
    let started = std::time::Instant::now();
    let answer = account.send("+3931212321", &text("hi"), &[]).await;
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
    // Port 9 (discard) on loopback: nothing listens there.
    let answer = Account::new("pingup", "http://127.0.0.1:9")
        .send("+3931212321", &text("hi"), &[])
        .await;
    assert!(
        matches!(answer.verdict, Verdict::Retryable { .. }),
        "{answer:?}"
    );
    assert_eq!(answer.status, None);
}

#[tokio::test]
async fn validation_errors_are_permanent_with_their_code() {
    let (_server, account) = answering("kaleyra", fixture(400, "kaleyra_e13009.json")).await;
    let answer = account.send("+12025550199", &text("hi"), &[]).await;
    let Verdict::Permanent { code, cause, .. } = &answer.verdict else {
        panic!("{answer:?}")
    };
    assert_eq!(
        (code.as_deref(), *cause, answer.status),
        (Some("E13009"), PermanentCause::Rejected, Some(400))
    );
    assert!(answer.response.unwrap().contains("to_invalid"));
}
