//! `herald enqueue`: one job from flags, or many from JSON lines or CSV,
//! validated and published with confirms (`herald_client::bulk`). This module
//! turns flags into job fields and prints the report; nothing more.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use herald_client::bulk::{self, DEFAULT_IN_FLIGHT, Missing, Report, Row};
use herald_client::{Publisher, redact_url};
use herald_core::protocol::SEND_EXCHANGE;
use herald_core::{Config, Job, MediaKind, Message};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Exit;

const HELP: &str = "\
Examples:
  # One job
  herald enqueue --id order-1234-shipped --provider kaleyra --to +254712345678 \\
      --text 'Your order has shipped' --fallback-template order_update --fallback-param 1234
  herald enqueue --id promo-1 --provider replyhero --to +254712345678 \\
      --media image --url https://cdn.example.com/p.jpg --caption 'New in'

  # JSON lines: one complete job per line (see `herald schema`); - reads stdin
  herald enqueue --jsonl jobs.jsonl --json > report.json

  # CSV: one row per recipient, with a `to` column
  herald enqueue --csv customers.csv --batch-id promo-2026-11 --provider kaleyra \\
      --template order_update --param-column name --param-column order
  herald enqueue --csv customers.csv --batch-id promo-2026-11 --provider pingup \\
      --text 'Hi {name}, order {order} has shipped' --dry-run

CSV: header names and cells are trimmed. Each row's id is its `id` column or,
without one, <batch-id>:<line>. Derived ids are the same on every run of the
same file, so re-running it is idempotent: rows already sent are not sent
again (while the worker remembers ids, 7 days by default). Every text given in
flags (--text, --param, --caption, --option, --metadata …) may name a column
as {column}; write {{ and }} for literal braces. --param-column NAME means
--param {NAME}.

Every row is validated before it is published. Invalid rows are reported on
stderr as `line N: field: problem`, every problem of the row, and are never
published. A job counts as published only once the broker has confirmed it;
nacked or unroutable jobs are reported as failed.

A job its provider cannot send (a template to pingup, say) or whose
--expires-at has passed is rejected the same way: it could only be
dead-lettered.

With a file, a progress bar on a terminal shows rows done of the file's total,
with percentage, rate and time left.

Exit status: 0 every row published (with --dry-run: valid); 1 some valid rows
failed to publish; 2 usage or configuration error, or some rows rejected;
4 the broker is unavailable (nothing published).";

/// Flags that describe a job, which a JSON-lines input must not mix with.
const JOB_FLAGS: &[&str] = &[
    "csv",
    "batch_id",
    "id",
    "provider",
    "account",
    "to",
    "text",
    "template",
    "params",
    "param_columns",
    "media",
    "url",
    "caption",
    "filename",
    "fallback_template",
    "fallback_params",
    "not_before",
    "expires_at",
    "options",
    "metadata",
];

#[derive(Debug, clap::Args)]
#[command(
    after_help = HELP,
    group(clap::ArgGroup::new("message").multiple(false).args(["text", "template", "media"]))
)]
pub struct Args {
    /// Publish one job per line of FILE (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = JOB_FLAGS, help_heading = "Input")]
    jsonl: Option<PathBuf>,
    /// Publish one job per row of FILE (`-` for stdin); the flags below give
    /// what every row shares.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["id", "to"], help_heading = "Input")]
    csv: Option<PathBuf>,
    /// With --csv and no `id` column: row ids are <BATCH_ID>:<line>, so
    /// re-running the same file is idempotent.
    #[arg(
        long,
        value_name = "BATCH_ID",
        requires = "csv",
        help_heading = "Input"
    )]
    batch_id: Option<String>,

    #[command(flatten)]
    job: Box<JobFlags>,
    #[command(flatten)]
    message: Box<MessageFlags>,

    /// Validate and report only; publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON on stdout (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Publishes awaiting the broker's confirm at once.
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::new(DEFAULT_IN_FLIGHT).expect("non-zero"))]
    in_flight: NonZeroUsize,
}

