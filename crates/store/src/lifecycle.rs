//! What happened to a message after the vendor said yes (CONTRACT §10): the
//! forward-only state machine ([`State`], [`change`]), the job's lifecycle
//! record (`status:<job id>`), the vendor message id → job id correlation
//! (`vmsg:<provider>:<vendor id>`) and the statuses held until their
//! message's acceptance is recorded (`held`).
//!
//! The rule lives in [`change`] and is mirrored, rank for rank, by
//! `lua/status.lua`, which applies a status to the record atomically: two
//! API replicas handling the same callback at once record it once.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};

use herald_core::Job;
use herald_core::protocol::rfc3339;

use crate::{Store, StoreError};

static STATUS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/status.lua")));
static HELD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/held.lua")));

/// How long a status for a vendor message id not yet known is held.
pub const HOLD_FOR: Duration = Duration::from_secs(600);
/// The most held statuses one sweep looks at.
const SWEEP_BATCH: usize = 1000;

/// A message's state, forward only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The vendor answered 2xx.
    Accepted,
    /// The vendor reports it left for WhatsApp.
    Sent,
    Delivered,
    /// The vendor or WhatsApp gave up on it.
    Failed,
    Read,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Accepted,
        State::Sent,
        State::Delivered,
        State::Failed,
        State::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Accepted => "accepted",
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Read => "read",
        }
    }

    /// The order statuses win in. `failed` ends a message that was
    /// accepted, sent or delivered; `read` proves it arrived, so a `failed`
    /// that contradicts it changes nothing, whichever came first: the final
    /// state is the highest rank seen, so arrival order never matters.
    pub fn rank(self) -> u8 {
        match self {
            State::Accepted => 0,
            State::Sent => 1,
            State::Delivered => 2,
            State::Failed => 3,
            State::Read => 4,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<State, String> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?} (known: accepted, sent, delivered, read, failed)")
            })
    }
}

/// What one status does to a lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The state moved forward; the status joined the timeline.
    Advanced,
    /// Late (e.g. `delivered` after `read`): in the timeline, state unchanged.
    Recorded,
    /// Already in the timeline: nothing changes.
    Repeated,
}

/// The rule, pure: what `incoming` does to a message in `current` whose
/// timeline holds `seen`.
pub fn change(current: State, seen: &[State], incoming: State) -> Change {
    if seen.contains(&incoming) {
        Change::Repeated
    } else if incoming.rank() > current.rank() {
        Change::Advanced
    } else {
        Change::Recorded
    }
}

/// One status report about one vendor message, from any source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub provider: String,
    pub account: String,
    pub vendor_message_id: String,
    pub state: State,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StatusReport {
    /// The timeline's words for it: the vendor's code and text together.
    pub fn timeline_detail(&self) -> Option<String> {
        match (&self.error_code, &self.detail) {
            (Some(code), Some(detail)) => Some(format!("{code}: {detail}")),
            (Some(code), None) => Some(code.clone()),
            (None, detail) => detail.clone(),
        }
    }
}

/// One line of a lifecycle's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moment {
    pub state: State,
    pub at: String,
    pub detail: Option<String>,
}

/// A job's lifecycle record, as kept under `status:<job id>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    /// The job as accepted (its recipient, fallback template and metadata).
    pub job: Job,
    pub state: State,
    pub vendor_message_id: Option<String>,
    pub attempts: u32,
    pub fallback_used: bool,
    /// `None` for a job dead-lettered before any vendor accepted it.
    pub accepted_at: Option<DateTime<Utc>>,
    /// Why the job was dead-lettered (CONTRACT §3), when it was.
    pub dead_reason: Option<String>,
    pub timeline: Vec<Moment>,
}

/// A vendor's acceptance of a job: what the record script writes.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance<'a> {
    pub job: &'a Job,
    pub vendor_message_id: Option<&'a str>,
    /// Vendor calls made for the job, this one included.
    pub attempts: u32,
    pub fallback_used: bool,
    pub at: DateTime<Utc>,
}

