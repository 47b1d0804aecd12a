//! What the benchmark reads about a process and about Redis: CPU time and
//! memory from `/proc/<pid>` (Linux), and commands served from Redis's
//! `INFO commandstats`. The parsers are pure, so they are tested on text.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

/// The kernel's clock tick for `utime`/`stime` in `/proc/<pid>/stat`
/// (`USER_HZ`). Linux fixes it at 100 on every architecture it exports
/// these fields for, whatever the kernel's internal `HZ`.
const USER_HZ: u64 = 100;

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("unreadable /proc/{pid}/stat"))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Peak resident memory (`VmHWM`) of a process, bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM").map(|kib| kib * 1024)
}

/// Current resident memory (`VmRSS`) of a process, bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS").map(|kib| kib * 1024)
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status_field_kib(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `utime + stime`, in clock ticks, from the text of `/proc/<pid>/stat`.
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`: after it come state (3), …, utime (14), stime (15).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Calls per command from the text of `INFO commandstats`
/// (`cmdstat_<name>:calls=<n>,usec=…`).
pub fn command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// What was served between two [`command_calls`] readings, per command.
/// A command missing from `before` is new; a counter that went down (an
/// operator's `CONFIG RESETSTAT` in between) counts from zero.
pub fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, &calls)| {
            let was = before.get(name).copied().unwrap_or(0);
            let served = if calls >= was { calls - was } else { calls };
            (name.clone(), served)
        })
        .filter(|(_, served)| *served > 0)
        .collect()
}

/// Script calls among `calls`: each is one round trip, whatever it runs.
pub fn script_calls(calls: &BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(name, _)| {
            matches!(
                name.as_str(),
                "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
            )
        })
        .map(|(_, n)| n)
        .sum()
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_a_strange_command_name() {
        let stat = "4242 (herald (x) y) S 1 4242 4242 0 -1 4194560 2400 0 0 0 \
                    350 27 0 0 20 0 6 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(377));
        assert_eq!(cpu_ticks("4242 (herald) S 1"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib_by_exact_name() {
        let status = "Name:\therald\nVmHWM:\t   26214 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_field_kib(status, "VmHWM"), Some(26214));
        assert_eq!(status_field_kib(status, "VmRSS"), Some(20480));
        assert_eq!(status_field_kib(status, "VmPeak"), None);
    }

    #[test]
    fn command_calls_are_read_per_command() {
        let info = "# Commandstats\r\n\
                    cmdstat_get:calls=40000,usec=30000,usec_per_call=0.75,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_client|list:calls=3,usec=100,usec_per_call=33.3,rejected_calls=0,failed_calls=0\r\n";
        let calls = command_calls(info);
        assert_eq!(calls.get("get"), Some(&40000));
        assert_eq!(calls.get("client|list"), Some(&3));
        assert_eq!(calls.len(), 2);
        assert!(command_calls("# Commandstats\r\n").is_empty());
    }

    #[test]
    fn calls_between_two_readings_count_new_commands_and_survive_a_reset() {
        let before = BTreeMap::from([("get".to_owned(), 100), ("set".to_owned(), 50)]);
        let after = BTreeMap::from([
            ("get".to_owned(), 160),
            ("set".to_owned(), 50),
            ("evalsha".to_owned(), 7),
        ]);
        let served = calls_between(&before, &after);
        assert_eq!(
            served,
            BTreeMap::from([("get".to_owned(), 60), ("evalsha".to_owned(), 7)])
        );
        let reset = BTreeMap::from([("get".to_owned(), 9)]);
        assert_eq!(calls_between(&before, &reset).get("get"), Some(&9));
    }

    #[test]
    fn script_calls_count_only_the_commands_that_run_scripts() {
        let calls = BTreeMap::from([
            ("evalsha".to_owned(), 40),
            ("eval".to_owned(), 2),
            ("fcall".to_owned(), 1),
            ("get".to_owned(), 100),
            ("time".to_owned(), 40),
        ]);
        assert_eq!(script_calls(&calls), 43);
    }
}
