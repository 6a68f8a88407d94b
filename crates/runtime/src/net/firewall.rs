//! The host firewall of bridge networks, kept in kiln's own iptables chains so host rules are
//! never reordered or removed: `FORWARD` jumps once to `KILN-FORWARD` and nat `POSTROUTING` to
//! `KILN-POSTROUTING`; `KILN-ISOLATION` holds one DROP per bridge. Each network adds its rules
//! when it is set up and deletes them when it is removed; every rule names kiln's interfaces
//! exactly (no `kb+` wildcard that a host interface could match). Every rule is checked (`-C`)
//! before it is added, so setting a network up twice (or after a crash) adds nothing twice.
//! Once no kiln bridge is left, `remove_chains` takes the chains and jumps away again.

use std::io::ErrorKind;
use std::process::Command;

use crate::error::RuntimeError;

const FORWARD_CHAIN: &str = "KILN-FORWARD";
const ISOLATION_CHAIN: &str = "KILN-ISOLATION";
const NAT_CHAIN: &str = "KILN-POSTROUTING";

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
/// traffic to anywhere but itself first passes `KILN-ISOLATION`, which drops what goes to
/// another kiln bridge (one rule per bridge, by its exact name); then traffic from the bridge
/// is accepted (to itself or outward), and replies coming back. The jumps are inserted and the
/// accepts appended, so every network's isolation comes before any network's ACCEPT.
fn rules(bridge: &str, subnet: &str) -> Vec<Rule> {
    vec![
        Rule {
            table: "filter",
            chain: FORWARD_CHAIN,
            first: true,
            spec: spec(&["-i", bridge, "!", "-o", bridge, "-j", ISOLATION_CHAIN]),
        },
        Rule {
            table: "filter",
            chain: ISOLATION_CHAIN,
            first: false,
            spec: spec(&["-o", bridge, "-j", "DROP"]),
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

/// Rules earlier kiln versions added (isolation by the `kb+` wildcard), deleted with the
/// network so a host upgraded with live networks is left clean.
fn legacy_rules(bridge: &str) -> Vec<Rule> {
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

/// Kiln's chains: (table, chain, the builtin chain that jumps to it, if any).
const CHAINS: [(&str, &str, Option<&str>); 3] = [
    ("filter", FORWARD_CHAIN, Some("FORWARD")),
    ("filter", ISOLATION_CHAIN, None),
    ("nat", NAT_CHAIN, Some("POSTROUTING")),
];

fn jump(table: &'static str, builtin: &'static str, chain: &str) -> Rule {
    Rule {
        table,
        chain: builtin,
        first: true,
        spec: spec(&["-j", chain]),
    }
}

/// Creates kiln's chains and the jumps to them from the builtin chains, once per namespace.
fn ensure_chains() -> Result<Ran, RuntimeError> {
    for (table, chain, builtin) in CHAINS {
        match iptables(&["-t", table, "-N", chain])? {
            Ran::Missing => return Ok(Ran::Missing),
            // Already there (or a real problem, which the rules below report).
            Ran::Ok | Ran::Failed(_) => {}
        }
        if let Some(builtin) = builtin
            && let Ran::Failed(msg) = ensure(&jump(table, builtin, chain))?
        {
            return Ok(Ran::Failed(msg));
        }
    }
    Ok(Ran::Ok)
}

/// Deletes kiln's chains with whatever rules are left in them, and the jumps to them. The
/// caller holds the host lock and has seen no kiln bridge left, so no rule in them serves a
/// network any more (rules of a bridge deleted behind kiln's back go too).
pub(crate) fn remove_chains() {
    for (table, chain, builtin) in CHAINS {
        if let Some(builtin) = builtin {
            delete_all(&jump(table, builtin, chain));
        }
    }
    // KILN-FORWARD refers to KILN-ISOLATION, so every chain is emptied before any goes.
    for (table, chain, _) in CHAINS {
        let _ = iptables(&["-t", table, "-F", chain]);
    }
    for (table, chain, _) in CHAINS {
        delete_chain(table, chain);
    }
}

/// Deletes each of kiln's chains that holds no rule any more, and the jump to it, while other
/// kiln networks (of this or an earlier version, whose rules may not use every chain) remain.
/// The caller holds the host lock.
pub(crate) fn remove_empty_chains() {
    // In CHAINS' order: once KILN-FORWARD is gone nothing refers to KILN-ISOLATION.
    for (table, chain, builtin) in CHAINS {
        let Ok(out) = Command::new("iptables")
            .args(["-w", "-t", table, "-S", chain])
            .output()
        else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        let empty = out.status.success() && listing.lines().all(|l| l.starts_with("-N "));
        if !empty {
            continue;
        }
        if let Some(builtin) = builtin {
            delete_all(&jump(table, builtin, chain));
        }
        delete_chain(table, chain);
    }
}

fn delete_chain(table: &str, chain: &str) {
    match iptables(&["-t", table, "-X", chain]) {
        Ok(Ran::Ok | Ran::Missing) => {}
        Ok(Ran::Failed(msg)) => {
            tracing::debug!(table, chain, error = %msg, "kiln's chain not deleted")
        }
        Err(e) => tracing::warn!(table, chain, error = %e, "failed to delete kiln's chain"),
    }
}

/// Whether the network got its firewall rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    Done,
    /// No `iptables` here: the bridge works, without NAT outward or isolation.
    NoIptables,
}

/// Adds the network's isolation, forwarding and NAT rules (kiln's chains first, if missing).
pub(crate) fn add_network(bridge: &str, subnet: &str) -> Result<Setup, RuntimeError> {
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

/// Deletes `rule` as often as it is there.
fn delete_all(rule: &Rule) {
    for _ in 0..4 {
        match run_all(&rule.args("-D")) {
            Ok(Ran::Ok) => continue,
            _ => break,
        }
    }
}

/// Deletes the network's rules; the chains stay for the other networks (see `remove_chains`).
pub(crate) fn remove_network(bridge: &str, subnet: &str) {
    for rule in rules(bridge, subnet).iter().chain(&legacy_rules(bridge)) {
        delete_all(rule);
    }
}

/// The rules of bridge `bridge` as `iptables -S` prints them, for tests and diagnostics.
#[cfg(test)]
pub(crate) fn listed_rules(bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, chain, _) in CHAINS {
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
    fn rules_isolate_by_exact_name_before_they_accept_outward() {
        let r = rules("kbA", "10.89.7.0/24");
        assert_eq!(
            r[0].args("-I").join(" "),
            "-t filter -I KILN-FORWARD -i kbA ! -o kbA -j KILN-ISOLATION"
        );
        assert_eq!(
            r[1].args("-A").join(" "),
            "-t filter -A KILN-ISOLATION -o kbA -j DROP"
        );
        assert!(!r[2].first && !r[3].first);
        assert_eq!(
            r[4].args("-A").join(" "),
            "-t nat -A KILN-POSTROUTING -s 10.89.7.0/24 ! -o kbA -j MASQUERADE"
        );
        // No wildcard: a host interface named kb-anything is never matched.
        assert!(r.iter().all(|r| !r.spec.iter().any(|w| w.ends_with('+'))));
    }

    /// Runs `f` on a thread of its own in a new network namespace, so the iptables processes
    /// it starts see that namespace's (empty) tables, never the host's.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            f()
        })
        .join()
        .expect("test thread")
    }

    fn iptables_save() -> String {
        let out = Command::new("iptables-save")
            .output()
            .expect("iptables-save");
        // Comments carry the time; counters change with traffic.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l).to_string() + "\n")
            .collect()
    }

    /// A host's firewall in the calling thread's (new) namespace: the tables exist (a new
    /// namespace has none until iptables is first used) and hold a rule of the host's own in
    /// each builtin chain kiln jumps from. Returns the tables as they are then.
    fn be_a_host() -> String {
        for rule in [
            "-t filter -A FORWARD -s 192.0.2.0/24 -j ACCEPT",
            "-t nat -A POSTROUTING -s 192.0.2.0/24 -j RETURN",
        ] {
            let args: Vec<&str> = rule.split(' ').collect();
            assert!(matches!(iptables(&args), Ok(Ran::Ok)), "{rule}");
        }
        iptables_save()
    }

    fn can_run() -> bool {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: a network namespace of its own needs root");
            return false;
        }
        if Command::new("iptables-save").output().is_err() {
            println!("skipped: no iptables");
            return false;
        }
        true
    }

    #[test]
    fn adding_twice_adds_each_rule_once_and_removing_leaves_the_tables_as_they_were() {
        if !can_run() {
            return;
        }
        let (before, listed, after_one, after) = in_private_netns(|| {
            let before = be_a_host();
            let first = add_network("kbA", "10.89.7.0/24").expect("add");
            assert_eq!(first, Setup::Done);
            add_network("kbA", "10.89.7.0/24").expect("add again");
            add_network("kbB", "10.89.8.0/24").expect("add another");
            let listed = listed_rules("kbA");
            remove_network("kbA", "10.89.7.0/24");
            remove_empty_chains();
            let after_one = iptables_save();
            remove_network("kbB", "10.89.8.0/24");
            remove_chains();
            (before, listed, after_one, iptables_save())
        });
        assert_eq!(listed.len(), 5, "{listed:#?}");
        assert!(
            !after_one.contains("kbA") && after_one.contains("kbB"),
            "{after_one}"
        );
        // kiln's jumps come first, above the host's rules.
        assert!(
            after_one.contains("-A FORWARD -j KILN-FORWARD\n-A FORWARD -s 192.0.2.0/24"),
            "{after_one}"
        );
        assert_eq!(before, after);
    }

    #[test]
    fn chains_an_older_networks_rules_do_not_use_go_with_the_last_new_network() {
        if !can_run() {
            return;
        }
        let (before, with_old, after) = in_private_netns(|| {
            let before = be_a_host();
            add_network("kbC", "10.89.9.0/24").expect("add");
            // A network of an earlier kiln: its rules only in KILN-FORWARD.
            let old = Rule {
                table: "filter",
                chain: FORWARD_CHAIN,
                first: false,
                spec: spec(&["-i", "kbOld", "-j", "ACCEPT"]),
            };
            assert!(matches!(ensure(&old), Ok(Ran::Ok)));
            remove_network("kbC", "10.89.9.0/24");
            remove_empty_chains();
            let with_old = iptables_save();
            remove_chains();
            (before, with_old, iptables_save())
        });
        assert!(
            with_old.contains("-A FORWARD -j KILN-FORWARD\n") && with_old.contains("kbOld"),
            "{with_old}"
        );
        assert!(!with_old.contains("KILN-ISOLATION"), "{with_old}");
        assert!(!with_old.contains("KILN-POSTROUTING"), "{with_old}");
        assert_eq!(before, after);
    }
}
