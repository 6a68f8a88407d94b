//! The lowering's driver: build options and the resolver in; global ARGs, stages resolved,
//! only the stages `--target` needs dispatched; the target's graph and image config out.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use kiln_llb::image::format_rfc3339;
use kiln_llb::{Definition, Platform};

use super::lint::check_config;
use super::stage::{Base, Stage, stage_infos, stage_name};
use crate::checks::Checker;
use crate::diagnostic::{Diagnostic, Severity, Span};
use crate::instructions::{
    self, Dockerfile, Instruction as Instr, InstructionKind as Kind, ShellOrExec, Word,
};
use crate::lower::{BuildOptions, ImageResolver, Lowered, Outline, OutlineArg};
use crate::shell::Lexer;

/// The comment BuildKit puts on every history entry it writes.
pub(super) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
/// Build args that become proxy settings of RUN steps, kept out of cache keys and history.
const PROXY_ARGS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

pub(super) fn is_proxy(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

pub(super) type Result<T> = std::result::Result<T, Diagnostic>;

pub(super) fn error(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::error(message, span)
}

pub(super) fn bug(message: impl std::fmt::Display, span: Span) -> Diagnostic {
    error(format!("this is a bug in kiln: {message}"), span)
}

pub(super) fn suggestion(value: &str, options: &[String]) -> Option<String> {
    let value_lower = value.to_ascii_lowercase();
    options
        .iter()
        .map(|o| {
            (
                strsim::levenshtein(&value_lower, &o.to_ascii_lowercase()),
                o,
            )
        })
        .filter(|(d, o)| *d > 0 && *d <= 2.max(o.len() / 3))
        .min()
        .map(|(_, o)| format!("did you mean {o}?"))
}

/// One lowering in progress: the graph so far, every stage's state, and the values in scope.
/// Its methods are spread over the modules of `lower`, one job each.
pub(super) struct Lowering<'a> {
    pub(super) opts: &'a BuildOptions,
    pub(super) resolver: &'a dyn ImageResolver,
    pub(super) lexer: Lexer,
    pub(super) def: Definition,
    /// The Dockerfile's index in the source map.
    pub(super) file: usize,
    pub(super) target_platform: Platform,
    /// Global ARGs (before the first FROM) and the automatic platform ARGs, with their values.
    pub(super) global_args: Vec<(String, String)>,
    /// `--build-arg`s, the last value of each name.
    pub(super) build_args: BTreeMap<String, String>,
    /// SOURCE_DATE_EPOCH, for history and `created` times and WORKDIR's timestamps.
    pub(super) epoch: Option<i64>,
    /// Proxy build args, handed to RUN steps as metadata (outside the cache key).
    pub(super) proxy_env: Vec<(String, String)>,
    pub(super) stages: Vec<Stage>,
    pub(super) outline: Outline,
    /// `RUN --mount=type=ssh` without a target so far in the current RUN, for their default
    /// paths.
    pub(super) ssh_count: usize,
    /// The build checks' configuration and findings (shared: words are expanded through `&self`).
    pub(super) checker: RefCell<Checker>,
}

/// ARG's names with their unexpanded defaults.
pub(super) fn arg_pairs(arg: &instructions::Arg) -> Vec<(String, Option<String>)> {
    arg.args
        .iter()
        .map(|a| {
            (
                a.name.value.clone(),
                a.value.as_ref().map(|v| v.value.clone()),
            )
        })
        .collect()
}

pub(super) fn values(words: &[Word]) -> Vec<String> {
    words.iter().map(|w| w.value.clone()).collect()
}

/// Whether the step is counted in progress names (`[stage 2/4]`), as BuildKit counts.
fn counted(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Run(_) | Kind::Copy(_) | Kind::Add(_) | Kind::Workdir(_)
    )
}

/// A command's arguments and whether it is in shell form (to be wrapped with SHELL).
pub(super) fn command_args(cmd: &ShellOrExec) -> (Vec<String>, bool) {
    match cmd {
        ShellOrExec::Shell(w) => (vec![w.value.clone()], true),
        ShellOrExec::Exec(words) => (values(words), false),
    }
}

