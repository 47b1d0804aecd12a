//! Prometheus metrics, served on `/metrics`.

use std::sync::OnceLock;

use std::time::Duration;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use herald_store::State;

/// The process-wide recorder; installed once, even when several APIs run
/// in one process (as in tests).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(TIME_TO_DELIVERED.into()),
                &[1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0],
            )
            .expect("fixed buckets are valid")
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
}

/// A job the broker confirmed.
pub fn job_published(provider: &str) {
    counter!("herald_api_jobs_published_total", "provider" => provider.to_owned()).increment(1);
}

/// A request to `/v1/messages` refused: `invalid` or `broker_unavailable`.
pub fn jobs_refused(why: &'static str) {
    counter!("herald_api_job_requests_refused_total", "why" => why).increment(1);
}

/// A webhook's outcome: `recorded`, `duplicate`, `not_inbound`, `invalid`,
/// `unauthorized`, `unavailable`.
pub fn webhook(provider: &str, outcome: &'static str) {
    counter!("herald_api_webhooks_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// An inbound message recorded, from `api` (`/v1/inbound`) or `webhook`.
pub fn inbound_recorded(provider: &str, source: &'static str) {
    counter!("herald_api_inbound_recorded_total", "provider" => provider.to_owned(), "source" => source)
        .increment(1);
}

const TIME_TO_DELIVERED: &str = "herald_time_to_delivered_seconds";

/// A status that changed a message's lifecycle (CONTRACT §15).
pub fn lifecycle(provider: &str, state: State) {
    counter!("herald_lifecycle_total", "provider" => provider.to_owned(), "state" => state.as_str())
        .increment(1);
}

/// Every `herald_lifecycle_total` series of a configured provider, at 0.
pub fn lifecycle_init<'a>(providers: impl Iterator<Item = &'a String>) {
    for provider in providers {
        for state in State::ALL {
            counter!("herald_lifecycle_total", "provider" => provider.clone(), "state" => state.as_str())
                .increment(0);
        }
    }
}

/// Acceptance → delivered, by the vendor's clocks.
pub fn time_to_delivered(provider: &str, took: Duration) {
    histogram!(TIME_TO_DELIVERED, "provider" => provider.to_owned()).record(took.as_secs_f64());
}

/// A status held because its message's acceptance was not recorded yet.
pub fn lifecycle_held(provider: &str) {
    counter!("herald_lifecycle_held_total", "provider" => provider.to_owned()).increment(1);
}

/// Held statuses dropped after waiting 10 minutes for their acceptance.
pub fn lifecycle_held_expired(count: u64) {
    counter!("herald_lifecycle_held_expired_total").increment(count);
}
