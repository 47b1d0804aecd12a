//! `herald worker` end to end: the real broker and Redis, a vendor faked at
//! the HTTP boundary with wiremock (Kaleyra's wire format).

use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_client::{JobBuilder, Outgoing, Publisher, Topology, header_str, header_u32};

use crate::support::{Broker, broker};
use herald_core::protocol::{DEAD_QUEUE, EVENTS_EXCHANGE, classify_dead_letter, header};
use herald_core::{Config, DeadReason, Event, EventStatus, Job};
use herald_testkit::TestEnv;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const KALEYRA_SID: &str = "HXAP1XXXXXX17XX";
const KALEYRA_PATH: &str = "/v1/HXAP1XXXXXX17XX/messages";

/// Kaleyra's documented success body.
pub fn kaleyra_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "id": "cc8074ae-990d-40f5-b604-11XXX9e2ab32",
        "type": "text",
        "body": "Hi, your order has been shipped",
        "createdDateTime": "2020-01-29 06:22:21+00:00",
        "totalCount": 1,
        "data": [{"message_id": "cc8074ae-990d-40f5-b604-115XXXe2ab32:0", "recipient": "1202XXXXXXX"}],
        "error": {}
    }))
}

/// The provider table for a wiremock Kaleyra, with its key in a file.
pub fn kaleyra_account(base_url: &str, key_file: &std::path::Path, extra: &str) -> String {
    format!(
        "[providers.kaleyra.default]\nbase_url = {base_url:?}\nsid = {KALEYRA_SID:?}\nfrom = \"+12025550123\"\n\
         api_key_file = {:?}\ntimeout = \"2s\"\n{extra}\n",
        key_file.display().to_string()
    )
}

/// A worker running in this process against one test's vhost and prefix.
pub struct Harness {
    pub env: TestEnv,
    pub vendor: MockServer,
    _connection: Connection,
    pub channel: Channel,
    pub publisher: Publisher,
    pub config: Config,
    /// Where the worker serves /healthz, /readyz and /metrics.
    pub http_addr: std::net::SocketAddr,
    events: lapin::Consumer,
    shutdown: CancellationToken,
    worker: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _files: tempfile::TempDir,
}

/// Fast retry settings for tests: 1 s delay tiers.
pub const FAST_RETRY: &str = "[retry]\nimmediate = 1\ndelays = [\"1s\"]\nmax_attempts = 3\n";

impl Harness {
    /// Starts a worker with `sections` (TOML) added to the base configuration
    /// and `account_extra` added to the Kaleyra account table.
    pub async fn start(sections: &str, account_extra: &str) -> Harness {
        Harness::start_with_redis(sections, account_extra, None).await
    }

    /// [`Harness::start`] with the worker pointed at another Redis.
    pub async fn start_with_redis(
        sections: &str,
        account_extra: &str,
        redis_url: Option<&str>,
    ) -> Harness {
        let env = TestEnv::new().await;
        let redis_url = redis_url.unwrap_or(&env.redis_url).to_owned();
        let http_addr = free_local_addr();
        let vendor = MockServer::start().await;
        let files = tempfile::tempdir().unwrap();
        let key_file = files.path().join("kaleyra.key");
        std::fs::write(&key_file, "test-kaleyra-key-0123456789").unwrap();
        let text = format!(
            "[amqp]\nurl = {:?}\nprefetch = 16\n[redis]\nurl = {:?}\nprefix = {:?}\n[http]\nlisten = \"{http_addr}\"\n\
             [worker]\nshutdown_grace = \"5s\"\n{sections}\n{}",
            env.amqp_url,
            redis_url,
            env.prefix,
            kaleyra_account(&vendor.uri(), &key_file, account_extra),
        );
        let config = Config::from_toml_with_env(&text, &[]).expect("test config");
        let Broker {
            connection,
            channel,
            publisher,
        } = broker(&env, &Topology::from_config(&config)).await;
        let events = bind_events(&channel).await;
        let mut harness = Harness {
            env,
            vendor,
            _connection: connection,
            channel,
            publisher,
            config,
            http_addr,
            events,
            shutdown: CancellationToken::new(),
            worker: None,
            _files: files,
        };
        harness.spawn_worker();
        harness
    }

