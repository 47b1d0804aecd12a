//! The checker, in the manner of Jepsen's total-queue: once everything has
//! drained, every job that was attempted (published with a confirm) must
//! have been accepted by the vendor exactly once or be in the dead-letter
//! queue with the reason expected for it. Plain data in, a [`Row`] out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What a job should end as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Accepted by the vendor, once.
    Sent,
    /// In the dead-letter queue with this reason (a CONTRACT §3 code).
    Dead(&'static str),
}

/// A job published, and confirmed by the broker.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub id: String,
    pub expect: Expect,
}

/// A request the vendor accepted (answered 2xx, or will after its delay:
/// the vendor has the message whether or not the caller lived to hear it).
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub job_id: String,
    pub at: DateTime<Utc>,
    /// The worker process that made the call.
    pub by: String,
}

/// A dead letter left in `herald.dead` after the drain.
#[derive(Debug, Clone)]
pub struct Letter {
    pub job_id: String,
    pub reason: String,
}

/// A worker process that was SIGKILLed.
#[derive(Debug, Clone)]
pub struct Kill {
    pub at: DateTime<Utc>,
    /// Job ids its log reports as `sent` (recorded, before settling).
    pub logged_sent: HashSet<String>,
}

/// Everything observed in one scenario.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub attempted: Vec<Attempted>,
    pub acceptances: Vec<Acceptance>,
    pub letters: Vec<Letter>,
    /// By worker process name.
    pub kills: HashMap<String, Kill>,
    /// The longest a vendor call can be in flight (the provider timeout).
    pub call_window: Duration,
}

/// A job the vendor accepted more than once, and whether the repeat is
/// the irreducible one: a call that was in flight when its worker was
/// SIGKILLed, so the worker never lived to record the send.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub job_id: String,
    pub acceptances: usize,
    /// `Ok(why it is explained)` or `Err(why it is not)`.
    pub explanation: Result<String, String>,
}

/// One scenario's line of the table, with the evidence behind its counts.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub attempted: usize,
    /// Distinct job ids the vendor accepted.
    pub sent: usize,
    /// Dead letters by reason.
    pub dead: BTreeMap<String, usize>,
    /// Attempted, but neither accepted nor dead-lettered.
    pub lost: Vec<String>,
    pub duplicated: Vec<Duplicate>,
    /// `job id: expected …, got …` for dead letters with another reason than
    /// expected and jobs expected dead that the vendor accepted.
    pub wrong: Vec<String>,
    pub took: Duration,
    /// The scenario could not be run to the end (the counts are partial).
    pub error: Option<String>,
    /// What happened during the run that the counts do not show.
    pub notes: Vec<String>,
}

impl Row {
    pub fn unexplained(&self) -> usize {
        self.duplicated
            .iter()
            .filter(|d| d.explanation.is_err())
            .count()
    }

    /// A row for a scenario that could not be run to the end.
    pub fn failed(scenario: &str, error: String) -> Row {
        Row {
            scenario: scenario.to_owned(),
            error: Some(error),
            ..Row::default()
        }
    }

    /// Ran to the end, nothing lost, every duplicate explained, every
    /// reason right.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.lost.is_empty()
            && self.unexplained() == 0
            && self.wrong.is_empty()
    }
}

/// Counts a scenario's history.
pub fn check(scenario: &str, history: &History) -> Row {
    let mut accepted: HashMap<&str, Vec<&Acceptance>> = HashMap::new();
    for acceptance in &history.acceptances {
        accepted
            .entry(acceptance.job_id.as_str())
            .or_default()
            .push(acceptance);
    }
    let mut dead_by_job: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut dead = BTreeMap::new();
    for letter in &history.letters {
        *dead.entry(letter.reason.clone()).or_default() += 1;
        dead_by_job
            .entry(letter.job_id.as_str())
            .or_default()
            .push(letter.reason.as_str());
    }

    let mut row = Row {
        scenario: scenario.to_owned(),
        attempted: history.attempted.len(),
        sent: accepted.len(),
        dead,
        ..Row::default()
    };
    for job in &history.attempted {
        let calls = accepted.get(job.id.as_str());
        let reasons = dead_by_job.get(job.id.as_str());
        if calls.is_none() && reasons.is_none() {
            row.lost.push(job.id.clone());
        }
        if let Some(calls) = calls.filter(|c| c.len() > 1) {
            row.duplicated.push(duplicate(&job.id, calls, history));
        }
        row.wrong
            .extend(wrong_ending(job, calls.is_some(), reasons));
    }
    row
}

