//! `herald dlq` against the real broker: dead letters are seeded the way the
//! worker and the broker make them (published to `herald.dead` with the
//! contract's headers), then the real binary browses, replays, purges,
//! exports and imports them.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_client::{Outgoing, Publisher, Topology, header_u32};
use herald_core::protocol::{DEAD_EXCHANGE, DEAD_QUEUE, header, send_queue};
use herald_testkit::TestEnv;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{Broker, TestConfig, broker, stdout_of};

/// A message as the test sees it: routing key, body, properties.
type Message = (String, Vec<u8>, BasicProperties);

struct Dlq {
    /// Keeps the test's vhost alive; removed on drop.
    _env: TestEnv,
    _connection: lapin::Connection,
    config: TestConfig,
    channel: Channel,
    publisher: Publisher,
}

impl Dlq {
    async fn start() -> Dlq {
        let env = TestEnv::new().await;
        let config = TestConfig::new(&env, "");
        let topology = Topology {
            providers: vec!["kaleyra".into(), "payhero".into()],
            delay_tiers: vec![Duration::from_secs(1)],
            delivery_limit: 5,
        };
        let Broker {
            connection,
            channel,
            publisher,
        } = broker(&env, &topology).await;
        Dlq {
            _env: env,
            _connection: connection,
            config,
            channel,
            publisher,
        }
    }

    /// Publishes each message to `herald.dead`, confirmed.
    async fn seed(&self, letters: &[Message]) {
        for (routing_key, body, properties) in letters {
            self.publisher
                .publish(Outgoing {
                    exchange: DEAD_EXCHANGE,
                    routing_key,
                    body,
                    properties: properties.clone(),
                    mandatory: true,
                })
                .await
                .unwrap();
        }
    }

    /// Takes every message out of `queue`, in order.
    async fn drain(&self, queue: &str) -> Vec<Message> {
        let mut out = Vec::new();
        let no_ack = BasicGetOptions { no_ack: true };
        while let Some(got) = self.channel.basic_get(queue.into(), no_ack).await.unwrap() {
            let d = got.delivery;
            out.push((d.routing_key.to_string(), d.data, d.properties));
        }
        out
    }

    async fn depth(&self, queue: &str) -> u32 {
        crate::support::queue_depth(&self.channel, queue).await
    }

    fn run_ok(&self, args: &[&str]) -> String {
        stdout_of(&self.config.run(args))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run_ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }
}

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn job_body(id: &str, provider: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","provider":"{provider}","to":"+254712345678","message":{{"type":"text","body":"hi {id}"}}}}"#
    )
    .into_bytes()
}

