//! The pure steps of the send pipeline: decisions made from plain data and
//! the clock, no IO. Each returns `Err(outcome)` when it ends the pipeline.

use std::time::Duration;

use chrono::{DateTime, Utc};

use herald_core::config::RetryConfig;
use herald_core::{DeadReason, Job};
use herald_vendors::{PermanentCause, VendorAnswer, Verdict};

use crate::outcome::{Dead, Later, LaterWhy, Outcome};

/// Step 1: the body must be a valid job (CONTRACT §1).
pub fn validate(body: &[u8]) -> Result<Job, Dead> {
    Job::parse(body).map_err(|errors| Dead::new(DeadReason::InvalidJob, errors.to_string()))
}

/// Step 2: a job past `expires_at` is dead; one before `not_before` hops
/// through the delay tiers until due.
pub fn check_time(job: &Job, now: DateTime<Utc>, tiers: &[Duration]) -> Result<(), Outcome> {
    if let Some(expires_at) = job.expires_at
        && now >= expires_at
    {
        let detail = format!(
            "expires_at {} passed before it could be sent",
            herald_core::protocol::rfc3339(expires_at)
        );
        return Err(Dead::new(DeadReason::Expired, detail).into());
    }
    if let Some(not_before) = job.not_before
        && let Ok(remaining) = (not_before - now).to_std()
        && !remaining.is_zero()
    {
        let delay = schedule_hop(remaining, tiers);
        let detail = format!(
            "scheduled for {}",
            herald_core::protocol::rfc3339(not_before)
        );
        return Err(Later {
            delay,
            why: LaterWhy::Schedule,
            detail,
        }
        .into());
    }
    Ok(())
}

/// A job is sent by the consumers of its own provider's queue, so that
/// queue's prefetch and a slow vendor stay that provider's concern.
pub fn check_queue(job: &Job, routing_key: &str) -> Result<(), Outcome> {
    if job.provider == routing_key {
        return Ok(());
    }
    let detail = format!(
        "provider {:?} was published with routing key {routing_key:?}; they must match",
        job.provider
    );
    Err(Dead::new(DeadReason::InvalidJob, detail).into())
}

/// The longest tier that does not overshoot `remaining`, so a scheduled job
/// arrives on time after a few hops; when even the shortest tier is longer,
/// the shortest (the job is then late by less than that tier).
pub fn schedule_hop(remaining: Duration, tiers: &[Duration]) -> Duration {
    tiers
        .iter()
        .copied()
        .filter(|t| *t <= remaining)
        .max()
        .or_else(|| tiers.iter().copied().min())
        .expect("at least one delay tier")
}

/// How long before the next delayed retry. `retry.delays` is the schedule
/// (the last entry repeats); each delivery makes up to `1 + immediate`
/// calls, so the attempt count says which delayed retry this is. The wait is
/// drawn from the upper half of the scheduled delay ("equal jitter") so that
/// jobs failing together spread over the tiers where tiers allow it, and is
/// never shorter than the vendor's `Retry-After`. `unit` is a random draw in
/// `[0, 1)`.
pub fn retry_delay(
    retry: &RetryConfig,
    attempt: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let calls_per_delivery = retry.immediate + 1;
    let delayed_retry = attempt.div_ceil(calls_per_delivery).max(1);
    let index = (delayed_retry as usize - 1).min(retry.delays.len() - 1);
    let scheduled = retry.delays[index];
    let jittered = scheduled.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
    jittered.max(retry_after.unwrap_or_default())
}

