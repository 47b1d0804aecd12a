//! The whole send pipeline on the in-memory state: no broker, no Redis.
//! The vendor is Kaleyra faked at its HTTP boundary (wiremock), so the real
//! adapter renders and classifies every answer. One test per outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_core::{Config, DeadReason};
use herald_store::{Contact, MemoryState, StoreError};
use herald_vendors::Vendors;
use herald_worker::outcome::{Calls, LaterWhy, Outcome, Processed};
use herald_worker::pipeline::{Lease, Pipeline};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TO: &str = "+254712345678";

struct Held(AtomicBool);

impl Lease for Held {
    fn held(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn held() -> Held {
    Held(AtomicBool::new(true))
}

struct Setup {
    pipeline: Pipeline<MemoryState>,
    vendor: MockServer,
    _key: tempfile::NamedTempFile,
}

impl Setup {
    async fn new() -> Setup {
        Setup::with("").await
    }

    /// Kaleyra's account plus `extra` lines in its table.
    async fn with(extra: &str) -> Setup {
        let vendor = MockServer::start().await;
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), "test-key").unwrap();
        let toml = format!(
            "[retry]\nimmediate = 1\ndelays = [\"5s\", \"30s\"]\nmax_attempts = 3\n\n\
             [providers.kaleyra.default]\nbase_url = {:?}\nsid = \"HXAP1XXXXXX17XX\"\n\
             from = \"+12025550123\"\napi_key_file = {:?}\ntimeout = \"2s\"\n{extra}\n",
            vendor.uri(),
            key.path().display().to_string()
        );
        let config = Config::from_toml_with_env(&toml, &[]).unwrap();
        let vendors = Vendors::from_config(&config).unwrap();
        Setup {
            pipeline: Pipeline::new(Arc::new(config), vendors, MemoryState::default()),
            vendor,
            _key: key,
        }
    }

    fn state(&self) -> &MemoryState {
        self.pipeline.state()
    }

    fn open_window(&self) {
        self.state()
            .record_inbound(&contact(), Utc::now().timestamp_millis());
    }

    /// The vendor answers every call with `answer`.
    async fn answers(&self, answer: ResponseTemplate) {
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&self.vendor)
            .await;
    }

    /// The vendor answers the next `times` calls with `answer`, before any other mock.
    async fn answers_first(&self, answer: ResponseTemplate, times: u64) {
        Mock::given(method("POST"))
            .respond_with(answer)
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&self.vendor)
            .await;
    }

    async fn calls(&self) -> usize {
        self.vendor.received_requests().await.unwrap().len()
    }

    async fn process(&self, body: &serde_json::Value) -> Processed {
        self.process_with(body, Calls::default(), &held()).await
    }

    async fn process_with(
        &self,
        body: &serde_json::Value,
        calls: Calls,
        lease: &dyn Lease,
    ) -> Processed {
        let provider = body["provider"].as_str().unwrap_or("kaleyra").to_owned();
        self.pipeline
            .process(body.to_string().as_bytes(), &provider, calls, lease)
            .await
    }
}

fn contact() -> Contact {
    Contact {
        provider: "kaleyra".into(),
        account: "default".into(),
        digits: TO.trim_start_matches('+').into(),
    }
}

fn text_job(id: &str) -> serde_json::Value {
    json!({"id": id, "provider": "kaleyra", "to": TO, "message": {"type": "text", "body": "hi"}})
}

fn template() -> serde_json::Value {
    json!({"type": "template", "name": "order_update", "language": "en", "body": ["1234"]})
}

/// Kaleyra's documented success body.
fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "cc8074ae", "data": [{"message_id": "cc8074ae:0", "recipient": "254712345678"}], "error": {}
    }))
}

