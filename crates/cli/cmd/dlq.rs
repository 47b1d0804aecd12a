//! `herald dlq`: flags, terminal prompts, tables and progress bars over the
//! engines of herald-dlq.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use herald_core::DeadReason;

use super::Exit;
use herald_dlq::{
    DeadLetter, ExportFile, Filter, ImportTarget, Progress, Rate, ReplayOptions, Selection,
    parse_instant,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Counts by provider and by reason, oldest and newest death.
    #[command(after_help = "Examples:
  herald dlq stats
  herald dlq stats --provider kaleyra --since 24h --json")]
    Stats {
        #[command(flatten)]
        filters: Filters,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List dead letters without consuming them (they stay in place).
    #[command(after_help = "Examples:
  herald dlq list
  herald dlq list --reason window_closed --since 7d --limit 20 --json")]
    List {
        #[command(flatten)]
        filters: Filters,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show dead letters in full: the job, every Herald header, the vendor's
    /// answer and broker-side deaths. Nothing is consumed.
    #[command(after_help = "Examples:
  herald dlq show order-1234-shipped
  herald dlq show --reason rejected_by_vendor --limit 1 --json

Exit status 3 when no dead letter matches.")]
    Show {
        /// The job id (same as --id).
        #[arg(value_name = "JOB_ID")]
        job_id: Option<String>,
        #[command(flatten)]
        filters: Filters,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead letters to herald.send with their routing key and body,
    /// in one pass over the queue; each is removed only after the broker
    /// confirmed its republish.
    #[command(after_help = "Examples:
  herald dlq replay --reason window_closed --dry-run
  herald dlq replay --provider kaleyra --since 2h --rate 50/s")]
    Replay {
        #[command(flatten)]
        filters: Filters,
        /// Count what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many per second (`50/s`, `600/m`).
        #[arg(long, value_parser = Rate::parse)]
        rate: Option<Rate>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove dead letters (asks first unless --yes).
    #[command(after_help = "Examples:
  herald dlq purge --reason invalid_job --dry-run
  herald dlq purge --reason invalid_job --until 30d --yes --export purged.jsonl")]
    Purge {
        #[command(flatten)]
        filters: Filters,
        /// Do not ask; required when stdin is not a terminal.
        #[arg(long)]
        yes: bool,
        /// Count what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write what is removed to this new file (JSON lines) first.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters to a new JSON-lines file, leaving them in place.
    #[command(after_help = "Examples:
  herald dlq export dead.jsonl
  herald dlq export kaleyra-week.jsonl --provider kaleyra --since 7d

One letter a line: {\"routing_key\", \"properties\", \"headers\", \"job\"}, plain JSON
(headers as JSON values, x-herald-vendor-response an object when the vendor
answered JSON); `herald dlq import` reads it and older exports alike.")]
    Export {
        /// The file to create; an existing file is never overwritten.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        filters: Filters,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Publish an export file back into herald.dead, or with --to-send
    /// straight to herald.send as a replay.
    #[command(after_help = "Examples:
  herald dlq import dead.jsonl
  herald dlq import kaleyra-week.jsonl --to-send")]
    Import {
        /// A file written by `herald dlq export` or `purge --export`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Republish to herald.send (a replay) instead of herald.dead.
        #[arg(long)]
        to_send: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Which letters: every given filter must match.
#[derive(Debug, clap::Args)]
pub struct Filters {
    /// Only this provider.
    #[arg(long)]
    provider: Option<String>,
    /// Only this reason (invalid_job, window_closed, delivery_limit, …).
    #[arg(long, value_parser = str::parse::<DeadReason>)]
    reason: Option<DeadReason>,
    /// Died at or after: RFC 3339, or an age like 2h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Died before: RFC 3339, or an age like 30m.
    #[arg(long)]
    until: Option<String>,
    /// Only the letter of this job id.
    #[arg(long)]
    id: Option<String>,
    /// At most this many letters.
    #[arg(long)]
    limit: Option<u64>,
}

impl Filters {
    fn selection(self) -> anyhow::Result<Selection> {
        let now = Utc::now();
        let instant = |flag: &str, text: Option<String>| {
            text.map(|t| parse_instant(&t, now))
                .transpose()
                .map_err(|e| super::fail(Exit::Rejected, format!("--{flag}: {e}")))
        };
        Ok(Selection {
            filter: Filter {
                provider: self.provider,
                reason: self.reason,
                since: instant("since", self.since)?,
                until: instant("until", self.until)?,
                job_id: self.id,
            },
            limit: self.limit,
        })
    }
}

pub async fn run(command: Command, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    let connection = super::broker(&config, "dlq").await?;
    match command {
        Command::Stats { filters, json } => {
            let stats = herald_dlq::stats(&connection, &filters.selection()?).await?;
            if json {
                print_json(&stats)?;
            } else {
                print!("{}", stats_text(&stats));
            }
        }
        Command::List { filters, json } => {
            let letters = herald_dlq::collect(&connection, &filters.selection()?).await?;
            if json {
                print_json(&letters)?;
            } else {
                print!("{}", table(&letters));
            }
        }
        Command::Show {
            job_id,
            filters,
            json,
        } => {
            let mut selection = filters.selection()?;
            selection.filter.job_id = job_id.or(selection.filter.job_id);
            let letters = herald_dlq::collect(&connection, &selection).await?;
            if json {
                print_json(&letters.iter().map(detail_json).collect::<Vec<_>>())?;
            } else if letters.is_empty() {
                println!("no matching dead letter");
            } else {
                let texts: Vec<String> = letters.iter().map(detail_text).collect();
                print!("{}", texts.join("\n"));
            }
            if letters.is_empty() {
                return Ok(Exit::NotFound.code());
            }
        }
        Command::Replay {
            filters,
            dry_run,
            rate,
            json,
        } => {
            let options = ReplayOptions {
                selection: filters.selection()?,
                dry_run,
                rate,
            };
            let report =
                herald_dlq::replay(&connection, &options, &Bar::new(json, "replay")).await?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            report_out(
                json,
                &report,
                format!(
                    "{verb} {}, skipped {}, failed {}",
                    report.replayed, report.skipped, report.failed
                ),
            )?;
            if report.failed > 0 {
                return Ok(Exit::Failed.code());
            }
        }
        Command::Purge {
            filters,
            yes,
            dry_run,
            export,
            json,
        } => {
            let selection = filters.selection()?;
            if !yes && !dry_run {
                if !std::io::stdin().is_terminal() {
                    bail!("refusing to purge without --yes: stdin is not a terminal to ask on");
                }
                let count = herald_dlq::stats(&connection, &selection).await?.total;
                if !confirm_purge(count)? {
                    eprintln!("nothing purged");
                    return Ok(ExitCode::FAILURE);
                }
            }
            let mut file = export.as_deref().map(ExportFile::create).transpose()?;
            let report = herald_dlq::purge(
                &connection,
                &selection,
                dry_run,
                file.as_mut(),
                &Bar::new(json, "purge"),
            )
            .await?;
            let verb = if dry_run { "would purge" } else { "purged" };
            let mut text = format!("{verb} {}, skipped {}", report.purged, report.skipped);
            if let Some(path) = &export {
                text.push_str(&format!(", exported to {}", path.display()));
            }
            report_out(json, &report, text)?;
        }
        Command::Export {
            file,
            filters,
            json,
        } => {
            let mut out = ExportFile::create(&file)?;
            let exported = herald_dlq::export(
                &connection,
                &filters.selection()?,
                &mut out,
                &Bar::new(json, "export"),
            )
            .await?;
            report_out(
                json,
                &json!({ "exported": exported, "file": file }),
                format!("exported {exported} to {}", file.display()),
            )?;
        }
        Command::Import {
            file,
            to_send,
            json,
        } => {
            let envelopes = herald_dlq::read_export(&file)?;
            let target = if to_send {
                ImportTarget::Send
            } else {
                ImportTarget::DeadQueue
            };
            let report =
                herald_dlq::import(&connection, &envelopes, target, &Bar::new(json, "import"))
                    .await?;
            let into = if to_send {
                "herald.send"
            } else {
                "herald.dead"
            };
            report_out(
                json,
                &report,
                format!("imported {} into {into}", report.imported),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Says what a purge would remove and asks; never asks a non-terminal.
fn confirm_purge(count: u64) -> anyhow::Result<bool> {
    eprint!("Remove {count} dead letter(s) from herald.dead for good? Type yes to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn report_out(json: bool, report: &impl Serialize, text: String) -> anyhow::Result<()> {
    if json {
        print_json(report)
    } else {
        println!("{text}");
        Ok(())
    }
}

/// A progress bar on stderr, hidden for scripts (`--json`, or no terminal).
struct Bar(ProgressBar);

impl Bar {
    fn new(json: bool, verb: &str) -> Bar {
        let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("a valid template")
            .progress_chars("=> ");
        let bar = super::progress_bar(json, style);
        bar.set_message(verb.to_owned());
        Bar(bar)
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn step(&self) {
        self.0.inc(1);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn when(letter: &DeadLetter) -> String {
    letter
        .dead_at
        .map(herald_core::protocol::rfc3339)
        .unwrap_or_else(|| "-".to_owned())
}

fn stats_text(stats: &herald_dlq::Stats) -> String {
    let mut out = format!("{} dead letter(s)\n", stats.total);
    let time =
        |t: Option<chrono::DateTime<Utc>>| t.map_or("-".to_owned(), herald_core::protocol::rfc3339);
    out.push_str(&format!(
        "oldest  {}\nnewest  {}\n",
        time(stats.oldest),
        time(stats.newest)
    ));
    for (title, counts) in [
        ("by provider", &stats.by_provider),
        ("by reason", &stats.by_reason),
    ] {
        out.push_str(&format!("{title}:\n"));
        for (name, count) in counts {
            out.push_str(&format!("  {name:<24} {count}\n"));
        }
    }
    out
}

/// One row per letter, columns padded to their widest cell.
fn table(letters: &[DeadLetter]) -> String {
    let header = [
        "DEAD AT", "PROVIDER", "REASON", "JOB ID", "ATTEMPT", "REPLAYED", "DETAIL",
    ];
    let rows: Vec<[String; 7]> = letters
        .iter()
        .map(|l| {
            [
                when(l),
                l.provider.clone(),
                l.reason.clone(),
                l.job_id.clone().unwrap_or_else(|| "-".to_owned()),
                l.attempt.to_string(),
                l.replayed.to_string(),
                herald_core::protocol::truncate_utf8(
                    &l.detail.clone().unwrap_or_default().replace('\n', " "),
                    60,
                )
                .to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push_str(&format!("{} dead letter(s)\n", rows.len()));
    out
}

/// The job as JSON when the body is JSON, else as text.
fn job_json(letter: &DeadLetter) -> serde_json::Value {
    let body = &letter.envelope.body;
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn detail_json(letter: &DeadLetter) -> serde_json::Value {
    let mut value = serde_json::to_value(letter).expect("a dead letter serializes");
    value["routing_key"] = json!(letter.envelope.routing_key);
    value["headers"] = herald_dlq::letter::plain_headers(letter.envelope.headers()).into();
    value["job"] = job_json(letter);
    value
}

fn detail_text(letter: &DeadLetter) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut out = format!(
        "job id       {}\nprovider     {} (routing key {})\nreason       {}\ndetail       {}\ndead at      {}\nattempt      {}\nreplayed     {}\n",
        opt(&letter.job_id),
        letter.provider,
        letter.envelope.routing_key,
        letter.reason,
        opt(&letter.detail),
        when(letter),
        letter.attempt,
        letter.replayed,
    );
    if letter.vendor_status.is_some() || letter.vendor_response.is_some() {
        let status = letter
            .vendor_status
            .map_or("-".to_owned(), |s| s.to_string());
        out.push_str(&format!(
            "vendor       HTTP {status}: {}\n",
            opt(&letter.vendor_response)
        ));
    }
    for death in &letter.broker_deaths {
        let at = death
            .time
            .map_or("-".to_owned(), herald_core::protocol::rfc3339);
        out.push_str(&format!(
            "broker death {} in {} x{} (last {at})\n",
            death.reason, death.queue, death.count
        ));
    }
    out.push_str("headers:\n");
    for (name, value) in herald_dlq::letter::plain_headers(letter.envelope.headers()) {
        out.push_str(&format!("  {name}: {value}\n"));
    }
    let job = serde_json::to_string_pretty(&job_json(letter)).expect("JSON prints");
    out.push_str(&format!("job:\n{job}\n"));
    out
}
