//! Publishing many jobs at once (`herald enqueue --jsonl|--csv`): input rows
//! become validated jobs ([`json_lines`], [`csv_rows`]), and [`publish`]
//! sends the valid ones with a bounded window of unconfirmed publishes.
//!
//! Every row ends in exactly one place of the [`Report`]: rejected (invalid,
//! never published), published (the broker confirmed it) or failed (nacked,
//! unroutable or a broker error; never counted as published).

mod csv;
mod jsonl;
pub mod template;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use serde::Serialize;

use herald_core::protocol::{SEND_EXCHANGE, send_queue};
use herald_core::{Job, JobErrors, Problem};

use crate::Publisher;

pub use self::csv::{CsvJobs, CsvSetupError, csv_rows};
pub use self::jsonl::json_lines;

/// Unconfirmed publishes allowed at once: awaiting each confirm in turn
/// manages ~1.5k msg/s, a window like this ~20k (NOTES.md).
pub const DEFAULT_IN_FLIGHT: usize = 512;

/// One input row, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The 1-based line of the input the row starts on.
    pub line: u64,
    pub job: Result<Job, JobErrors>,
}

/// A row that was not published because it is not a valid job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub line: u64,
    pub problems: Vec<Problem>,
}

/// A valid job the broker did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub line: u64,
    pub id: String,
    pub error: String,
}

/// What happened to every row of one input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Rows that passed validation.
    pub valid: u64,
    /// Jobs the broker confirmed; a dry run publishes none.
    pub published: u64,
    pub rejected: Vec<Rejected>,
    pub failed: Vec<Failed>,
    /// Why reading stopped before the end of the input, if it did. Rows
    /// read before that are accounted for above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

impl Report {
    /// Whether every row was read and, unless this was a dry run, published.
    pub fn all_good(&self, dry_run: bool) -> bool {
        let all_published = dry_run || self.published == self.valid;
        self.rejected.is_empty()
            && self.failed.is_empty()
            && self.aborted.is_none()
            && all_published
    }
}

/// Sorts rows into the report as they are read.
#[derive(Default)]
struct Ledger {
    report: Report,
    /// Each id's first line: two rows with one id are one message to the
    /// worker, so the second would be dropped silently.
    seen: HashMap<String, u64>,
}

impl Ledger {
    /// The row's job if it may be published; otherwise records why not.
    fn admit(&mut self, row: Row) -> Option<(u64, Job)> {
        let line = row.line;
        let job = row
            .job
            .and_then(|job| job.check_sendable(Utc::now()).map(|()| job));
        let problems = match job {
            Err(errors) => errors.problems,
            Ok(job) => match self.seen.entry(job.id.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(line);
                    self.report.valid += 1;
                    return Some((line, job));
                }
                Entry::Occupied(first) => vec![Problem {
                    field: "id".into(),
                    problem: format!(
                        "{:?} is already the id of line {} (jobs with one id are one message)",
                        job.id,
                        first.get()
                    ),
                }],
            },
        };
        self.report.rejected.push(Rejected { line, problems });
        None
    }

    fn settle(&mut self, (line, id, outcome): Outcome) {
        match outcome {
            Ok(()) => self.report.published += 1,
            Err(error) => self.report.failed.push(Failed { line, id, error }),
        }
    }
}

type Outcome = (u64, String, Result<(), String>);

/// Validates every row without publishing (`--dry-run`).
pub fn check(
    rows: impl IntoIterator<Item = io::Result<Row>>,
    mut progress: impl FnMut(&Report),
) -> Report {
    let mut ledger = Ledger::default();
    for row in rows {
        match row {
            Ok(row) => {
                ledger.admit(row);
            }
            Err(error) => {
                ledger.report.aborted = Some(error.to_string());
                break;
            }
        }
        progress(&ledger.report);
    }
    ledger.report
}

/// Publishes every valid row to `herald.send`, keeping at most `in_flight`
/// publishes unconfirmed; returns once every publish has its answer.
/// `progress` sees the report after each row and each confirm.
pub async fn publish(
    publisher: &Publisher,
    rows: impl IntoIterator<Item = io::Result<Row>>,
    in_flight: usize,
    mut progress: impl FnMut(&Report),
) -> Report {
    let mut ledger = Ledger::default();
    let mut pending = FuturesUnordered::new();
    for row in rows {
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                ledger.report.aborted = Some(error.to_string());
                break;
            }
        };
        let Some((line, job)) = ledger.admit(row) else {
            progress(&ledger.report);
            continue;
        };
        while pending.len() >= in_flight.max(1) {
            if let Some(outcome) = pending.next().await {
                ledger.settle(outcome);
                progress(&ledger.report);
            }
        }
        match publisher.start_job(&job).await {
            Ok(confirm) => pending.push(async move {
                let outcome = confirm.wait().await.map_err(|e| e.to_string());
                (line, job.id, outcome)
            }),
            Err(error) => {
                ledger.settle((line, job.id, Err(error.to_string())));
                progress(&ledger.report);
            }
        }
    }
    while let Some(outcome) = pending.next().await {
        ledger.settle(outcome);
        progress(&ledger.report);
    }
    ledger.report
}

