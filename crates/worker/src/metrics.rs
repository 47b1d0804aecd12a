//! The worker's Prometheus metrics (CONTRACT §15): every name, label set,
//! help text and bucket layout is defined here, and the rest of the worker
//! records through the small functions below.
//!
//! [`install`] runs at process start, before the first job, and creates
//! every series of every configured provider at 0: a counter that appears
//! only on its first increment makes `rate()` miss that increment, and
//! dashboards and alerts cannot tell "none yet" from "not exported".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use herald_core::metrics::Buckets;
use herald_core::{Config, DeadReason};
use herald_vendors::{VendorAnswer, Verdict};

use crate::outcome::{LaterWhy, Outcome, Processed};

pub const JOBS: &str = "herald_jobs_total";
pub const VENDOR_CALLS: &str = "herald_vendor_calls_total";
pub const VENDOR_CALL_SECONDS: &str = "herald_vendor_call_seconds";
pub const JOB_LATENCY_SECONDS: &str = "herald_job_latency_seconds";
pub const IN_FLIGHT: &str = "herald_in_flight";
pub const RATE_LIMIT_WAIT_SECONDS: &str = "herald_rate_limit_wait_seconds";
pub const VENDOR_PAUSES: &str = "herald_vendor_pauses_total";
pub const BROKER_CONNECTED: &str = "herald_broker_connected";
pub const BROKER_RECONNECTS: &str = "herald_broker_reconnects_total";
pub const REDIS_UP: &str = "herald_redis_up";
pub const LIFECYCLE: &str = "herald_lifecycle_total";

/// Vendor calls: 5 ms (a vendor next door) to 30 s (past any sane timeout).
const VENDOR_CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Producer to outcome. The AMQP timestamp has whole seconds, and a job
/// may wait through retries and schedules for hours.
const JOB_LATENCY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];
/// A permit is usually immediate; a held delivery waits up to 30 s.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const HISTOGRAMS: [Buckets; 3] = [
    (VENDOR_CALL_SECONDS, VENDOR_CALL_BUCKETS),
    (JOB_LATENCY_SECONDS, JOB_LATENCY_BUCKETS),
    (RATE_LIMIT_WAIT_SECONDS, WAIT_BUCKETS),
];

/// Every `status` of [`JOBS`] but `dead`, whose series are one per reason.
const LIVE_STATUSES: [&str; 6] = [
    "sent",
    "duplicate",
    "retrying",
    "deferred",
    "scheduled",
    "abandoned",
];
const VENDOR_RESULTS: [&str; 4] = ["sent", "throttled", "retryable", "permanent"];
/// CONTRACT §10's states. Nothing counts them yet (the lifecycle is not
/// built); the series exist so dashboards and alerts can name them.
const LIFECYCLE_STATES: [&str; 5] = ["accepted", "sent", "delivered", "read", "failed"];

/// Installs the recorder, describes every metric and creates every series
/// of `config`'s providers at 0. Call before anything counts.
pub fn install(config: &Config) -> &'static PrometheusHandle {
    let handle = handle();
    describe();
    for provider in config.provider_names() {
        zero_provider(provider);
    }
    gauge!(BROKER_CONNECTED).set(0.0);
    gauge!(REDIS_UP).set(0.0);
    counter!(BROKER_RECONNECTS).absolute(0);
    handle
}

/// The process-wide recorder.
pub fn handle() -> &'static PrometheusHandle {
    herald_core::metrics::recorder(&HISTOGRAMS)
}

fn describe() {
    describe_counter!(
        JOBS,
        "Deliveries processed, by provider, outcome status and dead-letter reason."
    );
    describe_counter!(
        VENDOR_CALLS,
        "Vendor HTTP calls, by provider and result (sent, throttled, retryable, permanent)."
    );
    describe_histogram!(VENDOR_CALL_SECONDS, "Vendor HTTP call duration in seconds.");
    describe_histogram!(
        JOB_LATENCY_SECONDS,
        "Seconds from the producer's AMQP timestamp to the delivery's outcome, by provider and status."
    );
    describe_gauge!(IN_FLIGHT, "Deliveries being processed now, by provider.");
    describe_histogram!(
        RATE_LIMIT_WAIT_SECONDS,
        "Seconds a job waited for the rate limit, recipient pacing and vendor pauses."
    );
    describe_counter!(
        VENDOR_PAUSES,
        "Times a vendor throttled an account (HTTP 429 or its own code), pausing it on every replica."
    );
    describe_gauge!(
        BROKER_CONNECTED,
        "1 while the worker is connected to RabbitMQ and consuming, else 0."
    );
    describe_counter!(
        BROKER_RECONNECTS,
        "Broker sessions that ended with an error and were reconnected."
    );
    describe_gauge!(
        REDIS_UP,
        "1 when Redis answered the last check (each scrape checks), else 0."
    );
    describe_counter!(
        LIFECYCLE,
        "Vendor status callbacks applied, by provider and lifecycle state."
    );
}

