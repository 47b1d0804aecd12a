//! `herald mock-vendor` and `herald worker` together: one job per provider,
//! sent through the mock and visible in its record; Meta's answers through
//! the whole pipeline.

use std::time::{Duration, Instant};

use herald_client::{JobBuilder, Topology};
use herald_testkit::TestEnv;
use nix::sys::signal::Signal;

use herald_client::{header_str, header_u32};
use herald_core::protocol::{DEAD_QUEUE, header};
use lapin::options::BasicGetOptions;

use crate::support::{Broker, Running, TestConfig, broker};
use crate::worker::free_local_addr;
use crate::worker_process::signal;

/// Every provider's account, each pointed at the mock; keys from files.
fn providers_toml(base_url: &str, config: &TestConfig) -> String {
    let key = |name: &str| {
        config
            .file(name, &format!("demo-{name}"))
            .display()
            .to_string()
    };
    format!(
        r#"
[retry]
delays = ["1s"]
[providers.payhero.default]
base_url = "{base_url}"
session = "18gdPWKzoXXXX"
basic_token_file = "{payhero}"
enforce_window = false
[providers.pingup.default]
base_url = "{base_url}"
business = "acme"
api_key_file = "{pingup}"
enforce_window = false
[providers.kaleyra.default]
base_url = "{base_url}"
sid = "HXAP1XXXXXX17XX"
from = "+12025550123"
api_key_file = "{kaleyra}"
enforce_window = false
[providers.99digital.default]
base_url = "{base_url}"
from = "972771234567"
api_key_file = "{digital99}"
enforce_window = false
[providers.replyhero.default]
base_url = "{base_url}"
session_id = "SESSION_ID"
user_id = "USER_ID"
org_id = "ORG_ID"
api_key_file = "{replyhero}"
enforce_window = false
{meta}"#,
        payhero = key("payhero"),
        pingup = key("pingup"),
        kaleyra = key("kaleyra"),
        digital99 = key("digital99"),
        replyhero = key("replyhero"),
        meta = meta_toml(base_url, config),
    )
}

/// A Meta account on the mock.
fn meta_toml(base_url: &str, config: &TestConfig) -> String {
    let token = config.file("meta", "EAAJB-mock-token");
    format!(
        "[providers.meta.default]\nbase_url = \"{base_url}\"\nphone_number_id = \"106540352242922\"\n\
         access_token_file = \"{}\"\nenforce_window = false\n",
        token.display()
    )
}

/// A mock vendor and a worker, as processes, on `providers`; the test's
/// broker side; stopped (SIGTERM) by [`Stack::stop`].
struct Stack {
    base_url: String,
    broker: Broker,
    mock: Running,
    worker: Running,
}

impl Stack {
    async fn start(env: &TestEnv, config: &TestConfig, providers: &str) -> Stack {
        let mock_addr = free_local_addr();
        let base_url = format!("http://{mock_addr}");
        let providers = providers.replace("{base_url}", &base_url);
        std::fs::write(
            &config.path,
            format!("[http]\nlisten = \"127.0.0.1:0\"\n{providers}"),
        )
        .unwrap();
        let mock = Running::spawn(
            config
                .command(&["mock-vendor", "--listen", &mock_addr.to_string()])
                .stderr(std::process::Stdio::null()),
        );
        let broker = broker(env, &Topology::from_config(&config.load())).await;
        let worker = Running::spawn(
            config
                .command(&["worker"])
                .stderr(std::process::Stdio::null()),
        );
        Stack {
            base_url,
            broker,
            mock,
            worker,
        }
    }