/// Who and when, beyond the message. The flag groups are boxed so `herald`'s
/// command enum stays small.
#[derive(Debug, clap::Args)]
struct JobFlags {
    /// The job's idempotency key.
    #[arg(long, help_heading = "Job")]
    id: Option<String>,
    /// payhero, pingup, kaleyra, 99digital, replyhero or meta.
    #[arg(long, help_heading = "Job")]
    provider: Option<String>,
    /// Which configured credentials of the provider [default: default].
    #[arg(long, help_heading = "Job")]
    account: Option<String>,
    /// Recipient in E.164 (+ then 8–15 digits).
    #[arg(long, help_heading = "Job")]
    to: Option<String>,
    /// Do not send before this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = rfc3339, help_heading = "Job")]
    not_before: Option<DateTime<Utc>>,
    /// Never send after this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = rfc3339, help_heading = "Job")]
    expires_at: Option<DateTime<Utc>>,
    /// A provider-specific per-message field, e.g. ref=cust-88 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = key_value, help_heading = "Job")]
    options: Vec<(String, String)>,
    /// An opaque JSON object echoed in events and dead letters.
    #[arg(long, value_name = "JSON", value_parser = json_object, help_heading = "Job")]
    metadata: Option<Map<String, Value>>,
}

/// What is sent.
#[derive(Debug, clap::Args)]
struct MessageFlags {
    /// A text (session) message.
    #[arg(long, help_heading = "Message")]
    text: Option<String>,
    /// A template message: the template's name.
    #[arg(long, value_name = "NAME", help_heading = "Message")]
    template: Option<String>,
    /// The templates' language code.
    #[arg(long, default_value = "en", help_heading = "Message")]
    language: String,
    /// A template body parameter, in order (repeatable).
    #[arg(
        long = "param",
        value_name = "VALUE",
        requires = "template",
        help_heading = "Message"
    )]
    params: Vec<String>,
    /// With --csv: the column holding the next template parameter (repeatable).
    #[arg(
        long = "param-column",
        value_name = "COLUMN",
        requires_all = ["template", "csv"],
        conflicts_with = "params",
        help_heading = "Message"
    )]
    param_columns: Vec<String>,
    /// A media message of this kind (image, document, video); needs --url.
    #[arg(long, value_name = "KIND", value_parser = media_kind, requires = "url", help_heading = "Message")]
    media: Option<MediaKind>,
    /// The media's https:// link.
    #[arg(long, requires = "media", help_heading = "Message")]
    url: Option<String>,
    /// Text shown under the media.
    #[arg(long, requires = "media", help_heading = "Message")]
    caption: Option<String>,
    /// The file name a document is shown with.
    #[arg(long, requires = "media", help_heading = "Message")]
    filename: Option<String>,
    /// A template sent instead when the 24-hour window is closed.
    #[arg(long, value_name = "NAME", help_heading = "Message")]
    fallback_template: Option<String>,
    /// A fallback template body parameter, in order (repeatable).
    #[arg(
        long = "fallback-param",
        value_name = "VALUE",
        requires = "fallback_template",
        help_heading = "Message"
    )]
    fallback_params: Vec<String>,
}

pub async fn run(args: Args, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match super::load_config(config) {
        Ok(config) => config,
        Err(e) => return usage_error(super::error_text(&e)),
    };
    let rows = match rows(&args) {
        Ok(rows) => rows,
        Err(problem) => return usage_error(problem),
    };
    let progress = progress_bar(args.json, input_rows(&args));
    let show = |report: &Report| show_progress(&progress, report);
    let report = if args.dry_run {
        bulk::check(rows, show)
    } else {
        let connection = super::broker(&config, "enqueue").await?;
        let provider = args.job.provider.as_deref();
        let missing = bulk::missing_topology(&connection, provider).await?;
        check_topology(missing, &config, provider)?;
        let publisher = Publisher::new(&connection).await?;
        let report = bulk::publish(&publisher, rows, args.in_flight.get(), show).await;
        connection.close(200, "done".into()).await.ok();
        report
    };
    progress.finish_and_clear();
    print_report(&report, args.dry_run, args.json)?;
    Ok(exit(&report, args.dry_run).code())
}

