//! Idempotency, in-flight marks, the last-inbound time, pauses, and a dead Redis.

use std::time::{Duration, Instant};

use chrono::Utc;
use herald_core::Job;
use herald_core::config::WindowConfig;
use herald_store::{
    Acceptance, Admission, Admit, Claim, Contact, Rate, Recorded, SendState, Store, StoreError,
};
use herald_testkit::TestEnv;
use rand::Rng;
use redis::AsyncCommands;

use super::{closed_port_url, store};

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR_MS: i64 = 3_600_000;

pub fn window() -> WindowConfig {
    WindowConfig::default()
}

/// A text message's admission: window enforced, no fallback, no limits.
pub fn admit<'a>(job_id: &'a str, contact: &'a Contact, window: &'a WindowConfig) -> Admit<'a> {
    Admit {
        job_id,
        contact,
        claim_for: Duration::from_secs(30),
        window: Some(window),
        has_fallback: false,
        rate: None,
        pacing: None,
    }
}

/// A text job to [`contact`].
pub fn job(id: &str) -> Job {
    let body = serde_json::json!({
        "id": id, "provider": "kaleyra", "to": "+254712345678",
        "message": {"type": "text", "body": "hi"},
        "fallback_template": {"type": "template", "name": "order_update", "language": "en"},
    });
    Job::from_value(body).expect("a valid job")
}

/// The vendor accepted `job` as `vendor_message_id`, on its first call.
pub fn accepted<'a>(job: &'a Job, vendor_message_id: Option<&'a str>) -> Acceptance<'a> {
    Acceptance {
        job,
        vendor_message_id,
        attempts: 1,
        fallback_used: false,
        at: Utc::now(),
    }
}

/// Admits and expects a claim.
pub async fn claim(store: &Store, admit: &Admit<'_>) -> Claim {
    match store.admit(admit).await.unwrap() {
        Admission::Admitted { claim, .. } => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

pub fn contact() -> Contact {
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
        store
            .record_inbound(&c, now - 1000, &window())
            .await
            .unwrap(),
        now - 1000
    );
    assert_eq!(
        store
            .record_inbound(&c, now - 5000, &window())
            .await
            .unwrap(),
        now - 1000,
        "a late webhook"
    );
    assert_eq!(
        store
            .record_inbound(&c, now - 1000, &window())
            .await
            .unwrap(),
        now - 1000,
        "a duplicate"
    );
    assert_eq!(store.record_inbound(&c, now, &window()).await.unwrap(), now);
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
        tokio::spawn(async move { store.record_inbound(&c, at, &window()).await.unwrap() })
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
        .record_inbound(&c, ten_minutes_ago, &window())
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
        .record_inbound(&c, Utc::now().timestamp_millis() - 26 * HOUR_MS, &window())
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
    store.record_inbound(&c, now, &window()).await.unwrap();
    store.record_inbound(&other, now, &window()).await.unwrap();

    store.clear_inbound(&c).await.unwrap();
    assert_eq!(store.last_inbound(&c).await.unwrap(), None);
    assert_eq!(store.last_inbound(&other).await.unwrap(), Some(now));
    let Admission::WindowClosed {
        last_inbound_ms: None,
        closed_by_vendor_ms: Some(closed_at),
    } = store.admit(&admit("job-1", &c, &window())).await.unwrap()
    else {
        panic!("cleared by the vendor: the admission says when")
    };
    assert!((now..=Utc::now().timestamp_millis()).contains(&closed_at));
    // Cleared, it takes an older timestamp again.
    assert_eq!(
        store.record_inbound(&c, now - 1, &window()).await.unwrap(),
        now - 1
    );
}

#[tokio::test]
async fn a_future_inbound_time_counts_as_now() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let next_year = Utc::now().timestamp_millis() + 365 * 24 * HOUR_MS;
    let stored = store
        .record_inbound(&contact(), next_year, &window())
        .await
        .unwrap();
    let now = Utc::now().timestamp_millis();
    assert!(
        (now - 5_000..=now).contains(&stored),
        "stored {stored}, now {now}"
    );
}