    /// The requests the mock recorded, once there are at least `count`.
    async fn requests(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let requests = recorded(&self.base_url).await;
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "only {} requests reached the mock: {requests:?}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Queues `replies` for `provider` ahead of the mock's faults.
    async fn script(&self, provider: &str, replies: &[&str]) {
        let response = reqwest::Client::new()
            .post(format!("{}/_mock/script", self.base_url))
            .json(&serde_json::json!({"provider": provider, "replies": replies}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }

    fn stop(mut self) {
        signal(&self.worker, Signal::SIGTERM);
        assert!(self.worker.wait().unwrap().success());
        signal(&self.mock, Signal::SIGTERM);
        self.mock.wait().unwrap();
    }
}

async fn recorded(base_url: &str) -> Vec<serde_json::Value> {
    let url = format!("{base_url}/_mock/requests");
    match reqwest::get(url).await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

const PROVIDERS: [&str; 6] = [
    "payhero",
    "pingup",
    "kaleyra",
    "99digital",
    "replyhero",
    "meta",
];

#[tokio::test]
async fn a_job_for_each_provider_goes_through_the_mock_vendor() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, "");
    let stack = Stack::start(&env, &config, &providers_toml("{base_url}", &config)).await;

    for provider in PROVIDERS {
        let job = JobBuilder::text(
            format!("hello-{provider}"),
            provider,
            "+254712345678",
            format!("Hello via {provider}"),
        );
        let job = if provider == "replyhero" {
            job.option("customer_id", "CUSTOMER_ID")
        } else {
            job
        };
        stack
            .broker
            .publisher
            .publish_job(&job.build().unwrap())
            .await
            .unwrap();
    }

    let requests = stack.requests(PROVIDERS.len()).await;
    stack.stop();

    let mut providers: Vec<&str> = requests
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    providers.sort();
    assert_eq!(
        providers,
        [
            "99digital",
            "kaleyra",
            "meta",
            "payhero",
            "pingup",
            "replyhero"
        ]
    );
    for request in &requests {
        assert_eq!(request["status"], 200, "the mock accepted {request}");
        let body = request["body"].to_string();
        assert!(
            body.contains("Hello via"),
            "the text reached the vendor: {body}"
        );
    }
    let kaleyra = requests
        .iter()
        .find(|r| r["provider"] == "kaleyra")
        .unwrap();
    assert_eq!(kaleyra["path"], "/v1/HXAP1XXXXXX17XX/messages");
    assert_eq!(kaleyra["body"]["to"], "+254712345678");
    let digital = requests
        .iter()
        .find(|r| r["provider"] == "99digital")
        .unwrap();
    assert_eq!(
        digital["body"]["to"], "254712345678",
        "99digital gets digits without +"
    );
    let meta = requests.iter().find(|r| r["provider"] == "meta").unwrap();
    assert_eq!(meta["path"], "/v21.0/106540352242922/messages");
    assert_eq!(meta["headers"]["authorization"], "Bearer EAAJB-mock-token");
    assert_eq!(
        (&meta["body"]["messaging_product"], &meta["body"]["type"]),
        (&serde_json::json!("whatsapp"), &serde_json::json!("text"))
    );
    let mut redis = env.redis().await;
    for provider in PROVIDERS {
        let sent: bool = redis::AsyncCommands::exists(
            &mut redis,
            format!("{}sent:hello-{provider}", env.prefix),
        )
        .await
        .unwrap();
        assert!(sent, "{provider} job recorded as sent");
    }
}

/// Meta's own answers, relayed by the mock, mean what Meta says through the
/// whole pipeline: a closed window is a `window_closed` dead letter after
/// one call; a throughput error (130429) is waited out and the job is sent.
#[tokio::test]
async fn meta_errors_through_the_mock_dead_letter_or_wait_as_meta_means() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, "");
    let providers = format!(
        "[retry]\ndelays = [\"1s\"]\n{}",
        meta_toml("{base_url}", &config)
    );
    let stack = Stack::start(&env, &config, &providers).await;
    let publish = |id: &str| JobBuilder::text(id, "meta", "+16505551234", "Your order has shipped");

    stack.script("meta", &["window_closed"]).await;
    let publisher = &stack.broker.publisher;
    publisher
        .publish_job(&publish("meta-closed").build().unwrap())
        .await
        .unwrap();
    let letter = dead_letter(&stack.broker.channel).await;
    let headers = letter.properties.headers();
    assert_eq!(
        header_str(headers.as_ref(), header::DEAD_REASON),
        Some("window_closed")
    );
    assert_eq!(
        header_u32(headers.as_ref(), header::VENDOR_STATUS),
        Some(400)
    );
    let detail = header_str(headers.as_ref(), header::DEAD_DETAIL).unwrap_or_default();
    assert!(detail.starts_with("131047: (#131047)"), "{detail}");

    stack.script("meta", &["429:1", "ok"]).await;
    publisher
        .publish_job(&publish("meta-throttled").build().unwrap())
        .await
        .unwrap();
    let requests = stack.requests(3).await;
    let mut redis = env.redis().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sent: Option<String> =
            redis::AsyncCommands::get(&mut redis, format!("{}sent:meta-throttled", env.prefix))
                .await
                .unwrap();
        if let Some(wamid) = sent {
            assert!(wamid.starts_with("wamid."), "{wamid}");
            break;
        }
        assert!(Instant::now() < deadline, "the throttled job was not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop();
    let statuses: Vec<&serde_json::Value> = requests.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [400, 429, 200]);
}

/// The next dead letter, within 20 s.
async fn dead_letter(channel: &lapin::Channel) -> lapin::message::BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(message) = channel
            .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return message;
        }
        assert!(Instant::now() < deadline, "no dead letter in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
