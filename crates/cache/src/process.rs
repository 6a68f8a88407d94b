//! Process identity and liveness from `/proc`, so that a lease left by a killed build expires.
//!
//! A bare pid is not enough: pids are reused, so the identity also carries the process start
//! time (in clock ticks since boot) and the boot id, which together name one process instance.

use std::fs;

use crate::records::ProcessId;

/// The identity of the calling process, or `None` when `/proc` cannot tell it.
pub(crate) fn current() -> Option<ProcessId> {
    let pid = std::process::id();
    let start_ticks = start_ticks(pid)?;
    Some(ProcessId {
        pid,
        start_ticks,
        boot_id: boot_id(),
    })
}

/// Whether the process instance named by `id` still runs.
///
/// Errs on the side of "alive" when `/proc` is not readable at all, since wrongly expiring a
/// lease lets GC delete what a build is using, while wrongly keeping one only delays GC.
pub(crate) fn is_alive(id: &ProcessId) -> bool {
    if fs::metadata("/proc/self/stat").is_err() {
        return true;
    }
    if !id.boot_id.is_empty() && id.boot_id != boot_id() {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", id.pid)) else {
        return false;
    };
    match parse_stat(&stat) {
        // A zombie has exited; only its exit status is left for its parent to collect.
        Some((state, ticks)) => state != 'Z' && state != 'X' && ticks == id.start_ticks,
        None => false,
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Parses the state (field 3) and start time (field 22) out of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come between the state and the start time.
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let stat = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 19 20";
        assert_eq!(parse_stat(stat), Some(('S', 4242)));
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = current().expect("/proc is readable in tests");
        assert!(is_alive(&me));
        let reused = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!is_alive(&reused));
        let other_boot = ProcessId {
            boot_id: "not-this-boot".into(),
            ..me
        };
        assert!(!is_alive(&other_boot));
    }
}