/// What is wrong with how `job` ended, if anything.
fn wrong_ending(job: &Attempted, accepted: bool, reasons: Option<&Vec<&str>>) -> Vec<String> {
    let mut wrong = Vec::new();
    let expected = match job.expect {
        Expect::Sent => "sent",
        Expect::Dead(reason) => reason,
    };
    for reason in reasons.into_iter().flatten() {
        if *reason != expected {
            wrong.push(format!(
                "{}: expected {expected}, dead-lettered as {reason}",
                job.id
            ));
        }
    }
    if accepted && job.expect != Expect::Sent {
        wrong.push(format!(
            "{}: expected {expected}, accepted by the vendor",
            job.id
        ));
    }
    wrong
}

/// Every acceptance but the last must come from a worker that was
/// SIGKILLed while that call could still be in flight (received at most one
/// call window before the kill) and whose log never reported the job sent.
/// A request its vendor read after the kill was written before the death
/// (each worker has a vendor of its own), so there is no bound that way.
fn duplicate(job_id: &str, calls: &[&Acceptance], history: &History) -> Duplicate {
    let mut calls = calls.to_vec();
    calls.sort_by_key(|c| c.at);
    let (last, earlier) = calls.split_last().expect("more than one call");
    let window = chrono::Duration::from_std(history.call_window).unwrap_or(chrono::Duration::MAX);
    let mut because = Vec::new();
    for call in earlier {
        let at = call.at.format("%H:%M:%S%.3f");
        let Some(kill) = history.kills.get(&call.by) else {
            return unexplained(
                job_id,
                &calls,
                format!("accepted at {at} from {}, which was not SIGKILLed", call.by),
            );
        };
        let before_kill = kill.at - call.at;
        if before_kill > window {
            return unexplained(
                job_id,
                &calls,
                format!(
                    "accepted at {at} from {}, {} ms before its SIGKILL: outside the {} ms call window",
                    call.by,
                    before_kill.num_milliseconds(),
                    window.num_milliseconds()
                ),
            );
        }
        if kill.logged_sent.contains(job_id) {
            return unexplained(
                job_id,
                &calls,
                format!("{} logged it sent before its SIGKILL", call.by),
            );
        }
        because.push(format!(
            "accepted at {at} from {}, {} ms before its SIGKILL (call window {} ms), no `sent` in its log",
            call.by,
            before_kill.num_milliseconds(),
            window.num_milliseconds()
        ));
    }
    because.push(format!(
        "then accepted at {} from {}",
        last.at.format("%H:%M:%S%.3f"),
        last.by
    ));
    Duplicate {
        job_id: job_id.to_owned(),
        acceptances: calls.len(),
        explanation: Ok(because.join("; ")),
    }
}

fn unexplained(job_id: &str, calls: &[&Acceptance], why: String) -> Duplicate {
    let trail: Vec<String> = calls
        .iter()
        .map(|c| format!("{} at {}", c.by, c.at.format("%H:%M:%S%.3f")))
        .collect();
    Duplicate {
        job_id: job_id.to_owned(),
        acceptances: calls.len(),
        explanation: Err(format!("{why} (accepted from {})", trail.join(", "))),
    }
}

