//! The real `herald worker` process's `/metrics`: counted from process start
//! (nothing lost before the first scrape), every series of a configured
//! provider present at 0, and the dashboard and alerts naming only metrics
//! a worker really exports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_client::{JobBuilder, Outgoing};
use herald_core::Event;
use herald_core::protocol::SEND_EXCHANGE;
use lapin::options::BasicAckOptions;
use redis::AsyncCommands;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::Running;
use crate::worker::{bind_events, free_local_addr, kaleyra_ok};
use crate::worker_process::Fleet;

const TO: &str = "+254712345678";
/// A second provider that gets no job: its series must exist all the same.
const IDLE_PROVIDER: &str = "[providers.payhero.default]\nbase_url = \"http://127.0.0.1:9\"\nsession = \"s\"\nbasic_token_env = \"HERALD_TEST_PAYHERO_TOKEN\"\n";
/// One delayed retry, then `retries_exhausted`.
const ONE_RETRY: &str = "[retry]\nimmediate = 0\ndelays = [\"1s\"]\nmax_attempts = 2\n";

/// A worker process listening on a known address, in a fleet's environment.
async fn spawn_worker(fleet: &Fleet) -> (Running, SocketAddr) {
    spawn_worker_with(fleet, &[]).await
}

/// [`spawn_worker`] with environment overrides.
async fn spawn_worker_with(fleet: &Fleet, env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let addr = free_local_addr();
    let worker = Running::spawn(
        fleet
            .config
            .command(&["worker", "--listen", &addr.to_string()])
            .env("HERALD_TEST_PAYHERO_TOKEN", "test-payhero-token")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let healthz = format!("http://{addr}/healthz");
    while reqwest::get(&healthz).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the worker never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (worker, addr)
}

/// A Kaleyra that accepts every job, except a template whose parameter says
/// `retry-me` (500, retryable) or `reject-me` (Kaleyra's E13008, permanent).
async fn kaleyra() -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("retry-me"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&vendor)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("reject-me"))
        .respond_with(ResponseTemplate::new(400).set_body_string(include_str!(
            "../crates/vendors/tests/fixtures/kaleyra_e13008.json"
        )))
        .with_priority(1)
        .mount(&vendor)
        .await;
    Mock::given(method("POST"))
        .respond_with(kaleyra_ok())
        .mount(&vendor)
        .await;
    vendor
}

fn template(id: &str, param: &str) -> JobBuilder {
    JobBuilder::template(id, "kaleyra", TO, "order_update", "en", vec![param.into()])
}

/// One parsed sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One `/metrics` answer.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    async fn of(addr: SocketAddr) -> Scrape {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .unwrap();
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(parse_sample)
            .collect();
        Scrape { text, samples }
    }

    /// The value of the one sample named `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted)
            .collect();
        match found.as_slice() {
            [one] => one.value,
            _ => panic!(
                "{} samples {name}{wanted:?} in:\n{}",
                found.len(),
                self.text
            ),
        }
    }

    /// Every metric family named by a `# TYPE` line, with its type.
    fn families(&self) -> BTreeMap<&str, &str> {
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .collect()
    }

    /// Every name a query may use: the families, and each histogram's
    /// `_bucket`, `_sum` and `_count` series.
    fn queryable_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (family, kind) in self.families() {
            names.insert(family.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{family}{suffix}"));
                }
            }
        }
        names
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("`series value`");
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let labels = rest
                .trim_end_matches('}')
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (name, labels)
        }
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Reads events until `count` arrived, by status.
async fn events(consumer: &mut lapin::Consumer, count: usize) -> BTreeMap<String, usize> {
    let mut by_status = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    for seen in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {seen} of {count} events: {by_status:?}"))
            .expect("event stream")
            .expect("event");
        let event: Event = serde_json::from_slice(&delivery.data).unwrap();
        let status = match event.reason {
            Some(reason) => format!("dead:{reason}"),
            None => event.status.as_str().to_owned(),
        };
        *by_status.entry(status).or_default() += 1;
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    by_status
}

