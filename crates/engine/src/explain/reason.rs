//! Why a step ran instead of coming from the cache, in words a user can act on, and how the
//! reasons are found by comparing what went into a step's key now with last time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::record::{InputRecord, StepRecord};

/// One step that ran, and why (`kiln build --explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepExplanation {
    /// The vertex (`sha256:...`), as in the build's other progress events.
    pub vertex: String,
    /// The step as progress shows it (`[2/3] COPY app /app`).
    pub name: String,
    /// Most specific first; never empty.
    pub reasons: Vec<Reason>,
}

/// One reason a step's cache key missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// No earlier build of this Dockerfile recorded this step.
    NeverSeen,
    /// A file the step copies from the context changed, appeared or went away (`old`/`new`
    /// describe it: `file 0644 blake3:...`, `symlink -> x`, `dir 0755`).
    ContextFile {
        path: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// More context files changed than are listed.
    MoreContextFiles { count: usize },
    /// A build argument the step sees has another value (`None`: not set).
    BuildArg {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// An environment variable the step runs with has another value.
    Env {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The base image's name now points at another image.
    BaseImage {
        name: String,
        old: String,
        new: String,
    },
    /// A step this one builds on ran again.
    EarlierStep { name: String },
    /// Something else the step itself is made of changed (`what`: command, workdir, user, a
    /// copy's source, an inline file, ...).
    Instruction {
        what: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// `--no-cache` or `--no-cache-filter` asked for it.
    NoCache,
    /// Nothing it depends on changed, yet the cache had no result for it.
    CacheMissing,
}

fn short(desc: &str) -> String {
    // `file 0644 blake3:<64 hex>` → `blake3:1a2b3c4d5e6f`, the mode when only it changed.
    match desc.split_once("blake3:") {
        Some((_, hash)) => format!("blake3:{}", &hash[..hash.len().min(12)]),
        None => desc.to_string(),
    }
}

fn value(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "(not set)".to_string(),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverSeen => {
                f.write_str("the cache had never seen this step (no earlier build recorded it)")
            }
            Reason::ContextFile { path, old, new } => match (old, new) {
                (Some(o), Some(n)) => {
                    let (mo, mn) = (o.split(' ').nth(1), n.split(' ').nth(1));
                    if short(o) == short(n) && mo != mn {
                        write!(
                            f,
                            "context file {path} changed mode ({} → {})",
                            mo.unwrap_or("?"),
                            mn.unwrap_or("?")
                        )
                    } else {
                        write!(
                            f,
                            "context file {path} changed ({} → {})",
                            short(o),
                            short(n)
                        )
                    }
                }
                (None, Some(n)) => write!(f, "context file {path} was added ({})", short(n)),
                (Some(o), None) => write!(f, "context file {path} was removed (was {})", short(o)),
                (None, None) => write!(f, "context file {path} changed"),
            },
            Reason::MoreContextFiles { count } => {
                write!(f, "and {count} more context files changed")
            }
            Reason::BuildArg { name, old, new } => write!(
                f,
                "build argument {name} changed: {} → {}",
                value(old),
                value(new)
            ),
            Reason::Env { name, old, new } => write!(
                f,
                "environment variable {name} changed: {} → {}",
                value(old),
                value(new)
            ),
            Reason::BaseImage { name, old, new } => {
                write!(f, "base image {name} moved: {old} → {new}")
            }
            Reason::EarlierStep { name } => write!(f, "an earlier step ran again: {name}"),
            Reason::Instruction { what, old, new } => write!(
                f,
                "the step's {what} changed: {} → {}",
                value(old),
                value(new)
            ),
            Reason::NoCache => f.write_str("--no-cache (or --no-cache-filter) asked to run it"),
            Reason::CacheMissing => f.write_str(
                "nothing it depends on changed, but its cached result is gone \
                 (pruned, or it failed last time)",
            ),
        }
    }
}

/// A context listing: (path, description) sorted by path.
pub(super) type Listing = Vec<(String, String)>;

/// At most this many context files are named for one step.
const MAX_FILES: usize = 20;

/// Why `now` missed the cache, compared with `last` (the step's record from the last build).
/// `listings` gives the two context listings when the step copies from the context;
/// `inputs_last` and `inputs_now` the records of the steps it builds on, by position.
pub(super) struct Comparison<'a> {
    pub last: &'a StepRecord,
    pub now: &'a StepRecord,
    pub build_args: &'a BTreeSet<String>,
    pub listings: Option<(Listing, Listing)>,
    /// The record of each input step now (by identity), to tell a moved base from a rerun.
    pub input_steps: &'a BTreeMap<String, StepRecord>,
    pub input_steps_last: &'a BTreeMap<String, StepRecord>,
}