impl Acceptance<'_> {
    /// The record's fields, as `HSET` takes them (and the memory twin keeps them).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = record_fields(self.job, State::Accepted, self.attempts, self.at, None);
        fields.extend([
            (
                "vendor_message_id",
                self.vendor_message_id.unwrap_or("").to_owned(),
            ),
            ("fallback_used", u8::from(self.fallback_used).to_string()),
            ("accepted_at", self.at.timestamp_millis().to_string()),
        ]);
        fields
    }
}

/// A job dead-lettered before any vendor accepted it, so that its story
/// can be told too (`dead_reason`, state `failed`).
#[derive(Debug, Clone, Copy)]
pub struct Death<'a> {
    pub job: &'a Job,
    /// The dead-letter reason's code (CONTRACT §3).
    pub reason: &'a str,
    pub detail: &'a str,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

impl Death<'_> {
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let detail = format!("{}: {}", self.reason, self.detail);
        let mut fields = record_fields(
            self.job,
            State::Failed,
            self.attempts,
            self.at,
            Some(detail),
        );
        fields.push(("dead_reason", self.reason.to_owned()));
        fields
    }
}

/// The fields every record starts with: the job, its first state and the
/// timeline holding it.
fn record_fields(
    job: &Job,
    state: State,
    attempts: u32,
    at: DateTime<Utc>,
    detail: Option<String>,
) -> Vec<(&'static str, String)> {
    let first = Moment {
        state,
        at: rfc3339(at),
        detail,
    };
    vec![
        ("job", to_json(job)),
        ("state", state.as_str().to_owned()),
        ("rank", state.rank().to_string()),
        ("seen", format!("|{state}|")),
        ("attempts", attempts.to_string()),
        ("timeline", to_json(&[first])),
    ]
}

/// Serialises what Herald itself built; it cannot fail.
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("Herald's own values serialise")
}

/// Reads a record's fields back; `None` when they are not Herald's.
pub(crate) fn lifecycle_from_fields(fields: &HashMap<String, String>) -> Option<Lifecycle> {
    let get = |name: &str| fields.get(name).map(String::as_str);
    Some(Lifecycle {
        job: serde_json::from_str(get("job")?).ok()?,
        state: get("state")?.parse().ok()?,
        vendor_message_id: get("vendor_message_id")
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        attempts: get("attempts")?.parse().ok()?,
        fallback_used: get("fallback_used") == Some("1"),
        accepted_at: get("accepted_at")
            .and_then(|ms| ms.parse().ok())
            .and_then(DateTime::from_timestamp_millis),
        dead_reason: get("dead_reason").map(str::to_owned),
        timeline: serde_json::from_str(get("timeline")?).ok()?,
    })
}

/// What applying a status found.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The vendor id is not correlated yet: held for [`HOLD_FOR`].
    Held,
    /// Correlated to a job whose record has expired: nothing to change.
    Forgotten { job_id: String },
    Applied {
        change: Change,
        lifecycle: Box<Lifecycle>,
        /// This caller, and no other, sends the job's fallback template.
        send_fallback: bool,
    },
}

/// What a sweep of the held statuses found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Statuses whose message is now correlated: apply them.
    pub ready: Vec<StatusReport>,
    /// Statuses held past [`HOLD_FOR`] and dropped.
    pub expired: u64,
}