#[tokio::test]
async fn a_recorded_send_is_remembered_with_its_vendor_id_for_the_horizon() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let (c, w) = (contact(), window());
    store
        .record_inbound(&c, Utc::now().timestamp_millis(), &w)
        .await
        .unwrap();
    let week = 7 * DAY;

    assert_eq!(store.sent("job-1").await.unwrap(), None);
    let first = claim(&store, &admit("job-1", &c, &w)).await;
    assert_eq!(
        store
            .record_sent(first, &accepted(&job("job-1"), Some("wamid.42")), week)
            .await
            .unwrap(),
        Recorded::First
    );
    let second = claim(&store, &admit("job-2", &c, &w)).await;
    store
        .record_sent(second, &accepted(&job("job-2"), None), week)
        .await
        .unwrap();
    assert_eq!(
        store.sent("job-1").await.unwrap().as_deref(),
        Some("wamid.42")
    );
    assert_eq!(store.sent("job-2").await.unwrap().as_deref(), Some(""));
    assert_eq!(
        store.admit(&admit("job-1", &c, &w)).await.unwrap(),
        Admission::Duplicate {
            vendor_message_id: Some("wamid.42".into())
        }
    );

    let ttl = pttl(&env, "sent:job-1").await;
    let week_ms = week.as_millis() as i64;
    assert!((week_ms - 5_000..=week_ms).contains(&ttl), "TTL {ttl} ms");
    assert_eq!(
        pttl(&env, "inflight:job-1").await,
        -2,
        "recording released the claim"
    );
}

#[tokio::test]
async fn only_one_delivery_holds_the_claim_and_the_other_finds_the_send() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    let (c, w) = (contact(), window());
    a.record_inbound(&c, Utc::now().timestamp_millis(), &w)
        .await
        .unwrap();

    let held = claim(&a, &admit("job-1", &c, &w)).await;
    let Admission::Busy { claim_left } = b.admit(&admit("job-1", &c, &w)).await.unwrap() else {
        panic!("the second delivery must find the claim")
    };
    assert!(claim_left > Duration::from_secs(25), "{claim_left:?}");
    let other = claim(&b, &admit("job-2", &c, &w)).await;
    b.release(other).await.unwrap();

    a.record_sent(held, &accepted(&job("job-1"), Some("m1")), DAY)
        .await
        .unwrap();
    assert!(matches!(
        b.admit(&admit("job-1", &c, &w)).await.unwrap(),
        Admission::Duplicate { .. }
    ));
}

#[tokio::test]
async fn a_claim_is_released_or_recorded_only_by_its_owner() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    let (c, w) = (contact(), window());
    a.record_inbound(&c, Utc::now().timestamp_millis(), &w)
        .await
        .unwrap();
    let short = Admit {
        claim_for: Duration::from_millis(100),
        ..admit("job-1", &c, &w)
    };

    let expired = claim(&a, &short).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let current = claim(&b, &admit("job-1", &c, &w)).await;

    a.release(expired).await.unwrap();
    assert!(
        matches!(
            b.admit(&admit("job-1", &c, &w)).await.unwrap(),
            Admission::Busy { .. }
        ),
        "the expired claim's owner released nothing"
    );
    b.release(current).await.unwrap();
    let again = claim(&a, &admit("job-1", &c, &w)).await;
    a.release(again).await.unwrap();
}