#[tokio::test]
async fn jobs_of_every_outcome_processed_before_the_first_scrape_are_all_counted() {
    let fleet = Fleet::with(kaleyra().await, &format!("{ONE_RETRY}{IDLE_PROVIDER}"), "").await;
    let mut outcomes = bind_events(&fleet.channel).await;
    let mut redis = fleet.env.redis().await;
    let remembered = format!("{}sent:dup-1", fleet.env.prefix);
    let _: () = redis.set_ex(remembered, "vmid-dup-1", 600).await.unwrap();

    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    let jobs = [
        template("ok-1", "a").build(),
        template("ok-2", "b").build(),
        template("ok-3", "c").build(),
        template("dup-1", "d").build(),
        template("retry-1", "retry-me").build(),
        template("reject-1", "reject-me").build(),
        template("old-1", "e").expires_at(past).build(),
        template("acct-1", "f").account("nope").build(),
        // A session message to a contact who never wrote: window closed.
        JobBuilder::text("window-1", "kaleyra", TO, "hello").build(),
    ];
    for job in jobs {
        fleet.publisher.publish_job(&job.unwrap()).await.unwrap();
    }
    let not_json = Outgoing::json(SEND_EXCHANGE, "kaleyra", b"{not json");
    fleet.publisher.publish(not_json).await.unwrap();

    // Everything is processed by a worker nobody has scraped yet.
    let (_worker, addr) = spawn_worker(&fleet).await;
    let seen = events(&mut outcomes, 11).await;
    let expected: BTreeMap<String, usize> = [
        ("sent", 3),
        ("duplicate", 1),
        ("retrying", 1),
        ("dead:retries_exhausted", 1),
        ("dead:rejected_by_vendor", 1),
        ("dead:expired", 1),
        ("dead:unknown_account", 1),
        ("dead:window_closed", 1),
        ("dead:invalid_job", 1),
    ]
    .into_iter()
    .map(|(status, n)| (status.to_owned(), n))
    .collect();
    assert_eq!(seen, expected, "the events say what happened");

    let scrape = Scrape::of(addr).await;
    let jobs = |status, reason| {
        scrape.value(
            "herald_jobs_total",
            &[
                ("provider", "kaleyra"),
                ("status", status),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(jobs("sent", ""), 3.0);
    assert_eq!(jobs("duplicate", ""), 1.0);
    assert_eq!(jobs("retrying", ""), 1.0);
    assert_eq!(jobs("deferred", ""), 0.0);
    assert_eq!(jobs("scheduled", ""), 0.0);
    for reason in [
        "retries_exhausted",
        "rejected_by_vendor",
        "expired",
        "unknown_account",
        "window_closed",
        "invalid_job",
    ] {
        assert_eq!(jobs("dead", reason), 1.0, "dead: {reason}");
    }

    let calls = |result| {
        scrape.value(
            "herald_vendor_calls_total",
            &[("provider", "kaleyra"), ("result", result)],
        )
    };
    assert_eq!(
        [
            calls("sent"),
            calls("retryable"),
            calls("permanent"),
            calls("throttled")
        ],
        [3.0, 2.0, 1.0, 0.0]
    );
    let kaleyra = [("provider", "kaleyra")];
    assert_eq!(
        scrape.value("herald_vendor_call_seconds_count", &kaleyra),
        6.0
    );
    assert_eq!(
        scrape.value("herald_rate_limit_wait_seconds_count", &kaleyra),
        6.0
    );
    assert_eq!(scrape.value("herald_in_flight", &kaleyra), 0.0);

    // End to end from the producer's timestamp; the raw `{not json` body
    // was published without one, so only the five readable dead jobs count.
    let latency = |status| {
        scrape.value(
            "herald_job_latency_seconds_count",
            &[("provider", "kaleyra"), ("status", status)],
        )
    };
    assert_eq!(
        [latency("sent"), latency("retrying"), latency("dead")],
        [3.0, 1.0, 5.0]
    );

    assert_eq!(scrape.value("herald_broker_connected", &[]), 1.0);
    assert_eq!(scrape.value("herald_redis_up", &[]), 1.0);
    assert_eq!(scrape.value("herald_broker_reconnects_total", &[]), 0.0);
}

#[tokio::test]
async fn every_series_of_a_configured_provider_exists_at_zero_with_help_and_real_histograms() {
    let fleet = Fleet::with(kaleyra().await, IDLE_PROVIDER, "").await;
    let (_worker, addr) = spawn_worker(&fleet).await;
    let scrape = Scrape::of(addr).await;

    for (family, _) in scrape.families() {
        assert!(
            scrape.text.contains(&format!("# HELP {family} ")),
            "{family} has no # HELP"
        );
    }
    let idle = |status, reason| {
        scrape.value(
            "herald_jobs_total",
            &[
                ("provider", "payhero"),
                ("status", status),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(idle("sent", ""), 0.0);
    assert_eq!(idle("dead", "retries_exhausted"), 0.0);
    assert_eq!(
        scrape.value(
            "herald_vendor_calls_total",
            &[("provider", "payhero"), ("result", "throttled")]
        ),
        0.0
    );
    assert_eq!(
        scrape.value(
            "herald_lifecycle_total",
            &[("provider", "payhero"), ("state", "delivered")]
        ),
        0.0
    );
    assert_eq!(
        scrape.value("herald_vendor_pauses_total", &[("provider", "payhero")]),
        0.0
    );

    let families = scrape.families();
    for histogram in [
        "herald_vendor_call_seconds",
        "herald_job_latency_seconds",
        "herald_rate_limit_wait_seconds",
    ] {
        assert_eq!(families.get(histogram), Some(&"histogram"), "{histogram}");
    }
    for le in ["0.005", "30"] {
        assert_eq!(
            scrape.value(
                "herald_vendor_call_seconds_bucket",
                &[("provider", "payhero"), ("le", le)]
            ),
            0.0,
            "bucket le={le}"
        );
    }
}

#[tokio::test]
async fn with_redis_unreachable_readyz_names_only_redis_and_redis_up_reads_0() {
    let fleet = Fleet::with(kaleyra().await, "", "").await;
    let closed = free_local_addr();
    let redis_url = format!("redis://{closed}/0");
    let (_worker, addr) = spawn_worker_with(&fleet, &[("HERALD_REDIS_URL", &redis_url)]).await;

    let answer = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(answer.status(), 503);
    let body = answer.text().await.unwrap();
    assert!(body.starts_with("not ready: Redis:"), "{body}");
    assert!(!body.contains("broker"), "the broker is not down: {body}");

    let scrape = Scrape::of(addr).await;
    assert_eq!(scrape.value("herald_redis_up", &[]), 0.0);
    assert_eq!(scrape.value("herald_broker_connected", &[]), 0.0);
}

/// Every metric name in a PromQL expression: what is left once strings,
/// label matchers, ranges, groupings, Grafana variables, functions,
/// aggregations, keywords and numbers are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth_braces = 0;
    let mut depth_brackets = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' if depth_braces == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => depth_brackets += 1,
            ']' => depth_brackets -= 1,
            _ if depth_braces > 0 || depth_brackets > 0 => {}
            _ => text.push(c),
        }
    }
    // Aggregations may be followed by `by (…)` before their `(`.
    const KEYWORDS: [&str; 22] = [
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
        "atan2",
    ];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            // A Grafana variable such as $__rate_interval.
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                grouping = next == Some(&'(');
            } else if next == Some(&'(') || KEYWORDS.contains(&word.to_lowercase().as_str()) {
            } else if !grouping {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // A number, possibly 1e3 or 0.5.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            if c == ')' {
                grouping = false;
            }
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let expr = r#"histogram_quantile(0.99, sum by (le, provider) (rate(herald_vendor_call_seconds_bucket{provider=~"$provider"}[$__rate_interval]))) > 1e3 or on() vector(0) * herald_in_flight"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        ["herald_in_flight", "herald_vendor_call_seconds_bucket"]
    );
}

/// Every `expr` of the Grafana dashboard, and the metric of each template
/// variable's `label_values(metric, label)`.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(e)) => found.push(e.clone()),
                        ("query", serde_json::Value::Object(q)) => {
                            if let Some(serde_json::Value::String(e)) = q.get("query") {
                                let metric = e
                                    .strip_prefix("label_values(")
                                    .and_then(|args| args.split_once(','))
                                    .map_or(e.as_str(), |(metric, _)| metric);
                                found.push(metric.to_owned());
                            }
                        }
                        _ => walk(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/herald.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut found = Vec::new();
    walk(&dashboard, &mut found);
    found
}

/// Every `expr:` of the PrometheusRule (one line each, by convention).
fn alert_exprs() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yaml");
    std::fs::read_to_string(path)
        .expect("the alerts")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| expr.trim().trim_matches('\'').to_owned())
        .collect()
}

#[tokio::test]
async fn the_dashboard_and_alerts_name_only_metrics_a_real_worker_exports() {
    let fleet = Fleet::with(kaleyra().await, "", "").await;
    let (_worker, addr) = spawn_worker(&fleet).await;
    let exported = Scrape::of(addr).await.queryable_names();

    let dashboard = dashboard_exprs();
    let alerts = alert_exprs();
    assert!(
        dashboard.len() >= 8,
        "the dashboard has its panels: {dashboard:?}"
    );
    assert!(alerts.len() >= 6, "the alerts are there: {alerts:?}");
    let mut used = BTreeSet::new();
    for expr in dashboard.iter().chain(&alerts) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "names no metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} is not exported by a worker (in {expr})"
            );
            used.insert(name);
        }
    }
    for wanted in [
        "herald_lifecycle_total",
        "herald_job_latency_seconds_bucket",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
    assert!(
        exported.contains("herald_jobs_total"),
        "the scrape itself was read: {exported:?}"
    );
}
