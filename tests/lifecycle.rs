//! The message lifecycle end to end (CONTRACT §10): a worker in this process
//! sends through a fake Kaleyra, real `herald api` processes take the
//! status callbacks, on the real broker and Redis.

use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_client::JobBuilder;
use herald_core::EventStatus;
use herald_core::protocol::header;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Running, TestConfig};
use crate::worker::{
    FAST_RETRY, Harness, bind_events, free_local_addr, kaleyra_ok, open_window, text_job,
};

const TOKEN: &str = "lifecycle-token-5d1e";
const HOOK_SECRET: &str = "lifecycle-hook-0b7c";
/// The vendor message id of `kaleyra_ok()`.
const VENDOR_ID: &str = "cc8074ae-990d-40f5-b604-115XXXe2ab32:0";
const WAIT: Duration = Duration::from_secs(15);

/// A real `herald api` process on the harness's vhost and prefix.
struct ApiProcess {
    base: String,
    http: reqwest::Client,
    config: TestConfig,
    _process: Running,
}

impl ApiProcess {
    async fn start(h: &Harness) -> ApiProcess {
        let config = TestConfig::new(&h.env, "");
        let token = config.file("token", TOKEN);
        let hook = config.file("hook", HOOK_SECRET);
        let listen = free_local_addr();
        let toml = format!(
            "[api]\nlisten = \"{listen}\"\ntoken_file = {token:?}\n\
             [providers.kaleyra.default]\nbase_url = {:?}\nsid = \"HXAP1XXXXXX17XX\"\n\
             webhook_secret_file = {hook:?}\nstop_keywords = [\"STOP\"]\n",
            h.vendor.uri(),
        );
        std::fs::write(&config.path, toml).unwrap();
        let process = Running::spawn(&mut config.command(&["api"]));
        let api = ApiProcess {
            base: format!("http://{listen}"),
            http: reqwest::Client::new(),
            config,
            _process: process,
        };
        let deadline = Instant::now() + WAIT;
        while api.http.get(api.url("/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "herald api did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn webhook(&self, body: &Value) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url("/webhooks/kaleyra/default"))
            .header("X-Herald-Webhook-Secret", HOOK_SECRET)
            .json(body);
        ApiProcess::answer(request).await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        ApiProcess::answer(self.http.post(self.url(path)).bearer_auth(TOKEN).json(body)).await
    }

    async fn message(&self, id: &str) -> (StatusCode, Value) {
        let path = format!("/v1/messages/{id}");
        ApiProcess::answer(self.http.get(self.url(&path)).bearer_auth(TOKEN)).await
    }

    /// Polls `GET /v1/messages/{id}` until its state is `state`.
    async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.message(id).await;
            if status == StatusCode::OK && body["state"] == state {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Kaleyra's status callback: Meta's `statuses[]` relayed at the top level.
fn kaleyra_status(status: &str) -> Value {
    json!({"statuses": [{"id": VENDOR_ID, "recipient_id": "254712345678",
                         "status": status, "timestamp": chrono::Utc::now().timestamp().to_string()}]})
}

/// Meta's failed status, as a Cloud-API webhook carries it.
fn meta_failure(code: u32, title: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "statuses": [{"id": VENDOR_ID, "status": "failed", "recipient_id": "254712345678",
                      "timestamp": chrono::Utc::now().timestamp().to_string(),
                      "errors": [{"code": code, "title": title}]}]
    }}]}]})
}

/// A worker whose vendor accepts everything, the test contact's window
/// open, and one API process.
async fn started() -> (Harness, ApiProcess) {
    let h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;
    let api = ApiProcess::start(&h).await;
    (h, api)
}

