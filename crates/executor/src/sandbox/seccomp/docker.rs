//! Seccomp profile files in Docker's format (`--security-opt seccomp=profile.json`):
//! `defaultAction`, `defaultErrnoRet`, `architectures`/`archMap`, and `syscalls` rules with
//! `names`, `action`, `errnoRet`, `args` and `includes`/`excludes` (capabilities, architectures,
//! minimum kernel), compiled by the same BPF generator as the built-in profile.
//!
//! Semantics follow Docker and libseccomp: a rule applies only if the container has every
//! capability in `includes.caps` and none in `excludes.caps`; syscall names this
//! architecture does not have are skipped; the rules for one syscall are tried in order, an
//! unconditional one ending the search; argument comparisons use all 64 bits.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::bpf::{
    Cond, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP,
    Verdict,
};
use super::names;
use crate::sandbox::spec::CAPABILITY_NAMES;

/// A parsed profile (the file's text is kept to show and compare it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub(crate) text: String,
    parsed: File,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// The old format's single name.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// This machine's names in a profile: Docker's `SCMP_ARCH_*` and the Go names `includes`
/// uses.
#[cfg(target_arch = "x86_64")]
const ARCH_NAMES: [&str; 2] = ["SCMP_ARCH_X86_64", "amd64"];
#[cfg(not(target_arch = "x86_64"))]
const ARCH_NAMES: [&str; 0] = [];

impl Profile {
    /// Parses a profile file's text; errors name the line and column.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let parsed: File = serde_json::from_str(text)
            .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
        action(&parsed.default_action, parsed.default_errno_ret)?;
        for r in &parsed.syscalls {
            action(&r.action, r.errno_ret)?;
            for a in &r.args {
                if a.index > 5 {
                    return Err(format!("argument index {} is above 5", a.index));
                }
                cond(a)?;
            }
        }
        let arches: Vec<&String> = parsed
            .architectures
            .iter()
            .chain(parsed.arch_map.iter().map(|m| &m.architecture))
            .collect();
        if !arches.is_empty() && !arches.iter().any(|a| ARCH_NAMES.contains(&a.as_str())) {
            return Err(format!(
                "the profile is for {arches:?}, not this machine's architecture"
            ));
        }
        Ok(Profile {
            text: text.to_string(),
            parsed,
        })
    }

    /// The verdict of every syscall the profile names (for capability set `caps`) and the
    /// default return value.
    pub(crate) fn verdicts(&self, caps: u64) -> Result<(BTreeMap<u32, Verdict>, u32), String> {
        let has = |name: &str| {
            let name = name.to_ascii_uppercase();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            CAPABILITY_NAMES
                .iter()
                .position(|n| *n == name)
                .is_some_and(|i| caps & (1u64 << i) != 0)
        };
        let kernel = kernel_version();
        let default = action(&self.parsed.default_action, self.parsed.default_errno_ret)?;
        let mut rules: BTreeMap<u32, Vec<(Vec<Cond>, u32)>> = BTreeMap::new();
        for r in &self.parsed.syscalls {
            let applies = r.includes.caps.iter().all(|c| has(c))
                && !r.excludes.caps.iter().any(|c| has(c))
                && (r.includes.arches.is_empty()
                    || r.includes
                        .arches
                        .iter()
                        .any(|a| ARCH_NAMES.contains(&a.as_str())))
                && !r
                    .excludes
                    .arches
                    .iter()
                    .any(|a| ARCH_NAMES.contains(&a.as_str()))
                && r.includes
                    .min_kernel
                    .as_deref()
                    .is_none_or(|k| kernel >= parse_kernel(k))
                && r.excludes
                    .min_kernel
                    .as_deref()
                    .is_none_or(|k| kernel < parse_kernel(k));
            if !applies {
                continue;
            }
            let ret = action(&r.action, r.errno_ret)?;
            let conds = r.args.iter().map(cond).collect::<Result<Vec<_>, _>>()?;
            for name in r.names.iter().chain(r.name.iter()) {
                // A name this architecture does not have: skipped, as libseccomp does.
                let Some(nr) = names::number(name) else {
                    continue;
                };
                let list = rules.entry(nr).or_default();
                // After an unconditional rule nothing else can match.
                if !list.iter().any(|(c, _)| c.is_empty()) {
                    list.push((conds.clone(), ret));
                }
            }
        }
        let by_nr = rules
            .into_iter()
            .map(|(nr, mut list)| {
                // An unconditional rule is what the conditional ones fall back to.
                let fallback = list
                    .iter()
                    .position(|(c, _)| c.is_empty())
                    .map(|i| list.remove(i).1);
                let v = match (list.is_empty(), fallback) {
                    (true, Some(ret)) => Verdict::Return(ret),
                    (_, fallback) => Verdict::If {
                        alternatives: list,
                        otherwise: fallback.unwrap_or(default),
                    },
                };
                (nr, v)
            })
            .collect();
        Ok((by_nr, default))
    }
}

/// A profile action as a filter return value.
fn action(name: &str, errno: Option<u32>) -> Result<u32, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_ERRNO" => RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_LOG" => RET_LOG,
        // With no tracer attached the kernel fails the call with ENOSYS.
        "SCMP_ACT_TRACE" => RET_TRACE | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        "SCMP_ACT_NOTIFY" => {
            return Err("not supported yet: the seccomp action SCMP_ACT_NOTIFY".into());
        }
        other => return Err(format!("unknown seccomp action {other:?}")),
    })
}

fn cond(a: &Arg) -> Result<Cond, String> {
    let i = a.index;
    Ok(match a.op.as_str() {
        "SCMP_CMP_EQ" => Cond::Eq64(i, a.value),
        "SCMP_CMP_NE" => Cond::Ne64(i, a.value),
        "SCMP_CMP_LT" => Cond::Lt64(i, a.value),
        "SCMP_CMP_LE" => Cond::Le64(i, a.value),
        "SCMP_CMP_GT" => Cond::Gt64(i, a.value),
        "SCMP_CMP_GE" => Cond::Ge64(i, a.value),
        "SCMP_CMP_MASKED_EQ" => Cond::Masked64(i, a.value, a.value_two),
        other => return Err(format!("unknown seccomp comparison {other:?}")),
    })
}

/// The running kernel's version as (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_kernel(release.trim())
}

fn parse_kernel(s: &str) -> (u32, u32) {
    let mut parts = s.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
