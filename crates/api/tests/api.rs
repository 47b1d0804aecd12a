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
const CONTACT: &str = "+254712345678";

/// A running API on one test's vhost and prefix.
struct Running {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
    // The secrets' files must outlive the start; kept for symmetry with the config.
    _secrets: [NamedTempFile; 2],
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
"#,
        amqp = env.amqp_url,
        redis = env.redis_url,
        prefix = env.prefix,
        token = token.path().display(),
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
        _secrets: [token, hook],
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
async fn status_callbacks_are_answered_at_once_and_record_no_inbound_message() {
    let api = start().await;
    let status_callback = json!({"entry": [{"changes": [{"value": {"statuses": [
        {"id": "wamid.X", "status": "delivered", "timestamp": "1694492484", "recipient_id": "254712345678"}
    ]}}]}]});
    let (status, body) = api.webhook("replyhero", &status_callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recorded"], json!([]), "{body}");
    // No message was accepted as wamid.X yet: the status waits for it.
    assert_eq!(body["statuses"][0]["outcome"], "held", "{body}");
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
