//! The pure steps of the send pipeline: decisions made from plain data and
//! the clock, no IO. Each returns `Err(outcome)` when it ends the pipeline.

use std::time::Duration;

use chrono::{DateTime, Utc};

use herald_core::config::RetryConfig;
use herald_core::{DeadReason, Job};
use herald_vendors::{PermanentCause, VendorAnswer, Verdict};

use crate::outcome::{Calls, Dead, Later, LaterWhy, Outcome};

/// A pause shorter than this is waited out while holding the delivery;
/// a longer one sends the job to a delay tier instead, so a delivery is
/// never held near the broker's consumer timeout.
pub const MAX_HOLD: Duration = Duration::from_secs(30);
/// Throttled calls in a row a delivery waits out in-process before it is deferred.
pub const MAX_THROTTLED_CALLS: u32 = 3;
/// Pause applied after a throttled call that carries no `Retry-After`.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

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
/// calls, so the count of calls spent says which delayed retry this is. The wait is
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

/// What to do after one vendor call: the retry policy, apart from the loop
/// that makes the calls (and from the Redis and broker IO it does).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The delivery is decided: sent, retried later through a tier, or dead.
    Settle(Outcome),
    /// A network blip or a 5xx without `Retry-After`: call again in-process.
    CallAgain { after: Duration },
    /// The vendor throttled the account: the pause is shared with every
    /// replica, this delivery waits it out and calls again.
    WaitOut { pause: Duration },
}

/// Decides [`Next`] from the answer. `calls` includes this call,
/// `throttled_here` the throttled calls this delivery already waited out,
/// `blip` the next in-process retry delay if any is left, `unit` a random
/// draw in `[0, 1)` for jitter.
pub fn after_call(
    answer: VendorAnswer,
    calls: Calls,
    throttled_here: u32,
    blip: Option<Duration>,
    retry: &RetryConfig,
    unit: f64,
) -> Next {
    match (&answer.verdict, blip) {
        (
            Verdict::Retryable {
                rate_limited: true,
                retry_after,
                detail,
            },
            _,
        ) => {
            let pause = retry_after.unwrap_or(DEFAULT_THROTTLE_PAUSE);
            if throttled_here + 1 >= MAX_THROTTLED_CALLS || pause > MAX_HOLD {
                Next::Settle(Outcome::Later(Later {
                    delay: pause,
                    why: LaterWhy::Defer,
                    detail: detail.clone(),
                }))
            } else {
                Next::WaitOut { pause }
            }
        }
        (
            Verdict::Retryable {
                retry_after: None, ..
            },
            Some(after),
        ) if calls.spent() < retry.max_attempts => Next::CallAgain { after },
        _ => Next::Settle(judge(answer, calls, retry, unit)),
    }
}

