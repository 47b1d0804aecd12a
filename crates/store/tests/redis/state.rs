//! Idempotency, in-flight marks, the last-inbound time, pauses, and a dead Redis.

use std::time::{Duration, Instant};

use chrono::Utc;
use herald_store::{Contact, Store, StoreError};
use herald_testkit::TestEnv;
use rand::Rng;
use redis::AsyncCommands;

use super::{closed_port_url, store};

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR_MS: i64 = 3_600_000;

fn contact() -> Contact {
    Contact {
        provider: "kaleyra".into(),
        account: "default".into(),
        digits: "254712345678".into(),
    }
}

async fn pttl(env: &TestEnv, key: &str) -> i64 {
    env.redis()
        .await
        .pttl(format!("{}{key}", env.prefix))
        .await
        .unwrap()
}

#[tokio::test]
async fn last_inbound_only_moves_forward() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let c = contact();
    let now = Utc::now().timestamp_millis();

    assert_eq!(store.last_inbound(&c).await.unwrap(), None);
    assert_eq!(
        store.record_inbound(&c, now - 1000, DAY).await.unwrap(),
        now - 1000
    );
    assert_eq!(
        store.record_inbound(&c, now - 5000, DAY).await.unwrap(),
        now - 1000,
        "a late webhook"
    );
    assert_eq!(
        store.record_inbound(&c, now - 1000, DAY).await.unwrap(),
        now - 1000,
        "a duplicate"
    );
    assert_eq!(store.record_inbound(&c, now, DAY).await.unwrap(), now);
    assert_eq!(store.last_inbound(&c).await.unwrap(), Some(now));
}

#[tokio::test]
async fn concurrent_writers_leave_the_latest_inbound() {
    let env = TestEnv::new().await;
    let c = contact();
    let now = Utc::now().timestamp_millis();
    // Five connections, like five replicas, ten writers each.
    let mut stores = Vec::new();
    for _ in 0..5 {
        stores.push(store(&env).await);
    }
    let stamps: Vec<i64> = (0..50)
        .map(|_| now - rand::rng().random_range(0..HOUR_MS))
        .collect();
    let writers = stamps.iter().enumerate().map(|(i, &at)| {
        let store = stores[i % stores.len()].clone();
        let c = c.clone();
        tokio::spawn(async move { store.record_inbound(&c, at, DAY).await.unwrap() })
    });
    let answers = futures::future::try_join_all(writers).await.unwrap();

    let latest = *stamps.iter().max().unwrap();
    assert_eq!(stores[0].last_inbound(&c).await.unwrap(), Some(latest));
    // Every writer was told a value at least as late as its own.
    assert!(answers.iter().zip(&stamps).all(|(stored, at)| stored >= at));
}

#[tokio::test]
async fn the_inbound_key_expires_an_hour_after_the_window() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let c = contact();
    let ten_minutes_ago = Utc::now().timestamp_millis() - 10 * 60_000;
    store
        .record_inbound(&c, ten_minutes_ago, DAY)
        .await
        .unwrap();

    let ttl = pttl(&env, "inbound:kaleyra:default:254712345678").await;
    let expected = 25 * HOUR_MS - 10 * 60_000;
    assert!(
        (expected - 5_000..=expected).contains(&ttl),
        "TTL {ttl} ms, expected about {expected}"
    );
}

#[tokio::test]
async fn an_inbound_older_than_the_window_is_not_kept() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let c = contact();
    store
        .record_inbound(&c, Utc::now().timestamp_millis() - 26 * HOUR_MS, DAY)
        .await
        .unwrap();
    assert_eq!(store.last_inbound(&c).await.unwrap(), None);
}

#[tokio::test]
async fn clearing_forgets_the_inbound_of_that_contact_only() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let c = contact();
    let other = Contact {
        account: "second".into(),
        ..contact()
    };
    let now = Utc::now().timestamp_millis();
    store.record_inbound(&c, now, DAY).await.unwrap();
    store.record_inbound(&other, now, DAY).await.unwrap();

    store.clear_inbound(&c).await.unwrap();
    assert_eq!(store.last_inbound(&c).await.unwrap(), None);
    assert_eq!(store.last_inbound(&other).await.unwrap(), Some(now));
    // Cleared, it takes an older timestamp again.
    assert_eq!(
        store.record_inbound(&c, now - 1, DAY).await.unwrap(),
        now - 1
    );
}

