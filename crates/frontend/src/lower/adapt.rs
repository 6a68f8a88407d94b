//! From the parser's AST to lowering's instruction model: stages split at FROM, each
//! instruction's flags checked against the flags it accepts, arguments shaped.

use crate::diagnostic::{Diagnostic, Span};
use crate::lower::model::{CmdLine, CopyArgs, HealthArgs, Heredoc, Instr, Kind, Program, StageDef};
use crate::syntax::{self, Args, Node, Word};

type Result<T> = std::result::Result<T, Diagnostic>;

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn did_you_mean(value: &str, options: &[&str]) -> Option<String> {
    let v = value.to_ascii_lowercase();
    options
        .iter()
        .map(|o| (strsim::levenshtein(&v, &o.to_ascii_lowercase()), *o))
        .filter(|(d, o)| *d > 0 && *d <= 2.max(o.len() / 3))
        .min()
        .map(|(_, o)| format!("did you mean {o}?"))
}

/// Parses a Dockerfile into the lowering model.
pub(crate) fn parse_program(source: &[u8]) -> Result<Program> {
    let ast = syntax::parse(source)?;
    let mut program = Program {
        escape: ast.escape,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    for node in &ast.children {
        let command = node.command();
        if command == "from" {
            program.stages.push(from_stage(node)?);
            continue;
        }
        let instr = instruction(node)?;
        match program.stages.last_mut() {
            Some(stage) => stage.instrs.push(instr),
            None if matches!(instr.kind, Kind::Arg(_)) => program.meta_args.push(instr),
            None => {
                return Err(Diagnostic::error(
                    "no build stage in current context",
                    node.span,
                ));
            }
        }
    }
    Ok(program)
}

/// Parses an ONBUILD trigger's text as one instruction located at `span` (the FROM that runs
/// it).
pub(crate) fn parse_trigger(text: &str, span: Span, _escape: char) -> Result<Instr> {
    let relocate = |d: Diagnostic| Diagnostic {
        span: Some(span),
        ..d
    };
    let ast = syntax::parse(text.as_bytes()).map_err(relocate)?;
    let [node] = ast.children.as_slice() else {
        return Err(Diagnostic::error(
            "onbuild trigger should be a single expression",
            span,
        ));
    };
    let mut instr = instruction(node).map_err(relocate)?;
    instr.span = span;
    Ok(instr)
}

fn from_stage(node: &Node) -> Result<StageDef> {
    let flags = Flags::parse(node, &["platform"])?;
    let words = match &node.args {
        Args::Words(w) => w,
        _ => {
            return Err(Diagnostic::error(
                "FROM requires either one or three arguments",
                node.span,
            ));
        }
    };
    let (base, name) = match words.as_slice() {
        [base] => (base.value.clone(), None),
        [base, as_kw, name] if as_kw.value.eq_ignore_ascii_case("as") => {
            let name = name.value.to_ascii_lowercase();
            let valid = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                });
            if !valid {
                return Err(Diagnostic::error(
                    format!(
                        "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                        words[2].value
                    ),
                    node.span,
                ));
            }
            (base.value.clone(), Some(name))
        }
        [_, _, _] => {
            return Err(Diagnostic::error(
                "FROM requires either one or three arguments",
                node.span,
            ));
        }
        _ => {
            return Err(Diagnostic::error(
                "FROM requires either one or three arguments",
                node.span,
            ));
        }
    };
    let comment = (!node.comments.is_empty()).then(|| {
        node.comments
            .iter()
            .map(|c| c.trim())
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(StageDef {
        base,
        name,
        platform: flags.value("platform"),
        span: node.span,
        comment,
        instrs: Vec::new(),
    })
}

/// The `--flags` of one instruction.
struct Flags {
    values: Vec<(String, Option<String>)>,
    span: Span,
}

impl Flags {
    fn parse(node: &Node, allowed: &[&str]) -> Result<Flags> {
        let mut values = Vec::new();
        for flag in &node.flags {
            let body = flag.value.strip_prefix("--").unwrap_or(&flag.value);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let lower = name.to_ascii_lowercase();
            if !allowed.contains(&lower.as_str()) {
                let mut d = Diagnostic::error(format!("unknown flag: --{name}"), flag.span);
                if let Some(help) = did_you_mean(name, allowed) {
                    d = d.with_help(help);
                }
                return Err(d);
            }
            values.push((lower, value));
        }
        Ok(Flags {
            values,
            span: node.span,
        })
    }

    fn value(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone().unwrap_or_default())
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone().unwrap_or_default())
            .collect()
    }

    fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.values.iter().rev().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, None)) => Ok(Some(true)),
            Some((_, Some(v))) => match v.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Some(true)),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Some(false)),
                _ => Err(Diagnostic::error(
                    format!("expecting boolean value for flag {name}, not: {v}"),
                    self.span,
                )),
            },
        }
    }
}

