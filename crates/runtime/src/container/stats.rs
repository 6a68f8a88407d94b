//! Resource samples for `kiln stats`: per container its memory (the cgroup's charge, else its
//! processes' resident set), CPU time and process count (from the processes of its pid
//! namespace) and network bytes (its interfaces but `lo`); two samples give Docker's columns.

use std::fs;
use std::path::Path;
use std::time::Instant;

use super::Runtime;
use crate::error::RuntimeError;
use crate::store::{Container, Status};

/// One container's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stats {
    /// Memory in use: its cgroup's charge when it has one (a memory limit gives it one), else
    /// the resident set of its processes.
    memory_bytes: Option<u64>,
    memory_limit: Option<u64>,
    /// Processes in its pid namespace.
    pids: u64,
    /// CPU time its processes have used (user + system), in nanoseconds.
    cpu_nanos: u64,
    net: Option<NetIo>,
}

/// Bytes received and sent on a container's interfaces other than `lo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetIo {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The counters of a list of containers taken together, with when they were taken and the
/// host's memory (the limit of a container without one).
#[derive(Debug, Clone)]
pub struct StatsSample {
    taken: Instant,
    host_memory: u64,
    stats: Vec<Stats>,
}

/// What `kiln stats` shows for one container over the time between two samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// CPU time over wall time, in percent (above 100 on several cores).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// The container's memory limit, or the host's memory when it has none (or a larger one).
    pub memory_limit: u64,
    pub memory_percent: f64,
    /// `None` when the container's network namespace cannot be read (it is not running).
    pub net: Option<NetIo>,
    pub pids: u64,
}

impl Runtime {
    /// Samples the containers of `list`, in order (a container that is not running has zero
    /// counters).
    pub fn stats_sample(&self, list: &[Container]) -> Result<StatsSample, RuntimeError> {
        let taken = Instant::now();
        let stats = list
            .iter()
            .map(|c| self.stats(c))
            .collect::<Result<_, _>>()?;
        Ok(StatsSample {
            taken,
            host_memory: host_memory_bytes(),
            stats,
        })
    }

    /// Samples `c`'s memory (its cgroup, else its processes' RSS), CPU time and process count
    /// (both from the processes of its pid namespace) and network bytes.
    fn stats(&self, c: &Container) -> Result<Stats, RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running {
            return Ok(Stats::default());
        }
        let read = |dir: &Path, f: &str| -> Option<u64> {
            fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok()
        };
        let mut stats = Stats {
            net: net_io(c.state.pid),
            ..Stats::default()
        };
        for dir in &c.state.cgroup_dirs {
            if let Some(v) =
                read(dir, "memory.usage_in_bytes").or_else(|| read(dir, "memory.current"))
            {
                stats.memory_bytes = Some(v);
                stats.memory_limit =
                    read(dir, "memory.limit_in_bytes").or_else(|| read(dir, "memory.max"));
            }
        }
        let ns = fs::read_link(format!("/proc/{}/ns/pid", c.state.pid)).ok();
        let (Some(ns), Ok(procs)) = (ns, fs::read_dir("/proc")) else {
            return Ok(stats);
        };
        // Clock ticks and page size are fixed for the host; sysconf is the only way to ask.
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as u64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .unwrap_or(4096) as u64;
        let mut rss = 0u64;
        for entry in procs.flatten() {
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                || fs::read_link(entry.path().join("ns/pid")).ok().as_ref() != Some(&ns)
            {
                continue;
            }
            stats.pids += 1;
            if let Ok(stat) = fs::read_to_string(entry.path().join("stat"))
                && let Some((_, after_comm)) = stat.rsplit_once(')')
            {
                // Fields after the command name: state is the 3rd field, utime the 14th.
                let fields: Vec<&str> = after_comm.split_whitespace().collect();
                let cpu: u64 = [11, 12]
                    .iter()
                    .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                    .sum();
                stats.cpu_nanos += cpu * 1_000_000_000 / ticks;
            }
            if let Ok(statm) = fs::read_to_string(entry.path().join("statm")) {
                rss += statm
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * page;
            }
        }
        if stats.memory_bytes.is_none() {
            stats.memory_bytes = Some(rss);
        }
        Ok(stats)
    }
}

