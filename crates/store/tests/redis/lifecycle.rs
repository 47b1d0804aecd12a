//! The lifecycle record, the vendor id correlation and held statuses on a real Redis.

use std::time::Duration;

use chrono::Utc;
use herald_store::{Admit, Applied, Change, SendState, State, StatusReport, Store};
use herald_testkit::TestEnv;
use redis::AsyncCommands;

use super::state::{accepted, admit, claim, contact, job, window};
use super::store;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

fn report(vendor_message_id: &str, state: State) -> StatusReport {
    StatusReport {
        provider: "kaleyra".into(),
        account: "default".into(),
        vendor_message_id: vendor_message_id.into(),
        state,
        at: Utc::now(),
        error_code: None,
        detail: None,
    }
}

/// Sends `job_id` as `vendor_message_id` through admit and record.
async fn send(store: &Store, job_id: &str, vendor_message_id: &str) {
    let (c, w) = (contact(), window());
    let unwindowed = Admit {
        window: None,
        ..admit(job_id, &c, &w)
    };
    let claimed = claim(store, &unwindowed).await;
    let job = job(job_id);
    store
        .record_sent(claimed, &accepted(&job, Some(vendor_message_id)), WEEK)
        .await
        .unwrap();
}

async fn apply(store: &Store, report: &StatusReport) -> (Change, State, usize) {
    match store.apply_status(report, false).await.unwrap() {
        Applied::Applied {
            change, lifecycle, ..
        } => (change, lifecycle.state, lifecycle.timeline.len()),
        other => panic!("expected the status applied, got {other:?}"),
    }
}

#[tokio::test]
async fn acceptance_writes_the_correlation_and_the_lifecycle_for_the_horizon() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    send(&store, "job-1", "wamid.1").await;

    let mut redis = env.redis().await;
    let correlated: String = redis
        .get(format!("{}vmsg:kaleyra:wamid.1", env.prefix))
        .await
        .unwrap();
    assert_eq!(correlated, "job-1");
    for key in ["vmsg:kaleyra:wamid.1", "status:job-1"] {
        let ttl: i64 = redis.pttl(format!("{}{key}", env.prefix)).await.unwrap();
        assert!(ttl > WEEK.as_millis() as i64 - 60_000, "{key}: {ttl}");
    }
    let lifecycle = store.lifecycle("job-1").await.unwrap().unwrap();
    assert_eq!(lifecycle.state, State::Accepted);
    assert_eq!(lifecycle.vendor_message_id.as_deref(), Some("wamid.1"));
    assert_eq!(lifecycle.attempts, 1);
    assert_eq!(lifecycle.job.to, "+254712345678");
    assert_eq!(lifecycle.timeline.len(), 1);
    assert_eq!(store.lifecycle("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn statuses_move_forward_once_each_and_late_ones_only_join_the_timeline() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    send(&store, "job-1", "wamid.1").await;

    let delivered = report("wamid.1", State::Delivered);
    assert_eq!(
        apply(&store, &delivered).await,
        (Change::Advanced, State::Delivered, 2)
    );
    assert_eq!(
        apply(&store, &delivered).await,
        (Change::Repeated, State::Delivered, 2)
    );
    assert_eq!(
        apply(&store, &report("wamid.1", State::Read)).await,
        (Change::Advanced, State::Read, 3)
    );
    assert_eq!(
        apply(&store, &report("wamid.1", State::Sent)).await,
        (Change::Recorded, State::Read, 4),
        "a late `sent` is recorded, the state stays"
    );
    let timeline = store.lifecycle("job-1").await.unwrap().unwrap().timeline;
    let states: Vec<State> = timeline.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [State::Accepted, State::Delivered, State::Read, State::Sent]
    );
}

#[tokio::test]
async fn a_status_before_its_acceptance_is_held_then_taken_once_by_a_sweep() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    let early = report("wamid.early", State::Delivered);
    assert_eq!(a.apply_status(&early, false).await.unwrap(), Applied::Held);

    let before = a.sweep_held().await.unwrap();
    assert!(before.ready.is_empty() && before.expired == 0, "{before:?}");

    send(&a, "job-1", "wamid.early").await;
    let (first, second) = tokio::join!(a.sweep_held(), b.sweep_held());
    let mut ready = first.unwrap().ready;
    ready.extend(second.unwrap().ready);
    assert_eq!(ready, vec![early.clone()], "taken once, by one sweeper");
    assert_eq!(
        apply(&a, &ready[0]).await,
        (Change::Advanced, State::Delivered, 2)
    );
}

#[tokio::test]
async fn a_status_held_past_ten_minutes_is_dropped_and_counted() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let stale = report("wamid.never", State::Read);
    let member = serde_json::to_string(&stale).unwrap();
    let eleven_minutes_ago = Utc::now().timestamp_millis() - 11 * 60_000;
    let _: () = env
        .redis()
        .await
        .zadd(format!("{}held", env.prefix), member, eleven_minutes_ago)
        .await
        .unwrap();
    assert_eq!(
        store
            .apply_status(&report("wamid.young", State::Read), false)
            .await,
        Ok(Applied::Held)
    );

    let sweep = store.sweep_held().await.unwrap();
    assert_eq!((sweep.expired, sweep.ready.len()), (1, 0));
    let again = store.sweep_held().await.unwrap();
    assert_eq!(
        again.expired, 0,
        "counted once; the young one is still held"
    );
}

#[tokio::test]
async fn the_fallback_goes_to_exactly_one_of_two_concurrent_appliers() {
    let env = TestEnv::new().await;
    let (a, b) = (store(&env).await, store(&env).await);
    send(&a, "job-1", "wamid.1").await;
    let failed = StatusReport {
        error_code: Some("131047".into()),
        ..report("wamid.1", State::Failed)
    };
    let fallbacks = |applied: Applied| match applied {
        Applied::Applied { send_fallback, .. } => u32::from(send_fallback),
        other => panic!("expected the status applied, got {other:?}"),
    };
    let (x, y) = tokio::join!(a.apply_status(&failed, true), b.apply_status(&failed, true));
    assert_eq!(fallbacks(x.unwrap()) + fallbacks(y.unwrap()), 1);
    assert_eq!(fallbacks(a.apply_status(&failed, true).await.unwrap()), 0);

    // A fallback whose publish failed is given back for the vendor's retry.
    a.forget_fallback("job-1").await.unwrap();
    assert_eq!(fallbacks(b.apply_status(&failed, true).await.unwrap()), 1);
}

#[tokio::test]
async fn suppressions_are_listed_per_account_and_released_once() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let of = |account: &str, digits: &str| herald_store::Contact {
        provider: "kaleyra".into(),
        account: account.into(),
        digits: digits.into(),
    };
    for contact in [
        of("default", "254700000002"),
        of("default", "254700000001"),
        of("other", "254700000003"),
    ] {
        store.suppress(&contact).await.unwrap();
    }
    let listed: Vec<String> = store
        .suppressed("kaleyra", "default")
        .await
        .unwrap()
        .into_iter()
        .map(|(digits, _)| digits)
        .collect();
    assert_eq!(listed, ["254700000001", "254700000002"]);
    assert!(
        store
            .release_suppression(&of("default", "254700000001"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .release_suppression(&of("default", "254700000001"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.suppressed("kaleyra", "default").await.unwrap().len(),
        1
    );
}