fn dead_reason(processed: &Processed) -> DeadReason {
    match &processed.outcome {
        Outcome::Dead(dead) => dead.reason,
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

fn later(processed: &Processed) -> (LaterWhy, Duration) {
    match &processed.outcome {
        Outcome::Later(later) => (later.why, later.delay),
        other => panic!("expected a later copy, got {other:?}"),
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable {
        operation: "admit the job",
        cause: "connection refused".into(),
    }
}

#[tokio::test]
async fn an_open_window_sends_once_and_a_second_delivery_is_a_duplicate() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;

    let first = s.process(&text_job("j1")).await;
    assert_eq!(
        first.outcome,
        Outcome::Sent {
            vendor_message_id: Some("cc8074ae:0".into()),
            fallback_used: false
        }
    );
    assert_eq!(first.calls.attempts, 1);
    assert!(!s.state().is_claimed("j1"), "recording released the claim");
    let lifecycle = s
        .state()
        .lifecycle("j1")
        .expect("the lifecycle is recorded");
    assert_eq!(lifecycle.state, herald_store::State::Accepted);
    assert_eq!(lifecycle.vendor_message_id.as_deref(), Some("cc8074ae:0"));
    assert_eq!(lifecycle.attempts, 1);
    assert_eq!(
        s.state().correlated("kaleyra", "cc8074ae:0").as_deref(),
        Some("j1"),
        "the vendor id is correlated in the same record"
    );

    let again = s.process(&text_job("j1")).await;
    assert_eq!(
        again.outcome,
        Outcome::Duplicate {
            vendor_message_id: Some("cc8074ae:0".into())
        }
    );
    assert_eq!(s.calls().await, 1, "the vendor was called once");
}

#[tokio::test]
async fn bad_input_is_dead_without_a_vendor_call() {
    let s = Setup::new().await;
    s.answers(accepted()).await;
    let not_json = s
        .pipeline
        .process(b"{not json", "kaleyra", Calls::default(), &held())
        .await;
    assert_eq!(dead_reason(&not_json), DeadReason::InvalidJob);

    let mut unknown = text_job("j1");
    unknown["provider"] = json!("pingup");
    assert_eq!(
        dead_reason(&s.process(&unknown).await),
        DeadReason::UnknownProvider
    );
    let mut account = text_job("j2");
    account["account"] = json!("typo");
    assert_eq!(
        dead_reason(&s.process(&account).await),
        DeadReason::UnknownAccount
    );
    let wrong_queue = s
        .pipeline
        .process(
            text_job("j3").to_string().as_bytes(),
            "pingup",
            Calls::default(),
            &held(),
        )
        .await;
    assert_eq!(dead_reason(&wrong_queue), DeadReason::InvalidJob);
    let mut media = text_job("j4");
    media["message"] = json!({"type": "media", "media": "image", "url": "https://x.test/a.png"});
    assert_eq!(
        dead_reason(&s.process(&media).await),
        DeadReason::UnsupportedMessage
    );
    assert_eq!(s.calls().await, 0);
}

#[tokio::test]
async fn a_closed_window_is_dead_or_sends_the_fallback_template() {
    let s = Setup::new().await;
    s.answers(accepted()).await;
    assert_eq!(
        dead_reason(&s.process(&text_job("j1")).await),
        DeadReason::WindowClosed
    );
    assert_eq!(s.calls().await, 0);

    let mut with_fallback = text_job("j2");
    with_fallback["fallback_template"] = template();
    let processed = s.process(&with_fallback).await;
    assert!(matches!(
        processed.outcome,
        Outcome::Sent {
            fallback_used: true,
            ..
        }
    ));
    let sent = &s.vendor.received_requests().await.unwrap()[0];
    let form = String::from_utf8_lossy(&sent.body);
    assert!(form.contains("template_name=order_update"), "{form}");
    assert!(s.state().lifecycle("j2").unwrap().fallback_used);
}

#[tokio::test]
async fn a_suppressed_contact_is_dead_without_a_vendor_call() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    use herald_store::SendState;
    s.state().suppress(&contact()).await.unwrap();
    assert_eq!(
        dead_reason(&s.process(&text_job("j1")).await),
        DeadReason::Suppressed
    );
    let story = s
        .state()
        .lifecycle("j1")
        .expect("the dead letter is remembered");
    assert_eq!(story.dead_reason.as_deref(), Some("suppressed"));
    assert_eq!(story.state, herald_store::State::Failed);
    assert_eq!(story.accepted_at, None);
    assert_eq!(s.calls().await, 0);
}

#[tokio::test]
async fn a_job_another_delivery_is_sending_waits_in_a_tier() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    let slow = ResponseTemplate::new(200)
        .set_body_json(json!({"id": "x", "data": [{"message_id": "x:0"}], "error": {}}))
        .set_delay(Duration::from_millis(300));
    s.answers_first(slow, 1).await;

    let job = text_job("j1");
    let (first, second) = tokio::join!(s.process(&job), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.process(&text_job("j1")).await
    });
    assert!(matches!(first.outcome, Outcome::Sent { .. }));
    assert_eq!(later(&second).0, LaterWhy::Defer);
    assert_eq!(s.calls().await, 1);
}