fn values(words: &[Word]) -> Vec<String> {
    words.iter().map(|w| w.value.clone()).collect()
}

fn cmdline(args: &Args) -> CmdLine {
    match args {
        Args::Json(words) => CmdLine {
            args: values(words),
            prepend_shell: false,
        },
        Args::Words(words) => CmdLine {
            args: vec![values(words).join(" ")],
            prepend_shell: true,
        },
        _ => CmdLine {
            args: Vec::new(),
            prepend_shell: true,
        },
    }
}

fn heredocs(node: &Node) -> Vec<Heredoc> {
    node.heredocs
        .iter()
        .map(|h| Heredoc {
            name: h.name.clone(),
            content: h.body(),
            expand: h.expand,
        })
        .collect()
}

fn single(node: &Node, name: &str) -> Result<String> {
    match &node.args {
        Args::Words(w) if !w.is_empty() => Ok(values(w).join(" ")),
        _ => Err(Diagnostic::error(
            format!("{name} requires exactly one argument"),
            node.span,
        )),
    }
}

fn instruction(node: &Node) -> Result<Instr> {
    let command = node.command();
    let span = node.span;
    let no_flags = |node: &Node| Flags::parse(node, &[]);
    let kind = match command.as_str() {
        "arg" => {
            no_flags(node)?;
            let Args::Words(words) = &node.args else {
                return Err(Diagnostic::error(
                    "ARG requires at least one argument",
                    span,
                ));
            };
            if words.is_empty() {
                return Err(Diagnostic::error(
                    "ARG requires at least one argument",
                    span,
                ));
            }
            Kind::Arg(
                words
                    .iter()
                    .map(|w| match w.value.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (w.value.clone(), None),
                    })
                    .collect(),
            )
        }
        "env" | "label" => {
            no_flags(node)?;
            let pairs = match &node.args {
                Args::Pairs(p) if !p.is_empty() => p
                    .iter()
                    .map(|p| (p.key.value.clone(), p.value.value.clone()))
                    .collect(),
                _ => {
                    return Err(Diagnostic::error(
                        format!("{} requires at least one argument", command.to_uppercase()),
                        span,
                    ));
                }
            };
            if command == "env" {
                Kind::Env(pairs)
            } else {
                Kind::Label(pairs)
            }
        }
        "maintainer" => {
            no_flags(node)?;
            Kind::Maintainer(single(node, "MAINTAINER")?)
        }
        "run" => {
            let flags = Flags::parse(node, &["mount", "network", "security"])?;
            Kind::Run {
                cmd: cmdline(&node.args),
                heredocs: heredocs(node),
                mounts: flags.values("mount"),
                network: flags.value("network"),
                security: flags.value("security"),
            }
        }
        "cmd" => {
            no_flags(node)?;
            Kind::Cmd(cmdline(&node.args))
        }
        "entrypoint" => {
            no_flags(node)?;
            Kind::Entrypoint(cmdline(&node.args))
        }
        "copy" | "add" => {
            let is_add = command == "add";
            let allowed: &[&str] = if is_add {
                &[
                    "chown",
                    "chmod",
                    "link",
                    "exclude",
                    "checksum",
                    "keep-git-dir",
                    "unpack",
                ]
            } else {
                &["from", "chown", "chmod", "link", "parents", "exclude"]
            };
            let flags = Flags::parse(node, allowed)?;
            let words = match &node.args {
                Args::Words(w) | Args::Json(w) => values(w),
                _ => Vec::new(),
            };
            if words.len() < 2 {
                return Err(Diagnostic::error(
                    format!(
                        "{} requires at least two arguments, but only {} provided",
                        command.to_uppercase(),
                        words.len()
                    ),
                    span,
                ));
            }
            let dest = words[words.len() - 1].clone();
            let docs = heredocs(node);
            let mut sources = Vec::new();
            let mut used = Vec::new();
            for src in &words[..words.len() - 1] {
                match heredoc_marker(src).and_then(|name| docs.iter().find(|d| d.name == name)) {
                    Some(doc) if !node.is_json() => used.push(doc.clone()),
                    _ => sources.push(src.clone()),
                }
            }
            let args = CopyArgs {
                sources,
                dest,
                heredocs: used,
                from: flags.value("from"),
                chown: flags.value("chown"),
                chmod: flags.value("chmod"),
                link: flags.bool("link")?.unwrap_or(false),
                parents: flags.bool("parents")?.unwrap_or(false),
                excludes: flags.values("exclude"),
                checksum: flags.value("checksum"),
                keep_git_dir: flags.bool("keep-git-dir")?,
                unpack: flags.bool("unpack")?,
            };
            if is_add {
                Kind::Add(args)
            } else {
                Kind::Copy(args)
            }
        }
        "workdir" => {
            no_flags(node)?;
            Kind::Workdir(single(node, "WORKDIR")?)
        }
        "user" => {
            no_flags(node)?;
            Kind::User(single(node, "USER")?)
        }
        "stopsignal" => {
            no_flags(node)?;
            Kind::StopSignal(single(node, "STOPSIGNAL")?)
        }
        "volume" => {
            no_flags(node)?;
            match &node.args {
                Args::Words(w) | Args::Json(w) if !w.is_empty() => Kind::Volume(values(w)),
                _ => {
                    return Err(Diagnostic::error(
                        "VOLUME requires at least one argument",
                        span,
                    ));
                }
            }
        }
        "expose" => {
            no_flags(node)?;
            match &node.args {
                Args::Words(w) if !w.is_empty() => Kind::Expose(values(w)),
                _ => {
                    return Err(Diagnostic::error(
                        "EXPOSE requires at least one argument",
                        span,
                    ));
                }
            }
        }
        "shell" => {
            no_flags(node)?;
            match &node.args {
                Args::Json(w) if !w.is_empty() => Kind::Shell(values(w)),
                _ => {
                    return Err(Diagnostic::error(
                        "SHELL requires the arguments to be in JSON form",
                        span,
                    ));
                }
            }
        }
        "healthcheck" => {
            let flags = Flags::parse(
                node,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
            )?;
            let Args::Healthcheck { kind, args } = &node.args else {
                return Err(Diagnostic::error("HEALTHCHECK requires an argument", span));
            };
            match kind.value.to_ascii_uppercase().as_str() {
                "NONE" => {
                    let empty = matches!(&**args, Args::Words(w) if w.is_empty());
                    if !empty || !node.flags.is_empty() {
                        return Err(Diagnostic::error(
                            "HEALTHCHECK NONE takes no arguments",
                            span,
                        ));
                    }
                    Kind::Healthcheck(None)
                }
                "CMD" => Kind::Healthcheck(Some(HealthArgs {
                    cmd: Some(cmdline(args)),
                    interval: flags.value("interval"),
                    timeout: flags.value("timeout"),
                    start_period: flags.value("start-period"),
                    start_interval: flags.value("start-interval"),
                    retries: flags.value("retries"),
                })),
                other => {
                    return Err(Diagnostic::error(
                        format!("unknown type for healthcheck command: {other}"),
                        kind.span,
                    ));
                }
            }
        }
        "onbuild" => {
            no_flags(node)?;
            let Args::Onbuild(inner) = &node.args else {
                return Err(Diagnostic::error(
                    "ONBUILD requires at least one argument",
                    span,
                ));
            };
            let inner_cmd = inner.command();
            if matches!(inner_cmd.as_str(), "onbuild" | "from" | "maintainer") {
                return Err(Diagnostic::error(
                    format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        inner_cmd.to_uppercase()
                    ),
                    span,
                ));
            }
            // The trigger keeps its heredoc bodies so it can be re-parsed on its own later.
            let mut expr = inner.original.clone();
            for doc in &node.heredocs {
                expr.push('\n');
                expr.push_str(&doc.content);
                expr.push_str(&doc.name);
            }
            Kind::Onbuild(expr)
        }
        _ => {
            let mut d = Diagnostic::error(
                format!("unknown instruction: {}", node.keyword.value),
                node.keyword.span,
            );
            if let Some(help) = did_you_mean(&node.keyword.value, INSTRUCTIONS) {
                d = d.with_help(help);
            }
            return Err(d);
        }
    };
    Ok(Instr {
        span,
        original: node.original.clone(),
        kind,
    })
}

/// The heredoc name a COPY/ADD source word refers to (`<<EOF`, `<<-"EOF"`).
fn heredoc_marker(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    (!name.is_empty()).then(|| name.to_owned())
}