/// A job sent by the worker, its acceptance recorded.
async fn sent(h: &mut Harness, job: &herald_core::Job) {
    h.publish(job).await;
    let (event, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert_eq!(event.job_id, job.id);
}

#[tokio::test]
async fn a_sent_message_is_followed_to_read_with_one_event_per_step() {
    let (mut h, api) = started().await;
    sent(&mut h, &text_job("order-1")).await;

    let accepted = api.wait_for_state("order-1", "accepted").await;
    assert_eq!(accepted["vendor_message_id"], VENDOR_ID);
    assert_eq!(accepted["attempts"], 1);

    let (status, body) = api.webhook(&kaleyra_status("delivered")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["statuses"][0]["outcome"], "advanced");
    let (event, _) = h.event_with(EventStatus::Delivered, WAIT).await;
    assert_eq!(
        (event.job_id.as_str(), event.routing_key().as_str()),
        ("order-1", "delivered.kaleyra")
    );
    assert_eq!(event.vendor_message_id.as_deref(), Some(VENDOR_ID));

    let (_, again) = api.webhook(&kaleyra_status("delivered")).await;
    assert_eq!(again["statuses"][0]["outcome"], "repeated");
    api.webhook(&kaleyra_status("read")).await;
    let (event, before) = h.event_with(EventStatus::Read, WAIT).await;
    assert!(before.is_empty(), "no event for the repeat: {before:?}");
    assert_eq!(event.job_id, "order-1");
    let (_, late) = api.webhook(&kaleyra_status("sent")).await;
    assert_eq!(late["statuses"][0]["outcome"], "recorded");

    let story = api.wait_for_state("order-1", "read").await;
    let states: Vec<&str> = story["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["accepted", "delivered", "read", "sent"]);

    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "herald_lifecycle_total{provider=\"kaleyra\",state=\"delivered\"} 1",
        "herald_lifecycle_total{provider=\"kaleyra\",state=\"read\"} 1",
        "herald_lifecycle_total{provider=\"kaleyra\",state=\"failed\"} 0",
        "herald_time_to_delivered_seconds_count{provider=\"kaleyra\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    let out = api.config.run(&["status", "order-1", "--json"]);
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, story, "the CLI tells the same story");
    let unknown = api.config.run(&["status", "nobody", "--json"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert_eq!(api.message("nobody").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_status_before_the_acceptance_is_held_then_applied() {
    let (mut h, api) = started().await;
    let early =
        json!({"provider": "kaleyra", "vendor_message_id": VENDOR_ID, "status": "delivered"});
    let (status, body) = api.post("/v1/statuses", &early).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "held");

    sent(&mut h, &text_job("order-2")).await;
    api.wait_for_state("order-2", "delivered").await;
    let (event, _) = h.event_with(EventStatus::Delivered, WAIT).await;
    assert_eq!(event.job_id, "order-2");
}

#[tokio::test]
async fn malformed_statuses_are_refused_naming_the_field_and_change_nothing() {
    let (mut h, api) = started().await;
    sent(&mut h, &text_job("order-3")).await;
    api.wait_for_state("order-3", "accepted").await;

    let mut no_id = kaleyra_status("read");
    no_id["statuses"][0].as_object_mut().unwrap().remove("id");
    no_id["statuses"]
        .as_array_mut()
        .unwrap()
        .insert(0, kaleyra_status("delivered")["statuses"][0].clone());
    let (status, body) = api.webhook(&no_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["problems"][0]["field"], "statuses[1].id", "{body}");

    for (bad, field) in [
        (
            json!({"provider": "kaleyra", "vendor_message_id": VENDOR_ID, "status": "gone"}),
            "status",
        ),
        (
            json!({"provider": "nope", "vendor_message_id": VENDOR_ID, "status": "read"}),
            "provider",
        ),
        (
            json!({"provider": "kaleyra", "vendor_message_id": VENDOR_ID, "status": "read", "at": "soon"}),
            "at",
        ),
    ] {
        let (status, body) = api.post("/v1/statuses", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["problems"][0]["field"], field, "{body}");
    }
    let (_, story) = api.message("order-3").await;
    assert_eq!(story["state"], "accepted", "nothing changed: {story}");
    assert_eq!(story["timeline"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_late_window_closed_failure_sends_the_fallback_once_across_two_api_processes() {
    let (mut h, a) = started().await;
    let b = ApiProcess::start(&h).await;
    // Its own channel: the harness's already consumes as `events`.
    let connection = h.env.amqp().await;
    let mut raw_events = bind_events(&connection.create_channel().await.unwrap()).await;
    let job = JobBuilder::text(
        "order-4",
        "kaleyra",
        "+254712345678",
        "Your order has shipped",
    )
    .fallback_template("order_update", "en", vec!["4".into()])
    .build()
    .unwrap();
    sent(&mut h, &job).await;
    a.wait_for_state("order-4", "accepted").await;
    // The worker stops, so the fallback job stays in its queue to be counted.
    h.stop().await;

    let failure = meta_failure(131047, "Re-engagement message");
    let (x, y, z, w) = tokio::join!(
        a.webhook(&failure),
        b.webhook(&failure),
        a.webhook(&failure),
        b.webhook(&failure)
    );
    for (status, body) in [x, y, z, w] {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(h.depth("herald.send.kaleyra").await, 1, "one fallback job");
    let fallback = h
        .channel
        .basic_get(
            "herald.send.kaleyra".into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the fallback job");
    let body: Value = serde_json::from_slice(&fallback.delivery.data).unwrap();
    assert_eq!(body["id"], "order-4:fallback");
    assert_eq!(body["message"]["name"], "order_update");
    assert!(
        fallback
            .delivery
            .properties
            .headers()
            .as_ref()
            .is_none_or(|h| !h.inner().contains_key(header::ATTEMPT)),
        "a new job, not a retry"
    );
    let story = a.wait_for_state("order-4", "failed").await;
    let detail = story["timeline"][1]["detail"].as_str().unwrap();
    assert!(detail.starts_with("131047"), "{detail}");

    let inbound: Option<String> = h
        .env
        .redis()
        .await
        .get(format!(
            "{}inbound:kaleyra:default:254712345678",
            h.env.prefix
        ))
        .await
        .unwrap();
    assert_eq!(inbound, None, "the stale last-inbound time is cleared");

    // Events before it (the acceptance's `sent`) are skipped.
    let deadline = Instant::now() + WAIT;
    let event: Value = loop {
        let delivery = tokio::time::timeout_at(deadline.into(), raw_events.next())
            .await
            .expect("a failed event")
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        if delivery.routing_key.as_str() == "failed.kaleyra" {
            break serde_json::from_slice(&delivery.data).unwrap();
        }
    };
    assert_eq!(
        (&event["state"], &event["error_code"], &event["job_id"]),
        (&json!("failed"), &json!("131047"), &json!("order-4"))
    );
}

#[tokio::test]
async fn an_opt_out_failure_suppresses_the_contact() {
    let (mut h, api) = started().await;
    sent(&mut h, &text_job("order-5")).await;
    api.wait_for_state("order-5", "accepted").await;

    let (status, body) = api
        .webhook(&meta_failure(
            131050,
            "User opted out of marketing messages",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.publish(&text_job("order-6")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.job_id, "order-6");
    assert_eq!(dead.reason, Some(herald_core::DeadReason::Suppressed));
    assert_eq!(
        h.vendor_calls().await,
        1,
        "no vendor call for the suppressed contact"
    );
}

#[tokio::test]
async fn a_suppressed_contact_is_refused_until_released_by_api_or_cli() {
    let (mut h, api) = started().await;
    let who = json!({"provider": "kaleyra", "contact": "+254712345678"});
    let (status, body) = api.post("/v1/suppressions", &who).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            "/v1/suppressions",
            &json!({"provider": "kaleyra", "contact": "0712"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["problems"][0]["field"], "contact");

    let listed = api
        .config
        .run(&["suppress", "list", "--provider", "kaleyra", "--json"]);
    let line: Value = serde_json::from_slice(&listed.stdout).expect("one JSON line");
    assert_eq!(line["contact"], "+254712345678");

    h.publish(&text_job("blocked-1")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(herald_core::DeadReason::Suppressed));
    assert_eq!(h.vendor_calls().await, 0);
    let story = api.wait_for_state("blocked-1", "failed").await;
    assert_eq!(story["dead_reason"], "suppressed", "{story}");
    assert_eq!(story["accepted_at"], Value::Null);

    let release = |api: &ApiProcess| {
        api.http
            .delete(api.url("/v1/suppressions/kaleyra/default/254712345678"))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(release(&api).await.unwrap().status(), StatusCode::OK);
    assert_eq!(release(&api).await.unwrap().status(), StatusCode::NOT_FOUND);
    sent(&mut h, &text_job("allowed-1")).await;

    let cli = |verb: &str| {
        api.config.run(&[
            "suppress",
            verb,
            "--provider",
            "kaleyra",
            "--contact",
            "+254712345678",
        ])
    };
    assert!(cli("add").status.success());
    let (_, body) = ApiProcess::answer(
        api.http
            .get(api.url("/v1/suppressions/kaleyra/default"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(body["suppressed"][0]["contact"], "+254712345678", "{body}");
    assert!(cli("remove").status.success());
    assert_eq!(
        cli("remove").status.code(),
        Some(3),
        "not suppressed any more"
    );
}

#[tokio::test]
async fn a_customer_who_sends_a_stop_keyword_is_suppressed() {
    let (mut h, api) = started().await;
    let inbound = |id: &str, body: &str| {
        json!({"from": "254712345678", "created_at": chrono::Utc::now().timestamp().to_string(),
               "wanumber": "12025550123", "id": id, "type": "text", "body": body})
    };
    let suppressed = || async {
        let request = api
            .http
            .get(api.url("/v1/suppressions/kaleyra/default"))
            .bearer_auth(TOKEN);
        ApiProcess::answer(request).await.1["suppressed"].clone()
    };
    let (status, body) = api.webhook(&inbound("in-1", "stop it please")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(suppressed().await, json!([]), "not a keyword alone");

    let (status, body) = api.webhook(&inbound("in-2", " Stop ")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(suppressed().await[0]["contact"], "+254712345678");
    h.publish(&text_job("after-stop")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(herald_core::DeadReason::Suppressed));
}
