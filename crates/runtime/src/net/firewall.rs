//! The host firewall of bridge networks, kept in kiln's own iptables chains so host rules are
//! never reordered or removed: `FORWARD` jumps once to `KILN-FORWARD` and nat `POSTROUTING` to
//! `KILN-POSTROUTING`; each network adds its rules there when it is set up and deletes them
//! when it is removed. Every rule is checked (`-C`) before it is added, so setting a network
//! up twice (or after a crash) adds nothing twice.

use std::io::ErrorKind;
use std::process::Command;

use crate::error::RuntimeError;

pub(crate) const FORWARD_CHAIN: &str = "KILN-FORWARD";
pub(crate) const NAT_CHAIN: &str = "KILN-POSTROUTING";

/// What `iptables` said about one invocation.
enum Ran {
    Ok,
    Failed(String),
    /// There is no `iptables` on this host.
    Missing,
}

fn iptables(args: &[&str]) -> Result<Ran, RuntimeError> {
    match Command::new("iptables").arg("-w").args(args).output() {
        Ok(out) if out.status.success() => Ok(Ran::Ok),
        Ok(out) => Ok(Ran::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Ran::Missing),
        Err(e) => Err(RuntimeError::Io {
            what: format!("run iptables {}", args.join(" ")),
            source: e,
        }),
    }
}

/// A rule: its table, chain, whether it goes first (`-I`) or last (`-A`), and its match.
struct Rule {
    table: &'static str,
    chain: &'static str,
    first: bool,
    spec: Vec<String>,
}

impl Rule {
    fn args(&self, op: &str) -> Vec<String> {
        let mut a = vec!["-t".into(), self.table.into(), op.into(), self.chain.into()];
        a.extend(self.spec.iter().cloned());
        a
    }
}