#[tokio::test]
async fn a_late_record_keeps_the_first_send() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let (c, w) = (contact(), window());
    store
        .record_inbound(&c, Utc::now().timestamp_millis(), &w)
        .await
        .unwrap();
    let short = Admit {
        claim_for: Duration::from_millis(100),
        ..admit("job-1", &c, &w)
    };
    let slow = claim(&store, &short).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fast = claim(&store, &admit("job-1", &c, &w)).await;
    store
        .record_sent(fast, &accepted(&job("job-1"), Some("first")), DAY)
        .await
        .unwrap();
    assert_eq!(
        store
            .record_sent(slow, &accepted(&job("job-1"), Some("second")), DAY)
            .await
            .unwrap(),
        Recorded::AlreadySent {
            vendor_message_id: Some("first".into())
        }
    );
    assert_eq!(store.sent("job-1").await.unwrap().as_deref(), Some("first"));
}

#[tokio::test]
async fn admission_refuses_suppressed_paused_and_closed_window_in_that_order() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let (c, w) = (contact(), window());

    assert_eq!(
        store.admit(&admit("job-1", &c, &w)).await.unwrap(),
        Admission::WindowClosed {
            last_inbound_ms: None,
            closed_by_vendor_ms: None
        }
    );
    let with_fallback = Admit {
        has_fallback: true,
        ..admit("job-1", &c, &w)
    };
    let Admission::Admitted {
        claim, fallback, ..
    } = store.admit(&with_fallback).await.unwrap()
    else {
        panic!("a closed window with a fallback is admitted")
    };
    assert!(fallback, "the fallback goes");
    store.release(claim).await.unwrap();
    let no_window = Admit {
        window: None,
        ..admit("job-1", &c, &w)
    };
    let Admission::Admitted {
        claim, fallback, ..
    } = store.admit(&no_window).await.unwrap()
    else {
        panic!("a template needs no window")
    };
    assert!(!fallback);
    store.release(claim).await.unwrap();

    store
        .pause_account("kaleyra", "default", Duration::from_secs(60))
        .await
        .unwrap();
    let Admission::Paused { left } = store.admit(&no_window).await.unwrap() else {
        panic!("the account is paused")
    };
    assert!(left > Duration::from_secs(55), "{left:?}");

    store.suppress(&c).await.unwrap();
    assert_eq!(
        store.admit(&no_window).await.unwrap(),
        Admission::Suppressed
    );
}

#[tokio::test]
async fn admission_reserves_the_shared_rate_and_the_recipients_pacing() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let c = contact();
    let other = Contact {
        digits: "254700000001".into(),
        ..contact()
    };
    let limited = |job_id, contact| Admit {
        job_id,
        contact,
        claim_for: Duration::from_secs(30),
        window: None,
        has_fallback: false,
        rate: Rate::per_second(10.0, 1),
        pacing: Rate::every(Duration::from_secs(6)),
    };
    let wait = |admission| match admission {
        Admission::Admitted { wait, .. } => wait,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(
        wait(store.admit(&limited("j1", &c)).await.unwrap()),
        Duration::ZERO
    );
    let rate_wait = wait(store.admit(&limited("j2", &other)).await.unwrap());
    assert!(
        (Duration::from_millis(80)..=Duration::from_millis(100)).contains(&rate_wait),
        "the second permit waits one interval: {rate_wait:?}"
    );
    let pacing_wait = wait(store.admit(&limited("j3", &c)).await.unwrap());
    assert!(
        pacing_wait > Duration::from_millis(5_800),
        "the same recipient waits for its pacing: {pacing_wait:?}"
    );
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_a_refusal_not_an_outage() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let (c, w) = (contact(), window());
    let _: () = env
        .redis()
        .await
        .lpush(
            format!("{}inbound:kaleyra:default:254712345678", env.prefix),
            "x",
        )
        .await
        .unwrap();
    let error = store.admit(&admit("job-1", &c, &w)).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Refused { .. }),
        "expected a refusal, got {error:?}"
    );
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");
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
        matches!(result, Err(StoreError::Unavailable { .. })),
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
    assert_unavailable(
        store.record_inbound(&contact(), 0, &window()).await,
        started,
    );
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