impl Store {
    /// Applies a status to its job's lifecycle in one atomic script, or
    /// holds it when the vendor id is not correlated yet. With
    /// `wants_fallback` (a late window-closed failure) the first caller to
    /// find the job failed with a fallback template gets `send_fallback`.
    pub async fn apply_status(
        &self,
        report: &StatusReport,
        wants_fallback: bool,
    ) -> Result<Applied, StoreError> {
        let correlation = self.keys.vmsg(&report.provider, &report.vendor_message_id);
        let held = self.keys.held();
        let waiting = self
            .keys
            .waiting(&report.provider, &report.vendor_message_id);
        let moment = to_json(&Moment {
            state: report.state,
            at: rfc3339(report.at),
            detail: report.timeline_detail(),
        });
        let member = to_json(report);
        let now = Utc::now().timestamp_millis();
        let (verdict, job_id, fallback, fields): (String, String, i64, HashMap<String, String>) =
            self.run("apply the status", |mut conn| {
                let (correlation, held, waiting) = (&correlation, &held, &waiting);
                let (moment, member) = (&moment, &member);
                async move {
                    STATUS
                        .key(correlation)
                        .key(held)
                        .key(waiting)
                        .arg(self.keys.prefix())
                        .arg(report.state.as_str())
                        .arg(report.state.rank())
                        .arg(moment)
                        .arg(now)
                        .arg(member)
                        .arg(if wants_fallback { "1" } else { "0" })
                        .arg(HOLD_FOR.as_millis() as u64)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        let change = match verdict.as_str() {
            "held" => return Ok(Applied::Held),
            "forgotten" => return Ok(Applied::Forgotten { job_id }),
            "advanced" => Change::Advanced,
            "recorded" => Change::Recorded,
            "repeated" => Change::Repeated,
            other => return Err(not_herald("apply the status", other)),
        };
        let lifecycle = lifecycle_from_fields(&fields)
            .map(Box::new)
            .ok_or_else(|| not_herald("apply the status", "a lifecycle record"))?;
        Ok(Applied::Applied {
            change,
            lifecycle,
            send_fallback: fallback == 1,
        })
    }

    /// Gives the fallback back (its publish failed), so the vendor's retry
    /// of the callback sends it.
    pub async fn forget_fallback(&self, job_id: &str) -> Result<(), StoreError> {
        let key = self.keys.status(job_id);
        self.run("forget the fallback", |mut conn| {
            let key = &key;
            async move {
                redis::cmd("HDEL")
                    .arg(key)
                    .arg("fallback_job")
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    /// Records a job's dead letter as its lifecycle, for the horizon.
    pub async fn record_dead(
        &self,
        death: &Death<'_>,
        remember_for: Duration,
    ) -> Result<(), StoreError> {
        let key = self.keys.status(&death.job.id);
        let fields = death.fields();
        self.run("record the dead letter", |mut conn| {
            let (key, fields) = (&key, &fields);
            async move {
                let mut pipe = redis::pipe();
                pipe.atomic().del(key).ignore();
                pipe.hset_multiple(key, fields).ignore();
                pipe.pexpire(
                    key,
                    i64::try_from(remember_for.as_millis()).unwrap_or(i64::MAX),
                )
                .ignore();
                pipe.query_async::<()>(&mut conn).await
            }
        })
        .await
    }

    /// A job's lifecycle, `None` when Herald does not know the job.
    pub async fn lifecycle(&self, job_id: &str) -> Result<Option<Lifecycle>, StoreError> {
        let key = self.keys.status(job_id);
        let fields: HashMap<String, String> = self
            .run("read the lifecycle", |mut conn| {
                let key = &key;
                async move { redis::cmd("HGETALL").arg(key).query_async(&mut conn).await }
            })
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        lifecycle_from_fields(&fields)
            .map(Some)
            .ok_or_else(|| not_herald("read the lifecycle", "a lifecycle record"))
    }

    /// Takes the held statuses whose acceptance is now recorded, and drops
    /// those held longer than [`HOLD_FOR`]; each is taken by one caller only.
    pub async fn sweep_held(&self) -> Result<Sweep, StoreError> {
        let (held, ready) = (self.keys.held(), self.keys.ready());
        let oldest = (Utc::now() - HOLD_FOR).timestamp_millis();
        let (expired, ready): (u64, Vec<String>) = self
            .run("sweep the held statuses", |mut conn| {
                let (held, ready) = (&held, &ready);
                async move {
                    HELD.key(held)
                        .key(ready)
                        .arg(oldest)
                        .arg(SWEEP_BATCH)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        let ready = ready
            .iter()
            .filter_map(|member| serde_json::from_str(member).ok())
            .collect();
        Ok(Sweep { ready, expired })
    }
}

fn not_herald(operation: &'static str, what: &str) -> StoreError {
    StoreError::Refused {
        operation,
        cause: format!("unexpected {what:?}: not what Herald writes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn the_state_machine_moves_forward_only_and_records_each_status_once() {
        let table: &[(State, &[State], State, Change)] = &[
            (Accepted, &[Accepted], Sent, Change::Advanced),
            (Accepted, &[Accepted], Delivered, Change::Advanced),
            (Sent, &[Accepted, Sent], Read, Change::Advanced),
            (Accepted, &[Accepted], Failed, Change::Advanced),
            (Sent, &[Accepted, Sent], Failed, Change::Advanced),
            (Delivered, &[Accepted, Delivered], Failed, Change::Advanced),
            (Read, &[Accepted, Read], Delivered, Change::Recorded),
            (Read, &[Accepted, Read], Failed, Change::Recorded),
            (Delivered, &[Accepted, Delivered], Sent, Change::Recorded),
            (Failed, &[Accepted, Failed], Sent, Change::Recorded),
            (
                Delivered,
                &[Accepted, Delivered],
                Delivered,
                Change::Repeated,
            ),
            (Failed, &[Accepted, Failed], Failed, Change::Repeated),
            (Read, &[Accepted, Sent, Read], Sent, Change::Repeated),
        ];
        for &(current, seen, incoming, expected) in table {
            assert_eq!(
                change(current, seen, incoming),
                expected,
                "{incoming} on {current} after {seen:?}"
            );
        }
    }

    /// Folds statuses through the rule, as the script does.
    fn fold(statuses: &[State]) -> (State, Vec<State>) {
        let (mut state, mut seen) = (Accepted, vec![Accepted]);
        for &status in statuses {
            match change(state, &seen, status) {
                Change::Advanced => {
                    state = status;
                    seen.push(status);
                }
                Change::Recorded => seen.push(status),
                Change::Repeated => {}
            }
        }
        (state, seen)
    }

    #[test]
    fn every_arrival_order_ends_in_the_same_state_with_each_status_once() {
        let statuses = [Sent, Delivered, Read, Failed, Delivered];
        let mut orders = vec![statuses.to_vec()];
        // Every rotation and its reverse: the orders vendors actually produce.
        for k in 1..statuses.len() {
            let mut rotated = statuses.to_vec();
            rotated.rotate_left(k);
            orders.push(rotated.clone());
            rotated.reverse();
            orders.push(rotated);
        }
        for order in orders {
            let (state, seen) = fold(&order);
            assert_eq!(state, Read, "{order:?}");
            assert_eq!(seen.len(), 5, "each status once: {order:?} → {seen:?}");
        }
        assert_eq!(fold(&[Failed, Delivered, Sent]).0, Failed);
        assert_eq!(fold(&[Sent, Delivered, Failed]).0, Failed);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("deleted".parse::<State>().unwrap_err().contains("deleted"));
    }

    #[test]
    fn a_failure_names_its_code_and_text_in_the_timeline() {
        let mut report = StatusReport {
            provider: "replyhero".into(),
            account: "default".into(),
            vendor_message_id: "wamid.1".into(),
            state: Failed,
            at: Utc::now(),
            error_code: Some("131047".into()),
            detail: Some("Re-engagement message".into()),
        };
        assert_eq!(
            report.timeline_detail().as_deref(),
            Some("131047: Re-engagement message")
        );
        report.detail = None;
        assert_eq!(report.timeline_detail().as_deref(), Some("131047"));
    }
}
