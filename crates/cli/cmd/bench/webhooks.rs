//! `herald bench webhooks`: the webhook handler's latency under a steady
//! rate of status callbacks, against a running `herald api`.
//!
//! Printed figures, not pass/fail. The benchmark first records `count`
//! acceptances in Redis (the configuration's `redis` table), as the worker
//! would, so every callback takes the full path: correlation, the atomic
//! status script, and the confirmed `delivered` event. Then it sends one
//! Meta-style `delivered` callback per acceptance at `rate` per second, each
//! on its own task so a slow answer never delays the next send, and
//! reports the latency percentiles. Its records expire after 10 minutes.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use herald_core::Job;
use herald_store::{Acceptance, Admission, Admit, Contact, SendState, Store};
use serde_json::json;

/// How long the benchmark's records are kept.
const KEEP: Duration = Duration::from_secs(600);
/// Longest one callback may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    /// The running API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The provider account whose webhook is called (its secret in `--secret-env`).
    #[arg(long, default_value = "kaleyra")]
    provider: String,
    /// The account of that provider.
    #[arg(long, default_value = "default")]
    account: String,
    /// The environment variable holding the account's webhook secret (not
    /// `HERALD_…`: those name configuration keys).
    #[arg(long, default_value = "BENCH_WEBHOOK_SECRET")]
    secret_env: String,
    /// Callbacks per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Callbacks in all (the run lasts count / rate seconds).
    #[arg(long, default_value_t = 5000)]
    count: u32,
}

pub async fn webhooks(args: WebhooksArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    if args.rate == 0 || args.count == 0 {
        bail!("--rate and --count must be positive");
    }
    let secret = std::env::var(&args.secret_env)
        .with_context(|| format!("set {} to the account's webhook secret", args.secret_env))?;
    let config = super::super::load_config(config)?;
    let store = Store::connect(&config.redis.url, &config.redis.prefix)
        .await
        .context("cannot reach Redis (configuration key redis.url)")?;
    let run = format!("bench-{}", Utc::now().timestamp_millis());
    let ids: Vec<String> = (0..args.count).map(|i| format!("{run}-{i}")).collect();
    eprintln!("recording {} acceptances …", ids.len());
    futures::stream::iter(&ids)
        .map(|id| accept(&store, &args.provider, &args.account, id))
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;

    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let endpoint = format!(
        "{}/webhooks/{}/{}",
        args.url.trim_end_matches('/'),
        args.provider,
        args.account
    );
    eprintln!(
        "sending {} callbacks at {}/s to {endpoint} …",
        ids.len(),
        args.rate
    );
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.rate);
    let started = Instant::now();
    let mut calls = Vec::with_capacity(ids.len());
    for id in &ids {
        ticks.tick().await;
        let request = http
            .post(&endpoint)
            .header("X-Herald-Webhook-Secret", &secret)
            .json(&delivered(id));
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = request
                .send()
                .await
                .is_ok_and(|answer| answer.status().is_success());
            (sent.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(calls.len());
    let mut failed = 0;
    for call in calls {
        let (took, ok) = call.await?;
        latencies.push(took);
        failed += usize::from(!ok);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} callbacks in {:.1}s ({:.0}/s), {failed} not 2xx; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Records `id` as accepted by the vendor as `id`, the worker's way.
async fn accept(store: &Store, provider: &str, account: &str, id: &str) -> anyhow::Result<()> {
    let job = Job::from_value(json!({
        "id": id, "provider": provider, "account": account, "to": "+254700000000",
        "message": {"type": "text", "body": "bench"},
    }))
    .map_err(|e| anyhow::anyhow!("bench job: {:?}", e.problems))?;
    let contact = Contact {
        provider: provider.to_owned(),
        account: account.to_owned(),
        digits: job.to_digits().to_owned(),
    };
    let admit = Admit {
        job_id: id,
        contact: &contact,
        claim_for: Duration::from_secs(30),
        window: None,
        has_fallback: false,
        rate: None,
        pacing: None,
    };
    let Admission::Admitted { claim, .. } = store.admit(&admit).await? else {
        bail!("{id} was not admitted (already sent, or the contact is suppressed)");
    };
    let acceptance = Acceptance {
        job: &job,
        vendor_message_id: Some(id),
        attempts: 1,
        fallback_used: false,
        at: Utc::now(),
    };
    store
        .record_sent(claim, &acceptance, KEEP)
        .await
        .map_err(|unrecorded| unrecorded.error)?;
    Ok(())
}

/// A Meta-style `delivered` status for `id`.
fn delivered(id: &str) -> serde_json::Value {
    json!({"entry": [{"changes": [{"field": "messages", "value": {"statuses": [{
        "id": id, "status": "delivered", "recipient_id": "254700000000",
        "timestamp": Utc::now().timestamp().to_string()
    }]}}]}]})
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