/// What stops published jobs from reaching a provider queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// `herald.send` does not exist: nothing can be published.
    SendExchange,
    /// The provider has no queue: its jobs go straight to the dead-letter
    /// queue (the send exchange's alternate exchange) as `unknown_provider`.
    ProviderQueue(String),
}

/// Checks the topology before a bulk publish, so a missing exchange is one
/// clear error instead of one failure per row.
pub async fn missing_topology(
    connection: &Connection,
    provider: Option<&str>,
) -> Result<Option<Missing>, lapin::Error> {
    if !exchange_exists(connection, SEND_EXCHANGE).await? {
        return Ok(Some(Missing::SendExchange));
    }
    let Some(provider) = provider else {
        return Ok(None);
    };
    let queue = send_queue(provider);
    Ok((!queue_exists(connection, &queue).await?).then_some(Missing::ProviderQueue(queue)))
}

// Each check gets a channel of its own: a failed passive declaration closes it.

async fn exchange_exists(connection: &Connection, exchange: &str) -> Result<bool, lapin::Error> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let channel = connection.create_channel().await?;
    let declared = channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            passive,
            FieldTable::default(),
        )
        .await;
    Ok(declared.is_ok())
}

async fn queue_exists(connection: &Connection, queue: &str) -> Result<bool, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await;
    Ok(declared.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobBuilder;

    fn valid(line: u64, id: &str) -> io::Result<Row> {
        let job = JobBuilder::text(id, "kaleyra", "+254712345678", "hi").build();
        Ok(Row { line, job })
    }

    #[test]
    fn check_sorts_rows_and_rejects_a_repeated_id_naming_its_first_line() {
        let invalid = Job::parse(b"{}").map(|_| unreachable!());
        let rows = vec![
            valid(1, "a"),
            Ok(Row {
                line: 2,
                job: invalid,
            }),
            valid(3, "b"),
            valid(4, "a"),
        ];
        let mut seen = 0;
        let report = check(rows, |_| seen += 1);
        assert_eq!(seen, 4);
        assert_eq!(report.valid, 2);
        assert_eq!(report.published, 0);
        let lines: Vec<u64> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4]);
        assert!(report.rejected[0].problems.iter().any(|p| p.field == "id"));
        let repeated = &report.rejected[1].problems[0];
        assert_eq!(repeated.field, "id");
        assert!(repeated.problem.contains("line 1"), "{}", repeated.problem);
        assert!(!report.all_good(true));
    }

    #[test]
    fn rows_the_provider_cannot_send_or_already_expired_are_rejected_by_field() {
        let template =
            JobBuilder::template("t", "pingup", "+254712345678", "order_update", "en", vec![]);
        let expired = JobBuilder::text("x", "kaleyra", "+254712345678", "hi")
            .expires_at(Utc::now() - chrono::TimeDelta::seconds(1));
        let rows = [template, expired].into_iter().enumerate().map(|(i, job)| {
            Ok(Row {
                line: i as u64 + 1,
                job: job.build(),
            })
        });
        let report = check(rows, |_| {});
        assert_eq!(report.valid, 0);
        let fields: Vec<&str> = report
            .rejected
            .iter()
            .map(|r| r.problems[0].field.as_str())
            .collect();
        assert_eq!(fields, ["message.type", "expires_at"]);
    }

    #[test]
    fn a_read_error_stops_the_input_and_is_reported() {
        let rows = vec![
            valid(1, "a"),
            Err(io::Error::other("disk on fire")),
            valid(3, "b"),
        ];
        let report = check(rows, |_| {});
        assert_eq!(report.valid, 1);
        assert_eq!(report.aborted.as_deref(), Some("disk on fire"));
        assert!(!report.all_good(true));
    }

    #[test]
    fn only_a_fully_published_input_is_all_good() {
        let mut report = Report {
            valid: 2,
            published: 2,
            ..Report::default()
        };
        assert!(report.all_good(false));
        report.published = 1;
        assert!(!report.all_good(false));
        assert!(report.all_good(true), "a dry run publishes nothing");
    }
}
