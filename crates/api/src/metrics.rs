//! The API's Prometheus metrics, served on `/metrics`: every name, label
//! set and help text is defined here. [`install`] runs at start, before
//! anything counts, and creates every series of every configured provider
//! at 0 (see herald-worker's metrics for why).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use herald_core::Config;
use herald_core::metrics::Buckets;

const PUBLISHED: &str = "herald_api_jobs_published_total";
const REFUSED: &str = "herald_api_job_requests_refused_total";
const WEBHOOKS: &str = "herald_api_webhooks_total";
const INBOUND: &str = "herald_api_inbound_recorded_total";
const REQUESTS: &str = "herald_api_requests_total";
const REQUEST_SECONDS: &str = "herald_api_request_seconds";

/// A request waits at most for the broker's confirms (10 s deadline).
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const HISTOGRAMS: [Buckets; 1] = [(REQUEST_SECONDS, REQUEST_BUCKETS)];

const REFUSALS: [&str; 2] = ["invalid", "broker_unavailable"];
const WEBHOOK_OUTCOMES: [&str; 6] = [
    "recorded",
    "duplicate",
    "not_inbound",
    "invalid",
    "unauthorized",
    "unavailable",
];
const INBOUND_SOURCES: [&str; 2] = ["api", "webhook"];

/// Installs the recorder, describes every metric and creates every series
/// of `config`'s providers at 0. Call before anything counts.
pub fn install(config: &Config) -> &'static PrometheusHandle {
    let handle = handle();
    describe_counter!(PUBLISHED, "Jobs the broker confirmed, by provider.");
    describe_counter!(
        REFUSED,
        "Requests to /v1/messages refused: invalid (400) or broker_unavailable (503)."
    );
    describe_counter!(WEBHOOKS, "Vendor webhooks, by provider and outcome.");
    describe_counter!(
        INBOUND,
        "Customers' inbound messages recorded, by provider and source (api or webhook)."
    );
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route and status code."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        "HTTP request duration in seconds, by route."
    );
    for why in REFUSALS {
        counter!(REFUSED, "why" => why).absolute(0);
    }
    for provider in config.provider_names() {
        counter!(PUBLISHED, "provider" => provider.to_owned()).absolute(0);
        for outcome in WEBHOOK_OUTCOMES {
            counter!(WEBHOOKS, "provider" => provider.to_owned(), "outcome" => outcome).absolute(0);
        }
        for source in INBOUND_SOURCES {
            counter!(INBOUND, "provider" => provider.to_owned(), "source" => source).absolute(0);
        }
    }
    handle
}

/// The process-wide recorder.
pub fn handle() -> &'static PrometheusHandle {
    herald_core::metrics::recorder(&HISTOGRAMS)
}

/// Middleware: counts and times every request by its route's pattern (not
/// its path, which would make a series per contact).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    histogram!(REQUEST_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// A job the broker confirmed.
pub fn job_published(provider: &str) {
    counter!(PUBLISHED, "provider" => provider.to_owned()).increment(1);
}

/// A request to `/v1/messages` refused: `invalid` or `broker_unavailable`.
pub fn jobs_refused(why: &'static str) {
    counter!(REFUSED, "why" => why).increment(1);
}

/// A webhook's outcome: `recorded`, `duplicate`, `not_inbound`, `invalid`,
/// `unauthorized`, `unavailable`, or `verified` (Meta's handshake answered).
pub fn webhook(provider: &str, outcome: &'static str) {
    counter!(WEBHOOKS, "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
}

/// An inbound message recorded, from `api` (`/v1/inbound`) or `webhook`.
pub fn inbound_recorded(provider: &str, source: &'static str) {
    counter!(INBOUND, "provider" => provider.to_owned(), "source" => source).increment(1);
}
