//! `herald enqueue`, the real binary against a fresh vhost: what it
//! publishes is read back from the provider queue.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use herald_core::{Job, Message};
use herald_testkit::TestEnv;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use crate::support::{TestConfig, stdout_of};

const CONFIG: &str = "\
[providers.kaleyra.default]
base_url = \"http://127.0.0.1:1\"
";

/// A vhost with the topology declared by the binary itself.
fn declared(env: &TestEnv) -> TestConfig {
    let config = TestConfig::new(env, CONFIG);
    stdout_of(&config.run(&["topology", "declare"]));
    config
}

/// Reads exactly `expected` messages from `queue`, and checks none follow.
async fn drain(env: &TestEnv, queue: &str, expected: usize) -> Vec<Delivery> {
    let connection = env.amqp().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(queue.into(), "test".into(), options, FieldTable::default())
        .await
        .unwrap();
    let mut deliveries = Vec::with_capacity(expected);
    while deliveries.len() < expected {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
        match next {
            Ok(Some(delivery)) => deliveries.push(delivery.unwrap()),
            _ => panic!("{queue}: only {} of {expected} messages", deliveries.len()),
        }
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(
        extra.is_err(),
        "{queue} holds more than {expected} messages"
    );
    deliveries
}

fn job_of(delivery: &Delivery) -> Job {
    Job::parse(&delivery.data).expect("published jobs are valid")
}

fn report_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn rejected_lines(report: &Value) -> Vec<u64> {
    report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect()
}

/// The fields a rejected line's problems name.
fn fields_of(report: &Value, line: u64) -> Vec<String> {
    let row = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["line"] == line)
        .unwrap_or_else(|| panic!("line {line} not rejected: {report}"));
    row["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_csv_of_ten_thousand_rows_publishes_every_good_row_and_names_the_bad_lines() {
    let env = TestEnv::new().await;
    let config = declared(&env);

    // Line 1 is the header; `rows` maps each good line to its (to, name, order).
    let mut lines = vec!["to,name,order".to_owned()];
    let mut rows = std::collections::HashMap::new();
    let mut bad = Vec::new();
    for i in 0..10_000u64 {
        if i == 7_000 {
            lines.push(String::new()); // a blank line must not shift the numbering
        }
        let line = lines.len() as u64 + 1;
        let (to, name, order) = (
            format!("+2547{i:08}"),
            format!("Customer {i}"),
            format!("{}", 100_000 + i),
        );
        let text = match i {
            99 => format!("0712{i},{name},{order}"), // not E.164
            2_500 => format!("{to},,{order}"),       // empty template parameter
            5_001 => format!("{to},{name}"),         // a cell short
            9_998 => format!("+1,  ,{order}"),       // two problems at once
            _ => {
                rows.insert(line, (to.clone(), name.clone(), order.clone()));
                format!("{to},\"{name}\",{order}")
            }
        };
        if !rows.contains_key(&line) {
            bad.push(line);
        }
        lines.push(text);
    }
    let csv = config.file("customers.csv", &(lines.join("\n") + "\n"));

    let output = config.run(&[
        "enqueue",
        "--csv",
        csv.to_str().unwrap(),
        "--batch-id",
        "promo-7",
        "--provider",
        "kaleyra",
        "--template",
        "order_update",
        "--param-column",
        "name",
        "--param-column",
        "order",
        "--metadata",
        r#"{"order": "{order}", "batch": 7}"#,
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(2), "rejected rows exit 2");
    let report = report_of(&output);
    assert_eq!(bad, [101, 2502, 5003, 10_001]);
    assert_eq!(rejected_lines(&report), bad);
    assert_eq!(fields_of(&report, 101), ["to"]);
    assert_eq!(fields_of(&report, 2502), ["message.body[0]"]);
    assert_eq!(fields_of(&report, 5003), ["$"]);
    assert_eq!(fields_of(&report, 10_001), ["to", "message.body[0]"]);
    assert_eq!(report["published"], 9_996);
    assert_eq!(report["valid"], 9_996);
    assert_eq!(report["failed"], json!([]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "line 101: to:",
        "line 2502: message.body[0]:",
        "line 5003: $:",
        "line 10001: to:",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }

    let deliveries = drain(&env, "herald.send.kaleyra", 9_996).await;
    let mut ids = HashSet::new();
    for delivery in &deliveries {
        let job = job_of(delivery);
        let line: u64 = job.id.strip_prefix("promo-7:").unwrap().parse().unwrap();
        let (to, name, order) = &rows[&line];
        assert_eq!(&job.to, to);
        assert_eq!(
            job.message,
            Message::Template {
                name: "order_update".into(),
                language: "en".into(),
                header: None,
                body: vec![name.clone(), order.clone()],
            }
        );
        assert_eq!(
            job.metadata.unwrap(),
            *json!({"order": order, "batch": 7}).as_object().unwrap()
        );
        assert_eq!(
            delivery.properties.message_id().as_ref().unwrap().as_str(),
            job.id
        );
        assert!(ids.insert(job.id), "ids are unique");
    }
}

#[tokio::test]
async fn json_lines_from_stdin_report_malformed_and_unknown_field_lines() {
    let env = TestEnv::new().await;
    let config = declared(&env);
    let job = |id: &str| {
        json!({"id": id, "provider": "kaleyra", "to": "+254712345678",
               "message": {"type": "text", "body": "Your order has shipped"}})
    };
    let mut unknown = job("j-3");
    unknown["priority"] = json!("high");
    let input = [
        job("j-1").to_string(),
        "{\"id\": \"j-2\", ".to_owned(),
        unknown.to_string(),
        String::new(),
        job("j-5").to_string(),
    ]
    .join("\n");

    let mut child = config
        .command(&["enqueue", "--jsonl", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "rejected rows exit 2");
    let report = report_of(&output);
    assert_eq!(rejected_lines(&report), [2, 3]);
    assert_eq!(fields_of(&report, 2), ["$"]);
    assert_eq!(fields_of(&report, 3), ["priority"]);
    assert_eq!(report["published"], 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: $: not valid JSON"), "{stderr}");
    assert!(
        stderr.contains("line 3: priority: unknown field"),
        "{stderr}"
    );

    let ids: Vec<String> = drain(&env, "herald.send.kaleyra", 2)
        .await
        .iter()
        .map(|d| job_of(d).id)
        .collect();
    assert_eq!(ids, ["j-1", "j-5"]);
}

#[tokio::test]
async fn one_job_from_flags_is_published_with_its_id_as_message_id() {
    let env = TestEnv::new().await;
    let config = declared(&env);
    let output = config.run(&[
        "enqueue",
        "--id",
        "order-1234-shipped",
        "--provider",
        "kaleyra",
        "--to",
        "+254712345678",
        "--text",
        "Your order has shipped",
        "--fallback-template",
        "order_update",
        "--fallback-param",
        "1234",
        "--option",
        "ref=cust-88",
    ]);
    let summary = stdout_of(&output);
    assert!(summary.contains("published 1"), "{summary}");

    let delivery = drain(&env, "herald.send.kaleyra", 1).await.remove(0);
    let properties = &delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().unwrap().as_str(),
        "order-1234-shipped"
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let job = job_of(&delivery);
    assert_eq!(
        job.message,
        Message::Text {
            body: "Your order has shipped".into()
        }
    );
    assert_eq!(job.options["ref"], "cust-88");
    assert!(job.fallback_template.is_some());
}

#[tokio::test]
async fn re_running_a_csv_gives_the_same_ids_and_a_dry_run_publishes_nothing() {
    let env = TestEnv::new().await;
    let config = declared(&env);
    let csv = config.file(
        "c.csv",
        "to,name\n+254712345678,Amina\n+254700000001,Baraka\n",
    );
    let args = |extra: &'static str| {
        let mut args = vec![
            "enqueue",
            "--csv",
            csv.to_str().unwrap(),
            "--batch-id",
            "b1",
            "--provider",
            "kaleyra",
            "--text",
            "Hi {name}, {{braces}} stay",
        ];
        args.extend(extra.split_whitespace());
        args
    };

    let dry = config.run(&args("--dry-run --json"));
    let report = report_of(&dry);
    assert_eq!(
        (report["valid"].as_u64(), report["published"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(dry.status.code(), Some(0));

    stdout_of(&config.run(&args("")));
    stdout_of(&config.run(&args("")));
    let deliveries = drain(&env, "herald.send.kaleyra", 4).await;
    let jobs: Vec<Job> = deliveries.iter().map(job_of).collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        ids,
        ["b1:2", "b1:3", "b1:2", "b1:3"],
        "the dry run published nothing"
    );
    assert_eq!(
        jobs[1].message,
        Message::Text {
            body: "Hi Baraka, {braces} stay".into()
        }
    );
}

#[tokio::test]
async fn usage_mistakes_exit_2_and_a_missing_topology_publishes_nothing() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, CONFIG);
    let csv = config.file("c.csv", "phone,name\n+254712345678,Amina\n");
    let no_to = config.run(&[
        "enqueue",
        "--csv",
        csv.to_str().unwrap(),
        "--batch-id",
        "b",
        "--provider",
        "kaleyra",
        "--text",
        "hi",
    ]);
    assert_eq!(no_to.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_to.stderr).contains("no `to` column"));

    let undeclared = config.run(&[
        "enqueue",
        "--id",
        "a",
        "--provider",
        "kaleyra",
        "--to",
        "+254712345678",
        "--text",
        "hi",
    ]);
    assert_eq!(undeclared.status.code(), Some(3), "not found");
    assert!(String::from_utf8_lossy(&undeclared.stderr).contains("herald topology declare"));
}
