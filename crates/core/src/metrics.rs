//! The process's one Prometheus recorder, shared by `herald worker` and
//! `herald api` (each defines its own metrics next to its code).
//!
//! It must be installed before anything counts: a recorder installed later
//! (say, lazily by the first scrape) silently drops every count made before
//! it. And histograms must be given buckets, or the exporter renders them
//! as summaries, which cannot be aggregated across replicas.

use std::sync::OnceLock;
use std::time::Duration;

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
        let handle = builder
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
        keep_up(handle.clone());
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Histogram samples wait in the recorder until folded into buckets, which
/// a scrape does; without a scraper they would pile up (the 10-minute soak
/// at 1,000 jobs/s grew the worker by 40 MiB). One thread folds them on a
/// schedule, whatever scrapes or not.
fn keep_up(handle: PrometheusHandle) {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        })
        .expect("spawn the metrics upkeep thread");
}
