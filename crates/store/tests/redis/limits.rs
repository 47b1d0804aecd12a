//! Rate limits: shared across replicas through Redis, local per process,
//! and failing safe when Redis is away.

use std::time::{Duration, Instant};

use herald_core::RateScope;
use herald_store::{Limiter, Rate, RecipientPacer, Store};
use herald_testkit::TestEnv;

use super::store;

/// Acquires permits until `run_for` is over; returns when each was granted.
async fn permits_over(limiter: Limiter, started: Instant, run_for: Duration) -> Vec<Duration> {
    let mut granted = Vec::new();
    while started.elapsed() < run_for {
        limiter.acquire().await;
        granted.push(started.elapsed());
    }
    granted
}

fn rate(per_second: f64, burst: u32) -> Option<Rate> {
    Rate::per_second(per_second, burst)
}

#[tokio::test]
async fn replicas_share_one_global_rate() {
    let env = TestEnv::new().await;
    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = store(&env).await;
        let limiter = Limiter::new(
            &store,
            "kaleyra",
            "default",
            rate(20.0, 1),
            RateScope::Global,
        );
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
    let limiter = Limiter::new(
        &store,
        "kaleyra",
        "default",
        rate(10.0, 5),
        RateScope::Global,
    );
    let started = Instant::now();
    for _ in 0..5 {
        limiter.acquire().await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(80),
        "burst took {:?}",
        started.elapsed()
    );
    for _ in 0..5 {
        limiter.acquire().await;
    }
    // Five more at 10/s: about 0.5 s after the burst.
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(450)..Duration::from_millis(700)).contains(&elapsed),
        "took {elapsed:?}"
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
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_local_limiter_paces_its_own_process_only() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let local = || {
        Limiter::new(
            &store,
            "kaleyra",
            "default",
            rate(20.0, 1),
            RateScope::Local,
        )
    };
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
    let limiter = Limiter::new(&store, "kaleyra", "default", None, RateScope::Global);
    let started = Instant::now();
    for _ in 0..10_000 {
        limiter.acquire().await;
    }
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn without_redis_the_global_limiter_falls_back_to_a_quarter_of_the_rate() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    drop(listener);
    let store = Store::connect_lazy(&url, "herald:").unwrap();
    // 20/s shared, so 5/s locally: 11 permits take about 2 s.
    let limiter = Limiter::new(
        &store,
        "kaleyra",
        "default",
        rate(20.0, 1),
        RateScope::Global,
    );
    let started = Instant::now();
    for _ in 0..11 {
        limiter.acquire().await;
    }
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&elapsed),
        "11 permits at the 5/s fallback took {elapsed:?}"
    );
}

#[tokio::test]
async fn recipients_are_paced_across_replicas_and_independently_of_each_other() {
    let env = TestEnv::new().await;
    let interval = Rate::every(Duration::from_millis(300)).unwrap();
    let a = RecipientPacer::new(
        &store(&env).await,
        "kaleyra",
        "default",
        interval,
        RateScope::Global,
    );
    let b = RecipientPacer::new(
        &store(&env).await,
        "kaleyra",
        "default",
        interval,
        RateScope::Global,
    );

    let started = Instant::now();
    for pacer in [&a, &b, &a, &b] {
        pacer.acquire("254712345678").await;
    }
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(880)..Duration::from_millis(1200)).contains(&elapsed),
        "4 messages to one recipient 300 ms apart took {elapsed:?}"
    );

    let started = Instant::now();
    a.acquire("254700000001").await;
    b.acquire("254700000002").await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "other recipients waited"
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
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(380)..Duration::from_millis(600)).contains(&elapsed),
        "took {elapsed:?}"
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