#[tokio::test]
async fn a_sent_job_is_remembered_with_its_vendor_id_for_the_horizon() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let week = 7 * DAY;

    assert_eq!(store.sent("job-1").await.unwrap(), None);
    store
        .record_sent("job-1", Some("wamid.42"), week)
        .await
        .unwrap();
    store.record_sent("job-2", None, week).await.unwrap();
    assert_eq!(
        store.sent("job-1").await.unwrap().as_deref(),
        Some("wamid.42")
    );
    assert_eq!(store.sent("job-2").await.unwrap().as_deref(), Some(""));

    let ttl = pttl(&env, "sent:job-1").await;
    let week_ms = week.as_millis() as i64;
    assert!((week_ms - 5_000..=week_ms).contains(&ttl), "TTL {ttl} ms");
}

#[tokio::test]
async fn only_one_delivery_holds_the_in_flight_mark() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    let ttl = Duration::from_secs(30);

    assert!(a.claim_in_flight("job-1", ttl).await.unwrap());
    assert!(!b.claim_in_flight("job-1", ttl).await.unwrap());
    assert!(
        b.claim_in_flight("job-2", ttl).await.unwrap(),
        "marks are per job"
    );
    a.release_in_flight("job-1").await.unwrap();
    assert!(b.claim_in_flight("job-1", ttl).await.unwrap());
}

#[tokio::test]
async fn an_in_flight_mark_expires_by_itself() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    assert!(
        store
            .claim_in_flight("job-1", Duration::from_millis(100))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        store
            .claim_in_flight("job-1", Duration::from_secs(30))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_webhook_message_is_taken_once_per_account_until_forgotten() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    let week = 7 * DAY;
    let first = |s: &Store, account: &'static str| {
        let s = s.clone();
        async move {
            s.first_webhook_sighting("kaleyra", account, "wamid.1", week)
                .await
                .unwrap()
        }
    };

    assert!(first(&a, "default").await);
    assert!(
        !first(&b, "default").await,
        "a redelivery on another replica"
    );
    assert!(first(&b, "second").await, "ids are per account");

    let ttl = pttl(&env, "webhook:kaleyra:default:wamid.1").await;
    let week_ms = week.as_millis() as i64;
    assert!((week_ms - 5_000..=week_ms).contains(&ttl), "TTL {ttl} ms");

    a.forget_webhook_sighting("kaleyra", "default", "wamid.1")
        .await
        .unwrap();
    assert!(first(&b, "default").await, "forgotten, the retry counts");
}

#[tokio::test]
async fn a_pause_is_never_shortened() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let pause = |secs| store.pause_account("kaleyra", "default", Duration::from_secs(secs));
    let paused_for = || store.account_paused_for("kaleyra", "default");
    assert_eq!(paused_for().await.unwrap(), None);

    pause(60).await.unwrap();
    pause(5).await.unwrap();
    let left = paused_for().await.unwrap().expect("paused");
    assert!(left > Duration::from_secs(55), "shortened to {left:?}");

    pause(120).await.unwrap();
    let left = paused_for().await.unwrap().expect("paused");
    assert!(left > Duration::from_secs(115), "not lengthened: {left:?}");
    assert_eq!(
        store.account_paused_for("kaleyra", "other").await.unwrap(),
        None
    );
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, started: Instant) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dead_redis_is_reported_unavailable_promptly() {
    let url = closed_port_url();
    let started = Instant::now();
    assert_unavailable(Store::connect(&url, "herald:").await, started);

    let store = Store::connect_lazy(&url, "herald:").unwrap();
    let started = Instant::now();
    assert_unavailable(store.sent("job-1").await, started);
    let started = Instant::now();
    assert_unavailable(store.record_inbound(&contact(), 0, DAY).await, started);
}

#[tokio::test]
async fn a_redis_that_never_answers_is_reported_unavailable_promptly() {
    // Accepts connections and then says nothing, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let started = Instant::now();
    assert_unavailable(Store::connect(&url, "herald:").await, started);
    let store = Store::connect_lazy(&url, "herald:").unwrap();
    let started = Instant::now();
    assert_unavailable(store.ping().await, started);
    silent.abort();
}

#[tokio::test]
async fn a_bad_url_is_named_without_echoing_it() {
    let error = Store::connect("http://user:hunter2@example", "herald:")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidUrl(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