/// The markdown table of every row.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | attempted | sent | dead (by reason) | lost | duplicated (explained) | wrong reason | time | verdict |\n\
         |---|---:|---:|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let dead_total: usize = row.dead.values().sum();
        let reasons: Vec<String> = row.dead.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let dead = if reasons.is_empty() {
            "0".to_owned()
        } else {
            format!("{dead_total} ({})", reasons.join(", "))
        };
        let duplicated = row.duplicated.len();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {dead} | {} | {duplicated} ({}) | {} | {:.0} s | {} |",
            row.scenario,
            row.attempted,
            row.sent,
            row.lost.len(),
            duplicated - row.unexplained(),
            row.wrong.len(),
            row.took.as_secs_f64(),
            match (&row.error, row.passed()) {
                (Some(_), _) => "ERROR",
                (None, true) => "pass",
                (None, false) => "FAIL",
            },
        );
    }
    out
}

/// The evidence behind a row: every duplicate with its explanation, and the
/// first few lost jobs and wrong reasons.
pub fn details(row: &Row) -> String {
    const SHOWN: usize = 10;
    let mut out = String::new();
    if let Some(error) = &row.error {
        let _ = writeln!(out, "  error: {error}");
    }
    for note in &row.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    // Every explained duplicate shows its evidence; unexplained ones are
    // all alike, so the first few make the point.
    let unexplained = row.duplicated.iter().filter(|d| d.explanation.is_err());
    for dup in row.duplicated.iter().filter(|d| d.explanation.is_ok()) {
        let why = dup.explanation.as_ref().map_or("", String::as_str);
        let _ = writeln!(
            out,
            "  duplicate {} ({}×, explained): {why}",
            dup.job_id, dup.acceptances
        );
    }
    for dup in unexplained.clone().take(SHOWN) {
        let why = dup.explanation.as_ref().err().map_or("", String::as_str);
        let _ = writeln!(
            out,
            "  duplicate {} ({}×, UNEXPLAINED): {why}",
            dup.job_id, dup.acceptances
        );
    }
    if row.unexplained() > SHOWN {
        let _ = writeln!(
            out,
            "  duplicate: … and {} more unexplained",
            row.unexplained() - SHOWN
        );
    }
    for (what, list) in [("lost", &row.lost), ("wrong", &row.wrong)] {
        for item in list.iter().take(SHOWN) {
            let _ = writeln!(out, "  {what}: {item}");
        }
        if list.len() > SHOWN {
            let _ = writeln!(out, "  {what}: … and {} more", list.len() - SHOWN);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn sent(id: &str) -> Attempted {
        Attempted {
            id: id.into(),
            expect: Expect::Sent,
        }
    }

    fn accepted(id: &str, ms: i64, by: &str) -> Acceptance {
        Acceptance {
            job_id: id.into(),
            at: at(ms),
            by: by.into(),
        }
    }

    fn killed(ms: i64, logged: &[&str]) -> Kill {
        Kill {
            at: at(ms),
            logged_sent: logged.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn history(attempted: Vec<Attempted>, acceptances: Vec<Acceptance>) -> History {
        History {
            attempted,
            acceptances,
            call_window: Duration::from_secs(2),
            ..History::default()
        }
    }

    #[test]
    fn a_job_neither_accepted_nor_dead_is_lost() {
        let row = check(
            "t",
            &history(vec![sent("a"), sent("b")], vec![accepted("a", 0, "w0.0")]),
        );
        assert_eq!(row.lost, ["b"]);
        assert_eq!(row.sent, 1);
        assert!(!row.passed());
    }

    #[test]
    fn a_dead_letter_with_the_expected_reason_counts_as_dead_not_wrong() {
        let mut h = history(
            vec![Attempted {
                id: "p".into(),
                expect: Expect::Dead("invalid_job"),
            }],
            vec![],
        );
        h.letters.push(Letter {
            job_id: "p".into(),
            reason: "invalid_job".into(),
        });
        let row = check("t", &h);
        assert!(row.passed(), "{row:?}");
        assert_eq!(row.dead["invalid_job"], 1);
    }

    #[test]
    fn a_dead_letter_with_another_reason_is_wrong() {
        let mut h = history(vec![sent("a")], vec![]);
        h.letters.push(Letter {
            job_id: "a".into(),
            reason: "retries_exhausted".into(),
        });
        let row = check("t", &h);
        assert_eq!(
            row.wrong,
            ["a: expected sent, dead-lettered as retries_exhausted"]
        );
        assert!(row.lost.is_empty());
        assert!(!row.passed());
    }

    #[test]
    fn a_poison_job_the_vendor_accepted_is_wrong() {
        let h = history(
            vec![Attempted {
                id: "p".into(),
                expect: Expect::Dead("invalid_job"),
            }],
            vec![accepted("p", 0, "w0.0")],
        );
        assert_eq!(
            check("t", &h).wrong,
            ["p: expected invalid_job, accepted by the vendor"]
        );
    }

    #[test]
    fn a_repeat_from_a_live_worker_is_an_unexplained_duplicate() {
        let h = history(
            vec![sent("a")],
            vec![accepted("a", 0, "w0.0"), accepted("a", 30, "w1.0")],
        );
        let row = check("t", &h);
        assert_eq!(row.duplicated.len(), 1);
        assert_eq!(row.unexplained(), 1);
        assert!(
            row.duplicated[0]
                .explanation
                .as_ref()
                .unwrap_err()
                .contains("not SIGKILLed")
        );
        assert!(!row.passed());
    }

    /// Job `a` accepted from w1.1 at `first_ms`, w1.1 SIGKILLed at
    /// `kill_ms` having logged `logged` sent, then `a` accepted from w0.0.
    fn accepted_again_after_a_kill(
        first_ms: i64,
        kill_ms: i64,
        logged: &[&str],
    ) -> Result<String, String> {
        let mut h = history(
            vec![sent("a")],
            vec![
                accepted("a", first_ms, "w1.1"),
                accepted("a", 9_000, "w0.0"),
            ],
        );
        h.kills.insert("w1.1".into(), killed(kill_ms, logged));
        let row = check("t", &h);
        assert_eq!(row.passed(), row.unexplained() == 0);
        row.duplicated[0].explanation.clone()
    }

    #[test]
    fn a_call_in_flight_at_a_sigkill_explains_its_repeat() {
        let why = accepted_again_after_a_kill(1_000, 1_040, &[]).unwrap();
        assert!(why.contains("40 ms before its SIGKILL"), "{why}");
        assert!(why.contains("then accepted at"), "{why}");
    }

    #[test]
    fn a_call_the_vendor_read_just_after_the_kill_was_still_sent_before_it() {
        let why = accepted_again_after_a_kill(1_001, 1_000, &[]).unwrap();
        assert!(why.contains("-1 ms before its SIGKILL"), "{why}");
    }

    #[test]
    fn a_call_long_before_the_kill_does_not_explain_a_repeat() {
        let why = accepted_again_after_a_kill(0, 5_000, &[]).unwrap_err();
        assert!(why.contains("outside the 2000 ms call window"), "{why}");
    }

    #[test]
    fn a_send_the_killed_worker_logged_does_not_explain_a_repeat() {
        let why = accepted_again_after_a_kill(1_000, 1_100, &["a"]).unwrap_err();
        assert!(why.contains("logged it sent"), "{why}");
    }

    #[test]
    fn the_table_counts_explained_duplicates_and_says_fail() {
        let mut h = history(
            vec![sent("a"), sent("b")],
            vec![
                accepted("a", 1_000, "w1.1"),
                accepted("a", 3_000, "w0.0"),
                accepted("b", 0, "w0.0"),
                accepted("b", 10, "w2.0"),
            ],
        );
        h.kills.insert("w1.1".into(), killed(1_010, &[]));
        let row = check("sigkill", &h);
        let table = table(&[row]);
        assert!(
            table.contains("| sigkill | 2 | 2 | 0 | 0 | 2 (1) | 0 |"),
            "{table}"
        );
        assert!(table.contains("FAIL"));
    }
}