/// A dead letter as the worker makes it.
fn worker_letter(id: &str, provider: &str, reason: &str, at: &str) -> Message {
    let headers = table(&[
        (header::DEAD_REASON, text(reason)),
        (header::DEAD_DETAIL, text(&format!("{reason} for {id}"))),
        (header::DEAD_AT, text(at)),
        (header::PROVIDER, text(provider)),
        (header::ATTEMPT, AMQPValue::LongInt(2)),
        (header::VENDOR_STATUS, AMQPValue::LongInt(400)),
        (
            header::VENDOR_RESPONSE,
            text(r#"{"error":"131047 re-engagement"}"#),
        ),
        (header::FIRST_ATTEMPT_AT, text("2026-11-21T09:00:00.000Z")),
        ("producer-trace", text(id)),
    ]);
    let properties = herald_client::persistent_json()
        .with_message_id(id.into())
        .with_headers(headers);
    (provider.to_owned(), job_body(id, provider), properties)
}

/// A dead letter as the broker makes it after the delivery limit, having
/// passed a delay tier earlier.
fn broker_letter(id: &str) -> Message {
    let death = |queue: &str, reason: &str, time: u64| {
        AMQPValue::FieldTable(table(&[
            ("queue", text(queue)),
            ("reason", text(reason)),
            ("count", AMQPValue::LongLongInt(1)),
            ("exchange", text("")),
            ("time", AMQPValue::Timestamp(time)),
        ]))
    };
    let deaths = FieldArray::from(vec![
        death("herald.send.kaleyra", "delivery_limit", 1_795_000_000),
        death("herald.delay.1s", "expired", 1_794_999_000),
    ]);
    let headers = table(&[(header::X_DEATH, AMQPValue::FieldArray(deaths))]);
    let properties = herald_client::persistent_json()
        .with_message_id(id.into())
        .with_headers(headers);
    ("kaleyra".to_owned(), job_body(id, "kaleyra"), properties)
}

/// Compares what the broker holds with what was seeded. `x-delivery-count`
/// is ignored: the quorum queue adds or bumps it whenever a browse puts a
/// letter back, and it describes that handling, not the letter.
fn comparable(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .map(|(key, body, properties)| {
            let headers = properties.headers().clone().unwrap_or_default();
            let kept: std::collections::BTreeMap<_, _> = headers
                .inner()
                .iter()
                .filter(|(k, _)| k.as_str() != "x-delivery-count")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (
                key.clone(),
                body.clone(),
                properties.clone().with_headers(kept.into()),
            )
        })
        .collect()
}

/// Every integer header as 64-bit: the plain export form keeps values, not
/// AMQP integer widths (Herald reads any width).
fn widened(messages: &[Message]) -> Vec<Message> {
    fn widen(value: &AMQPValue) -> AMQPValue {
        match value {
            AMQPValue::ShortShortInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::ShortShortUInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::ShortInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::ShortUInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::LongInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::LongUInt(v) => AMQPValue::LongLongInt((*v).into()),
            AMQPValue::FieldArray(items) => AMQPValue::FieldArray(
                items
                    .as_slice()
                    .iter()
                    .map(widen)
                    .collect::<Vec<_>>()
                    .into(),
            ),
            AMQPValue::FieldTable(t) => AMQPValue::FieldTable(widen_table(t)),
            other => other.clone(),
        }
    }
    fn widen_table(t: &FieldTable) -> FieldTable {
        let entries: std::collections::BTreeMap<_, _> = t
            .inner()
            .iter()
            .map(|(k, v)| (k.clone(), widen(v)))
            .collect();
        entries.into()
    }
    messages
        .iter()
        .map(|(key, body, properties)| {
            let headers = properties
                .headers()
                .as_ref()
                .map(widen_table)
                .unwrap_or_default();
            (
                key.clone(),
                body.clone(),
                properties.clone().with_headers(headers),
            )
        })
        .collect()
}

fn header_of(message: &Message, name: &str) -> Option<u32> {
    header_u32(message.2.headers().as_ref(), name)
}

fn id_of(message: &Message) -> String {
    message.2.message_id().as_ref().unwrap().to_string()
}

#[tokio::test]
async fn browsing_leaves_the_queue_exactly_as_it_was() {
    let dlq = Dlq::start().await;
    let letters = vec![
        worker_letter(
            "k-window-1",
            "kaleyra",
            "window_closed",
            "2026-11-21T10:00:00.000Z",
        ),
        worker_letter(
            "p-expired-1",
            "payhero",
            "expired",
            "2026-11-21T11:00:00.000Z",
        ),
        broker_letter("k-crash-1"),
        worker_letter(
            "k-window-2",
            "kaleyra",
            "window_closed",
            "2026-11-21T12:00:00.000Z",
        ),
        (
            "nosuchvendor".to_owned(),
            b"not even json".to_vec(),
            BasicProperties::default(),
        ),
    ];
    dlq.seed(&letters).await;

    let table = dlq.run_ok(&["dlq", "list"]);
    assert!(
        table.contains("k-window-1") && table.contains("5 dead letter(s)"),
        "{table}"
    );

    let kaleyra = dlq.json(&["dlq", "list", "--provider", "kaleyra", "--json"]);
    let ids: Vec<_> = kaleyra
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k-window-1", "k-crash-1", "k-window-2"]);
    assert_eq!(
        kaleyra[1]["reason"], "delivery_limit",
        "a delay hop plus a delivery-limit death"
    );

    let limited = dlq.json(&[
        "dlq",
        "list",
        "--reason",
        "window_closed",
        "--since",
        "2026-11-21T11:30:00Z",
        "--json",
    ]);
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["job_id"], "k-window-2");
    let first = dlq.json(&["dlq", "list", "--limit", "1", "--json"]);
    assert_eq!(first.as_array().unwrap().len(), 1);

    let shown = dlq.run_ok(&["dlq", "show", "k-window-1"]);
    for expected in [
        "window_closed for k-window-1",
        "HTTP 400",
        "131047",
        "producer-trace",
        "\"body\": \"hi k-window-1\"",
    ] {
        assert!(
            shown.contains(expected),
            "show lacks {expected:?}:\n{shown}"
        );
    }
    let crash = dlq.run_ok(&["dlq", "show", "--id", "k-crash-1"]);
    assert!(
        crash.contains("broker death delivery_limit in herald.send.kaleyra"),
        "{crash}"
    );
    let unknown = dlq.json(&["dlq", "show", "--provider", "nosuchvendor", "--json"]);
    assert_eq!(unknown[0]["reason"], "unknown_provider");
    assert_eq!(unknown[0]["job"], "not even json");

    let stats = dlq.json(&["dlq", "stats", "--json"]);
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["by_provider"]["kaleyra"], 3);
    assert_eq!(stats["by_reason"]["window_closed"], 2);
    assert_eq!(stats["by_reason"]["unknown_provider"], 1);
    assert_eq!(
        stats["oldest"], "2026-11-18T11:06:40Z",
        "the broker's x-death time"
    );
    assert_eq!(stats["newest"], "2026-11-21T12:00:00Z");

    let after = dlq.drain(DEAD_QUEUE).await;
    assert_eq!(
        comparable(&after),
        comparable(&letters),
        "count, order, bodies and headers kept"
    );
}

