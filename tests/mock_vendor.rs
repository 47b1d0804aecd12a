//! `herald mock-vendor` and `herald worker` together: one job per provider,
//! sent through the mock and visible in its record.

use std::time::{Duration, Instant};

use herald_client::{JobBuilder, Topology};
use herald_testkit::TestEnv;
use nix::sys::signal::Signal;

use crate::support::{Broker, Running, TestConfig, broker};
use crate::worker::free_local_addr;
use crate::worker_process::signal;

/// The five accounts, every one pointed at the mock; keys from files.
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
"#,
        payhero = key("payhero"),
        pingup = key("pingup"),
        kaleyra = key("kaleyra"),
        digital99 = key("digital99"),
        replyhero = key("replyhero"),
    )
}

async fn recorded(base_url: &str) -> Vec<serde_json::Value> {
    let url = format!("{base_url}/_mock/requests");
    match reqwest::get(url).await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_job_for_each_provider_goes_through_the_mock_vendor() {
    let env = TestEnv::new().await;
    let mock_addr = free_local_addr();
    let base_url = format!("http://{mock_addr}");
    let config = TestConfig::new(&env, "");
    std::fs::write(
        &config.path,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{}",
            providers_toml(&base_url, &config)
        ),
    )
    .unwrap();

    let mut mock = Running::spawn(
        config
            .command(&["mock-vendor", "--listen", &mock_addr.to_string()])
            .stderr(std::process::Stdio::null()),
    );
    let Broker { publisher, .. } = broker(&env, &Topology::from_config(&config.load())).await;
    let mut worker = Running::spawn(
        config
            .command(&["worker"])
            .stderr(std::process::Stdio::null()),
    );

    for provider in ["payhero", "pingup", "kaleyra", "99digital", "replyhero"] {
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
        publisher.publish_job(&job.build().unwrap()).await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let requests = loop {
        let requests = recorded(&base_url).await;
        if requests.len() >= 5 {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "only {} requests reached the mock: {requests:?}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal(&worker, Signal::SIGTERM);
    assert!(worker.wait().unwrap().success());
    signal(&mock, Signal::SIGTERM);
    mock.wait().unwrap();

    let mut providers: Vec<&str> = requests
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    providers.sort();
    assert_eq!(
        providers,
        ["99digital", "kaleyra", "payhero", "pingup", "replyhero"]
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
    let mut redis = env.redis().await;
    for provider in ["payhero", "pingup", "kaleyra", "99digital", "replyhero"] {
        let sent: bool = redis::AsyncCommands::exists(
            &mut redis,
            format!("{}sent:hello-{provider}", env.prefix),
        )
        .await
        .unwrap();
        assert!(sent, "{provider} job recorded as sent");
    }
}
