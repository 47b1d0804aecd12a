//! Rate limits across worker processes, measured where it matters: at the
//! vendor. Each test runs real `herald worker` processes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_core::{Event, EventStatus};
use lapin::options::BasicAckOptions;
use nix::sys::signal::Signal;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::method};

use crate::worker::{bind_events, kaleyra_ok};
use crate::worker_process::{Fleet, signal};

/// Answers like Kaleyra and notes when each request arrived; request
/// number `throttle_at` (0-based), if any, gets a 429 with `Retry-After: 2`.
#[derive(Clone)]
struct Clocked {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    throttle_at: Option<usize>,
}

impl Respond for Clocked {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        if Some(arrivals.len() - 1) == self.throttle_at {
            return ResponseTemplate::new(429).insert_header("Retry-After", "2");
        }
        kaleyra_ok()
    }
}

async fn clocked_vendor(throttle_at: Option<usize>) -> (MockServer, Arc<Mutex<Vec<Instant>>>) {
    let vendor = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Clocked {
            arrivals: arrivals.clone(),
            throttle_at,
        })
        .mount(&vendor)
        .await;
    (vendor, arrivals)
}

const SECTIONS: &str =
    "[amqp]\nprefetch = 16\n[retry]\nimmediate = 0\ndelays = [\"1s\"]\nmax_attempts = 5\n";
const LIMIT: &str = "rate_per_second = 20\nburst = 1\n";

/// Requests per second over the steady part: the first and last tenth of the
/// arrivals (start-up, drain) are left out.
fn steady_rate(arrivals: &[Instant]) -> f64 {
    let cut = arrivals.len() / 10;
    let steady = &arrivals[cut..arrivals.len() - cut];
    let span = steady
        .last()
        .unwrap()
        .duration_since(steady[0])
        .as_secs_f64();
    (steady.len() - 1) as f64 / span
}

async fn rate_with_workers(workers: usize) -> f64 {
    let (vendor, arrivals) = clocked_vendor(None).await;
    let fleet = Fleet::with(vendor, SECTIONS, LIMIT).await;
    let children: Vec<_> = (0..workers).map(|_| fleet.spawn_worker()).collect();
    let ids = fleet.publish_n(&format!("rate{workers}"), 200).await;
    fleet
        .wait_until_all_sent(&ids, Duration::from_secs(60))
        .await;
    for mut child in children {
        signal(&child, Signal::SIGTERM);
        child.wait().unwrap();
    }
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 200, "one call per job");
    steady_rate(&arrivals)
}

#[tokio::test]
async fn one_worker_keeps_the_account_rate() {
    let rate = rate_with_workers(1).await;
    eprintln!("1 worker: {rate:.2}/s at the vendor (limit 20/s)");
    assert!(
        (18.0..=22.0).contains(&rate),
        "{rate:.2}/s is not within ±10 % of 20/s"
    );
}

#[tokio::test]
async fn three_workers_share_one_account_rate() {
    let rate = rate_with_workers(3).await;
    eprintln!("3 workers: {rate:.2}/s at the vendor in total (limit 20/s)");
    assert!(
        (18.0..=22.0).contains(&rate),
        "{rate:.2}/s is not within ±10 % of 20/s"
    );
}

#[tokio::test]
async fn a_429_pauses_the_account_on_every_replica_without_spending_an_attempt() {
    let (vendor, arrivals) = clocked_vendor(Some(40)).await;
    let fleet = Fleet::with(vendor, SECTIONS, LIMIT).await;
    let events_channel = fleet.channel.clone();
    let mut events = bind_events(&events_channel).await;
    let children: Vec<_> = (0..3).map(|_| fleet.spawn_worker()).collect();
    let ids = fleet.publish_n("throttled", 100).await;
    fleet
        .wait_until_all_sent(&ids, Duration::from_secs(60))
        .await;
    for mut child in children {
        signal(&child, Signal::SIGTERM);
        child.wait().unwrap();
    }

    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 101, "100 sends and the one throttled call");
    let throttled_at = arrivals[40];
    // Calls already under way when the 429 came back may still land; after
    // that, no replica calls the account until the pause is over.
    let in_pause = arrivals
        .iter()
        .filter(|t| {
            **t > throttled_at + Duration::from_millis(250)
                && **t < throttled_at + Duration::from_millis(1800)
        })
        .count();
    assert_eq!(
        in_pause, 0,
        "no replica called the account during the 2 s pause"
    );
    let resumed = arrivals
        .iter()
        .find(|t| **t > throttled_at + Duration::from_millis(250))
        .unwrap();
    let held = resumed.duration_since(throttled_at);
    eprintln!("429 with Retry-After: 2 held the account for {held:?} across 3 replicas");
    assert!(
        held >= Duration::from_millis(1800) && held < Duration::from_secs(4),
        "held {held:?}"
    );

    let mut attempts = Vec::new();
    while attempts.len() < 100 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let event: Event = serde_json::from_slice(&delivery.data).unwrap();
        if event.status == EventStatus::Sent {
            attempts.push(event.attempt);
        }
    }
    // The throttled job reports both its calls; the retry budget counts
    // only the one that was not throttled (x-herald-throttled).
    attempts.sort();
    assert_eq!(attempts[..99], [1; 99], "{attempts:?}");
    assert_eq!(attempts[99], 2, "{attempts:?}");
}
