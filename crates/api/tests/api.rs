//! `herald api` against the real broker and Redis: each test gets a fresh
//! vhost and Redis prefix (herald-testkit) and an API on 127.0.0.1:0.

use std::io::Write;
use std::net::SocketAddr;

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use herald_api::{Api, serve};
use herald_core::Config;
use herald_core::protocol::rfc3339;
use herald_testkit::TestEnv;
use lapin::options::BasicGetOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::NamedTempFile;

const TOKEN: &str = "test-token-7f3a";
const HOOK_SECRET: &str = "hook-secret-91c2";
const APP_SECRET: &str = "meta-app-secret-5d0e";
const VERIFY_TOKEN: &str = "meta-verify-token-c3a8";
const CONTACT: &str = "+254712345678";

/// A running API on one test's vhost and prefix.
struct Running {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
    // The secrets' files must outlive the start; kept for symmetry with the config.
    _secrets: [NamedTempFile; 4],
}

fn secret_file(value: &str) -> NamedTempFile {
    let mut file = NamedTempFile::new().expect("temp file");
    writeln!(file, "{value}").expect("write secret");
    file
}

async fn start() -> Running {
    let env = TestEnv::new().await;
    let token = secret_file(TOKEN);
    let hook = secret_file(HOOK_SECRET);
    let hook_path = hook.path().display().to_string();
    let app_secret = secret_file(APP_SECRET);
    let verify_token = secret_file(VERIFY_TOKEN);
    let toml = format!(
        r#"
[amqp]
url = "{amqp}"
[redis]
url = "{redis}"
prefix = "{prefix}"
[api]
token_file = "{token}"
[providers.kaleyra.default]
base_url = "https://api.kaleyra.io"
webhook_secret_file = "{hook_path}"
[providers.99digital.default]
base_url = "https://api.99digital.co.il"
webhook_secret_file = "{hook_path}"
[providers.replyhero.default]
base_url = "https://whatsapp.replyherotech.com"
webhook_secret_file = "{hook_path}"
[providers.payhero.default]
base_url = "https://backend.payhero.co.ke"
[providers.meta.default]
base_url = "https://graph.facebook.com"
app_secret_file = "{app_secret}"
verify_token_file = "{verify_token}"
"#,
        amqp = env.amqp_url,
        redis = env.redis_url,
        prefix = env.prefix,
        token = token.path().display(),
        app_secret = app_secret.path().display(),
        verify_token = verify_token.path().display(),
    );
    let config = Config::from_toml_with_env(&toml, &[]).expect("valid configuration");
    let api = Api::start(config).await.expect("api starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(serve(api, listener, std::future::pending()));
    Running {
        env,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _secrets: [token, hook, app_secret, verify_token],
    }
}

impl Running {
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let request = self.http.post(self.url(path)).bearer_auth(TOKEN).json(body);
        answer(request).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.http.get(self.url(path)).bearer_auth(TOKEN)).await
    }

    /// Records an inbound message from [`CONTACT`] to kaleyra/default at `at`.
    async fn inbound(&self, at: DateTime<Utc>) -> (StatusCode, Value) {
        let body = json!({"provider": "kaleyra", "contact": CONTACT, "at": rfc3339(at)});
        self.post("/v1/inbound", &body).await
    }

    async fn webhook(&self, provider: &str, body: &Value) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(&format!("/webhooks/{provider}/default")))
            .header("X-Herald-Webhook-Secret", HOOK_SECRET)
            .json(body);
        answer(request).await
    }

    /// Posts `body` to meta/default as Meta would, with `signature` as its
    /// `X-Hub-Signature-256` when given.
    async fn meta_webhook(&self, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/webhooks/meta/default"))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        answer(request).await
    }

    async fn window(&self, provider: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/window/{provider}/default/{CONTACT}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Takes every message waiting in a queue of this test's vhost.
    async fn drain(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let connection = self.env.amqp().await;
        let channel = connection.create_channel().await.unwrap();
        let mut got = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            got.push(message);
        }
        got
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn job(id: &str) -> Value {
    json!({"id": id, "provider": "kaleyra", "to": CONTACT,
           "message": {"type": "text", "body": "Your order has shipped"}})
}

/// A vendor timestamp: whole seconds, some time ago.
fn ago(delta: TimeDelta) -> DateTime<Utc> {
    (Utc::now() - delta)
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap()
}

#[tokio::test]
async fn a_valid_job_is_accepted_after_its_confirm_and_queued_under_its_id() {
    let api = start().await;
    let (status, body) = api.post("/v1/messages", &job("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"ids": ["order-1"]}));

    let (status, body) = api
        .post(
            "/v1/messages",
            &json!({"jobs": [job("order-2"), job("order-3")]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"ids": ["order-2", "order-3"]}));

    let queued = api.drain("herald.send.kaleyra").await;
    let ids: Vec<String> = queued
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["order-1", "order-2", "order-3"]);
    let first: Value = serde_json::from_slice(&queued[0].delivery.data).unwrap();
    assert_eq!(first["id"], "order-1");
    assert_eq!(first["message"]["body"], "Your order has shipped");
    assert_eq!(queued[0].delivery.properties.delivery_mode(), &Some(2));
}

#[tokio::test]
async fn a_batch_with_one_bad_job_is_refused_whole_naming_index_and_field() {
    let api = start().await;
    let mut bad = job("order-2");
    bad["to"] = json!("0712345678");
    let (status, body) = api
        .post(
            "/v1/messages",
            &json!({"jobs": [job("order-1"), bad, job("order-3")]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was published"),
        "{body}"
    );
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!(problems[0]["job"], 1);
    assert_eq!(problems[0]["field"], "to");

    assert!(
        api.drain("herald.send.kaleyra").await.is_empty(),
        "nothing published"
    );
    assert!(api.drain("herald.dead").await.is_empty());
}

#[tokio::test]
async fn jobs_the_provider_cannot_send_or_already_expired_are_refused_by_field() {
    let api = start().await;
    let mut template = job("tpl-1");
    template["provider"] = json!("payhero");
    template["message"] = json!({"type": "template", "name": "order_update", "language": "en"});
    let mut expired = job("late-1");
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    let (status, body) = api
        .post("/v1/messages", &json!({"jobs": [template, expired]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let named: Vec<(i64, &str)> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["job"].as_i64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(named, [(0, "message.type"), (1, "expires_at")], "{body}");
    assert!(api.drain("herald.send.payhero").await.is_empty());
    assert!(api.drain("herald.send.kaleyra").await.is_empty());
}

#[tokio::test]
async fn a_webhook_sent_as_curl_d_sends_it_is_read_as_json() {
    let api = start().await;
    let request = api
        .http
        .post(api.url("/webhooks/99digital/default"))
        .header("X-Herald-Webhook-Secret", HOOK_SECRET)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"hook": "new", "unique": "92E0", "from": "972507654321", "timestamp": "1600517209"}"#);
    let (status, body) = answer(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recorded"][0]["contact"], "+972507654321", "{body}");
}

#[tokio::test]
async fn v1_needs_the_bearer_token_and_health_does_not() {
    let api = start().await;
    for (method, path) in [
        (reqwest::Method::POST, "/v1/messages"),
        (reqwest::Method::POST, "/v1/inbound"),
        (
            reqwest::Method::GET,
            "/v1/window/kaleyra/default/254712345678",
        ),
    ] {
        let request = || {
            api.http
                .request(method.clone(), api.url(path))
                .json(&job("x"))
        };
        let (status, body) = answer(request()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} without a token: {body}"
        );
        assert!(body["error"].as_str().unwrap().contains("bearer token"));
        let (status, _) = answer(request().bearer_auth("not-the-token")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
    assert!(api.drain("herald.send.kaleyra").await.is_empty());
    let health = api.http.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = api.http.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[tokio::test]
async fn inbound_moves_the_window_forward_only() {
    let api = start().await;
    let later = ago(TimeDelta::minutes(10));
    let (status, body) = api.inbound(later).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["last_inbound"], rfc3339(later));
    assert_eq!(body["open"], true);

    let (status, body) = api.inbound(ago(TimeDelta::hours(3))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["last_inbound"],
        rfc3339(later),
        "an older message changes nothing"
    );
    assert_eq!(api.window("kaleyra").await["last_inbound"], rfc3339(later));

    let latest = ago(TimeDelta::minutes(1));
    let (_, body) = api.inbound(latest).await;
    assert_eq!(body["last_inbound"], rfc3339(latest));

    let (status, body) = api
        .post(
            "/v1/inbound",
            &json!({"provider": "kaleyra", "contact": "0712"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["problems"][0]["field"], "contact");
}

#[tokio::test]
async fn the_window_endpoint_answers_open_and_closed() {
    let api = start().await;
    let closed = api.window("kaleyra").await;
    assert_eq!(
        closed,
        json!({"provider": "kaleyra", "account": "default", "contact": CONTACT,
                              "open": false, "last_inbound": null, "closes_at": null})
    );

    let long_ago = ago(TimeDelta::hours(25));
    api.inbound(long_ago).await;
    let expired = api.window("kaleyra").await;
    assert_eq!(expired["open"], false);

    let recent = ago(TimeDelta::hours(1));
    api.inbound(recent).await;
    let open = api.window("kaleyra").await;
    assert_eq!(open["open"], true);
    assert_eq!(open["last_inbound"], rfc3339(recent));
    // 24 h less the default 2 min margin.
    let closes = recent + Duration::hours(24) - Duration::minutes(2);
    assert_eq!(open["closes_at"], rfc3339(closes));
}

/// Each vendor's callback, for one message `id` sent at `at`.
fn callback(provider: &str, id: &str, at: DateTime<Utc>) -> Value {
    let digits = CONTACT.trim_start_matches('+');
    let secs = at.timestamp().to_string();
    match provider {
        "kaleyra" => json!({"body": "Hi", "from": digits, "name": "John", "type": "text",
                            "created_at": secs, "wanumber": "918000000000", "id": id}),
        "99digital" => json!({"status": "OK", "hook": "new", "unique": id, "from": digits,
                              "to": "972501234567", "type": "text", "body": "hello",
                              "timestamp": secs, "conversationTimeLeft": "600"}),
        _ => json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                   "field": "messages", "value": {"messaging_product": "whatsapp",
                   "messages": [{"from": digits, "id": id, "timestamp": secs, "type": "text",
                                 "text": {"body": "hi"}}]}}]}]}),
    }
}

#[tokio::test]
async fn each_webhook_shape_records_at_the_vendor_timestamp_once() {
    let api = start().await;
    for provider in ["kaleyra", "99digital", "replyhero"] {
        let sent = ago(TimeDelta::hours(2));
        let id = format!("{provider}-msg-1");
        let (status, body) = api.webhook(provider, &callback(provider, &id, sent)).await;
        assert_eq!(status, StatusCode::OK, "{provider}: {body}");
        assert_eq!(body["recorded"][0]["id"], id.as_str(), "{provider}: {body}");
        assert_eq!(
            body["recorded"][0]["at"],
            rfc3339(sent),
            "{provider}: vendor time, not receipt time"
        );
        assert_eq!(
            api.window(provider).await["last_inbound"],
            rfc3339(sent),
            "{provider}"
        );

        // The same message delivered again, even claiming a later time, is
        // recognised by its id and changes nothing.
        let redelivered = callback(provider, &id, ago(TimeDelta::minutes(5)));
        let (status, body) = api.webhook(provider, &redelivered).await;
        assert_eq!(status, StatusCode::OK, "{provider}: {body}");
        assert_eq!(body["recorded"], json!([]), "{provider}: {body}");
        assert_eq!(body["duplicates"], json!([id]), "{provider}: {body}");
        assert_eq!(
            api.window(provider).await["last_inbound"],
            rfc3339(sent),
            "{provider}"
        );
    }
}

#[tokio::test]
async fn status_callbacks_are_answered_at_once_and_record_nothing() {
    let api = start().await;
    let status_callback = json!({"entry": [{"changes": [{"value": {"statuses": [
        {"id": "wamid.X", "status": "delivered", "timestamp": "1694492484", "recipient_id": "254712345678"}
    ]}}]}]});
    let (status, body) = api.webhook("replyhero", &status_callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["note"].as_str().unwrap().contains("nothing recorded"),
        "{body}"
    );
    let (status, _) = api
        .webhook(
            "99digital",
            &json!({"status": "OK", "hook": "ack", "unique": "U1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.window("replyhero").await["last_inbound"], Value::Null);
    assert_eq!(api.window("99digital").await["last_inbound"], Value::Null);
}

#[tokio::test]
async fn webhooks_need_their_accounts_secret() {
    let api = start().await;
    let body = callback("kaleyra", "k-1", ago(TimeDelta::hours(1)));
    let url = api.url("/webhooks/kaleyra/default");

    let (status, answer_body) = answer(api.http.post(&url).json(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no secret: {answer_body}");
    let (status, _) = answer(
        api.http
            .post(&url)
            .header("X-Herald-Webhook-Secret", "guess")
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong secret");
    let (status, _) = answer(api.http.post(format!("{url}?secret=guess")).json(&body)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "wrong secret in the query"
    );
    assert_eq!(
        api.window("kaleyra").await["last_inbound"],
        Value::Null,
        "nothing recorded"
    );
    assert!(!answer_body.to_string().contains(HOOK_SECRET));

    let (status, _) = answer(
        api.http
            .post(format!("{url}?secret={HOOK_SECRET}"))
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the secret in the query");

    // payhero/default configures no webhook secret: it refuses webhooks.
    let (status, refused) = answer(
        api.http
            .post(api.url("/webhooks/payhero/default"))
            .header("X-Herald-Webhook-Secret", HOOK_SECRET)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("providers.payhero.default.webhook_secret_env")
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_json() {
    let api = start().await;
    let huge = vec![b' '; herald_api::MAX_BODY_BYTES + 1];
    let (status, body) = answer(
        api.http
            .post(api.url("/v1/messages"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
}

#[tokio::test]
async fn a_broker_that_cannot_take_the_jobs_gets_503_never_202() {
    let api = start().await;
    // Deleting the vhost closes the API's connection and refuses reconnects.
    let mut url = api
        .env
        .services
        .rabbitmq_api
        .join(&format!("/api/vhosts/{}", api.env.vhost))
        .unwrap();
    let (user, pass) = (url.username().to_owned(), url.password().map(str::to_owned));
    url.set_username("").unwrap();
    url.set_password(None).unwrap();
    let deleted = reqwest::Client::new()
        .delete(url)
        .basic_auth(user, pass)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());

    let (status, body) = api.post("/v1/messages", &job("order-1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("broker"), "{body}");
}

/// `sha256=` and the HMAC-SHA256 of `body` with `secret`, as Meta signs.
fn meta_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn meta_webhooks_are_let_in_only_with_a_signature_of_the_exact_body() {
    let api = start().await;
    let sent = ago(TimeDelta::hours(1));
    // Meta's payload, compact as Meta sends it: the signature covers these bytes.
    let body = callback(
        "meta",
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        sent,
    )
    .to_string()
    .into_bytes();
    let valid = meta_signature(APP_SECRET, &body);

    let (status, refused) = api.meta_webhook(&body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "missing: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{refused}"
    );
    let wrong = meta_signature("not-the-app-secret", &body);
    let (status, _) = api.meta_webhook(&body, Some(&wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong secret");
    let mut altered = body.clone();
    let at = altered.iter().position(|b| *b == b'h').unwrap();
    altered[at] = b'H';
    let (status, _) = api.meta_webhook(&altered, Some(&valid)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "body altered after signing"
    );
    // Meta's accounts do not take the shared secret instead.
    let (status, _) = answer(
        api.http
            .post(api.url("/webhooks/meta/default"))
            .header("X-Herald-Webhook-Secret", APP_SECRET)
            .body(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "shared secret");
    assert_eq!(
        api.window("meta").await["last_inbound"],
        Value::Null,
        "nothing recorded while refused"
    );
    assert!(!refused.to_string().contains(APP_SECRET));

    let (status, accepted) = api.meta_webhook(&body, Some(&valid)).await;
    assert_eq!(status, StatusCode::OK, "valid: {accepted}");
    assert_eq!(api.window("meta").await["last_inbound"], rfc3339(sent));
}

#[tokio::test]
async fn meta_status_callbacks_are_accepted_and_record_nothing() {
    let api = start().await;
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
            {"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA", "status": "delivered",
             "timestamp": "1750263773", "recipient_id": "254712345678"}
        ]}}]}]})
    .to_string()
    .into_bytes();
    let (status, body) = api
        .meta_webhook(&statuses, Some(&meta_signature(APP_SECRET, &statuses)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recorded"], json!([]), "{body}");
    assert_eq!(api.window("meta").await["last_inbound"], Value::Null);
}

#[tokio::test]
async fn meta_subscription_handshake_answers_the_challenge_to_the_verify_token() {
    let api = start().await;
    let handshake = |token: &str, mode: &str| {
        api.http.get(api.url(&format!(
            "/webhooks/meta/default?hub.mode={mode}&hub.challenge=1158201444&hub.verify_token={token}"
        )))
    };
    let response = handshake(VERIFY_TOKEN, "subscribe").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "1158201444");

    let (status, body) = answer(handshake("guess", "subscribe")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains(VERIFY_TOKEN));
    let (status, body) = answer(handshake(VERIFY_TOKEN, "unsubscribe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["problems"][0]["field"], "hub.mode");

    let (status, _) = answer(api.http.get(
        api.url("/webhooks/meta/other?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x"),
    ))
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an account that is not configured"
    );
    let (status, _) = answer(api.http.get(
        api.url("/webhooks/kaleyra/default?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x"),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only meta has a handshake");
}
