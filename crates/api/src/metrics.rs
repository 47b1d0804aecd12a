//! Prometheus metrics, served on `/metrics`.

use std::sync::OnceLock;

use metrics::counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder; installed once, even when several APIs run
/// in one process (as in tests).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
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
/// `unauthorized`, `unavailable`, or `verified` (Meta's handshake answered).
pub fn webhook(provider: &str, outcome: &'static str) {
    counter!("herald_api_webhooks_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// An inbound message recorded, from `api` (`/v1/inbound`) or `webhook`.
pub fn inbound_recorded(provider: &str, source: &'static str) {
    counter!("herald_api_inbound_recorded_total", "provider" => provider.to_owned(), "source" => source)
        .increment(1);
}
