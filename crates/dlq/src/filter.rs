//! Which dead letters a command acts on, as plain data, and the parsing of
//! the operator's time bounds.

use chrono::{DateTime, Utc};

use herald_core::DeadReason;
use herald_core::config::parse_duration;

use crate::letter::DeadLetter;

/// Every set field must match; an empty filter matches every letter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub provider: Option<String>,
    pub reason: Option<DeadReason>,
    /// Died at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Died before this instant.
    pub until: Option<DateTime<Utc>>,
    pub job_id: Option<String>,
}

impl Filter {
    /// A time bound only matches letters whose death time is known: a letter
    /// that cannot be placed in time cannot be shown to be inside the range.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let is = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        is(&self.provider, Some(&letter.provider))
            && self.reason.is_none_or(|r| letter.reason == r.as_str())
            && is(&self.job_id, letter.job_id.as_deref())
            && self
                .since
                .is_none_or(|since| letter.dead_at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| letter.dead_at.is_some_and(|at| at < until))
    }
}

/// An instant given as RFC 3339 (`2026-11-21T10:00:00Z`) or as an age
/// relative to `now` (`2h`, `30m`, `7d`: that long ago).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = parse_duration(text).map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-21T10:00:00Z) nor an age like 2h or 7d"
        )
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| format!("{text:?} reaches back before any representable time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letter::tests::envelope;
    use herald_core::protocol::header;
    use lapin::types::{AMQPValue, LongString};

    fn letter(provider: &str, reason: &str, at: Option<&str>, id: &str) -> DeadLetter {
        let mut headers = vec![(
            header::DEAD_REASON,
            AMQPValue::LongString(LongString::from(reason)),
        )];
        if let Some(at) = at {
            headers.push((header::DEAD_AT, AMQPValue::LongString(LongString::from(at))));
        }
        DeadLetter::read(envelope(provider, &format!(r#"{{"id":"{id}"}}"#), &headers))
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        assert!(Filter::default().matches(&letter("kaleyra", "expired", None, "a")));
    }

    #[test]
    fn every_set_field_must_match() {
        let l = letter(
            "kaleyra",
            "window_closed",
            Some("2026-11-21T10:00:00Z"),
            "job-1",
        );
        let f = Filter {
            provider: Some("kaleyra".into()),
            reason: Some(DeadReason::WindowClosed),
            since: Some(at("2026-11-21T09:00:00Z")),
            until: Some(at("2026-11-21T11:00:00Z")),
            job_id: Some("job-1".into()),
        };
        assert!(f.matches(&l));
        for wrong in [
            Filter {
                provider: Some("payhero".into()),
                ..f.clone()
            },
            Filter {
                reason: Some(DeadReason::Expired),
                ..f.clone()
            },
            Filter {
                since: Some(at("2026-11-21T10:00:01Z")),
                ..f.clone()
            },
            Filter {
                until: Some(at("2026-11-21T10:00:00Z")),
                ..f.clone()
            },
            Filter {
                job_id: Some("job-2".into()),
                ..f.clone()
            },
        ] {
            assert!(!wrong.matches(&l), "{wrong:?}");
        }
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        let l = letter("kaleyra", "expired", Some("2026-11-21T10:00:00Z"), "a");
        let t = at("2026-11-21T10:00:00Z");
        assert!(
            Filter {
                since: Some(t),
                ..Filter::default()
            }
            .matches(&l)
        );
        assert!(
            !Filter {
                until: Some(t),
                ..Filter::default()
            }
            .matches(&l)
        );
    }

    #[test]
    fn a_letter_without_a_time_never_matches_a_time_bound() {
        let l = letter("kaleyra", "expired", None, "a");
        let f = Filter {
            since: Some(at("2000-01-01T00:00:00Z")),
            ..Filter::default()
        };
        assert!(!f.matches(&l));
    }

    #[test]
    fn instants_are_rfc3339_or_an_age() {
        let now = at("2026-11-21T10:00:00Z");
        assert_eq!(parse_instant("2h", now), Ok(at("2026-11-21T08:00:00Z")));
        assert_eq!(parse_instant("7d", now), Ok(at("2026-11-14T10:00:00Z")));
        assert_eq!(
            parse_instant("2026-11-20T12:00:00+02:00", now),
            Ok(at("2026-11-20T10:00:00Z"))
        );
        let err = parse_instant("yesterday", now).unwrap_err();
        assert!(
            err.contains("yesterday") && err.contains("RFC 3339"),
            "{err}"
        );
    }
}
