//! `herald topology declare|status`, the real binary against a fresh vhost.

use herald_testkit::TestEnv;
use serde_json::{Value, json};

use crate::support::{TestConfig, stdout_of};

const PROVIDERS: &str = "\
[amqp]
delivery_limit = 7
[retry]
delays = [\"5s\", \"30s\", \"5s\"]
[providers.kaleyra.default]
base_url = \"http://127.0.0.1:1\"
[providers.pingup.default]
base_url = \"http://127.0.0.1:1\"
";

#[tokio::test]
async fn declare_twice_leaves_the_contract_topology_and_status_lists_every_queue() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, PROVIDERS);
    for _ in 0..2 {
        let declared: Value = serde_json::from_str(&stdout_of(&config.run(&[
            "topology",
            "declare",
            "--provider",
            "payhero",
            "--json",
        ])))
        .unwrap();
        assert_eq!(
            declared["providers"],
            json!(["kaleyra", "pingup", "payhero"])
        );
        assert_eq!(declared["delay_tiers"], json!(["5s", "30s"]));
        assert!(
            !declared["broker"].as_str().unwrap().contains("guest:guest"),
            "{declared}"
        );
    }

    for provider in ["kaleyra", "pingup", "payhero"] {
        let queue = env
            .queue_info(&format!("herald.send.{provider}"))
            .await
            .unwrap();
        assert_eq!(queue["durable"], true);
        assert_eq!(
            queue["arguments"],
            json!({
                "x-queue-type": "quorum",
                "x-delivery-limit": 7,
                "x-dead-letter-exchange": "herald.dead",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish"
            }),
            "{provider}"
        );
    }
    for (tier, ttl) in [("5s", 5_000), ("30s", 30_000)] {
        let queue = env
            .queue_info(&format!("herald.delay.{tier}"))
            .await
            .unwrap();
        assert_eq!(
            queue["arguments"],
            json!({
                "x-queue-type": "quorum",
                "x-message-ttl": ttl,
                "x-dead-letter-exchange": "herald.send",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish"
            }),
            "{tier}"
        );
    }
    let dead = env.queue_info("herald.dead").await.unwrap();
    assert_eq!(
        dead["arguments"],
        json!({"x-queue-type": "quorum"}),
        "no TTL, no further dead-lettering"
    );

    let status: Value = serde_json::from_str(&stdout_of(&config.run(&[
        "topology",
        "status",
        "--provider",
        "payhero",
        "--json",
    ])))
    .unwrap();
    let queues: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        queues,
        [
            "herald.send.kaleyra",
            "herald.send.pingup",
            "herald.send.payhero",
            "herald.delay.5s",
            "herald.delay.30s",
            "herald.dead"
        ]
    );
    for queue in status.as_array().unwrap() {
        assert_eq!(
            (&queue["messages"], &queue["consumers"]),
            (&json!(0), &json!(0)),
            "{queue}"
        );
    }

    let table = stdout_of(&config.run(&["topology", "status"]));
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("herald.delay.30s") && l.ends_with(" 0")),
        "{table}"
    );
}

#[tokio::test]
async fn without_providers_declare_says_no_provider_queue_was_declared() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, "");
    let out = stdout_of(&config.run(&["topology", "declare"]));
    assert!(out.contains("no provider queue declared"), "{out}");
    assert_eq!(
        env.queue_info("herald.dead").await.unwrap()["arguments"]["x-queue-type"],
        "quorum"
    );
    assert!(
        env.queue_info("herald.delay.1h").await.is_ok(),
        "default tiers are declared"
    );
}

#[tokio::test]
async fn status_before_declare_says_what_to_run_and_a_bad_config_exits_2() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, PROVIDERS);
    let status = config.run(&["topology", "status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "missing queues are not found"
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("herald topology declare"));
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("herald.dead") && l.contains("missing")),
        "every queue listed, missing ones marked: {table}"
    );

    let bad = TestConfig::new(&env, "[retry]\ndelays = [\"soon\"]\n");
    let declare = bad.run(&["topology", "declare"]);
    assert_eq!(declare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&declare.stderr).contains("retry.delays"));
}