fn spec(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The rules of one network, in the order they are added. Within `KILN-FORWARD` a bridge's
/// traffic to itself is accepted, to any other kiln bridge (`kb+`) dropped (isolation), to
/// anywhere else accepted, and replies coming back accepted; the inserted rules stay above
/// every network's appended ones, so no network's outward ACCEPT lets another's traffic in.
fn rules(bridge: &str, subnet: &str) -> Vec<Rule> {
    vec![
        Rule {
            table: "filter",
            chain: FORWARD_CHAIN,
            first: true,
            spec: spec(&["-i", bridge, "-o", "kb+", "-j", "DROP"]),
        },
        Rule {
            table: "filter",
            chain: FORWARD_CHAIN,
            first: true,
            spec: spec(&["-i", bridge, "-o", bridge, "-j", "ACCEPT"]),
        },
        Rule {
            table: "filter",
            chain: FORWARD_CHAIN,
            first: false,
            spec: spec(&["-i", bridge, "-j", "ACCEPT"]),
        },
        Rule {
            table: "filter",
            chain: FORWARD_CHAIN,
            first: false,
            spec: spec(&[
                "-o",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ]),
        },
        Rule {
            table: "nat",
            chain: NAT_CHAIN,
            first: false,
            spec: spec(&["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]),
        },
    ]
}

fn run_all(args: &[String]) -> Result<Ran, RuntimeError> {
    iptables(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Adds `rule` unless it is there already.
fn ensure(rule: &Rule) -> Result<Ran, RuntimeError> {
    match run_all(&rule.args("-C"))? {
        Ran::Ok => Ok(Ran::Ok),
        Ran::Missing => Ok(Ran::Missing),
        Ran::Failed(_) => run_all(&rule.args(if rule.first { "-I" } else { "-A" })),
    }
}

/// Creates kiln's chains and the jumps to them from the builtin chains, once per host.
fn ensure_chains() -> Result<Ran, RuntimeError> {
    for (table, builtin, chain) in [
        ("filter", "FORWARD", FORWARD_CHAIN),
        ("nat", "POSTROUTING", NAT_CHAIN),
    ] {
        match iptables(&["-t", table, "-N", chain])? {
            Ran::Missing => return Ok(Ran::Missing),
            // Already there (or a real problem, which the jump below reports).
            Ran::Ok | Ran::Failed(_) => {}
        }
        let jump = Rule {
            table,
            chain: builtin,
            first: true,
            spec: spec(&["-j", chain]),
        };
        if let Ran::Failed(msg) = ensure(&jump)? {
            return Ok(Ran::Failed(msg));
        }
    }
    Ok(Ran::Ok)
}

/// Whether the network got its firewall rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    Done,
    /// No `iptables` here: the bridge works, without NAT outward or isolation.
    NoIptables,
}

/// Turns on IPv4 forwarding and adds the network's isolation, forwarding and NAT rules.
pub(crate) fn add_network(bridge: &str, subnet: &str) -> Result<Setup, RuntimeError> {
    enable_forwarding()?;
    let fail = |msg: String| RuntimeError::Io {
        what: format!("set up the firewall rules of bridge {bridge}"),
        source: std::io::Error::other(msg),
    };
    match ensure_chains()? {
        Ran::Missing => return Ok(Setup::NoIptables),
        Ran::Failed(msg) => return Err(fail(msg)),
        Ran::Ok => {}
    }
    for rule in rules(bridge, subnet) {
        match ensure(&rule)? {
            Ran::Ok => {}
            Ran::Missing => return Ok(Setup::NoIptables),
            Ran::Failed(msg) => {
                remove_network(bridge, subnet);
                return Err(fail(msg));
            }
        }
    }
    Ok(Setup::Done)
}

/// Deletes the network's rules (each as often as it is there); the chains and jumps stay.
pub(crate) fn remove_network(bridge: &str, subnet: &str) {
    for rule in rules(bridge, subnet) {
        for _ in 0..4 {
            match run_all(&rule.args("-D")) {
                Ok(Ran::Ok) => continue,
                _ => break,
            }
        }
    }
}

/// Containers reach the outside only if the host routes between interfaces. Docker turns this
/// on too; it is left on when the network goes (other software may rely on it by then).
fn enable_forwarding() -> Result<(), RuntimeError> {
    const KEY: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(KEY).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(KEY, "1").map_err(|e| RuntimeError::Io {
        what: format!("enable IPv4 forwarding ({KEY})"),
        source: e,
    })
}

/// The rules of bridge `bridge` as `iptables -S` prints them, for tests and diagnostics.
#[cfg(test)]
pub(crate) fn listed_rules(bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, chain) in [("filter", FORWARD_CHAIN), ("nat", NAT_CHAIN)] {
        if let Ok(o) = Command::new("iptables")
            .args(["-w", "-t", table, "-S", chain])
            .output()
        {
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.split_whitespace().any(|w| w == bridge))
                    .map(str::to_string),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_isolate_before_they_accept_outward() {
        let r = rules("kbA", "10.89.7.0/24");
        assert!(r[0].first && r[0].spec.join(" ") == "-i kbA -o kb+ -j DROP");
        // Inserted after the DROP, so it ends up above it.
        assert!(r[1].first && r[1].spec.join(" ") == "-i kbA -o kbA -j ACCEPT");
        assert!(!r[2].first);
        assert_eq!(
            r[4].args("-A").join(" "),
            "-t nat -A KILN-POSTROUTING -s 10.89.7.0/24 ! -o kbA -j MASQUERADE"
        );
    }

    #[test]
    fn adding_twice_adds_each_rule_once_and_remove_clears_them() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: iptables needs root");
            return;
        }
        let bridge = format!("kbt{}", std::process::id() % 1_000_000);
        struct Clean(String);
        impl Drop for Clean {
            fn drop(&mut self) {
                remove_network(&self.0, "10.89.253.0/24");
            }
        }
        let _clean = Clean(bridge.clone());
        match add_network(&bridge, "10.89.253.0/24").expect("add") {
            Setup::NoIptables => {
                eprintln!("skipping: no iptables");
                return;
            }
            Setup::Done => {}
        }
        add_network(&bridge, "10.89.253.0/24").expect("add again");
        let listed = listed_rules(&bridge);
        assert_eq!(listed.len(), 5, "{listed:#?}");
        remove_network(&bridge, "10.89.253.0/24");
        assert!(listed_rules(&bridge).is_empty());
    }
}
