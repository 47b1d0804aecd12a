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

impl WindowState {
    /// The window at `now`: open while `now − last < hours − margin`.
    /// No inbound message (or a timestamp out of chrono's range) means closed.
    pub fn at(
        last_inbound_ms: Option<i64>,
        now: DateTime<Utc>,
        window: &WindowConfig,
    ) -> WindowState {
        let last_inbound = last_inbound_ms.and_then(DateTime::from_timestamp_millis);
        let open_for = TimeDelta::from_std(window.open_for()).unwrap_or(TimeDelta::MAX);
        let closes_at = last_inbound.and_then(|last| last.checked_add_signed(open_for));
        WindowState {
            open: closes_at.is_some_and(|closes| now < closes),
            last_inbound,
            closes_at,
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