#[tokio::test]
async fn a_blip_is_retried_in_process_then_in_a_tier_then_exhausted() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(ResponseTemplate::new(503)).await;

    let first = s.process(&text_job("j1")).await;
    assert_eq!(first.calls.attempts, 2, "one call and one immediate retry");
    assert_eq!(later(&first).0, LaterWhy::Retry);
    assert!(!s.state().is_claimed("j1"));

    let last = s.process_with(&text_job("j1"), first.calls, &held()).await;
    assert_eq!(last.calls.attempts, 3);
    assert_eq!(dead_reason(&last), DeadReason::RetriesExhausted);
}

#[tokio::test]
async fn a_throttled_call_pauses_the_account_and_does_not_spend_an_attempt() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    s.answers_first(
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        1,
    )
    .await;

    let started = tokio::time::Instant::now();
    let processed = s.process(&text_job("j1")).await;
    assert!(matches!(processed.outcome, Outcome::Sent { .. }));
    assert_eq!(
        processed.calls,
        Calls {
            attempts: 2,
            throttled: 1
        }
    );
    assert_eq!(processed.calls.spent(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the pause was waited out"
    );
}

#[tokio::test]
async fn a_long_vendor_pause_defers_the_job_without_a_call() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    use herald_store::SendState;
    s.state()
        .pause_account("kaleyra", "default", Duration::from_secs(120))
        .await
        .unwrap();
    let (why, delay) = later(&s.process(&text_job("j1")).await);
    assert_eq!(why, LaterWhy::Defer);
    assert!(delay > Duration::from_secs(100), "{delay:?}");
    assert_eq!(s.calls().await, 0);
}

#[tokio::test]
async fn permanent_answers_are_dead_and_a_closed_window_answer_forgets_the_inbound() {
    let s = Setup::new().await;
    s.open_window();
    s.answers_first(
        ResponseTemplate::new(400).set_body_json(
            json!({"code": "E13009", "message": "to_invalid", "error": {"to": "invalid"}}),
        ),
        1,
    )
    .await;
    assert_eq!(
        dead_reason(&s.process(&text_job("j1")).await),
        DeadReason::RejectedByVendor
    );
    assert!(!s.state().is_claimed("j1"));
    assert!(s.state().last_inbound(&contact()).is_some());

    Mock::given(body_string_contains("j2-body"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": 131047, "message": "(#131047) Re-engagement message"}
        })))
        .mount(&s.vendor)
        .await;
    let mut closed = text_job("j2");
    closed["message"]["body"] = json!("j2-body");
    assert_eq!(
        dead_reason(&s.process(&closed).await),
        DeadReason::WindowClosed
    );
    assert_eq!(
        s.state().last_inbound(&contact()),
        None,
        "the vendor said the window is closed"
    );

    // The next session message to the contact says who closed the window.
    let after = s.process(&text_job("j3")).await;
    let Outcome::Dead(dead) = &after.outcome else {
        panic!("{:?}", after.outcome)
    };
    assert_eq!(dead.reason, DeadReason::WindowClosed);
    assert!(
        dead.detail.contains("closed by the vendor's answer"),
        "{}",
        dead.detail
    );
}

