//! Rate limits: shared across replicas through Redis, local per process,
//! and failing safe when Redis is away.

use std::ops::Range;
use std::time::{Duration, Instant};

use herald_core::RateScope;
use herald_store::{Limiter, Rate, RecipientPacer, Store};
use herald_testkit::TestEnv;

use super::{closed_port_url, store};

/// Acquires permits until `run_for` is over; returns when each was granted.
async fn permits_over(limiter: Limiter, started: Instant, run_for: Duration) -> Vec<Duration> {
    let mut granted = Vec::new();
    while started.elapsed() < run_for {
        limiter.acquire().await;
        granted.push(started.elapsed());
    }
    granted
}

/// Acquires `permits` permits one after another.
async fn acquire(limiter: &Limiter, permits: usize) {
    for _ in 0..permits {
        limiter.acquire().await;
    }
}

/// Asserts that the time since `started` lies in `expected`.
#[track_caller]
fn assert_took(started: Instant, expected: Range<Duration>, what: &str) {
    let elapsed = started.elapsed();
    assert!(expected.contains(&elapsed), "{what} took {elapsed:?}");
}

fn rate(per_second: f64, burst: u32) -> Option<Rate> {
    Rate::per_second(per_second, burst)
}

/// The limiter of kaleyra/default, the account most of these tests use.
fn kaleyra(store: &Store, rate: Option<Rate>, scope: RateScope) -> Limiter {
    Limiter::new(store, "kaleyra", "default", rate, scope)
}

#[tokio::test]
async fn replicas_share_one_global_rate() {
    let env = TestEnv::new().await;
    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = store(&env).await;
        let limiter = kaleyra(&store, rate(20.0, 1), RateScope::Global);
        replicas.push(tokio::spawn(permits_over(limiter, started, run_for)));
    }
    let granted: Vec<Duration> = futures::future::try_join_all(replicas)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect();

    // The steady part: after the first second, before the last half.
    let (from, to) = (Duration::from_secs(1), Duration::from_millis(3500));
    let steady = granted.iter().filter(|&&t| (from..to).contains(&t)).count() as f64;
    let achieved = steady / (to - from).as_secs_f64();
    assert!(
        (18.0..=22.0).contains(&achieved),
        "3 replicas at a shared 20/s achieved {achieved:.1}/s"
    );
}

#[tokio::test]
async fn a_global_burst_goes_at_once_then_the_rate_holds() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let limiter = kaleyra(&store, rate(10.0, 5), RateScope::Global);
    let started = Instant::now();
    acquire(&limiter, 5).await;
    assert_took(started, Duration::ZERO..Duration::from_millis(80), "burst");
    acquire(&limiter, 5).await;
    // Five more at 10/s: about 0.5 s after the burst.
    assert_took(
        started,
        Duration::from_millis(450)..Duration::from_millis(700),
        "burst and five more",
    );
}

#[tokio::test]
async fn limits_of_different_accounts_are_independent() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let a = Limiter::new(&store, "kaleyra", "a", rate(1.0, 1), RateScope::Global);
    let b = Limiter::new(&store, "kaleyra", "b", rate(1.0, 1), RateScope::Global);
    let started = Instant::now();
    a.acquire().await;
    b.acquire().await;
    assert_took(
        started,
        Duration::ZERO..Duration::from_millis(100),
        "a permit of each of two accounts",
    );
}

#[tokio::test]
async fn a_local_limiter_paces_its_own_process_only() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let local = || kaleyra(&store, rate(20.0, 1), RateScope::Local);
    let started = Instant::now();
    let run_for = Duration::from_secs(2);
    let (a, b) = tokio::join!(
        permits_over(local(), started, run_for),
        permits_over(local(), started, run_for)
    );
    // Each gets the full 20/s: nothing is shared through Redis.
    for granted in [a, b] {
        let n = granted.len();
        assert!((38..=44).contains(&n), "{n} permits in 2 s at 20/s");
    }
}

#[tokio::test]
async fn no_rate_means_no_waiting() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let limiter = kaleyra(&store, None, RateScope::Global);
    let started = Instant::now();
    acquire(&limiter, 10_000).await;
    assert_took(
        started,
        Duration::ZERO..Duration::from_millis(200),
        "10 000 unlimited permits",
    );
}

#[tokio::test]
async fn without_redis_the_global_limiter_falls_back_to_a_quarter_of_the_rate() {
    let store = Store::connect_lazy(&closed_port_url(), "herald:").unwrap();
    // 20/s shared, so 5/s locally: 11 permits take about 2 s.
    let limiter = kaleyra(&store, rate(20.0, 1), RateScope::Global);
    let started = Instant::now();
    acquire(&limiter, 11).await;
    assert_took(
        started,
        Duration::from_millis(1900)..Duration::from_secs(4),
        "11 permits at the 5/s fallback",
    );
}

#[tokio::test]
async fn recipients_are_paced_across_replicas_and_independently_of_each_other() {
    let env = TestEnv::new().await;
    let interval = Rate::every(Duration::from_millis(300)).unwrap();
    let replica = |store: &Store| {
        RecipientPacer::new(store, "kaleyra", "default", interval, RateScope::Global)
    };
    let (a, b) = (replica(&store(&env).await), replica(&store(&env).await));

    let started = Instant::now();
    for pacer in [&a, &b, &a, &b] {
        pacer.acquire("254712345678").await;
    }
    assert_took(
        started,
        Duration::from_millis(880)..Duration::from_millis(1200),
        "4 messages to one recipient 300 ms apart",
    );

    let started = Instant::now();
    a.acquire("254700000001").await;
    b.acquire("254700000002").await;
    assert_took(
        started,
        Duration::ZERO..Duration::from_millis(100),
        "other recipients",
    );
}

#[tokio::test]
async fn a_local_pacer_spaces_messages_to_one_recipient() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let interval = Rate::every(Duration::from_millis(200)).unwrap();
    let pacer = RecipientPacer::new(&store, "kaleyra", "default", interval, RateScope::Local);
    let started = Instant::now();
    for _ in 0..3 {
        pacer.acquire("254712345678").await;
    }
    pacer.acquire("254700000001").await;
    assert_took(
        started,
        Duration::from_millis(380)..Duration::from_millis(600),
        "3 messages to one recipient 200 ms apart, then one to another",
    );
}

#[test]
fn rates_must_be_positive() {
    assert_eq!(Rate::per_second(0.0, 1), None);
    assert_eq!(Rate::per_second(f64::NAN, 1), None);
    assert_eq!(Rate::every(Duration::ZERO), None);
    let r = Rate::per_second(20.0, 0).unwrap();
    assert_eq!((r.interval(), r.burst()), (Duration::from_millis(50), 1));
    assert_eq!(r.fallback().interval(), Duration::from_millis(200));
}