impl Comparison<'_> {
    pub(super) fn reasons(&self) -> Vec<Reason> {
        let mut out = Vec::new();
        self.facts(&mut out);
        if let Some((old, new)) = &self.listings {
            files(old, new, &mut out);
        }
        self.inputs(&mut out);
        out
    }

    fn facts(&self, out: &mut Vec<Reason>) {
        let (a, b) = (&self.last.facts, &self.now.facts);
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let mut other_changed = false;
        for key in keys {
            let (old, new) = (a.get(key).cloned(), b.get(key).cloned());
            if old == new {
                continue;
            }
            if key == "definition" {
                other_changed = true;
                continue;
            }
            if key == "image" {
                out.push(base_moved(old.as_deref(), new.as_deref()));
            } else if let Some(name) = key.strip_prefix("env ") {
                let name = name.to_string();
                out.push(if self.build_args.contains(&name) {
                    Reason::BuildArg { name, old, new }
                } else {
                    Reason::Env { name, old, new }
                });
            } else {
                out.push(Reason::Instruction {
                    what: key.clone(),
                    old,
                    new,
                });
            }
        }
        // The op changed in a way no named fact shows (a flag, a mount option).
        if other_changed && out.is_empty() {
            out.push(Reason::Instruction {
                what: "definition".into(),
                old: None,
                new: None,
            });
        }
    }

    fn inputs(&self, out: &mut Vec<Reason>) {
        for (i, now) in self.now.inputs.iter().enumerate() {
            let Some(last) = self.last.inputs.get(i) else {
                continue;
            };
            let (InputRecord::Step { id, key, name }, InputRecord::Step { key: old_key, .. }) =
                (now, last)
            else {
                continue;
            };
            if key == old_key || key.is_none() {
                continue;
            }
            // An input that is a base image: say which image moved rather than "a step".
            let image = |records: &BTreeMap<String, StepRecord>| {
                records.get(id).and_then(|r| r.facts.get("image").cloned())
            };
            let reason = match (image(self.input_steps_last), image(self.input_steps)) {
                (Some(old), Some(new)) if old != new => base_moved(Some(&old), Some(&new)),
                _ => Reason::EarlierStep { name: name.clone() },
            };
            if !out.contains(&reason) {
                out.push(reason);
            }
        }
    }
}

/// `reference@digest` before and after → the familiar name and the two digests.
fn base_moved(old: Option<&str>, new: Option<&str>) -> Reason {
    let split = |s: Option<&str>| -> (String, String) {
        let s = s.unwrap_or("");
        match s.rsplit_once('@') {
            Some((name, digest)) => (kiln_image::familiar(name), digest.to_string()),
            None => (kiln_image::familiar(s), "(none)".to_string()),
        }
    };
    let (name_old, old) = split(old);
    let (name_new, new) = split(new);
    let name = if name_old == name_new || name_old.is_empty() {
        name_new
    } else {
        format!("{name_old} → {name_new}")
    };
    Reason::BaseImage { name, old, new }
}