    fn spawn_worker(&mut self) {
        self.shutdown = CancellationToken::new();
        let (config, token) = (self.config.clone(), self.shutdown.clone());
        self.worker = Some(tokio::spawn(herald_worker::run(config, token)));
    }

    /// Stops the worker gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            worker.await.unwrap().unwrap();
        }
    }

    /// Every send to the Kaleyra path gets `answer`.
    pub async fn vendor_answers(&self, answer: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(KALEYRA_PATH))
            .respond_with(answer)
            .mount(&self.vendor)
            .await;
    }

    pub async fn publish(&self, job: &Job) {
        self.publisher.publish_job(job).await.unwrap();
    }

    /// Publishes raw bytes as a producer would, with routing key `provider`.
    pub async fn publish_raw(&self, provider: &str, body: &[u8]) {
        let message = Outgoing::json("herald.send", provider, body).with_message_id("raw");
        self.publisher.publish(message).await.unwrap();
    }

    /// The next outcome event, or a panic after `within`.
    pub async fn next_event(&mut self, within: Duration) -> Event {
        let delivery = tokio::time::timeout(within, self.events.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        serde_json::from_slice(&delivery.data).expect("event JSON")
    }

    /// Events until one has `status`; the ones before it are returned too.
    pub async fn event_with(
        &mut self,
        status: EventStatus,
        within: Duration,
    ) -> (Event, Vec<Event>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let event = self
                .next_event(deadline.saturating_duration_since(Instant::now()))
                .await;
            if event.status == status {
                return (event, before);
            }
            before.push(event);
        }
    }

    pub async fn vendor_calls(&self) -> usize {
        self.vendor
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }

    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let mut redis = self.env.redis().await;
        redis
            .get(format!("{}{key}", self.env.prefix))
            .await
            .unwrap()
    }

    pub async fn depth(&self, queue: &str) -> u32 {
        crate::support::queue_depth(&self.channel, queue).await
    }

    /// Takes the next dead letter off `herald.dead`.
    pub async fn dead_letter(&self, within: Duration) -> lapin::message::BasicGetMessage {
        let deadline = Instant::now() + within;
        loop {
            if let Some(message) = self
                .channel
                .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no dead letter within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A loopback address with a port free right now.
pub fn free_local_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A private queue receiving every event, so tests can read outcomes.
pub async fn bind_events(channel: &Channel) -> lapin::Consumer {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .basic_consume(
            queue.name().clone(),
            "events".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

pub fn text_job(id: &str) -> Job {
    JobBuilder::text(id, "kaleyra", "+254712345678", "Your order has shipped")
        .build()
        .unwrap()
}

/// An open window for the test recipient, so session messages may go.
pub async fn open_window(harness: &Harness) {
    let mut redis = harness.env.redis().await;
    let key = format!("{}inbound:kaleyra:default:254712345678", harness.env.prefix);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let _: () = redis.set_ex(key, now_ms, 3600).await.unwrap();
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_job_is_sent_once_recorded_and_acked() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;

    h.publish(&text_job("order-1-shipped")).await;
    let (event, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert_eq!(event.job_id, "order-1-shipped");
    assert_eq!(event.attempt, 1);
    assert_eq!(
        event.vendor_message_id.as_deref(),
        Some("cc8074ae-990d-40f5-b604-115XXXe2ab32:0")
    );
    assert_eq!(event.routing_key(), "sent.kaleyra");
    assert_eq!(h.vendor_calls().await, 1);
    assert_eq!(
        h.redis_get("sent:order-1-shipped").await.as_deref(),
        Some("cc8074ae-990d-40f5-b604-115XXXe2ab32:0")
    );
    h.stop().await;
    assert_eq!(h.depth("herald.send.kaleyra").await, 0, "acked");
    assert_eq!(h.depth(DEAD_QUEUE).await, 0);
}

#[tokio::test]
async fn failures_then_success_are_sent_with_every_attempt_counted() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    Mock::given(method("POST"))
        .and(path(KALEYRA_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&h.vendor)
        .await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;

    h.publish(&text_job("flaky-1")).await;
    let (sent, before) = h.event_with(EventStatus::Sent, WAIT).await;
    assert_eq!(sent.attempt, 3);
    assert_eq!(h.vendor_calls().await, 3);
    assert!(
        before.iter().any(|e| e.status == EventStatus::Retrying),
        "a delayed retry happened: {before:?}"
    );
    h.stop().await;
    assert_eq!(h.depth("herald.delay.1s").await, 0);
}

#[tokio::test]
async fn a_vendor_that_keeps_failing_exhausts_the_retries() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(ResponseTemplate::new(503)).await;
    open_window(&h).await;

    let job = text_job("doomed-1");
    h.publish(&job).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(DeadReason::RetriesExhausted));
    assert_eq!(dead.attempt, 3);
    assert_eq!(h.vendor_calls().await, 3, "max_attempts vendor calls");
    let letter = h.dead_letter(WAIT).await;
    let headers = letter.delivery.properties.headers().clone();
    assert_eq!(
        header_str(headers.as_ref(), header::DEAD_REASON),
        Some("retries_exhausted")
    );
    assert_eq!(header_u32(headers.as_ref(), header::ATTEMPT), Some(3));
    assert_eq!(
        header_u32(headers.as_ref(), header::VENDOR_STATUS),
        Some(503)
    );
    assert!(header_str(headers.as_ref(), header::FIRST_ATTEMPT_AT).is_some());
    assert!(header_str(headers.as_ref(), header::LAST_ERROR).is_some());
    assert_eq!(letter.delivery.data, job.to_body(), "body byte for byte");
    h.stop().await;
}

#[tokio::test]
async fn a_permanent_error_is_dead_after_one_call() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    let e13009 = serde_json::json!({"error": {"code": "E13009", "message": "to_invalid", "to": "Invalid or in-correct input of the TO number."}});
    h.vendor_answers(ResponseTemplate::new(400).set_body_json(e13009))
        .await;
    open_window(&h).await;

    h.publish(&text_job("bad-number-1")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(DeadReason::RejectedByVendor));
    assert_eq!(h.vendor_calls().await, 1);
    let letter = h.dead_letter(WAIT).await;
    let headers = letter.delivery.properties.headers().clone();
    assert_eq!(
        header_u32(headers.as_ref(), header::VENDOR_STATUS),
        Some(400)
    );
    assert!(
        header_str(headers.as_ref(), header::VENDOR_RESPONSE)
            .unwrap()
            .contains("E13009")
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_jobs_are_dead_lettered_byte_for_byte_and_the_worker_keeps_serving() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;

    let expired = format!(
        r#"{{"id":"late-1","provider":"kaleyra","to":"+254712345678","message":{{"type":"text","body":"hi"}},"expires_at":"{}"}}"#,
        (chrono::Utc::now() - chrono::TimeDelta::seconds(5)).to_rfc3339()
    );
    let cases: Vec<(&[u8], DeadReason)> = vec![
        (b"{this is not json", DeadReason::InvalidJob),
        (br#"{"id":"p1","provider":"kaleyra","to":"0712345678","message":{"type":"text","body":"hi"}}"#, DeadReason::InvalidJob),
        (br#"{"id":"u1","provider":"kaleyra","to":"+254712345678","message":{"type":"text","body":"hi"},"colour":"red"}"#, DeadReason::InvalidJob),
        (br#"{"id":"a1","provider":"kaleyra","account":"nosuch","to":"+254712345678","message":{"type":"text","body":"hi"}}"#, DeadReason::UnknownAccount),
        (br#"{"id":"v1","provider":"pingup","to":"+254712345678","message":{"type":"text","body":"hi"}}"#, DeadReason::UnknownProvider),
        (expired.as_bytes(), DeadReason::Expired),
    ];
    for (body, reason) in &cases {
        h.publish_raw("kaleyra", body).await;
        let letter = h.dead_letter(WAIT).await;
        let headers = letter.delivery.properties.headers().clone();
        assert_eq!(
            header_str(headers.as_ref(), header::DEAD_REASON),
            Some(reason.as_str()),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(
            !header_str(headers.as_ref(), header::DEAD_DETAIL)
                .unwrap()
                .is_empty()
        );
        assert_eq!(letter.delivery.data, *body, "body byte for byte");
    }

    // A routing key no queue is bound to never reaches a worker: the
    // alternate exchange dead-letters it, recognisable as unknown_provider.
    h.publish_raw("nosuchvendor", br#"{"id":"x"}"#).await;
    let letter = h.dead_letter(WAIT).await;
    let headers = letter.delivery.properties.headers().clone();
    assert_eq!(
        classify_dead_letter(
            header_str(headers.as_ref(), header::DEAD_REASON),
            headers
                .as_ref()
                .is_some_and(|h| h.inner().contains_key("x-death"))
        ),
        Some(DeadReason::UnknownProvider)
    );

    h.publish(&text_job("after-the-bad-ones")).await;
    let (sent, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert_eq!(sent.job_id, "after-the-bad-ones");
    h.stop().await;
}

#[tokio::test]
async fn the_same_id_twice_calls_the_vendor_once() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok().set_delay(Duration::from_millis(300)))
        .await;
    open_window(&h).await;

    let job = text_job("twice-1");
    h.publish(&job).await;
    h.publish(&job).await;
    let (_, before) = h
        .event_with(EventStatus::Duplicate, Duration::from_secs(20))
        .await;
    let sent_before = before
        .iter()
        .filter(|e| e.status == EventStatus::Sent)
        .count();
    if sent_before == 0 {
        h.event_with(EventStatus::Sent, WAIT).await;
    }
    assert_eq!(h.vendor_calls().await, 1);
    h.stop().await;
    assert_eq!(h.depth("herald.send.kaleyra").await, 0);
}

#[tokio::test]
async fn a_scheduled_job_waits_until_due() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;

    let due = chrono::Utc::now() + chrono::TimeDelta::seconds(3);
    let job = JobBuilder::text("later-1", "kaleyra", "+254712345678", "hi")
        .not_before(due)
        .build()
        .unwrap();
    h.publish(&job).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.vendor_calls().await, 0, "nothing before not_before");
    let (sent, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert!(chrono::Utc::now() >= due);
    assert_eq!(sent.job_id, "later-1");
    assert_eq!(h.vendor_calls().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn the_worker_reconnects_when_the_broker_drops_its_connection() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    open_window(&h).await;
    h.publish(&text_job("before-the-cut")).await;
    h.event_with(EventStatus::Sent, WAIT).await;

    // The management API lists connections a few seconds after they open.
    let deadline = Instant::now() + WAIT;
    while h.env.close_connections("herald worker").await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker's connection never showed up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    h.publish(&text_job("after-the-cut")).await;
    let (sent, _) = h
        .event_with(EventStatus::Sent, Duration::from_secs(30))
        .await;
    assert_eq!(sent.job_id, "after-the-cut");
    assert_eq!(h.vendor_calls().await, 2);
    h.stop().await;
}

#[tokio::test]
async fn a_sent_job_that_comes_back_after_expiry_is_a_duplicate_not_expired() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    let mut redis = h.env.redis().await;
    let _: () = redis
        .set_ex(format!("{}sent:sent-then-expired", h.env.prefix), "m-1", 60)
        .await
        .unwrap();
    let job = JobBuilder::text("sent-then-expired", "kaleyra", "+254712345678", "hi")
        .expires_at(chrono::Utc::now() - chrono::TimeDelta::seconds(1))
        .build()
        .unwrap();
    h.publish_raw("kaleyra", &job.to_body()).await;
    let event = h.next_event(WAIT).await;
    assert_eq!(event.status, EventStatus::Duplicate);
    assert_eq!(event.vendor_message_id.as_deref(), Some("m-1"));
    assert_eq!(h.vendor_calls().await, 0);
    h.stop().await;
    assert_eq!(h.depth(DEAD_QUEUE).await, 0);
}