#[tokio::test]
async fn looking_at_dead_letters_never_raises_their_delivery_count() {
    let dlq = Dlq::start().await;
    let letters = vec![
        worker_letter("k-1", "kaleyra", "expired", "2026-11-21T10:00:00.000Z"),
        worker_letter("p-1", "payhero", "expired", "2026-11-21T11:00:00.000Z"),
    ];
    dlq.seed(&letters).await;
    for _ in 0..3 {
        dlq.run_ok(&["dlq", "list"]);
        dlq.run_ok(&["dlq", "list", "--limit", "1"]);
        dlq.run_ok(&["dlq", "stats", "--provider", "payhero"]);
        dlq.run_ok(&["dlq", "show", "k-1"]);
    }
    let no_ack = BasicGetOptions { no_ack: true };
    for expected in ["k-1", "p-1"] {
        let got = dlq
            .channel
            .basic_get(DEAD_QUEUE.into(), no_ack)
            .await
            .unwrap()
            .expect("the letter is still there");
        let d = got.delivery;
        assert_eq!(
            d.properties.message_id().as_ref().unwrap().as_str(),
            expected,
            "order kept"
        );
        assert!(!d.redelivered, "{expected} was never returned to the queue");
        assert_eq!(
            header_u32(d.properties.headers().as_ref(), "x-delivery-count").unwrap_or(0),
            0,
            "{expected}'s delivery count did not grow"
        );
    }
}