fn files(old: &[(String, String)], new: &[(String, String)], out: &mut Vec<Reason>) {
    let a: BTreeMap<&String, &String> = old.iter().map(|(p, d)| (p, d)).collect();
    let b: BTreeMap<&String, &String> = new.iter().map(|(p, d)| (p, d)).collect();
    let paths: BTreeSet<&&String> = a.keys().chain(b.keys()).collect();
    let mut changed = 0;
    for path in paths {
        let (o, n) = (a.get(*path), b.get(*path));
        if o == n {
            continue;
        }
        changed += 1;
        if changed <= MAX_FILES {
            out.push(Reason::ContextFile {
                path: (*path).clone(),
                old: o.map(|s| s.to_string()),
                new: n.map(|s| s.to_string()),
            });
        }
    }
    if changed > MAX_FILES {
        out.push(Reason::MoreContextFiles {
            count: changed - MAX_FILES,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(facts: &[(&str, &str)], inputs: Vec<InputRecord>) -> StepRecord {
        StepRecord {
            name: "[2/2] RUN x".into(),
            key: Some("k".into()),
            facts: facts
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            inputs,
            listing: None,
        }
    }

    fn step(id: &str, key: &str) -> InputRecord {
        InputRecord::Step {
            id: id.into(),
            name: format!("[1/2] {id}"),
            key: Some(key.into()),
        }
    }

    #[test]
    fn facts_say_which_argument_or_variable_changed() {
        let last = rec(
            &[("env A", "1"), ("env B", "x"), ("definition", "d1")],
            vec![],
        );
        let now = rec(
            &[("env A", "2"), ("env B", "y"), ("definition", "d2")],
            vec![],
        );
        let args = BTreeSet::from(["A".to_string()]);
        let none = BTreeMap::new();
        let reasons = Comparison {
            last: &last,
            now: &now,
            build_args: &args,
            listings: None,
            input_steps: &none,
            input_steps_last: &none,
        }
        .reasons();
        assert_eq!(
            reasons,
            vec![
                Reason::BuildArg {
                    name: "A".into(),
                    old: Some("1".into()),
                    new: Some("2".into())
                },
                Reason::Env {
                    name: "B".into(),
                    old: Some("x".into()),
                    new: Some("y".into())
                },
            ]
        );
        assert_eq!(
            reasons[0].to_string(),
            "build argument A changed: \"1\" → \"2\""
        );
    }

    #[test]
    fn a_changed_input_is_an_earlier_step_or_a_moved_base() {
        let last = rec(&[], vec![step("#1 FROM", "k1")]);
        let now = rec(&[], vec![step("#1 FROM", "k2")]);
        let from = |image: &str| {
            BTreeMap::from([("#1 FROM".to_string(), rec(&[("image", image)], vec![]))])
        };
        let (old, new) = (
            from("docker.io/library/base:latest@sha256:aa"),
            from("docker.io/library/base:latest@sha256:bb"),
        );
        let args = BTreeSet::new();
        let cmp = |input_steps, input_steps_last| {
            Comparison {
                last: &last,
                now: &now,
                build_args: &args,
                listings: None,
                input_steps,
                input_steps_last,
            }
            .reasons()
        };
        assert_eq!(
            cmp(&new, &old),
            vec![Reason::BaseImage {
                name: "base:latest".into(),
                old: "sha256:aa".into(),
                new: "sha256:bb".into()
            }]
        );
        assert_eq!(
            cmp(&new, &new),
            vec![Reason::EarlierStep {
                name: "[1/2] #1 FROM".into()
            }]
        );
    }

    #[test]
    fn listings_name_changed_added_and_removed_files() {
        let f = |p: &str, d: &str| (p.to_string(), d.to_string());
        let old = vec![f("a", "file 0644 blake3:11"), f("b", "file 0644 blake3:22")];
        let new = vec![f("a", "file 0755 blake3:11"), f("c", "file 0644 blake3:33")];
        let mut out = Vec::new();
        files(&old, &new, &mut out);
        let text: Vec<String> = out.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "context file a changed mode (0644 → 0755)",
                "context file b was removed (was blake3:22)",
                "context file c was added (blake3:33)",
            ]
        );
    }
}
