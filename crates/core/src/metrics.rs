//! The process's one Prometheus recorder, shared by `herald worker` and
//! `herald api` (each defines its own metrics next to its code).
//!
//! It must be installed before anything counts: a recorder installed later
//! (say, lazily by the first scrape) silently drops every count made before
//! it. And histograms must be given buckets, or the exporter renders them
//! as summaries, which cannot be aggregated across replicas.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A histogram's name and its bucket bounds, in seconds.
pub type Buckets = (&'static str, &'static [f64]);

/// Installs the process-wide recorder on first call, with `histograms`'
/// buckets, and returns its handle. Later calls return the same handle
/// (their buckets are ignored): several workers or APIs in one process, as
/// in tests, share it.
pub fn recorder(histograms: &[Buckets]) -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = histograms
            .iter()
            .try_fold(PrometheusBuilder::new(), |builder, (name, bounds)| {
                builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)
            })
            .expect("bucket bounds are non-empty constants");
        // Another recorder already installed (a test harness's): render
        // from a private one rather than fail.
        builder
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
}
