//! The 24-hour customer-service window, as a pure function of the last
//! inbound time and the clock.

use chrono::{DateTime, TimeDelta, Utc};
use herald_core::config::WindowConfig;

/// Whether session messages may go to a contact at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    /// The contact's last inbound message, if one is known.
    pub last_inbound: Option<DateTime<Utc>>,
    /// When Herald stops sending session messages: the last inbound message
    /// plus `window.hours` less `window.margin`. Known whenever `last_inbound` is.
    pub closes_at: Option<DateTime<Utc>>,
}

/// When an inbound message counts as received: a message cannot have been
/// sent after it reached us, so a time in the future (a client's or a
/// vendor's clock running ahead) counts as `now` and cannot keep the window
/// open past the real 24 hours. Every writer goes through
/// [`crate::Store::record_inbound`], which applies it.
pub fn inbound_time(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    at.min(now)
}

/// The window rule, `now − last < hours − margin`, as the one number every
/// check compares with (the worker's admit script included): the window is
/// open at `now` when the last inbound message (epoch ms) is later than this.
pub fn oldest_open_inbound(now: DateTime<Utc>, window: &WindowConfig) -> i64 {
    let open_for = i64::try_from(window.open_for().as_millis()).unwrap_or(i64::MAX);
    now.timestamp_millis().saturating_sub(open_for)
}

impl WindowState {
    /// The window at `now`. No inbound message means closed.
    pub fn at(
        last_inbound_ms: Option<i64>,
        now: DateTime<Utc>,
        window: &WindowConfig,
    ) -> WindowState {
        let last_inbound = last_inbound_ms.and_then(DateTime::from_timestamp_millis);
        let open_for = TimeDelta::from_std(window.open_for()).unwrap_or(TimeDelta::MAX);
        WindowState {
            open: last_inbound_ms.is_some_and(|last| last > oldest_open_inbound(now, window)),
            last_inbound,
            closes_at: last_inbound.and_then(|last| last.checked_add_signed(open_for)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state(ago: TimeDelta, margin_minutes: u64) -> WindowState {
        let now = Utc::now();
        let window = WindowConfig {
            hours: 24,
            margin: Duration::from_secs(margin_minutes * 60),
        };
        WindowState::at(Some((now - ago).timestamp_millis()), now, &window)
    }

    #[test]
    fn an_inbound_25_hours_ago_leaves_the_window_closed() {
        assert!(!state(TimeDelta::hours(25), 2).open);
    }

    #[test]
    fn the_margin_closes_the_window_before_24_hours() {
        let edge = TimeDelta::hours(23) + TimeDelta::minutes(59);
        assert!(!state(edge, 2).open);
        assert!(state(edge, 0).open);
    }

    #[test]
    fn the_window_closes_exactly_at_hours_less_margin() {
        assert!(!state(TimeDelta::hours(23) + TimeDelta::minutes(58), 2).open);
        assert!(state(TimeDelta::hours(23) + TimeDelta::minutes(57), 2).open);
    }

    #[test]
    fn an_inbound_an_hour_ago_opens_the_window_until_it_closes() {
        let s = state(TimeDelta::hours(1), 2);
        assert!(s.open);
        let last = s.last_inbound.expect("known");
        assert_eq!(
            s.closes_at,
            Some(last + TimeDelta::hours(24) - TimeDelta::minutes(2))
        );
    }

    #[test]
    fn no_inbound_means_closed_with_nothing_to_show() {
        let s = WindowState::at(None, Utc::now(), &WindowConfig::default());
        assert_eq!(
            s,
            WindowState {
                open: false,
                last_inbound: None,
                closes_at: None
            }
        );
    }
}