impl StatsSample {
    /// Each container's use between `before` and this sample (of the same list, in order).
    pub fn usage_since(&self, before: &StatsSample) -> Vec<Usage> {
        let wall = self
            .taken
            .saturating_duration_since(before.taken)
            .as_nanos()
            .max(1) as f64;
        self.stats
            .iter()
            .zip(&before.stats)
            .map(|(a, b)| usage(b, a, wall, self.host_memory))
            .collect()
    }
}

/// The use between counters `b` and `a`, `wall` nanoseconds apart.
fn usage(b: &Stats, a: &Stats, wall: f64, host_memory: u64) -> Usage {
    let cpu_percent = a.cpu_nanos.saturating_sub(b.cpu_nanos) as f64 * 100.0 / wall;
    let memory_bytes = a.memory_bytes.unwrap_or(0);
    let memory_limit = a
        .memory_limit
        .filter(|l| *l < host_memory)
        .unwrap_or(host_memory);
    let memory_percent = if memory_limit > 0 {
        memory_bytes as f64 * 100.0 / memory_limit as f64
    } else {
        0.0
    };
    Usage {
        cpu_percent,
        memory_bytes,
        memory_limit,
        memory_percent,
        net: a.net,
        pids: a.pids,
    }
}

/// The host's memory, the limit `stats` shows for a container without one.
fn host_memory_bytes() -> u64 {
    fs::read_to_string("/proc/meminfo").map_or(0, |m| parse_meminfo_total(&m))
}

/// `MemTotal:` of `/proc/meminfo`, in bytes (the file counts KiB).
fn parse_meminfo_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Bytes received and sent on a container's interfaces other than `lo`, read through its
/// pid 1's view of the network namespace.
fn net_io(pid: i32) -> Option<NetIo> {
    if pid <= 0 {
        return None;
    }
    let dev = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(parse_net_dev(&dev))
}

/// Sums `/proc/net/dev` (two header lines, then `name: rx_bytes ... tx_bytes ...`) over the
/// interfaces but `lo`: received bytes are the first counter, sent bytes the ninth.
fn parse_net_dev(dev: &str) -> NetIo {
    let mut totals = NetIo::default();
    for line in dev.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        totals.rx_bytes += fields.first().copied().unwrap_or(0);
        totals.tx_bytes += fields.get(8).copied().unwrap_or(0);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_every_interface_but_lo() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n  \
            eth0:    1200      10    0    0    0     0          0         0      300       3    0    0    0     0       0          0\n  \
            eth1:      34       1    0    0    0     0          0         0        6       1    0    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(dev),
            NetIo {
                rx_bytes: 1234,
                tx_bytes: 306
            }
        );
    }

    #[test]
    fn meminfo_total_is_in_bytes() {
        assert_eq!(
            parse_meminfo_total("MemTotal:        2048 kB\nMemFree:  12 kB\n"),
            2048 * 1024
        );
        assert_eq!(parse_meminfo_total("garbage"), 0);
    }

    #[test]
    fn usage_is_cpu_over_wall_time_and_memory_against_the_smaller_limit() {
        let before = Stats {
            cpu_nanos: 1_000_000_000,
            ..Stats::default()
        };
        let after = Stats {
            cpu_nanos: 1_500_000_000,
            memory_bytes: Some(16 << 20),
            memory_limit: Some(64 << 20),
            pids: 3,
            net: Some(NetIo {
                rx_bytes: 1,
                tx_bytes: 2,
            }),
        };
        let u = usage(&before, &after, 1e9, 1 << 30);
        assert_eq!(u.cpu_percent, 50.0);
        assert_eq!((u.memory_bytes, u.memory_limit), (16 << 20, 64 << 20));
        assert_eq!(u.memory_percent, 25.0);
        assert_eq!(u.pids, 3);
        assert_eq!(u.net.map(|n| n.tx_bytes), Some(2));
        // No limit, or one above the host's memory (cgroup v1's "unlimited"): the host's.
        let unlimited = Stats {
            memory_limit: Some(u64::MAX / 2),
            ..after.clone()
        };
        assert_eq!(
            usage(&before, &unlimited, 1e9, 1 << 30).memory_limit,
            1 << 30
        );
        // CPU time that went backwards (a process left) counts as none, not as a wrap.
        assert_eq!(usage(&after, &before, 1e9, 0).cpu_percent, 0.0);
        assert_eq!(usage(&after, &before, 1e9, 0).memory_percent, 0.0);
    }
}