/// What the vendor's answer means for the job.
pub fn judge(answer: VendorAnswer, calls: Calls, retry: &RetryConfig, unit: f64) -> Outcome {
    let attempt = calls.spent();
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

    fn spent(attempts: u32) -> Calls {
        Calls {
            attempts,
            throttled: 0,
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
            spent(1),
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
        let Outcome::Later(later) = judge(answer(retryable(), Some(503)), spent(2), &r, 1.0) else {
            panic!()
        };
        assert_eq!(later.why, LaterWhy::Retry);
        let Outcome::Dead(dead) = judge(answer(retryable(), Some(503)), spent(6), &r, 1.0) else {
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
        let Outcome::Dead(dead) = judge(answer(permanent, Some(400)), spent(1), &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::RejectedByVendor);
        assert!(dead.detail.starts_with("E13009"));

        let closed = Verdict::Permanent {
            code: Some("131047".into()),
            detail: "re-engagement".into(),
            cause: PermanentCause::WindowClosed,
        };
        let Outcome::Dead(dead) = judge(answer(closed, Some(400)), spent(1), &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::WindowClosed);

        let opted_out = Verdict::Permanent {
            code: Some("131050".into()),
            detail: "user opted out".into(),
            cause: PermanentCause::OptedOut,
        };
        let Outcome::Dead(dead) = judge(answer(opted_out, Some(400)), spent(1), &r, 0.0) else {
            panic!()
        };
        assert_eq!(dead.reason, DeadReason::RejectedByVendor);
        assert!(dead.detail.starts_with("131050"));
    }

    fn throttled(retry_after: Option<Duration>) -> VendorAnswer {
        answer(
            Verdict::Retryable {
                retry_after,
                rate_limited: true,
                detail: "HTTP 429".into(),
            },
            Some(429),
        )
    }

    fn blip() -> VendorAnswer {
        answer(
            Verdict::Retryable {
                retry_after: None,
                rate_limited: false,
                detail: "timed out".into(),
            },
            None,
        )
    }

    #[test]
    fn a_throttled_call_is_waited_out_then_deferred_without_spending_the_budget() {
        let r = retry();
        let calls = Calls {
            attempts: 6,
            throttled: 6,
        };
        assert_eq!(
            after_call(throttled(Some(secs(2))), calls, 0, None, &r, 0.5),
            Next::WaitOut { pause: secs(2) },
            "a short pause is waited out, however many calls were throttled"
        );
        assert_eq!(
            after_call(throttled(None), calls, 0, None, &r, 0.5),
            Next::WaitOut {
                pause: DEFAULT_THROTTLE_PAUSE
            }
        );
        let Next::Settle(Outcome::Later(later)) = after_call(
            throttled(Some(secs(2))),
            calls,
            MAX_THROTTLED_CALLS - 1,
            None,
            &r,
            0.5,
        ) else {
            panic!("the third throttle in a row defers")
        };
        assert_eq!((later.why, later.delay), (LaterWhy::Defer, secs(2)));
        let Next::Settle(Outcome::Later(later)) =
            after_call(throttled(Some(secs(120))), calls, 0, None, &r, 0.5)
        else {
            panic!("a pause too long to hold defers")
        };
        assert_eq!((later.why, later.delay), (LaterWhy::Defer, secs(120)));
    }

    #[test]
    fn a_blip_is_called_again_while_budget_and_blips_last() {
        let r = retry();
        let after = Duration::from_millis(150);
        assert_eq!(
            after_call(blip(), spent(1), 0, Some(after), &r, 0.5),
            Next::CallAgain { after }
        );
        let Next::Settle(Outcome::Later(later)) = after_call(blip(), spent(2), 0, None, &r, 1.0)
        else {
            panic!("no blip retry left: a delayed retry")
        };
        assert_eq!((later.why, later.delay), (LaterWhy::Retry, secs(5)));
        let Next::Settle(Outcome::Dead(dead)) =
            after_call(blip(), spent(6), 0, Some(after), &r, 0.5)
        else {
            panic!("the budget is spent")
        };
        assert_eq!(dead.reason, DeadReason::RetriesExhausted);
    }

    #[test]
    fn throttled_calls_do_not_count_against_the_budget() {
        let r = retry();
        let calls = Calls {
            attempts: 7,
            throttled: 3,
        };
        assert_eq!(calls.spent(), 4);
        let Next::Settle(Outcome::Later(later)) = after_call(blip(), calls, 0, None, &r, 1.0)
        else {
            panic!("4 of 6 spent: retried, not exhausted")
        };
        assert_eq!(later.why, LaterWhy::Retry);
    }

    #[test]
    fn a_retry_after_is_never_retried_in_process() {
        let answer = answer(
            Verdict::Retryable {
                retry_after: Some(secs(6)),
                rate_limited: false,
                detail: "131056 pair rate".into(),
            },
            Some(400),
        );
        let Next::Settle(Outcome::Later(later)) = after_call(
            answer,
            spent(1),
            0,
            Some(Duration::from_millis(100)),
            &retry(),
            0.0,
        ) else {
            panic!()
        };
        assert_eq!((later.why, later.delay), (LaterWhy::Retry, secs(6)));
    }
}
