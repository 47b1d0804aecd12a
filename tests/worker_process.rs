//! The real `herald worker` process under SIGKILL and SIGTERM: nothing lost.

use std::collections::HashSet;
use std::process::Child;

use std::time::{Duration, Instant};

use herald_client::{JobBuilder, Publisher, Topology};
use herald_core::protocol::DEAD_QUEUE;
use herald_testkit::TestEnv;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis::AsyncCommands;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request};

use crate::support::{Broker, Running, TestConfig, broker};
use crate::worker::{kaleyra_account, kaleyra_ok};

/// Worker processes sharing one test's vhost, Redis prefix and fake vendor.
pub struct Fleet {
    pub env: TestEnv,
    _connection: lapin::Connection,
    pub vendor: MockServer,
    pub config: TestConfig,
    pub channel: lapin::Channel,
    pub publisher: Publisher,
}

const JOBS: usize = 120;

impl Fleet {
    /// Vendor answers after `latency`; templates skip the window.
    async fn start(latency: Duration, grace: &str) -> Fleet {
        let vendor = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(kaleyra_ok().set_delay(latency))
            .mount(&vendor)
            .await;
        let sections = format!(
            "[amqp]\nprefetch = 8\n[retry]\nimmediate = 0\ndelays = [\"1s\"]\nmax_attempts = 5\n[worker]\nshutdown_grace = {grace:?}\n"
        );
        Fleet::with(vendor, &sections, "").await
    }

    /// Workers configured with `sections` (TOML) and the Kaleyra account at
    /// `vendor` with `account_extra` in its table.
    pub async fn with(vendor: MockServer, sections: &str, account_extra: &str) -> Fleet {
        let env = TestEnv::new().await;
        let config = TestConfig::new(&env, "");
        let key_file = config.file("kaleyra.key", "test-kaleyra-key-0123456789");
        let toml = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{sections}\n{}",
            kaleyra_account(&vendor.uri(), &key_file, account_extra)
        );
        std::fs::write(&config.path, toml).unwrap();
        let Broker {
            connection,
            channel,
            publisher,
        } = broker(&env, &Topology::from_config(&config.load())).await;
        Fleet {
            env,
            _connection: connection,
            vendor,
            config,
            channel,
            publisher,
        }
    }

    /// Publishes `JOBS` template jobs (no window needed), confirmed.
    pub async fn publish_jobs(&self, tag: &str) -> Vec<String> {
        self.publish_n(tag, JOBS).await
    }

    pub async fn publish_n(&self, tag: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let mut confirms = Vec::new();
        for i in 0..n {
            let id = format!("{tag}-{i}");
            let job = JobBuilder::template(
                &id,
                "kaleyra",
                "+254712345678",
                "order_update",
                "en",
                vec![i.to_string()],
            )
            .build()
            .unwrap();
            confirms.push(self.publisher.start_job(&job).await.unwrap());
            ids.push(id);
        }
        for confirm in confirms {
            confirm.wait().await.unwrap();
        }
        ids
    }

    pub fn spawn_worker(&self) -> Running {
        Running::spawn(
            self.config
                .command(&["worker"])
                .stderr(std::process::Stdio::null()),
        )
    }

    /// A worker whose log (at debug level) goes to `log`.
    pub fn spawn_logged_worker(&self, log: &std::path::Path) -> Running {
        let file = std::fs::File::create(log).expect("log file");
        Running::spawn(
            self.config
                .command(&["worker"])
                .env("RUST_LOG", "debug")
                .stderr(file),
        )
    }

    async fn vendor_requests(&self) -> Vec<Request> {
        self.vendor.received_requests().await.unwrap_or_default()
    }

    async fn wait_for_calls(&self, at_least: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.vendor_requests().await.len() < at_least {
            assert!(
                Instant::now() < deadline,
                "fewer than {at_least} vendor calls within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ids recorded as sent in Redis.
    async fn sent_ids(&self, ids: &[String]) -> HashSet<String> {
        let mut redis = self.env.redis().await;
        let mut sent = HashSet::new();
        for id in ids {
            let exists: bool = redis
                .exists(format!("{}sent:{id}", self.env.prefix))
                .await
                .unwrap();
            if exists {
                sent.insert(id.clone());
            }
        }
        sent
    }

    pub async fn wait_until_all_sent(&self, ids: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let sent = self.sent_ids(ids).await;
            if sent.len() == ids.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} jobs sent within {within:?}",
                sent.len(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn depth(&self, queue: &str) -> u32 {
        crate::support::queue_depth(&self.channel, queue).await
    }

    /// Distinct job ids the vendor received (Kaleyra's `params` field is the index).
    async fn distinct_calls(&self) -> (usize, usize) {
        let requests = self.vendor_requests().await;
        let bodies: HashSet<Vec<u8>> = requests.iter().map(|r| r.body.clone()).collect();
        (requests.len(), bodies.len())
    }
}

pub fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).expect("signal the worker");
}

#[tokio::test]
async fn sigkill_with_jobs_in_flight_then_restart_loses_nothing() {
    let fleet = Fleet::start(Duration::from_millis(150), "5s").await;
    let ids = fleet.publish_jobs("kill").await;
    let mut worker = fleet.spawn_worker();
    fleet.wait_for_calls(20, Duration::from_secs(30)).await;
    signal(&worker, Signal::SIGKILL);
    worker.wait().unwrap();
    let before_restart = fleet.sent_ids(&ids).await.len();
    assert!(before_restart < JOBS, "the kill happened mid-run");

    let mut worker = fleet.spawn_worker();
    fleet
        .wait_until_all_sent(&ids, Duration::from_secs(90))
        .await;
    signal(&worker, Signal::SIGTERM);
    assert!(worker.wait().unwrap().success());

    let (calls, distinct) = fleet.distinct_calls().await;
    assert_eq!(distinct, JOBS, "every job reached the vendor");
    assert!(
        calls - distinct <= 8,
        "at most the prefetch window was in flight at the kill: {} repeats",
        calls - distinct
    );
    assert_eq!(fleet.depth("herald.send.kaleyra").await, 0);
    assert_eq!(fleet.depth("herald.delay.1s").await, 0);
    assert_eq!(fleet.depth(DEAD_QUEUE).await, 0);
    eprintln!(
        "sigkill: {JOBS} jobs, {before_restart} sent before the kill, {calls} vendor calls, {distinct} distinct"
    );
}

#[tokio::test]
async fn sigterm_under_load_exits_within_the_grace_period_and_loses_nothing() {
    let fleet = Fleet::start(Duration::from_millis(400), "3s").await;
    let ids = fleet.publish_jobs("term").await;
    let mut worker = fleet.spawn_worker();
    fleet.wait_for_calls(10, Duration::from_secs(30)).await;

    let asked = Instant::now();
    signal(&worker, Signal::SIGTERM);
    let status = worker.wait().unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "exit 0 after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(3) + Duration::from_secs(2),
        "exited {took:?} after SIGTERM; grace is 3s"
    );

    // What the stopped worker did not finish is still queued; a new one drains it.
    let mut worker = fleet.spawn_worker();
    fleet
        .wait_until_all_sent(&ids, Duration::from_secs(90))
        .await;
    signal(&worker, Signal::SIGTERM);
    assert!(worker.wait().unwrap().success());
    let (calls, distinct) = fleet.distinct_calls().await;
    assert_eq!(distinct, JOBS);
    assert_eq!(calls, JOBS, "a graceful stop sends nothing twice");
    assert_eq!(fleet.depth("herald.send.kaleyra").await, 0);
    assert_eq!(fleet.depth(DEAD_QUEUE).await, 0);
}

