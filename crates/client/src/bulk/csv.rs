//! CSV: one row per recipient. The job fields shared by every row (provider,
//! message, options …) are given once as a JSON object whose strings may
//! name columns as `{column}`; each row supplies `to` and, optionally, `id`.

use std::collections::VecDeque;
use std::io;

use csv::{ErrorKind, ReaderBuilder, StringRecord};
use serde_json::{Map, Value};

use herald_core::job::MAX_ID_LEN;
use herald_core::{Job, JobErrors, Problem};

use super::Row;
use super::template::{Template, TemplateError};

const TO_COLUMN: &str = "to";
const ID_COLUMN: &str = "id";
/// Room left in an id for `:<line>`.
const MAX_BATCH_ID_LEN: usize = MAX_ID_LEN - 21;

/// Why a CSV input cannot be read at all (as opposed to a bad row).
#[derive(Debug, thiserror::Error)]
pub enum CsvSetupError {
    #[error("cannot read the CSV header: {0}")]
    Header(#[source] csv::Error),
    #[error("the CSV header has no `to` column (columns: {0})")]
    NoToColumn(String),
    #[error(
        "the CSV has no `id` column, so a batch id is needed: row ids are then <batch id>:<line>, \
         the same on every run of the same file"
    )]
    NoIds,
    #[error("the CSV has an `id` column, so a batch id would be ignored: give one or the other")]
    TwoIdSources,
    #[error("batch id {0:?} must be 1–{MAX_BATCH_ID_LEN} characters of [A-Za-z0-9._:-]")]
    BadBatchId(String),
    #[error("placeholder: {0}")]
    Template(#[from] TemplateError),
}

/// How one file's rows become jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvJobs {
    /// The shared fields, compiled against the header.
    fields: Template,
    to: usize,
    ids: Ids,
}

#[derive(Debug, Clone, PartialEq)]
enum Ids {
    Column(usize),
    /// `<batch>:<line>`: deterministic, so re-running a file re-sends nothing
    /// the worker already sent (same ids, same idempotency keys).
    Derived(String),
}

impl CsvJobs {
    /// Checks that the header has what `fields` and the ids need.
    pub fn new(
        header: &[String],
        fields: &Map<String, Value>,
        batch_id: Option<&str>,
    ) -> Result<CsvJobs, CsvSetupError> {
        let column = |name: &str| header.iter().position(|c| c == name);
        let to = column(TO_COLUMN).ok_or_else(|| CsvSetupError::NoToColumn(header.join(", ")))?;
        let ids = match (column(ID_COLUMN), batch_id) {
            (Some(_), Some(_)) => return Err(CsvSetupError::TwoIdSources),
            (Some(index), None) => Ids::Column(index),
            (None, Some(batch)) if is_batch_id(batch) => Ids::Derived(batch.to_owned()),
            (None, Some(batch)) => return Err(CsvSetupError::BadBatchId(batch.to_owned())),
            (None, None) => return Err(CsvSetupError::NoIds),
        };
        let fields = Template::compile(&Value::Object(fields.clone()), header)?;
        Ok(CsvJobs { fields, to, ids })
    }

    /// The job of the row that starts on `line`.
    pub fn job(&self, line: u64, row: &[&str]) -> Result<Job, JobErrors> {
        let cell = |index: usize| row.get(index).copied().unwrap_or_default().to_owned();
        let mut job = self.fields.render(row);
        let fields = job.as_object_mut().expect("compiled from an object");
        let id = match &self.ids {
            Ids::Column(index) => cell(*index),
            Ids::Derived(batch) => format!("{batch}:{line}"),
        };
        fields.insert(ID_COLUMN.into(), Value::String(id));
        fields.insert(TO_COLUMN.into(), Value::String(cell(self.to)));
        Job::from_value(job)
    }
}

fn is_batch_id(batch: &str) -> bool {
    (1..=MAX_BATCH_ID_LEN).contains(&batch.len())
        && batch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// The jobs of a CSV input with a header line. Header names and cells are
/// trimmed; a row with the wrong number of cells or invalid UTF-8 is a
/// rejected row, and only failing to read the input stops it.
pub fn csv_rows<R: io::Read>(
    input: R,
    fields: &Map<String, Value>,
    batch_id: Option<&str>,
) -> Result<impl Iterator<Item = io::Result<Row>> + use<R>, CsvSetupError> {
    let mut reader = ReaderBuilder::new().from_reader(LineIndex::new(input));
    let header: Vec<String> = reader
        .headers()
        .map_err(CsvSetupError::Header)?
        .iter()
        .map(|name| name.trim().to_owned())
        .collect();
    let jobs = CsvJobs::new(&header, fields, batch_id)?;
    Ok(CsvRows {
        reader,
        record: StringRecord::new(),
        jobs,
    })
}

struct CsvRows<R> {
    reader: csv::Reader<LineIndex<R>>,
    record: StringRecord,
    jobs: CsvJobs,
}

impl<R: io::Read> Iterator for CsvRows<R> {
    type Item = io::Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        let read = self.reader.read_record(&mut self.record);
        let end = self.reader.position().byte();
        let problem = match read {
            Ok(false) => return None,
            Ok(true) => None,
            Err(error) => Some(match error.kind() {
                ErrorKind::Io(_) => return Some(Err(error.into())),
                ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("has {len} cells; the header has {expected_len}"),
                _ => error.to_string(),
            }),
        };
        let row = match problem {
            None => {
                let line_breaks_inside = self.record.iter().map(|c| c.matches('\n').count()).sum();
                let line = self.line(end, line_breaks_inside);
                let cells: Vec<&str> = self.record.iter().map(str::trim).collect();
                Row {
                    line,
                    job: self.jobs.job(line, &cells),
                }
            }
            // A bad record's cells are not known, so a bad multi-line
            // record is reported at its last line.
            Some(problem) => Row {
                line: self.line(end, 0),
                job: Err(JobErrors {
                    problems: vec![Problem {
                        field: "$".into(),
                        problem,
                    }],
                }),
            },
        };
        Some(Ok(row))
    }
}