/// Lowers a parsed Dockerfile (`source` is its text, for the source map).
pub(super) fn lower_program(
    program: &Dockerfile,
    source: &[u8],
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered> {
    if program.stages.is_empty() {
        let span = program
            .meta_args
            .last()
            .map_or_else(|| Span::lines(1, 1), |a| a.span);
        return Err(error("dockerfile contains no stages to build", span));
    }
    let mut build_args = BTreeMap::new();
    for (k, v) in &opts.build_args {
        build_args.insert(k.clone(), v.clone());
    }
    let target_platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut def = Definition::new();
    let file = def
        .source_map_mut()
        .add_file(opts.dockerfile_name.clone(), source.to_vec());
    let proxy_env = build_args
        .iter()
        .filter(|(k, _)| is_proxy(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut l = Lowering {
        opts,
        resolver,
        lexer: Lexer::new(program.escape),
        def,
        file,
        target_platform,
        global_args: Vec::new(),
        build_args,
        epoch: None,
        proxy_env,
        stages: Vec::new(),
        outline: Outline::default(),
        ssh_count: 0,
        checker: RefCell::new(Checker::new(
            check_config(program, &opts.build_args)?,
            &opts.dockerfile_name,
        )),
    };
    l.outline.stages = stage_infos(program);
    l.lint_program(program);
    let result = l.run(program);
    let checker = l.checker.into_inner();
    let failure = checker.failure();
    let warnings = checker.into_sorted();
    match (result, failure) {
        (Ok(mut lowered), None) => {
            lowered.warnings = warnings;
            Ok(lowered)
        }
        // `--check` reports what it found and the error together.
        (result, failure) if opts.check_only => {
            let error = match result {
                Err(d) => Some(d),
                Ok(_) => failure.map(|f| Diagnostic::new(Severity::Error, f, None)),
            };
            Ok(Lowered {
                definition: Definition::new(),
                config: Default::default(),
                outline: Outline::default(),
                warnings,
                check_error: error.map(Box::new),
            })
        }
        (Err(d), _) => Err(d),
        // `check=error=true`: the build fails, naming every violation.
        (Ok(_), Some(failure)) => {
            let mut d = Diagnostic::new(Severity::Error, failure, None);
            for w in &warnings {
                d = d.with_note(w.short());
            }
            Err(d)
        }
    }
}

impl Lowering<'_> {
    /// The whole lowering, in BuildKit's order (see `docs/dev/lowering.md`).
    fn run(&mut self, program: &Dockerfile) -> Result<Lowered> {
        let last_name = program.stages.last().and_then(stage_name);
        let target_name = self
            .opts
            .target
            .clone()
            .map(|t| t.to_ascii_lowercase())
            .or(last_name);
        self.outline.target = target_name.clone().unwrap_or_else(|| "default".to_owned());
        self.global_args = self.default_args(target_name.as_deref().unwrap_or("default"));
        self.lint_default_from_args(program);
        self.meta_args(program)?;
        self.epoch = self.source_date_epoch()?;
        self.build_stages(program)?;
        let target = self.find_target()?;
        self.find_dependencies()?;
        let mut reachable = self.resolve_reachable(target)?;
        if self.opts.check_only && self.opts.target.is_none() {
            // `--check` without a target lowers every stage, so every instruction is checked.
            for t in 0..program.stages.len() {
                let more = self.resolve_reachable(t)?;
                reachable.extend(more);
            }
        }
        let stage_count = self.stages.len();
        for (i, stage) in self.stages.iter_mut().enumerate() {
            stage.progress_name = match (&stage.lookup, stage_count) {
                (_, 1) => String::new(),
                (Some(name), _) => name.clone(),
                (None, _) => format!("stage-{i}"),
            };
            let from_counts = matches!(stage.base, Some(Base::Image { .. }));
            stage.cmd_total = if stage.def.is_none() {
                0
            } else {
                usize::from(from_counts)
                    + stage
                        .commands
                        .iter()
                        .filter(|c| c.onbuild || counted(&c.instr.kind))
                        .count()
            };
            stage.ignore_cache = self.opts.no_cache
                || stage.lookup.as_ref().is_some_and(|n| {
                    self.opts
                        .no_cache_filter
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case(n))
                });
        }
        self.collect_outline_args(program, &reachable);
        for i in 0..self.stages.len() {
            if reachable.contains(&i) {
                self.dispatch_stage(i)?;
            }
        }
        let target_state = self.stages[target]
            .state
            .clone()
            .ok_or_else(|| bug("target stage was not dispatched", self.stages[target].span))?;
        let mut config = target_state.image;
        for (k, v) in &self.opts.labels {
            config.config.labels.insert(k.clone(), v.clone());
        }
        config.os = self.target_platform.os.clone();
        config.architecture = self.target_platform.architecture.clone();
        config.variant = self.target_platform.variant.clone();
        if let Some(epoch) = self.epoch {
            config.created = Some(format_rfc3339(epoch, 0));
        }
        self.def
            .set_root(target_state.fs)
            .map_err(|e| bug(e, self.stages[target].span))?;
        Ok(Lowered {
            definition: self.def.pruned(),
            config,
            outline: std::mem::take(&mut self.outline),
            warnings: Vec::new(),
            check_error: None,
        })
    }

    /// The automatic platform ARGs and TARGETSTAGE, overridable by build args.
    fn default_args(&self, target: &str) -> Vec<(String, String)> {
        let build = Platform::host();
        let tp = &self.target_platform;
        let pairs = [
            ("BUILDPLATFORM", build.to_string()),
            ("BUILDOS", build.os.clone()),
            ("BUILDOSVERSION", String::new()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
            ("TARGETPLATFORM", tp.to_string()),
            ("TARGETOS", tp.os.clone()),
            ("TARGETOSVERSION", String::new()),
            ("TARGETARCH", tp.architecture.clone()),
            ("TARGETVARIANT", tp.variant.clone().unwrap_or_default()),
            ("TARGETSTAGE", target.to_owned()),
        ];
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), self.build_args.get(k).cloned().unwrap_or(v)))
            .collect()
    }

    /// Global ARGs (before the first FROM): defaults expand against earlier globals; a build
    /// arg replaces the default without evaluating it.
    fn meta_args(&mut self, program: &Dockerfile) -> Result<()> {
        for instr in &program.meta_args {
            let Kind::Arg(arg) = &instr.kind else {
                continue;
            };
            for (key, default) in &arg_pairs(arg) {
                let value = match (self.build_args.get(key), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => {
                        Some(self.expand_with(d, &self.global_args.clone(), instr.span)?)
                    }
                    (None, None) => None,
                };
                if let Some(v) = value {
                    set_pair(&mut self.global_args, key, &v);
                }
            }
        }
        Ok(())
    }

    /// SOURCE_DATE_EPOCH from the options, else from a build arg or global ARG.
    fn source_date_epoch(&self) -> Result<Option<i64>> {
        if let Some(e) = self.opts.source_date_epoch {
            return Ok(Some(e));
        }
        let value = match self.build_args.get("SOURCE_DATE_EPOCH") {
            Some(v) => Some(v.clone()),
            None => get_pair(&self.global_args, "SOURCE_DATE_EPOCH")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        };
        match value {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                Diagnostic::new(
                    Severity::Error,
                    format!("invalid SOURCE_DATE_EPOCH: {v}"),
                    None,
                )
            }),
        }
    }

    /// The ARGs `--print=outline` lists: the global ones, then those of the stages the target
    /// needs, each name once.
    fn collect_outline_args(&mut self, program: &Dockerfile, reachable: &BTreeSet<usize>) {
        let mut seen = BTreeSet::new();
        let mut args = Vec::new();
        let mut push =
            |instr: &Instr, key: &str, default: &Option<String>, value: Option<String>| {
                if seen.insert(key.to_owned()) {
                    args.push(OutlineArg {
                        name: key.to_owned(),
                        default: default.clone(),
                        value,
                        description: None,
                        line: instr.span.start.line,
                    });
                }
            };
        for instr in &program.meta_args {
            if let Kind::Arg(arg) = &instr.kind {
                for (k, d) in &arg_pairs(arg) {
                    push(
                        instr,
                        k,
                        d,
                        get_pair(&self.global_args, k).map(str::to_owned),
                    );
                }
            }
        }
        for &i in reachable {
            let Some(d) = self.stages[i].def else {
                continue;
            };
            for instr in &program.stages[d].instructions {
                if let Kind::Arg(arg) = &instr.kind {
                    for (k, default) in &arg_pairs(arg) {
                        push(
                            instr,
                            k,
                            default,
                            self.build_args.get(k).cloned().or_else(|| default.clone()),
                        );
                    }
                }
            }
        }
        self.outline.args = args;
    }
}

/// Sets `key` in an ordered list of pairs, in place when it is there.
pub(super) fn set_pair(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => list.push((key.to_owned(), value.to_owned())),
    }
}

pub(super) fn get_pair<'a>(list: &'a [(String, String)], key: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