#[tokio::test]
async fn replay_by_reason_republishes_exactly_those_letters_once() {
    let dlq = Dlq::start().await;
    let at = "2026-11-21T10:00:00.000Z";
    let letters = vec![
        worker_letter("w1", "kaleyra", "window_closed", at),
        worker_letter("e1", "kaleyra", "expired", at),
        worker_letter("w2", "payhero", "window_closed", at),
        worker_letter("e2", "payhero", "rejected_by_vendor", at),
        worker_letter("w3", "kaleyra", "window_closed", at),
    ];
    dlq.seed(&letters).await;

    let dry = dlq.json(&[
        "dlq",
        "replay",
        "--reason",
        "window_closed",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["replayed"], 3);
    assert_eq!(
        dlq.depth(&send_queue("kaleyra")).await,
        0,
        "a dry run changes nothing"
    );

    let report = dlq.json(&["dlq", "replay", "--reason", "window_closed", "--json"]);
    assert_eq!(
        (
            report["replayed"].as_u64(),
            report["skipped"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(0))
    );

    let kaleyra = dlq.drain(&send_queue("kaleyra")).await;
    let payhero = dlq.drain(&send_queue("payhero")).await;
    assert_eq!(kaleyra.iter().map(id_of).collect::<Vec<_>>(), ["w1", "w3"]);
    assert_eq!(payhero.iter().map(id_of).collect::<Vec<_>>(), ["w2"]);
    for replayed in kaleyra.iter().chain(&payhero) {
        let original = letters
            .iter()
            .find(|l| id_of(l) == id_of(replayed))
            .unwrap();
        assert_eq!(replayed.0, original.0, "routing key kept");
        assert_eq!(replayed.1, original.1, "body byte for byte");
        assert_eq!(header_of(replayed, header::REPLAYED), Some(1));
        assert_eq!(
            header_of(replayed, header::ATTEMPT),
            None,
            "attempt count reset"
        );
        let h = replayed.2.headers().as_ref().unwrap();
        assert!(
            h.contains_key(header::FIRST_ATTEMPT_AT) && h.contains_key("producer-trace"),
            "history kept"
        );
        assert!(
            !h.contains_key(header::DEAD_REASON),
            "the old verdict is gone"
        );
    }
    let left = dlq.drain(DEAD_QUEUE).await;
    assert_eq!(
        comparable(&left),
        comparable(&[letters[1].clone(), letters[3].clone()]),
        "others untouched, in place"
    );

    // w1 dies again: the worker dead-letters the replayed copy, headers and all.
    let (key, body, properties) = kaleyra[0].clone();
    let mut headers = properties.headers().clone().unwrap();
    headers.insert(header::DEAD_REASON.into(), text("window_closed"));
    headers.insert(header::ATTEMPT.into(), AMQPValue::LongInt(1));
    dlq.seed(&[(key, body, properties.with_headers(headers))])
        .await;
    let again = dlq.json(&["dlq", "show", "w1", "--json"]);
    assert_eq!(again[0]["replayed"], 1);
    dlq.run_ok(&["dlq", "replay", "--id", "w1"]);
    let second = dlq.drain(&send_queue("kaleyra")).await;
    assert_eq!(second.len(), 1);
    assert_eq!(header_of(&second[0], header::REPLAYED), Some(2));
}

#[tokio::test]
async fn replay_is_one_pass_even_when_letters_die_again_at_once() {
    let dlq = Dlq::start().await;
    // No queue is bound for this provider: every replayed copy comes straight
    // back into herald.dead through the alternate exchange, while the pass runs.
    let letters: Vec<Message> = (0..20)
        .map(|i| {
            worker_letter(
                &format!("loop-{i}"),
                "gone",
                "unknown_provider",
                "2026-11-21T10:00:00.000Z",
            )
        })
        .collect();
    dlq.seed(&letters).await;

    let started = Instant::now();
    let report = dlq.json(&["dlq", "replay", "--json"]);
    assert_eq!(
        report["replayed"], 20,
        "each letter once, not the copies that came back"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let back = dlq.drain(DEAD_QUEUE).await;
    assert_eq!(back.len(), 20);
    assert!(
        back.iter()
            .all(|m| header_of(m, header::REPLAYED) == Some(1))
    );
}

#[tokio::test]
async fn a_replay_killed_half_way_loses_nothing() {
    let dlq = Dlq::start().await;
    let n = 300;
    let letters: Vec<Message> = (0..n)
        .map(|i| {
            worker_letter(
                &format!("kill-{i}"),
                "kaleyra",
                "retries_exhausted",
                "2026-11-21T10:00:00.000Z",
            )
        })
        .collect();
    dlq.seed(&letters).await;

    let mut child = crate::support::Running::spawn(
        dlq.config
            .command(&["dlq", "replay", "--rate", "50/s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Kill it once some, not all, letters have moved.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dlq.depth(&send_queue("kaleyra")).await < 40 {
        assert!(Instant::now() < deadline, "the replay never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();

    // The broker requeues the dead process's unacked letters once it sees
    // the connection gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = loop {
        let total = dlq.depth(DEAD_QUEUE).await + dlq.depth(&send_queue("kaleyra")).await;
        if total >= n as u32 || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        total >= n as u32,
        "only {total} of {n} letters left anywhere"
    );

    let replayed = dlq.drain(&send_queue("kaleyra")).await;
    let dead = dlq.drain(DEAD_QUEUE).await;
    assert!(
        !replayed.is_empty() && !dead.is_empty(),
        "killed half-way: {} replayed, {} dead",
        replayed.len(),
        dead.len()
    );
    let mut seen: HashMap<String, u32> = HashMap::new();
    for m in replayed.iter().chain(&dead) {
        *seen.entry(id_of(m)).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "every letter is somewhere");
    let doubled = seen.values().filter(|c| **c > 1).count();
    assert!(
        doubled <= 1,
        "{doubled} letters doubled; at most the one in flight may be"
    );
}

#[tokio::test]
async fn export_purge_import_round_trips_byte_for_byte() {
    let dlq = Dlq::start().await;
    let typed = table(&[
        ("i8", AMQPValue::ShortShortInt(-3)),
        ("i64", AMQPValue::LongLongInt(1 << 40)),
        ("u8", AMQPValue::ShortShortUInt(7)),
        ("bool", AMQPValue::Boolean(true)),
        ("f64", AMQPValue::Double(0.1)),
        ("bytes", AMQPValue::ByteArray(vec![0u8, 1, 255].into())),
        (
            "binary-text",
            AMQPValue::LongString(LongString::from(vec![0xffu8, 0x00])),
        ),
        (
            "nested",
            AMQPValue::FieldTable(table(&[(
                "list",
                AMQPValue::FieldArray(vec![text("a"), AMQPValue::LongInt(1)].into()),
            )])),
        ),
        ("stamp", AMQPValue::Timestamp(1_795_000_000)),
        (header::DEAD_REASON, text("invalid_job")),
    ]);
    let mut letters = vec![
        worker_letter("x1", "kaleyra", "expired", "2026-11-21T10:00:00.000Z"),
        (
            "payhero".to_owned(),
            vec![0xc3, 0x28, 0x00, 0xff],
            BasicProperties::default()
                .with_headers(typed)
                .with_priority(4)
                .with_timestamp(1_795_000_000),
        ),
        broker_letter("x3"),
    ];
    letters.push(worker_letter(
        "x4",
        "payhero",
        "window_closed",
        "2026-11-21T10:00:00.000Z",
    ));
    dlq.seed(&letters).await;

    let file = dlq.config.dir.path().join("dead.jsonl");
    let file = file.to_str().unwrap();
    let exported = dlq.json(&["dlq", "export", file, "--json"]);
    assert_eq!(exported["exported"], 4);
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 4);

    let refused = dlq.config.run(&["dlq", "purge"]);
    assert!(
        !refused.status.success(),
        "no --yes and no terminal: refuse"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(dlq.depth(DEAD_QUEUE).await, 4);

    let purge_file = dlq.config.dir.path().join("purged.jsonl");
    let purged = dlq.json(&[
        "dlq",
        "purge",
        "--yes",
        "--export",
        purge_file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(purged["purged"], 4);
    assert_eq!(dlq.depth(DEAD_QUEUE).await, 0);
    assert_eq!(
        std::fs::read_to_string(&purge_file)
            .unwrap()
            .lines()
            .count(),
        4
    );

    let imported = dlq.json(&["dlq", "import", file, "--json"]);
    assert_eq!(imported["imported"], 4);
    let back = dlq.drain(DEAD_QUEUE).await;
    assert_eq!(
        widened(&comparable(&back)),
        widened(&comparable(&letters)),
        "bodies, routing keys, properties and headers (integers come back 64-bit)"
    );

    // The same file straight to the provider queues, as a replay.
    let sent = dlq.json(&["dlq", "import", file, "--to-send", "--json"]);
    assert_eq!(sent["imported"], 4);
    let kaleyra = dlq.drain(&send_queue("kaleyra")).await;
    assert_eq!(kaleyra.iter().map(id_of).collect::<Vec<_>>(), ["x1", "x3"]);
    assert!(
        kaleyra
            .iter()
            .all(|m| header_of(m, header::REPLAYED) == Some(1))
    );
    assert_eq!(dlq.depth(&send_queue("payhero")).await, 2);
}

/// The whole loop with a real worker: jobs die `window_closed`, customers
/// reply, a replay sends exactly those jobs once each; a job whose customer
/// did not reply dies again, marked as replayed once; other letters stay.
#[tokio::test]
async fn replaying_window_closed_letters_after_customers_reply_sends_each_once() {
    use crate::worker::{FAST_RETRY, Harness, kaleyra_ok};
    use herald_client::JobBuilder;
    use herald_core::{DeadReason, EventStatus};
    use wiremock::matchers::method;
    use wiremock::{Mock, Request};

    let mut h = Harness::start(FAST_RETRY, "").await;
    Mock::given(method("POST"))
        .respond_with(kaleyra_ok())
        .mount(&h.vendor)
        .await;
    let recipients = ["+254700000001", "+254700000002", "+254700000003"];
    for (i, to) in recipients.iter().enumerate() {
        let job = JobBuilder::text(format!("closed-{i}"), "kaleyra", *to, "Your order shipped")
            .build()
            .unwrap();
        h.publish(&job).await;
        let (dead, _) = h
            .event_with(EventStatus::Dead, Duration::from_secs(15))
            .await;
        assert_eq!(dead.reason, Some(DeadReason::WindowClosed));
    }
    h.publish_raw("kaleyra", b"{not json").await;
    h.event_with(EventStatus::Dead, Duration::from_secs(15))
        .await;
    assert_eq!(h.vendor_calls().await, 0);

    // The first two customers reply.
    let config = TestConfig::new(
        &h.env,
        &crate::worker::kaleyra_account(&h.vendor.uri(), std::path::Path::new("/dev/null"), ""),
    );
    for to in &recipients[..2] {
        let out = config.run(&[
            "inbound",
            "record",
            "--provider",
            "kaleyra",
            "--contact",
            to,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = config.run(&["dlq", "replay", "--reason", "window_closed", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(report["replayed"], 3, "{report}");

    let mut sent = Vec::new();
    let mut died_again = Vec::new();
    while sent.len() + died_again.len() < 3 {
        let event = h.next_event(Duration::from_secs(15)).await;
        match event.status {
            EventStatus::Sent => sent.push(event.job_id),
            EventStatus::Dead => died_again.push(event.job_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    sent.sort();
    assert_eq!(sent, ["closed-0", "closed-1"]);
    assert_eq!(died_again, ["closed-2"]);
    let requests: Vec<Request> = h.vendor.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "exactly those jobs, once each");

    // Left in the dead-letter queue: the invalid job (untouched) and the
    // job whose customer never replied, marked as replayed once.
    let mut left = Vec::new();
    while let Some(message) = h
        .channel
        .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        left.push(message);
    }
    assert_eq!(left.len(), 2);
    let again = left
        .iter()
        .find(|m| m.delivery.data.starts_with(b"{\"id\":\"closed-2\""))
        .expect("closed-2 died again");
    assert_eq!(
        header_u32(
            again.delivery.properties.headers().as_ref(),
            header::REPLAYED
        ),
        Some(1)
    );
    assert!(
        left.iter().any(|m| m.delivery.data == b"{not json"),
        "the invalid job stayed"
    );
    h.stop().await;
}

/// A job that keeps coming back unacknowledged (a worker crashing on it)
/// is dead-lettered by the broker at the queue's delivery limit, and
/// `herald dlq` reports it as `delivery_limit`.
#[tokio::test]
async fn the_broker_dead_letters_a_poison_job_as_delivery_limit() {
    use lapin::options::BasicNackOptions;

    let dlq = Dlq::start().await;
    let job = herald_client::JobBuilder::text("poison-1", "kaleyra", "+254712345678", "hi")
        .build()
        .unwrap();
    dlq.publisher.publish_job(&job).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while crate::support::queue_depth(&dlq.channel, DEAD_QUEUE).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the broker never gave up on the job"
        );
        if let Some(message) = dlq
            .channel
            .basic_get(
                send_queue("kaleyra").as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .unwrap()
        {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            message.delivery.nack(requeue).await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let listed: serde_json::Value =
        serde_json::from_str(&dlq.run_ok(&["dlq", "list", "--json"])).unwrap();
    let letter = &listed.as_array().expect("a JSON array")[0];
    assert_eq!(letter["reason"], "delivery_limit", "{letter}");
    assert_eq!(letter["job_id"], "poison-1");
}