#[tokio::test]
async fn expiry_and_schedule_are_judged_before_any_call() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    let mut expired = text_job("j1");
    expired["expires_at"] = json!((Utc::now() - TimeDelta::seconds(1)).to_rfc3339());
    assert_eq!(dead_reason(&s.process(&expired).await), DeadReason::Expired);

    let mut scheduled = text_job("j2");
    scheduled["not_before"] = json!((Utc::now() + TimeDelta::seconds(60)).to_rfc3339());
    assert_eq!(later(&s.process(&scheduled).await).0, LaterWhy::Schedule);

    // Sent, then its ack was lost and it expired meanwhile: a duplicate.
    s.process(&text_job("j3")).await;
    let mut sent_then_expired = text_job("j3");
    sent_then_expired["expires_at"] = json!((Utc::now() - TimeDelta::seconds(1)).to_rfc3339());
    assert!(matches!(
        s.process(&sent_then_expired).await.outcome,
        Outcome::Duplicate { .. }
    ));
    assert_eq!(s.calls().await, 1);
}

#[tokio::test]
async fn an_unavailable_redis_holds_the_delivery_instead_of_deferring_it() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    for _ in 0..3 {
        s.state().fail_next(unavailable());
    }
    let processed = s.process(&text_job("j1")).await;
    assert!(
        matches!(processed.outcome, Outcome::Sent { .. }),
        "held until Redis answered, then sent: {:?}",
        processed.outcome
    );
}

#[tokio::test]
async fn a_redis_that_keeps_refusing_dead_letters_the_job_as_store_error() {
    let s = Setup::new().await;
    s.answers(accepted()).await;
    for _ in 0..3 {
        s.state().fail_next(StoreError::Refused {
            operation: "admit the job",
            cause: "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
        });
    }
    let processed = s.process(&text_job("j1")).await;
    assert_eq!(dead_reason(&processed), DeadReason::StoreError);
    let Outcome::Dead(dead) = &processed.outcome else {
        unreachable!()
    };
    assert!(dead.detail.contains("WRONGTYPE"), "{}", dead.detail);
    assert_eq!(s.calls().await, 0);
}

#[tokio::test]
async fn a_delivery_whose_lease_is_gone_never_calls_the_vendor() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    let lost = Held(AtomicBool::new(false));
    let processed = s
        .process_with(&text_job("j1"), Calls::default(), &lost)
        .await;
    assert_eq!(processed.outcome, Outcome::Abandoned);
    assert_eq!(s.calls().await, 0);
    assert!(!s.state().is_claimed("j1"), "the claim was given back");
}

#[tokio::test]
async fn a_send_whose_record_fails_at_first_is_still_recorded() {
    let s = Setup::new().await;
    s.open_window();
    // The vendor answers slowly; meanwhile the next two store operations
    // (the record) are set to fail.
    s.answers(accepted().set_delay(Duration::from_millis(200)))
        .await;
    let job = text_job("j1");
    let processed = tokio::join!(s.process(&job), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.state().fail_next(unavailable());
        s.state().fail_next(unavailable());
    })
    .0;
    assert!(matches!(processed.outcome, Outcome::Sent { .. }));
    assert!(matches!(
        s.process(&text_job("j1")).await.outcome,
        Outcome::Duplicate { .. }
    ));
}

#[tokio::test]
async fn a_blip_retry_is_admitted_again_and_finds_a_send_made_meanwhile() {
    let s = Setup::new().await;
    s.open_window();
    s.answers(accepted()).await;
    s.answers_first(ResponseTemplate::new(503), 1).await;

    // A meets the 503 and sleeps before its in-process retry; B, another
    // delivery of the same job, is sent meanwhile.
    let job = text_job("j1");
    let (a, b) = tokio::join!(s.process(&job), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.process(&job).await
    });
    assert!(matches!(b.outcome, Outcome::Sent { .. }), "{:?}", b.outcome);
    assert!(
        matches!(a.outcome, Outcome::Duplicate { .. }),
        "the retry re-read the send: {:?}",
        a.outcome
    );
    assert_eq!(s.calls().await, 2, "the 503 and B's send, nothing more");
}
