//! `herald status <job id>`: what happened to one message after the vendor
//! said yes (CONTRACT §10), read from the same Redis record as
//! `GET /v1/messages/<id>`, in the same shape.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use herald_store::Store;

/// Exit code for something Herald does not know: a job never accepted (or
/// forgotten), a contact that is not suppressed.
pub const NOT_FOUND: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's id, as the producer gave it.
    id: String,
    /// Print JSON (the body of `GET /v1/messages/<id>`) instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    let store = Store::connect(&config.redis.url, &config.redis.prefix)
        .await
        .context("cannot reach Redis (configuration key redis.url)")?;
    let lifecycle = store
        .lifecycle(&args.id)
        .await
        .context("could not read the message's lifecycle")?;
    let Some(lifecycle) = lifecycle else {
        eprintln!(
            "herald: no message {:?} is known (never accepted by a vendor, or older than the idempotency horizon)",
            args.id
        );
        return Ok(ExitCode::from(NOT_FOUND));
    };
    if args.json {
        println!("{}", herald_api::story(&lifecycle));
        return Ok(ExitCode::SUCCESS);
    }
    let job = &lifecycle.job;
    println!(
        "{} → {} via {}/{}: {}",
        job.id, job.to, job.provider, job.account, lifecycle.state
    );
    let vendor_id = lifecycle.vendor_message_id.as_deref().unwrap_or("-");
    println!("  vendor message id: {vendor_id}");
    println!(
        "  attempts: {}, fallback used: {}",
        lifecycle.attempts, lifecycle.fallback_used
    );
    for moment in &lifecycle.timeline {
        let detail = moment.detail.as_deref().unwrap_or("");
        println!("  {}  {:<9} {detail}", moment.at, moment.state.as_str());
    }
    Ok(ExitCode::SUCCESS)
}
