//! The 24-hour window in the worker: the real broker and Redis, Kaleyra
//! faked at the HTTP boundary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use herald_client::JobBuilder;
use herald_core::{DeadReason, EventStatus};
use herald_store::{Contact, Store};
use redis::AsyncCommands;
use wiremock::ResponseTemplate;

use crate::worker::{FAST_RETRY, Harness, free_local_addr, kaleyra_account, kaleyra_ok, text_job};

const WAIT: Duration = Duration::from_secs(15);

fn contact() -> Contact {
    Contact {
        provider: "kaleyra".into(),
        account: "default".into(),
        digits: "254712345678".into(),
    }
}

async fn inbound_ago(h: &Harness, ago: TimeDelta) {
    let store = Store::connect(&h.env.redis_url, &h.env.prefix)
        .await
        .unwrap();
    let at = (Utc::now() - ago).timestamp_millis();
    store
        .record_inbound(&contact(), at, &h.config.window)
        .await
        .unwrap();
}

async fn started() -> Harness {
    let h = Harness::start(FAST_RETRY, "").await;
    h.vendor_answers(kaleyra_ok()).await;
    h
}

#[tokio::test]
async fn an_open_window_sends_a_session_message() {
    let mut h = started().await;
    inbound_ago(&h, TimeDelta::hours(1)).await;
    h.publish(&text_job("open-1")).await;
    let (sent, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert!(!sent.fallback_used);
    assert_eq!(h.vendor_calls().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn closed_windows_dead_letter_session_messages_without_calling_the_vendor() {
    let mut h = started().await;
    // No inbound at all.
    h.publish(&text_job("never-wrote")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(DeadReason::WindowClosed));
    assert!(dead.detail.unwrap().contains("no inbound"));

    // 25 hours ago.
    inbound_ago(&h, TimeDelta::hours(25)).await;
    h.publish(&text_job("wrote-yesterday")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(
        (dead.job_id.as_str(), dead.reason),
        ("wrote-yesterday", Some(DeadReason::WindowClosed))
    );

    // 23 h 59 min ago: inside 24 h, but within the 2 min margin.
    inbound_ago(&h, TimeDelta::hours(23) + TimeDelta::minutes(59)).await;
    h.publish(&text_job("on-the-edge")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(
        (dead.job_id.as_str(), dead.reason),
        ("on-the-edge", Some(DeadReason::WindowClosed))
    );

    assert_eq!(
        h.vendor_calls().await,
        0,
        "no vendor call for a closed window"
    );
    h.stop().await;
}

#[tokio::test]
async fn templates_need_no_window() {
    let mut h = started().await;
    let job = JobBuilder::template(
        "tpl-1",
        "kaleyra",
        "+254712345678",
        "order_update",
        "en",
        vec!["1234".into()],
    )
    .build()
    .unwrap();
    h.publish(&job).await;
    let (sent, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert_eq!(sent.job_id, "tpl-1");
    assert_eq!(h.vendor_calls().await, 1);
    let inbound = h.redis_get("inbound:kaleyra:default:254712345678").await;
    assert_eq!(inbound, None, "an outbound template never opens the window");
    h.stop().await;
}

#[tokio::test]
async fn a_closed_window_sends_the_fallback_template() {
    let mut h = started().await;
    let job = JobBuilder::text(
        "fallback-1",
        "kaleyra",
        "+254712345678",
        "Your order has shipped",
    )
    .fallback_template("order_update", "en", vec!["1234".into()])
    .build()
    .unwrap();
    h.publish(&job).await;
    let (sent, _) = h.event_with(EventStatus::Sent, WAIT).await;
    assert!(sent.fallback_used, "the event says the fallback was used");
    let requests = h.vendor.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(field("type").as_deref(), Some("template"));
    assert_eq!(field("template_name").as_deref(), Some("order_update"));
    assert!(field("params").unwrap().contains("1234"));
    assert_eq!(field("body"), None, "the session text is not sent");
    h.stop().await;
}

#[tokio::test]
async fn a_vendor_saying_the_window_is_closed_clears_the_stored_time() {
    let mut h = Harness::start(FAST_RETRY, "").await;
    let closed = serde_json::json!({"error": {"code": 131047, "message": "Re-engagement message: more than 24 hours have passed since the recipient last replied"}});
    h.vendor_answers(ResponseTemplate::new(400).set_body_json(closed))
        .await;
    inbound_ago(&h, TimeDelta::hours(2)).await;
    h.publish(&text_job("vendor-knows-better")).await;
    let (dead, _) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(DeadReason::WindowClosed));
    assert_eq!(h.vendor_calls().await, 1);
    assert_eq!(
        h.redis_get("inbound:kaleyra:default:254712345678").await,
        None
    );
    h.stop().await;
}

#[tokio::test]
async fn inbound_record_never_moves_the_window_back() {
    let h = started().await;
    let config = crate::support::TestConfig::new(&h.env, "");
    let key_file = config.file("kaleyra.key", "test-kaleyra-key-0123456789");
    std::fs::write(
        &config.path,
        kaleyra_account(&h.vendor.uri(), &key_file, ""),
    )
    .unwrap();
    let newer = Utc::now() - TimeDelta::minutes(5);
    let older = Utc::now() - TimeDelta::hours(3);
    for at in [newer, older] {
        let out = config.run(&[
            "inbound",
            "record",
            "--provider",
            "kaleyra",
            "--account",
            "default",
            "--contact",
            "+254712345678",
            "--at",
            &at.to_rfc3339(),
            "--json",
        ]);
        crate::support::stdout_of(&out);
    }
    let stored: i64 = h
        .redis_get("inbound:kaleyra:default:254712345678")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        stored,
        newer.timestamp_millis(),
        "the older webhook did not move it back"
    );

    let out = config.run(&[
        "window",
        "show",
        "--provider",
        "kaleyra",
        "--contact",
        "+254712345678",
        "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&crate::support::stdout_of(&out)).unwrap();
    assert_eq!(shown["open"], true, "{shown}");

    // A time next year counts as now: it cannot hold the window open until then.
    let next_year = Utc::now() + TimeDelta::days(365);
    let before = Utc::now();
    let out = config.run(&[
        "inbound",
        "record",
        "--provider",
        "kaleyra",
        "--contact",
        "+254712345678",
        "--at",
        &next_year.to_rfc3339(),
    ]);
    crate::support::stdout_of(&out);
    let stored: i64 = h
        .redis_get("inbound:kaleyra:default:254712345678")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (before.timestamp_millis()..=Utc::now().timestamp_millis()).contains(&stored),
        "a future inbound time was clamped to now, not stored as {stored}"
    );
}

/// A Redis of this test's own, so it can be stopped and started again.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis {
            port,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn readyz(h: &Harness) -> u16 {
    let url = format!("http://{}/readyz", h.http_addr);
    match reqwest::get(url).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn without_redis_a_session_job_is_neither_sent_nor_dead_lettered() {
    let port = free_local_addr().port();
    let mut redis = PrivateRedis::start(port);
    let mut h = Harness::start_with_redis(FAST_RETRY, "", Some(&redis.url())).await;
    h.vendor_answers(kaleyra_ok()).await;
    let deadline = Instant::now() + WAIT;
    while readyz(&h).await != 200 {
        assert!(Instant::now() < deadline, "worker never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.stop();
    h.publish(&text_job("redis-away")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.vendor_calls().await, 0, "nothing sent blindly");
    assert_eq!(
        h.depth("herald.dead").await,
        0,
        "nothing dead-lettered for Redis being away"
    );
    assert_eq!(
        h.depth("herald.delay.1s").await,
        0,
        "the delivery is held, not churned through the delay tiers"
    );
    assert_eq!(readyz(&h).await, 503, "not ready while Redis is down");

    let redis = PrivateRedis::start(port);
    let store = Store::connect(&redis.url(), &h.env.prefix).await.unwrap();
    store
        .record_inbound(&contact(), Utc::now().timestamp_millis(), &h.config.window)
        .await
        .unwrap();
    let (sent, before) = h
        .event_with(EventStatus::Sent, Duration::from_secs(30))
        .await;
    assert_eq!(sent.job_id, "redis-away");
    assert!(
        before.is_empty(),
        "no retrying event while Redis was away: {before:?}"
    );
    assert_eq!(h.vendor_calls().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn a_redis_key_of_the_wrong_type_dead_letters_the_job_as_store_error() {
    let mut h = started().await;
    let key = format!("{}inbound:kaleyra:default:254712345678", h.env.prefix);
    let _: () = h.env.redis().await.lpush(&key, "not a time").await.unwrap();
    h.publish(&text_job("wrong-type")).await;
    let (dead, before) = h.event_with(EventStatus::Dead, WAIT).await;
    assert_eq!(dead.reason, Some(DeadReason::StoreError));
    assert!(dead.detail.unwrap().contains("WRONGTYPE"));
    assert!(
        before.is_empty(),
        "dead-lettered, not deferred to a tier: {before:?}"
    );
    assert_eq!(h.vendor_calls().await, 0);
    h.stop().await;
}