/// What the vendor's answer means for the job.
pub fn judge(answer: VendorAnswer, attempt: u32, retry: &RetryConfig, unit: f64) -> Outcome {
    match answer.verdict {
        Verdict::Sent { vendor_message_id } => Outcome::Sent {
            vendor_message_id,
            fallback_used: false,
        },
        Verdict::Permanent {
            code,
            detail,
            cause,
        } => {
            // An opt-out is the vendor's refusal too; suppressing the
            // contact is a separate step.
            let reason = match cause {
                PermanentCause::WindowClosed => DeadReason::WindowClosed,
                PermanentCause::Rejected | PermanentCause::OptedOut => DeadReason::RejectedByVendor,
            };
            let detail = match code {
                Some(code) => format!("{code}: {detail}"),
                None => detail,
            };
            Outcome::Dead(Dead {
                reason,
                detail,
                vendor_status: answer.status,
                vendor_response: answer.response,
            })
        }
        Verdict::Retryable { .. } if attempt >= retry.max_attempts => {
            let Verdict::Retryable { detail, .. } = answer.verdict else {
                unreachable!()
            };
            Outcome::Dead(Dead {
                reason: DeadReason::RetriesExhausted,
                detail: format!("{attempt} vendor calls failed; last: {detail}"),
                vendor_status: answer.status,
                vendor_response: answer.response,
            })
        }
        Verdict::Retryable {
            retry_after,
            detail,
            ..
        } => Outcome::Later(Later {
            delay: retry_delay(retry, attempt, retry_after, unit),
            why: LaterWhy::Retry,
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn job(extra: &str) -> Job {
        let body = format!(
            r#"{{"id":"j1","provider":"kaleyra","to":"+254712345678","message":{{"type":"text","body":"hi"}}{extra}}}"#
        );
        Job::parse(body.as_bytes()).unwrap()
    }

    fn retry() -> RetryConfig {
        RetryConfig {
            immediate: 1,
            delays: vec![secs(5), secs(30), secs(120)],
            max_attempts: 6,
        }
    }

    fn answer(verdict: Verdict, status: Option<u16>) -> VendorAnswer {
        VendorAnswer {
            verdict,
            status,
            response: Some("body".into()),
        }
    }

    #[test]
    fn invalid_bodies_are_dead_with_every_problem_named() {
        let dead = validate(br#"{"id":"x","provider":"kaleyra","to":"12","message":{"type":"text","body":""},"typo":1}"#)
            .unwrap_err();
        assert_eq!(dead.reason, DeadReason::InvalidJob);
        for field in ["to", "message.body", "typo"] {
            assert!(
                dead.detail.contains(field),
                "{field} named in {}",
                dead.detail
            );
        }
        assert_eq!(
            validate(b"not json").unwrap_err().reason,
            DeadReason::InvalidJob
        );
    }

    #[test]
    fn an_expired_job_is_dead_and_a_future_one_hops() {
        let now = Utc::now();
        let expired = job(&format!(
            r#","expires_at":"{}""#,
            (now - TimeDelta::seconds(1)).to_rfc3339()
        ));
        let Err(Outcome::Dead(dead)) = check_time(&expired, now, &[secs(1)]) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::Expired);

        let later = job(&format!(
            r#","not_before":"{}""#,
            (now + TimeDelta::seconds(3)).to_rfc3339()
        ));
        let Err(Outcome::Later(hop)) = check_time(&later, now, &[secs(1), secs(5)]) else {
            panic!()
        };
        assert_eq!((hop.delay, hop.why), (secs(1), LaterWhy::Schedule));

        let due = job(&format!(
            r#","not_before":"{}""#,
            (now - TimeDelta::seconds(1)).to_rfc3339()
        ));
        assert!(check_time(&due, now, &[secs(1)]).is_ok());
    }

    #[test]
    fn schedule_hops_never_overshoot_unless_shorter_than_every_tier() {
        let tiers = [secs(1), secs(5), secs(30)];
        assert_eq!(schedule_hop(secs(40), &tiers), secs(30));
        assert_eq!(schedule_hop(secs(7), &tiers), secs(5));
        assert_eq!(schedule_hop(Duration::from_millis(300), &tiers), secs(1));
    }

    #[test]
    fn retry_delays_follow_the_schedule_with_jitter_and_retry_after() {
        let r = retry();
        // Attempts 1–2 were the first delivery (1 call + 1 immediate retry).
        assert_eq!(retry_delay(&r, 2, None, 1.0), secs(5));
        assert_eq!(retry_delay(&r, 2, None, 0.0), Duration::from_millis(2500));
        assert_eq!(retry_delay(&r, 4, None, 1.0), secs(30));
        assert_eq!(
            retry_delay(&r, 40, None, 1.0),
            secs(120),
            "the last delay repeats"
        );
        assert_eq!(
            retry_delay(&r, 2, Some(secs(60)), 1.0),
            secs(60),
            "Retry-After is honoured"
        );
    }

    #[test]
    fn answers_are_judged_by_verdict_and_budget() {
        let r = retry();
        let sent = judge(
            answer(
                Verdict::Sent {
                    vendor_message_id: Some("m1".into()),
                },
                Some(200),
            ),
            1,
            &r,
            0.5,
        );
        assert_eq!(
            sent,
            Outcome::Sent {
                vendor_message_id: Some("m1".into()),
                fallback_used: false
            }
        );

        let retryable = || Verdict::Retryable {
            retry_after: None,
            rate_limited: false,
            detail: "HTTP 503".into(),
        };
        let Outcome::Later(later) = judge(answer(retryable(), Some(503)), 2, &r, 1.0) else {
            panic!()
        };
        assert_eq!(later.why, LaterWhy::Retry);
        let Outcome::Dead(dead) = judge(answer(retryable(), Some(503)), 6, &r, 1.0) else {
            panic!()
        };
        assert_eq!(
            (dead.reason, dead.vendor_status),
            (DeadReason::RetriesExhausted, Some(503))
        );

        let permanent = Verdict::Permanent {
            code: Some("E13009".into()),
            detail: "to_invalid".into(),
            cause: PermanentCause::Rejected,
        };
        let Outcome::Dead(dead) = judge(answer(permanent, Some(400)), 1, &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::RejectedByVendor);
        assert!(dead.detail.starts_with("E13009"));

        let closed = Verdict::Permanent {
            code: Some("131047".into()),
            detail: "re-engagement".into(),
            cause: PermanentCause::WindowClosed,
        };
        let Outcome::Dead(dead) = judge(answer(closed, Some(400)), 1, &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::WindowClosed);

        let opted_out = Verdict::Permanent {
            code: Some("131050".into()),
            detail: "user opted out".into(),
            cause: PermanentCause::OptedOut,
        };
        let Outcome::Dead(dead) = judge(answer(opted_out, Some(400)), 1, &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::RejectedByVendor);
        assert!(dead.detail.starts_with("131050"));
    }
}
