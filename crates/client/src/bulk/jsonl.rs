//! JSON lines: one complete job (CONTRACT §1) per line.

use std::io::{self, BufRead};

use herald_core::Job;

use super::Row;

/// The jobs of a JSON-lines input, numbered by line. Blank lines are skipped;
/// a line that is not valid UTF-8 or JSON is a rejected row, not an error:
/// only failing to read the input stops it.
pub fn json_lines<R: BufRead>(reader: R) -> impl Iterator<Item = io::Result<Row>> {
    JsonLines {
        reader,
        line: 0,
        buffer: Vec::new(),
    }
}

struct JsonLines<R> {
    reader: R,
    line: u64,
    buffer: Vec<u8>,
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = io::Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => self.line += 1,
                Err(error) => return Some(Err(error)),
            }
            let text = self.buffer.trim_ascii();
            if !text.is_empty() {
                return Some(Ok(Row {
                    line: self.line,
                    job: Job::parse(text),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_rows_by_line_and_names_each_problem() {
        let input = concat!(
            r#"{"id":"a","provider":"kaleyra","to":"+254712345678","message":{"type":"text","body":"hi"}}"#,
            "\n\n",
            "{not json\n",
            r#"{"id":"b","provider":"kaleyra","to":"+254712345678","message":{"type":"text","body":"hi"},"priority":1}"#,
            "\r\n",
            r#"{"id":"c","provider":"kaleyra","to":"+254712345678","message":{"type":"text","body":"no newline"}}"#,
        );
        let rows: Vec<Row> = json_lines(input.as_bytes()).map(Result::unwrap).collect();
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        assert_eq!(rows[0].job.as_ref().unwrap().id, "a");
        let malformed = rows[1].job.as_ref().unwrap_err();
        assert_eq!(malformed.problems[0].field, "$");
        assert!(malformed.problems[0].problem.contains("not valid JSON"));
        let unknown = rows[2].job.as_ref().unwrap_err();
        assert!(unknown.mentions("priority"), "{unknown}");
        assert_eq!(rows[3].job.as_ref().unwrap().id, "c");
    }

    #[test]
    fn invalid_utf8_is_a_rejected_row() {
        let rows: Vec<Row> = json_lines(&b"\xff\xfe\n"[..]).map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].job.as_ref().unwrap_err().mentions("$"));
    }
}
