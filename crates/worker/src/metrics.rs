//! Prometheus metrics, served on the worker's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use herald_vendors::{VendorAnswer, Verdict};

use crate::outcome::{LaterWhy, Outcome, Processed};

/// The process-wide recorder; installed once, even when several workers
/// run in one process (as in tests).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
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
    counter!("herald_vendor_calls_total", "provider" => provider.to_owned(), "result" => result)
        .increment(1);
    histogram!("herald_vendor_call_seconds", "provider" => provider.to_owned())
        .record(elapsed.as_secs_f64());
}

pub fn processed(provider: &str, processed: &Processed) {
    let (status, reason) = match &processed.outcome {
        Outcome::Sent { .. } => ("sent", ""),
        Outcome::Duplicate { .. } => ("duplicate", ""),
        Outcome::Later(later) => match later.why {
            LaterWhy::Retry => ("retrying", ""),
            LaterWhy::Defer => ("deferred", ""),
            LaterWhy::Schedule => ("scheduled", ""),
        },
        Outcome::Dead(dead) => ("dead", dead.reason.as_str()),
        Outcome::Abandoned => ("abandoned", ""),
    };
    counter!("herald_jobs_total", "provider" => provider.to_owned(), "status" => status, "reason" => reason)
        .increment(1);
}