#[tokio::test]
async fn sigterm_finishes_the_jobs_in_flight_and_acks_them_on_their_open_channel() {
    let fleet = Fleet::start(Duration::from_millis(1500), "10s").await;
    // Exactly the prefetch: every job is in flight when the signal comes.
    let ids = fleet.publish_n("finish", 8).await;
    let mut worker = fleet.spawn_worker();
    fleet.wait_for_calls(8, Duration::from_secs(30)).await;
    signal(&worker, Signal::SIGTERM);
    assert!(worker.wait().unwrap().success());

    assert_eq!(
        fleet.sent_ids(&ids).await.len(),
        8,
        "the in-flight jobs were finished"
    );
    assert_eq!(
        fleet.depth("herald.send.kaleyra").await,
        0,
        "and acked: nothing went back to the queue for another replica"
    );
    assert_eq!(fleet.vendor_requests().await.len(), 8);
}

#[tokio::test]
async fn an_api_key_echoed_by_the_vendor_appears_in_no_log_event_or_dead_letter() {
    const KEY: &str = "test-kaleyra-key-0123456789";
    let vendor = MockServer::start().await;
    let echo = serde_json::json!({"error": {"code": "E401", "message": format!("invalid api-key {KEY}"), "api-key": KEY}});
    Mock::given(method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(echo))
        .mount(&vendor)
        .await;
    let fleet = Fleet::with(
        vendor,
        "[retry]\nimmediate = 0\ndelays = [\"1s\"]\nmax_attempts = 2\n",
        "",
    )
    .await;
    let events_channel = fleet.channel.clone();
    let mut events = crate::worker::bind_events(&events_channel).await;
    let log = fleet.config.dir.path().join("worker.log");
    let mut worker = fleet.spawn_logged_worker(&log);
    fleet.publish_n("leak", 1).await;

    let delivery = tokio::time::timeout(
        Duration::from_secs(20),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("an event")
    .unwrap()
    .unwrap();
    let event = String::from_utf8(delivery.data.clone()).unwrap();
    assert!(event.contains("rejected_by_vendor"), "{event}");
    let letter = fleet
        .channel
        .basic_get(DEAD_QUEUE.into(), Default::default())
        .await
        .unwrap()
        .expect("a dead letter");
    signal(&worker, Signal::SIGTERM);
    worker.wait().unwrap();

    let headers = format!("{:?}", letter.delivery.properties.headers());
    let response = herald_client::header_str(
        letter.delivery.properties.headers().as_ref(),
        "x-herald-vendor-response",
    )
    .expect("the vendor's answer is kept")
    .to_owned();
    assert!(response.contains("[redacted]"), "{response}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("dead-lettered"), "the log covers the failure");
    for (place, text) in [
        ("event", &event),
        ("dead-letter headers", &headers),
        ("vendor response", &response),
        ("log", &log),
    ] {
        assert!(!text.contains(KEY), "the API key leaked into the {place}");
    }
}