/// Rejected rows are the input's fault; failed publishes are not.
fn exit(report: &Report, dry_run: bool) -> Exit {
    if !report.rejected.is_empty() {
        Exit::Rejected
    } else if report.all_good(dry_run) {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

fn usage_error(problem: String) -> anyhow::Result<ExitCode> {
    eprintln!("herald enqueue: {problem}\n(see `herald enqueue --help`)");
    Ok(Exit::Rejected.code())
}

/// How many rows the input file holds, when it is a file: one quick pass,
/// so the progress bar can show a percentage and time left. Standard input
/// is not counted (it can be read only once).
fn input_rows(args: &Args) -> Option<u64> {
    let is_file = |path: &&PathBuf| path.as_path() != Path::new("-");
    if let Some(path) = args.jsonl.as_ref().filter(is_file) {
        let lines = BufReader::new(File::open(path).ok()?).lines();
        return Some(
            lines
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .count() as u64,
        );
    }
    let path = args.csv.as_ref().filter(is_file)?;
    Some(csv::Reader::from_path(path).ok()?.records().count() as u64)
}

type Rows = Box<dyn Iterator<Item = io::Result<Row>>>;

/// The input the flags name, as rows; a problem with the flags or the
/// input's header is a usage error.
fn rows(args: &Args) -> Result<Rows, String> {
    if let Some(path) = &args.jsonl {
        return Ok(Box::new(bulk::json_lines(open(path)?)));
    }
    let fields = shared_fields(&args.job, &args.message)?;
    if let Some(path) = &args.csv {
        let rows = bulk::csv_rows(open(path)?, &fields, args.batch_id.as_deref())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Box::new(rows));
    }
    let (Some(id), Some(to)) = (&args.job.id, &args.job.to) else {
        return Err("one job needs --id and --to (or give --jsonl FILE or --csv FILE)".into());
    };
    let mut job = fields;
    job.insert("id".into(), Value::String(id.clone()));
    job.insert("to".into(), Value::String(to.clone()));
    // A job from flags is a one-line input, so it is reported like any row.
    let row = Row {
        line: 1,
        job: Job::from_value(Value::Object(job)),
    };
    Ok(Box::new(std::iter::once(Ok(row))))
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, String> {
    if path == Path::new("-") {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// The job fields given by flags: everything but `id` and `to`.
fn shared_fields(job: &JobFlags, message: &MessageFlags) -> Result<Map<String, Value>, String> {
    let provider = job
        .provider
        .as_ref()
        .ok_or("which provider? give --provider NAME")?;
    let mut fields = Map::new();
    fields.insert("provider".into(), provider.as_str().into());
    if let Some(account) = &job.account {
        fields.insert("account".into(), account.as_str().into());
    }
    fields.insert("message".into(), to_value(&message_of(message)?));
    if let Some(name) = &message.fallback_template {
        let fallback = template(name, &message.language, message.fallback_params.clone());
        fields.insert("fallback_template".into(), to_value(&fallback));
    }
    for (key, time) in [
        ("not_before", job.not_before),
        ("expires_at", job.expires_at),
    ] {
        if let Some(time) = time {
            let text = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            fields.insert(key.into(), text.into());
        }
    }
    if !job.options.is_empty() {
        let options: Map<String, Value> = job
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        fields.insert("options".into(), options.into());
    }
    if let Some(metadata) = &job.metadata {
        fields.insert("metadata".into(), metadata.clone().into());
    }
    Ok(fields)
}

fn message_of(flags: &MessageFlags) -> Result<Message, String> {
    if let Some(body) = &flags.text {
        return Ok(Message::Text { body: body.clone() });
    }
    if let Some(name) = &flags.template {
        let params = if flags.param_columns.is_empty() {
            flags.params.clone()
        } else {
            flags
                .param_columns
                .iter()
                .map(|c| format!("{{{c}}}"))
                .collect()
        };
        return Ok(template(name, &flags.language, params));
    }
    if let Some(media) = flags.media {
        return Ok(Message::Media {
            media,
            url: flags.url.clone().unwrap_or_default(),
            caption: flags.caption.clone(),
            filename: flags.filename.clone(),
        });
    }
    Err("what to send? give --text BODY, --template NAME or --media KIND --url URL".into())
}

fn template(name: &str, language: &str, params: Vec<String>) -> Message {
    Message::Template {
        name: name.to_owned(),
        language: language.to_owned(),
        header: None,
        body: params,
    }
}

fn to_value(message: &Message) -> Value {
    serde_json::to_value(message).expect("a message always serializes")
}

/// Says what is missing, if anything, for these jobs to reach a queue.
fn check_topology(
    missing: Option<Missing>,
    config: &Config,
    provider: Option<&str>,
) -> anyhow::Result<()> {
    match missing {
        None => Ok(()),
        Some(Missing::SendExchange) => Err(super::fail(
            Exit::NotFound,
            format!(
                "exchange {SEND_EXCHANGE} does not exist on {}: run `herald topology declare`",
                redact_url(&config.amqp.url)
            ),
        )),
        Some(Missing::ProviderQueue(queue)) => {
            eprintln!(
                "herald enqueue: warning: queue {queue} does not exist, so these jobs will be \
                 dead-lettered as unknown_provider (declare it: `herald topology declare --provider {}`)",
                provider.unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn progress_bar(json: bool, total: Option<u64>) -> ProgressBar {
    let bar = super::progress_bar(json, progress_style(total.is_some()));
    if let Some(total) = total {
        bar.set_length(total);
    }
    bar
}

/// With a known total: a bar, count, percentage, rate and time left; rows
/// streamed from stdin: a count and a rate. Rates are whole rows a second.
fn progress_style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "[{bar:30}] {pos}/{len} rows ({percent}%) {rate} eta {eta} {msg}"
    } else {
        "{spinner} {pos} rows {rate} {msg} [{elapsed}]"
    };
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&whole_rate(state.per_sec()));
            },
        )
}

fn whole_rate(per_second: f64) -> String {
    format!("{per_second:.0}/s")
}

fn show_progress(bar: &ProgressBar, report: &Report) {
    let rows = report.valid + report.rejected.len() as u64;
    bar.set_position(rows);
    bar.set_message(format!(
        "published {} · rejected {} · failed {}",
        report.published,
        report.rejected.len(),
        report.failed.len()
    ));
}

#[derive(Serialize)]
struct JsonReport<'a> {
    dry_run: bool,
    #[serde(flatten)]
    report: &'a Report,
}

fn print_report(report: &Report, dry_run: bool, json: bool) -> anyhow::Result<()> {
    for line in problem_lines(report) {
        eprintln!("{line}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&JsonReport { dry_run, report })?
        );
    } else {
        println!("{}", summary(report, dry_run));
    }
    Ok(())
}

/// One line per problem, `line N: field: problem`, easy to grep and sort.
fn problem_lines(report: &Report) -> Vec<String> {
    let rejected = report.rejected.iter().flat_map(|row| {
        row.problems
            .iter()
            .map(move |p| format!("line {}: {}: {}", row.line, p.field, p.problem))
    });
    let failed = report
        .failed
        .iter()
        .map(|f| format!("line {}: failed to publish {}: {}", f.line, f.id, f.error));
    let aborted = report
        .aborted
        .iter()
        .map(|e| format!("stopped reading the input: {e}"));
    rejected.chain(failed).chain(aborted).collect()
}

fn summary(report: &Report, dry_run: bool) -> String {
    let rejected = report.rejected.len();
    if dry_run {
        return format!(
            "dry run: would publish {}, rejected {rejected}; nothing published",
            report.valid
        );
    }
    format!(
        "published {} (confirmed by the broker), rejected {rejected}, failed {}",
        report.published,
        report.failed.len()
    )
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time like 2026-11-21T10:00:00Z ({e})"))
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn media_kind(text: &str) -> Result<MediaKind, String> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| "must be image, document or video".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("enqueue").chain(flags.iter().copied())).map(|c| c.args)
    }

    fn job(flags: &[&str]) -> Result<Job, String> {
        let args = parse(flags).map_err(|e| e.to_string())?;
        let row = rows(&args)?
            .next()
            .expect("one row")
            .expect("no read error");
        row.job.map_err(|e| e.to_string())
    }

    const BASE: [&str; 6] = [
        "--id",
        "o-1",
        "--provider",
        "kaleyra",
        "--to",
        "+254712345678",
    ];

    #[test]
    fn flags_make_one_job_with_every_field() {
        let mut flags = BASE.to_vec();
        flags.extend([
            "--text",
            "shipped",
            "--account",
            "acme",
            "--fallback-template",
            "order_update",
            "--fallback-param",
            "1234",
            "--not-before",
            "2026-11-21T10:00:00Z",
            "--expires-at",
            "2026-11-22T12:00:00+02:00",
            "--option",
            "ref=cust-88",
            "--metadata",
            r#"{"order":1234}"#,
        ]);
        let job = job(&flags).unwrap();
        let expected = serde_json::json!({
            "id": "o-1", "provider": "kaleyra", "account": "acme", "to": "+254712345678",
            "message": {"type": "text", "body": "shipped"},
            "fallback_template": {"type": "template", "name": "order_update", "language": "en", "body": ["1234"]},
            "not_before": "2026-11-21T10:00:00Z", "expires_at": "2026-11-22T10:00:00Z",
            "options": {"ref": "cust-88"}, "metadata": {"order": 1234}
        });
        assert_eq!(job, Job::from_value(expected).unwrap());
    }

    #[test]
    fn media_and_template_messages_from_flags() {
        let mut media = BASE.to_vec();
        media.extend([
            "--media",
            "image",
            "--url",
            "https://cdn.example.com/p.jpg",
            "--caption",
            "new",
        ]);
        assert!(matches!(
            job(&media).unwrap().message,
            Message::Media {
                media: MediaKind::Image,
                caption: Some(_),
                ..
            }
        ));
        let mut template = BASE.to_vec();
        template.extend([
            "--template",
            "order_update",
            "--language",
            "sw",
            "--param",
            "a",
            "--param",
            "b",
        ]);
        let Message::Template { language, body, .. } = job(&template).unwrap().message else {
            panic!("a template")
        };
        assert_eq!(
            (language.as_str(), body),
            ("sw", vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn an_invalid_job_from_flags_names_every_problem() {
        let problems = job(&[
            "--id",
            "bad id",
            "--provider",
            "kaleyra",
            "--to",
            "0712",
            "--text",
            " ",
        ])
        .unwrap_err();
        for field in ["id:", "to:", "message.body:"] {
            assert!(problems.contains(field), "{field} in {problems}");
        }
    }

    #[test]
    fn usage_mistakes_are_caught_before_any_input_is_read() {
        let usage = |flags: &[&str]| match parse(flags) {
            Err(e) => e.to_string(),
            Ok(args) => rows(&args).err().expect("a usage error"),
        };
        assert!(usage(&["--jsonl", "-", "--provider", "kaleyra"]).contains("cannot be used with"));
        assert!(usage(&["--text", "a", "--template", "t"]).contains("cannot be used with"));
        assert!(
            usage(&[
                "--provider",
                "kaleyra",
                "--to",
                "+254712345678",
                "--text",
                "a"
            ])
            .contains("--id")
        );
        assert!(
            usage(&["--id", "a", "--to", "+254712345678", "--text", "a"]).contains("--provider")
        );
        assert!(usage(&BASE).contains("what to send"));
        assert!(usage(&["--param-column", "name", "--template", "t"]).contains("--csv"));
        assert!(
            usage(&["--media", "gif", "--url", "https://x"]).contains("image, document or video")
        );
        assert!(usage(&["--option", "novalue"]).contains("KEY=VALUE"));
        assert!(usage(&["--metadata", "[1]"]).contains("JSON object"));
        assert!(usage(&["--not-before", "tomorrow"]).contains("RFC 3339"));
    }

    #[test]
    fn the_report_names_each_problem_by_line() {
        let report = Report {
            valid: 1,
            published: 0,
            rejected: vec![bulk::Rejected {
                line: 3,
                problems: vec![
                    herald_core::Problem {
                        field: "to".into(),
                        problem: "is required".into(),
                    },
                    herald_core::Problem {
                        field: "id".into(),
                        problem: "is required".into(),
                    },
                ],
            }],
            failed: vec![bulk::Failed {
                line: 4,
                id: "b:4".into(),
                error: "nack".into(),
            }],
            aborted: None,
        };
        assert_eq!(
            problem_lines(&report),
            [
                "line 3: to: is required",
                "line 3: id: is required",
                "line 4: failed to publish b:4: nack"
            ]
        );
        assert_eq!(
            summary(&report, false),
            "published 0 (confirmed by the broker), rejected 1, failed 1"
        );
        assert_eq!(
            summary(&report, true),
            "dry run: would publish 1, rejected 1; nothing published"
        );
        assert_eq!(exit(&report, false), Exit::Rejected);
    }

    #[test]
    fn progress_shows_percentage_rate_and_eta_for_files_and_whole_rates() {
        assert_eq!(whole_rate(1234.5678), "1235/s");
        assert_eq!(whole_rate(0.4), "0/s");
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("rows.csv");
        std::fs::write(&csv, "to,name\n+254712345678,\"a\nb\"\n+254712345679,b\n").unwrap();
        let args = parse(&[
            "--csv",
            csv.to_str().unwrap(),
            "--batch-id",
            "b",
            "--provider",
            "kaleyra",
            "--text",
            "hi",
        ])
        .unwrap();
        assert_eq!(input_rows(&args), Some(2), "records, not lines");
        let stdin = parse(&["--jsonl", "-"]).unwrap();
        assert_eq!(input_rows(&stdin), None);
    }
}