/// Creates `provider`'s series. A histogram is exported, empty, as soon as
/// it is registered, hence the `let _`.
fn zero_provider(provider: &str) {
    let dead = DeadReason::ALL.map(|reason| ("dead", reason.as_str()));
    for (status, reason) in LIVE_STATUSES.map(|s| (s, "")).into_iter().chain(dead) {
        jobs(provider, status, reason).absolute(0);
        let _ = latency(provider, status);
    }
    for result in VENDOR_RESULTS {
        vendor_calls(provider, result).absolute(0);
    }
    for state in LIFECYCLE_STATES {
        counter!(LIFECYCLE, "provider" => provider.to_owned(), "state" => state).absolute(0);
    }
    let _ = histogram!(VENDOR_CALL_SECONDS, "provider" => provider.to_owned());
    let _ = histogram!(RATE_LIMIT_WAIT_SECONDS, "provider" => provider.to_owned());
    counter!(VENDOR_PAUSES, "provider" => provider.to_owned()).absolute(0);
    in_flight_gauge(provider).set(0.0);
}

fn jobs(provider: &str, status: &'static str, reason: &'static str) -> metrics::Counter {
    counter!(JOBS, "provider" => provider.to_owned(), "status" => status, "reason" => reason)
}

fn vendor_calls(provider: &str, result: &'static str) -> metrics::Counter {
    counter!(VENDOR_CALLS, "provider" => provider.to_owned(), "result" => result)
}

fn latency(provider: &str, status: &'static str) -> metrics::Histogram {
    histogram!(JOB_LATENCY_SECONDS, "provider" => provider.to_owned(), "status" => status)
}

fn in_flight_gauge(provider: &str) -> metrics::Gauge {
    gauge!(IN_FLIGHT, "provider" => provider.to_owned())
}

pub fn vendor_call(provider: &str, answer: &VendorAnswer, elapsed: Duration) {
    let result = match answer.verdict {
        Verdict::Sent { .. } => "sent",
        Verdict::Retryable {
            rate_limited: true, ..
        } => "throttled",
        Verdict::Retryable { .. } => "retryable",
        Verdict::Permanent { .. } => "permanent",
    };
    vendor_calls(provider, result).increment(1);
    histogram!(VENDOR_CALL_SECONDS, "provider" => provider.to_owned())
        .record(elapsed.as_secs_f64());
}

/// A delivery's outcome, and how long after `published_at` (the producer's
/// AMQP `timestamp`, Unix seconds; absent when the producer set none) it
/// came.
pub fn processed(provider: &str, processed: &Processed, published_at: Option<u64>) {
    let (status, reason) = status_of(&processed.outcome);
    jobs(provider, status, reason).increment(1);
    if let Some(published_at) = published_at {
        latency(provider, status).record(seconds_since(published_at, SystemTime::now()));
    }
}

/// The `status` and `reason` labels of an outcome.
fn status_of(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Sent { .. } => ("sent", ""),
        Outcome::Duplicate { .. } => ("duplicate", ""),
        Outcome::Later(later) => match later.why {
            LaterWhy::Retry => ("retrying", ""),
            LaterWhy::Defer => ("deferred", ""),
            LaterWhy::Schedule => ("scheduled", ""),
        },
        Outcome::Dead(dead) => ("dead", dead.reason.as_str()),
        Outcome::Abandoned => ("abandoned", ""),
    }
}

/// Never negative: a producer's clock ahead of ours reads as 0.
fn seconds_since(unix_seconds: u64, now: SystemTime) -> f64 {
    let then = UNIX_EPOCH + Duration::from_secs(unix_seconds);
    now.duration_since(then).unwrap_or_default().as_secs_f64()
}

/// Time a job spent waiting for permission to call the vendor.
pub fn rate_limit_wait(provider: &str, waited: Duration) {
    histogram!(RATE_LIMIT_WAIT_SECONDS, "provider" => provider.to_owned())
        .record(waited.as_secs_f64());
}

/// A vendor throttled an account, which is now paused on every replica.
pub fn vendor_pause(provider: &str) {
    counter!(VENDOR_PAUSES, "provider" => provider.to_owned()).increment(1);
}

/// A broker session ended with an error; the worker reconnects.
pub fn broker_reconnect() {
    counter!(BROKER_RECONNECTS).increment(1);
}

pub fn broker_connected(connected: bool) {
    gauge!(BROKER_CONNECTED).set(f64::from(u8::from(connected)));
}

pub fn redis_up(up: bool) {
    gauge!(REDIS_UP).set(f64::from(u8::from(up)));
}

/// Counts a delivery in [`IN_FLIGHT`] until dropped, however its handling ends.
#[must_use = "the delivery counts as in flight only while this lives"]
pub struct InFlight(metrics::Gauge);

pub fn in_flight(provider: &str) -> InFlight {
    let gauge = in_flight_gauge(provider);
    gauge.increment(1.0);
    InFlight(gauge)
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_from_the_producers_second_and_never_goes_negative() {
        let now = UNIX_EPOCH + Duration::from_millis(100_500);
        assert_eq!(seconds_since(90, now), 10.5);
        assert_eq!(seconds_since(200, now), 0.0);
    }

    #[test]
    fn every_histogram_has_increasing_buckets() {
        for (name, bounds) in HISTOGRAMS {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
        assert_eq!(VENDOR_CALL_BUCKETS.first(), Some(&0.005));
        assert_eq!(VENDOR_CALL_BUCKETS.last(), Some(&30.0));
    }
}