impl<R: io::Read> CsvRows<R> {
    /// The line a record starts on, given the offset just past it. The csv
    /// crate's own record positions are off after blank lines and with CRLF
    /// endings (BurntSushi/rust-csv#208), but where a record *ends* is
    /// exact: count the line breaks before its last byte, less those inside
    /// its cells.
    fn line(&mut self, end: u64, line_breaks_inside: usize) -> u64 {
        let last_line = self.reader.get_mut().line_of(end.saturating_sub(1));
        last_line.saturating_sub(line_breaks_inside as u64)
    }
}

/// Remembers where the line breaks are in what has been read but not yet
/// asked about, so a byte offset can be turned into a line number without
/// keeping the input.
struct LineIndex<R> {
    inner: R,
    read: u64,
    /// Offsets of line breaks not yet passed by a query, ascending.
    ahead: VecDeque<u64>,
    /// Line breaks before the last queried offset.
    passed: u64,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        LineIndex {
            inner,
            read: 0,
            ahead: VecDeque::new(),
            passed: 0,
        }
    }

    /// The 1-based line of the byte at `offset`; offsets must not decrease.
    fn line_of(&mut self, offset: u64) -> u64 {
        while self.ahead.front().is_some_and(|&at| at < offset) {
            self.ahead.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: io::Read> io::Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.read;
        self.ahead.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| start + i as u64),
        );
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::Message;
    use serde_json::json;

    fn fields() -> Map<String, Value> {
        json!({
            "provider": "kaleyra",
            "message": {"type": "template", "name": "order_update", "language": "en",
                        "body": ["{name}", "{order}"]},
            "metadata": {"order": "{order}"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn read(csv: &[u8], batch: Option<&str>) -> Vec<Row> {
        csv_rows(csv, &fields(), batch)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn maps_columns_and_derives_ids_from_the_batch_and_line() {
        let rows = read(
            b" to ,name,order\n+254712345678, Amina ,1234\n\n+254700000001,Baraka,77\n",
            Some("promo-7"),
        );
        let jobs: Vec<&Job> = rows.iter().map(|r| r.job.as_ref().unwrap()).collect();
        assert_eq!([rows[0].line, rows[1].line], [2, 4]);
        assert_eq!(
            [jobs[0].id.as_str(), jobs[1].id.as_str()],
            ["promo-7:2", "promo-7:4"]
        );
        assert_eq!(jobs[0].to, "+254712345678");
        assert_eq!(jobs[0].provider, "kaleyra");
        assert_eq!(jobs[0].metadata.as_ref().unwrap()["order"], "1234");
        let Message::Template { body, .. } = &jobs[0].message else {
            panic!("{:?}", jobs[0].message)
        };
        assert_eq!(body, &["Amina", "1234"], "cells are trimmed");
    }

    #[test]
    fn line_numbers_hold_with_blank_lines_crlf_and_multi_line_cells() {
        let rows = read(
            b"to,name,order\r\n+254712345678,A,1\r\n\r\n\r\n+254712345678,\"B\r\nB\",2\r\n\n+254712345678,C,3",
            Some("b"),
        );
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 5, 8]);
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| r.job.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(ids, ["b:2", "b:5", "b:8"]);
    }

    #[test]
    fn an_id_column_gives_the_ids() {
        let rows = read(b"id,to,name,order\nord-1,+254712345678,A,1\n", None);
        assert_eq!(rows[0].job.as_ref().unwrap().id, "ord-1");
    }

    #[test]
    fn bad_rows_are_rejected_by_line_with_every_problem() {
        let rows = read(
            b"to,name,order\n+254712345678,A,1\n0712,,2\n+254712345678,B\n\"+2547\xc3\x28\",C,3\n",
            Some("b"),
        );
        let rejected: Vec<(u64, Vec<String>)> = rows
            .iter()
            .filter_map(|r| {
                let errors = r.job.as_ref().err()?;
                Some((
                    r.line,
                    errors.problems.iter().map(|p| p.field.clone()).collect(),
                ))
            })
            .collect();
        assert_eq!(
            rejected,
            [
                (3, vec!["to".to_owned(), "message.body[0]".to_owned()]),
                (4, vec!["$".to_owned()]),
                (5, vec!["$".to_owned()]),
            ]
        );
        let short = rows[2].job.as_ref().unwrap_err();
        assert!(
            short.problems[0]
                .problem
                .contains("has 2 cells; the header has 3"),
            "{short}"
        );
    }

    #[test]
    fn a_header_without_what_the_jobs_need_is_a_setup_error() {
        let setup = |csv: &str, batch: Option<&str>| {
            csv_rows(csv.as_bytes(), &fields(), batch)
                .err()
                .map(|e| e.to_string())
        };
        assert!(
            setup("phone,name,order\n", Some("b"))
                .unwrap()
                .contains("no `to` column")
        );
        assert!(
            setup("to,name,order\n", None)
                .unwrap()
                .contains("no `id` column")
        );
        assert!(
            setup("id,to,name,order\n", Some("b"))
                .unwrap()
                .contains("give one or the other")
        );
        assert!(
            setup("to,name,order\n", Some("bad batch"))
                .unwrap()
                .contains("batch id")
        );
        assert!(setup("to,name\n", Some("b")).unwrap().contains("\"order\""));
    }
}
