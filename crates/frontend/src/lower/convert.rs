//! The lowering proper: stages, ARG/ENV scoping, each instruction's graph ops and its effect on
//! the image config, following BuildKit's dockerfile2llb semantics.

use std::collections::{BTreeMap, BTreeSet};

use kiln_llb::image::{Healthcheck, History, ImageConfig, RunConfig, format_rfc3339};
use kiln_llb::{
    CacheSharing, CopyAction, Definition, ExecOp, FileAction, FileMode, FileOp, GitSource,
    HttpSource, ImageSource, Input, LocalSource, MergeOp, MkdirAction, MkfileAction, Mount,
    MountKind, MountSource, NetworkMode, Op, OpMetadata, Owner, Platform, SecretEnv, SecurityMode,
    SourceLocation, SourceOp,
};

use crate::diagnostic::{Diagnostic, Severity, Span};
use crate::instructions::{
    self, Add, Copy, Dockerfile, Healthcheck as HealthInstr, Instruction as Instr,
    InstructionKind as Kind, Run, ShellOrExec, Source, Word,
};
use crate::lower::mounts::{self, MountError, ParsedMount};
use crate::lower::util::{
    clean, default_path_env, dest_path, format_go_duration, git_ref, go_list, go_quote_list,
    is_http, join, normalize_image_ref, parse_ports, valid_signal,
};
use crate::lower::{
    BuildOptions, ImageResolver, Lowered, Outline, OutlineArg, OutlineMount, ResolvedImage,
    StageInfo,
};
use crate::shell::Lexer;
use crate::syntax;

/// The comment BuildKit puts on every history entry it writes.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
/// Build args that become proxy settings of RUN steps, kept out of cache keys and history.
const PROXY_ARGS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

fn is_proxy(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

type Result<T> = std::result::Result<T, Diagnostic>;

fn error(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::error(message, span)
}

fn bug(message: impl std::fmt::Display, span: Span) -> Diagnostic {
    error(format!("this is a bug in kiln: {message}"), span)
}

fn suggestion(value: &str, options: &[String]) -> Option<String> {
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

/// What a stage starts from.
#[derive(Debug, Clone)]
enum Base {
    Scratch,
    Image {
        resolved: ResolvedImage,
        scratch_like: bool,
    },
    Stage(usize),
}

/// One instruction to dispatch, with the stages it reads from (`COPY --from`, mounts).
#[derive(Debug, Clone)]
struct Command {
    instr: Instr,
    onbuild: bool,
}

/// The dispatch state of a stage: its filesystem so far and everything that is not files.
#[derive(Debug, Clone)]
struct State {
    fs: Input,
    /// The environment RUN sees: the image's Env plus ARGs in scope.
    env: Vec<(String, String)>,
    cwd: String,
    user: String,
    image: ImageConfig,
    /// ARGs declared in this stage (and its base stages), for RUN history entries.
    build_args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

#[derive(Debug)]
struct Stage {
    /// Index into `Dockerfile::stages`, `None` for an image named only by `--from`.
    def: Option<usize>,
    base_name: String,
    /// Name used for lookups (`AS` name, lowercase).
    lookup: Option<String>,
    /// Name in progress messages: the `AS` name or `stage-N`, empty when there is one stage.
    progress_name: String,
    platform: Option<Platform>,
    span: Span,
    base: Option<Base>,
    commands: Vec<Command>,
    /// Stages read through `COPY --from` or `RUN --mount=from=`.
    deps: BTreeSet<usize>,
    triggers_done: bool,
    /// ONBUILD expressions of this stage, the triggers of stages built on it.
    onbuild: Vec<String>,
    cmd_total: usize,
    /// Counted steps dispatched so far, for `[stage i/n]`.
    cmd_index: usize,
    ignore_cache: bool,
    state: Option<State>,
}

struct Lowering<'a> {
    opts: &'a BuildOptions,
    resolver: &'a dyn ImageResolver,
    lexer: Lexer,
    def: Definition,
    file: usize,
    target_platform: Platform,
    global_args: Vec<(String, String)>,
    build_args: BTreeMap<String, String>,
    epoch: Option<i64>,
    proxy_env: Vec<(String, String)>,
    stages: Vec<Stage>,
    outline: Outline,
    ssh_count: usize,
}

/// The stage list for `--print=targets`.
pub(crate) fn stage_infos(program: &Dockerfile) -> Vec<StageInfo> {
    program
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| StageInfo {
            name: stage_name(s).unwrap_or_else(|| format!("stage-{i}")),
            named: s.from.name.is_some(),
            base: s.from.image.value.clone(),
            platform: s.from.platform.as_ref().map(|p| p.value.clone()),
            description: (!s.comments.is_empty()).then(|| {
                s.comments
                    .iter()
                    .map(|c| c.trim())
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            line: s.span.start.line,
        })
        .collect()
}

/// The `AS` name of a stage (already lowercased by `instructions`).
fn stage_name(stage: &instructions::Stage) -> Option<String> {
    stage.from.name.as_ref().map(|n| n.value.clone())
}

/// ARG's names with their unexpanded defaults.
fn arg_pairs(arg: &instructions::Arg) -> Vec<(String, Option<String>)> {
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

fn values(words: &[Word]) -> Vec<String> {
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
fn command_args(cmd: &ShellOrExec) -> (Vec<String>, bool) {
    match cmd {
        ShellOrExec::Shell(w) => (vec![w.value.clone()], true),
        ShellOrExec::Exec(words) => (values(words), false),
    }
}

/// Parses an ONBUILD trigger's text (from a base image or stage) as one instruction located
/// at `span`, the FROM that runs it.
fn parse_trigger(text: &str, span: Span) -> Result<Instr> {
    let relocate = |d: Diagnostic| Diagnostic {
        span: Some(span),
        ..d
    };
    let ast = syntax::parse(text.as_bytes()).map_err(relocate)?;
    let [node] = ast.children.as_slice() else {
        return Err(error("onbuild trigger should be a single expression", span));
    };
    let mut instr = instructions::parse_instruction(node).map_err(relocate)?;
    if matches!(instr.kind, Kind::From(_)) {
        return Err(error("FROM isn't allowed as an ONBUILD trigger", span));
    }
    instr.span = span;
    Ok(instr)
}

/// ADD and COPY through one shape: lowering treats them alike except where `is_add` says.
struct CopySpec<'a> {
    is_add: bool,
    sources: &'a [Source],
    dest: &'a Word,
    from: Option<&'a Word>,
    chown: Option<&'a Word>,
    chmod: Option<&'a Word>,
    link: bool,
    parents: bool,
    exclude: &'a [Word],
    checksum: Option<&'a Word>,
    keep_git_dir: Option<bool>,
    unpack: Option<bool>,
}

impl<'a> CopySpec<'a> {
    fn add(a: &'a Add) -> CopySpec<'a> {
        CopySpec {
            is_add: true,
            sources: &a.sources,
            dest: &a.dest,
            from: None,
            chown: a.chown.as_ref(),
            chmod: a.chmod.as_ref(),
            link: a.link,
            parents: false,
            exclude: &a.exclude,
            checksum: a.checksum.as_ref(),
            keep_git_dir: a.keep_git_dir,
            unpack: a.unpack,
        }
    }

    fn copy(c: &'a Copy) -> CopySpec<'a> {
        CopySpec {
            is_add: false,
            sources: &c.sources,
            dest: &c.dest,
            from: c.from.as_ref(),
            chown: c.chown.as_ref(),
            chmod: c.chmod.as_ref(),
            link: c.link,
            parents: c.parents,
            exclude: &c.exclude,
            checksum: None,
            keep_git_dir: None,
            unpack: None,
        }
    }
}

pub(crate) fn lower_program(
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
    };
    l.outline.stages = stage_infos(program);
    l.run(program)
}

impl Lowering<'_> {
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
        self.meta_args(program)?;
        self.epoch = self.source_date_epoch(program)?;
        self.build_stages(program)?;
        let target = self.find_target()?;
        self.find_dependencies()?;
        let reachable = self.resolve_reachable(target)?;
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
        })
    }

    /// The automatic platform ARGs and TARGETSTAGE, overridable by build args.
    fn default_args(&self, target: &str) -> Vec<(String, String)> {
        let build = Platform::host();
        let tp = &self.target_platform;
        let pairs = [
            ("BUILDPLATFORM", platform_string(&build)),
            ("BUILDOS", build.os.clone()),
            ("BUILDOSVERSION", String::new()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
            ("TARGETPLATFORM", platform_string(tp)),
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

    fn source_date_epoch(&self, _program: &Dockerfile) -> Result<Option<i64>> {
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

    fn build_stages(&mut self, program: &Dockerfile) -> Result<()> {
        for (i, def) in program.stages.iter().enumerate() {
            let globals = self.global_args.clone();
            let base = &def.from.image.value;
            let base_name = self.expand_with(base, &globals, def.span)?;
            if base_name.is_empty() {
                return Err(error(
                    format!("base name ({base}) should not be blank"),
                    def.span,
                ));
            }
            let platform = match def.from.platform.as_ref().map(|p| &p.value) {
                None => None,
                Some(p) => {
                    let v = self.expand_with(p, &globals, def.span)?;
                    if v.is_empty() {
                        return Err(error(
                            format!("empty platform value from expression {p}"),
                            def.span,
                        ));
                    }
                    Some(Platform::parse(&v).map_err(|e| {
                        error(format!("failed to parse platform {p}: {e}"), def.span)
                    })?)
                }
            };
            let base_lower = base_name.to_ascii_lowercase();
            let base_stage = self
                .stages
                .iter()
                .position(|s| s.lookup.as_deref() == Some(base_lower.as_str()));
            let commands = def
                .instructions
                .iter()
                .map(|instr| Command {
                    instr: instr.clone(),
                    onbuild: false,
                })
                .collect();
            let onbuild = def
                .instructions
                .iter()
                .filter_map(|instr| match &instr.kind {
                    Kind::Onbuild(o) => Some(o.expression.clone()),
                    _ => None,
                })
                .collect();
            self.stages.push(Stage {
                def: Some(i),
                base_name,
                lookup: stage_name(def),
                progress_name: String::new(),
                platform,
                span: def.span,
                base: base_stage.map(Base::Stage),
                commands,
                deps: BTreeSet::new(),
                triggers_done: false,
                onbuild,
                cmd_total: 0,
                cmd_index: 0,
                ignore_cache: false,
                state: None,
            });
        }
        Ok(())
    }

    fn find_target(&self) -> Result<usize> {
        let Some(target) = &self.opts.target else {
            return Ok(self.stages.len() - 1);
        };
        let lower = target.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.lookup.as_deref() == Some(lower.as_str()))
        {
            return Ok(i);
        }
        let names: Vec<String> = self
            .stages
            .iter()
            .filter_map(|s| s.lookup.clone())
            .collect();
        let mut d = Diagnostic::new(
            Severity::Error,
            format!("target stage {target:?} could not be found"),
            None,
        );
        if let Some(help) = suggestion(target, &names) {
            d = d.with_help(help);
        }
        Err(d)
    }

    /// Finds a stage by `--from` value: a stage index, a stage name, or else an image (a new
    /// implicit stage).
    fn stage_ref(&mut self, from: &str, span: Span) -> Result<usize> {
        if let Ok(index) = from.parse::<i64>() {
            let known = self.stages.iter().filter(|s| s.def.is_some()).count() as i64;
            if index < 0 || index >= known {
                return Err(error(format!("invalid stage index {index}"), span));
            }
            return Ok(index as usize);
        }
        let lower = from.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.lookup.as_deref() == Some(lower.as_str()))
        {
            return Ok(i);
        }
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.def.is_none() && s.base_name == from)
        {
            return Ok(i);
        }
        self.stages.push(Stage {
            def: None,
            base_name: from.to_owned(),
            lookup: None,
            progress_name: String::new(),
            platform: None,
            span,
            base: None,
            commands: Vec::new(),
            deps: BTreeSet::new(),
            triggers_done: true,
            onbuild: Vec::new(),
            cmd_total: 0,
            cmd_index: 0,
            ignore_cache: false,
            state: None,
        });
        Ok(self.stages.len() - 1)
    }

    /// The stages a command reads from.
    fn command_sources(&mut self, instr: &Instr) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        match &instr.kind {
            Kind::Copy(copy) => {
                if let Some(from) = copy.from.as_ref().map(|w| &w.value) {
                    let expanded = Lexer::new(self.lexer.escape())
                        .process_word(from, &Vec::<(String, String)>::new())
                        .map_err(|e| error(e.to_string(), instr.span))?;
                    if expanded != *from {
                        return Err(error(
                            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                            instr.span,
                        ));
                    }
                    out.push(self.stage_ref(from, instr.span)?);
                }
            }
            Kind::Run(run) => {
                for m in &run.mounts {
                    let from =
                        mounts::mount_from(&m.value).map_err(|e| mount_diag(e, instr.span))?;
                    if let Some(from) = from {
                        out.push(self.stage_ref(&from, instr.span)?);
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    fn find_dependencies(&mut self) -> Result<()> {
        for i in 0..self.stages.len() {
            let instrs: Vec<Instr> = self.stages[i]
                .commands
                .iter()
                .map(|c| c.instr.clone())
                .collect();
            for instr in &instrs {
                let sources = self.command_sources(instr)?;
                self.stages[i].deps.extend(sources);
            }
        }
        Ok(())
    }

    fn reachable_from(&self, target: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !seen.insert(i) {
                continue;
            }
            if let Some(Base::Stage(b)) = self.stages[i].base {
                todo.push(b);
            }
            todo.extend(self.stages[i].deps.iter().copied());
        }
        seen
    }

    /// Resolves the bases of every stage the target needs and runs ONBUILD trigger setup,
    /// repeating while triggers add dependencies.
    fn resolve_reachable(&mut self, target: usize) -> Result<BTreeSet<usize>> {
        loop {
            let reachable = self.reachable_from(target);
            for &i in &reachable {
                if self.stages[i].base.is_none() {
                    let base = self.resolve_base(i)?;
                    self.stages[i].base = Some(base);
                }
            }
            let mut new_deps = false;
            for &i in &reachable {
                if self.stages[i].triggers_done {
                    continue;
                }
                self.stages[i].triggers_done = true;
                let triggers = match &self.stages[i].base {
                    Some(Base::Image { resolved, .. }) => resolved.config.config.on_build.clone(),
                    Some(Base::Stage(b)) => self.stages[*b].onbuild.clone(),
                    _ => Vec::new(),
                };
                if triggers.is_empty() {
                    continue;
                }
                let span = self.stages[i].span;
                let mut commands = Vec::new();
                for trigger in &triggers {
                    let instr = parse_trigger(trigger, span)?;
                    let sources = self.command_sources(&instr)?;
                    for s in sources {
                        new_deps |= self.stages[i].deps.insert(s);
                    }
                    commands.push(Command {
                        instr,
                        onbuild: true,
                    });
                }
                commands.append(&mut self.stages[i].commands);
                self.stages[i].commands = commands;
            }
            if !new_deps {
                return Ok(reachable);
            }
        }
    }

    fn resolve_base(&mut self, i: usize) -> Result<Base> {
        let stage = &self.stages[i];
        if stage.base_name == "scratch" {
            return Ok(Base::Scratch);
        }
        let span = stage.span;
        let orig = stage.base_name.clone();
        let Some(reference) = normalize_image_ref(&orig) else {
            return Err(error(
                format!("failed to parse stage name {orig:?}: invalid reference format"),
                span,
            ));
        };
        let platform = stage
            .platform
            .clone()
            .unwrap_or_else(|| self.target_platform.clone());
        match self.resolver.resolve(&reference, &platform) {
            Ok(mut resolved) => {
                resolved.config.created = None;
                // A base's inline build cache describes the base's build, not this one.
                resolved.config.inline_cache = None;
                let scratch_like = resolved.config.rootfs.diff_ids.is_empty()
                    && resolved.config.history.iter().all(|h| h.empty_layer);
                Ok(Base::Image {
                    resolved,
                    scratch_like,
                })
            }
            Err(e) => {
                let names: Vec<String> = self
                    .stages
                    .iter()
                    .filter_map(|s| s.lookup.clone())
                    .collect();
                let mut d = error(format!("{orig}: {e}"), span);
                if let Some(help) = suggestion(&orig, &names) {
                    d = d.with_help(help);
                }
                Err(d)
            }
        }
    }

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

    // ---- vertices -------------------------------------------------------------------------

    fn add(&mut self, op: Op, meta: OpMetadata, span: Option<Span>) -> Result<Input> {
        let at = span.unwrap_or_else(|| Span::lines(1, 1));
        let digest = self
            .def
            .add_with_metadata(op, meta)
            .map_err(|e| bug(e, at))?;
        if let Some(span) = span {
            let range = kiln_llb::Range {
                start: kiln_llb::Position {
                    line: span.start.line,
                    column: span.start.column,
                },
                end: kiln_llb::Position {
                    line: span.end.line,
                    column: span.end.column,
                },
            };
            self.def.source_map_mut().add_location(
                digest,
                SourceLocation {
                    file: self.file,
                    ranges: vec![range],
                },
            );
        }
        Ok(Input::new(digest))
    }

    fn scratch(&mut self) -> Result<Input> {
        self.add(Op::Source(SourceOp::Scratch), OpMetadata::default(), None)
    }

    fn meta(&self, stage: usize, name: String, original: Option<&str>) -> OpMetadata {
        let s = &self.stages[stage];
        let mut meta = OpMetadata {
            name: Some(name),
            ignore_cache: s.ignore_cache,
            stage: s
                .lookup
                .clone()
                .or_else(|| Some(s.progress_name.clone()).filter(|n| !n.is_empty())),
            ..OpMetadata::default()
        };
        if let Some(original) = original {
            meta.description.insert(
                "com.docker.dockerfile.v1.command".to_owned(),
                original.to_owned(),
            );
        }
        meta
    }

    /// The progress name of the next counted step: `[stage-1 2/4] RUN make`.
    fn step_name(&mut self, stage: usize, text: &str, onbuild: bool) -> String {
        let s = &mut self.stages[stage];
        if s.cmd_total == 0 {
            return text.to_owned();
        }
        s.cmd_index += 1;
        let index = s.cmd_index;
        let width = s.cmd_total.to_string().len();
        let mut out = String::from("[");
        if !s.progress_name.is_empty() {
            out.push_str(&s.progress_name);
            out.push(' ');
        }
        out.push_str(&format!("{index:>width$}/{}] ", s.cmd_total));
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out.push_str(text);
        out
    }

    /// The instruction text for progress names: variables expanded where set (quotes kept),
    /// the keyword uppercased.
    fn display_text(&self, original: &str, env: &[(String, String)]) -> String {
        let lexer = Lexer::new(self.lexer.escape())
            .with_raw_quotes(true)
            .with_skip_unset_env(true);
        let text = lexer
            .process_word(original, env)
            .unwrap_or_else(|_| original.to_owned());
        match text.split_once(' ') {
            Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
            None => text.to_ascii_uppercase(),
        }
    }

    // ---- expansion ------------------------------------------------------------------------

    fn expand_with(&self, word: &str, env: &[(String, String)], span: Span) -> Result<String> {
        self.lexer
            .process_word(word, env)
            .map_err(|e| error(e.to_string(), span))
    }

    fn expand(&self, stage: usize, word: &str, span: Span) -> Result<String> {
        let env = &self.state(stage).env;
        self.expand_with(word, env, span)
    }

    fn state(&self, stage: usize) -> &State {
        self.stages[stage]
            .state
            .as_ref()
            .expect("stage state exists while dispatching")
    }

    fn state_mut(&mut self, stage: usize) -> &mut State {
        self.stages[stage]
            .state
            .as_mut()
            .expect("stage state exists while dispatching")
    }

    fn history(&mut self, stage: usize, created_by: String, layer: bool) {
        let epoch = self.epoch;
        let st = self.state_mut(stage);
        st.image.history.push(History {
            created: epoch.map(|e| format_rfc3339(e, 0)),
            created_by,
            author: String::new(),
            comment: HISTORY_COMMENT.to_owned(),
            empty_layer: !layer,
        });
    }

    // ---- stages ---------------------------------------------------------------------------

    fn dispatch_stage(&mut self, i: usize) -> Result<()> {
        if self.stages[i].state.is_some() {
            return Ok(());
        }
        let span = self.stages[i].span;
        let base = self.stages[i]
            .base
            .clone()
            .ok_or_else(|| bug("stage base was not resolved", span))?;
        let stage_platform = self.stages[i]
            .platform
            .clone()
            .unwrap_or_else(|| self.target_platform.clone());
        let state = match base {
            // A stage built on an earlier stage continues from its state: files, ENV and
            // ARG values, WORKDIR, USER (BuildKit copies the whole llb state).
            Base::Stage(b) => {
                let mut st = self.stages[b]
                    .state
                    .clone()
                    .ok_or_else(|| bug("base stage was not dispatched", span))?;
                st.image.config.on_build.clear();
                st.cmd_set = false;
                st
            }
            Base::Scratch => {
                let fs = self.scratch()?;
                from_image(fs, empty_image(&stage_platform))
            }
            Base::Image {
                resolved,
                scratch_like,
            } => {
                let mut image = resolved.config.clone();
                image.config.on_build.clear();
                let fs = if scratch_like {
                    self.scratch()?
                } else {
                    let reference = match resolved.digest {
                        Some(d) if !resolved.reference.contains('@') => {
                            format!("{}@{d}", resolved.reference)
                        }
                        _ => resolved.reference.clone(),
                    };
                    let name = self.step_name(i, &format!("FROM {reference}"), false);
                    let meta = self.meta(i, name, None);
                    let op = Op::Source(SourceOp::Image(ImageSource {
                        reference: resolved.reference.clone(),
                        digest: resolved.digest,
                        platform: stage_platform.clone(),
                    }));
                    self.add(op, meta, Some(span))?
                };
                from_image(fs, image)
            }
        };
        self.stages[i].state = Some(state);

        let commands = self.stages[i].commands.clone();
        for command in &commands {
            self.dispatch(i, command)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, i: usize, command: &Command) -> Result<()> {
        let instr = &command.instr;
        let span = instr.span;
        match &instr.kind {
            Kind::Arg(arg) => self.dispatch_arg(i, &arg_pairs(arg), span),
            Kind::Env(env) => {
                let mut expanded = Vec::new();
                for kv in &env.pairs {
                    expanded.push((
                        self.expand(i, &kv.key.value, span)?,
                        self.expand(i, &kv.value.value, span)?,
                    ));
                }
                let mut msg = String::from("ENV");
                let st = self.state_mut(i);
                for (k, v) in &expanded {
                    msg.push_str(&format!(" {k}={v}"));
                    set_pair(&mut st.env, k, v);
                    st.image.config.set_env(k, v);
                }
                self.history(i, msg, false);
                Ok(())
            }
            Kind::Label(label) => {
                let mut msg = String::from("LABEL");
                for kv in &label.pairs {
                    let k = self.expand(i, &kv.key.value, span)?;
                    let v = self.expand(i, &kv.value.value, span)?;
                    msg.push_str(&format!(" {k}={v}"));
                    self.state_mut(i).image.config.labels.insert(k, v);
                }
                self.history(i, msg, false);
                Ok(())
            }
            Kind::Maintainer(m) => {
                let m = &m.name.value;
                self.state_mut(i).image.author = Some(m.clone());
                self.history(i, format!("MAINTAINER {m}"), false);
                Ok(())
            }
            Kind::Workdir(w) => {
                let p = self.expand(i, &w.path.value, span)?;
                self.dispatch_workdir(i, &p, instr, command.onbuild)
            }
            Kind::User(u) => {
                let u = self.expand(i, &u.user.value, span)?;
                let st = self.state_mut(i);
                st.user = u.clone();
                st.image.config.user = u.clone();
                self.history(i, format!("USER {u}"), false);
                Ok(())
            }
            Kind::Volume(volume) => {
                let mut expanded = Vec::new();
                for v in &volume.paths {
                    let v = self.expand(i, &v.value, span)?;
                    if v.is_empty() {
                        return Err(error("VOLUME specified can not be an empty string", span));
                    }
                    expanded.push(v);
                }
                self.state_mut(i)
                    .image
                    .config
                    .volumes
                    .extend(expanded.iter().cloned());
                self.history(i, format!("VOLUME {}", go_list(&expanded)), false);
                Ok(())
            }
            Kind::Expose(expose) => {
                let mut words = Vec::new();
                for p in &expose.ports {
                    let env = self.state(i).env.clone();
                    words.extend(
                        self.lexer
                            .process_words(&p.value, &env)
                            .map_err(|e| error(e.to_string(), span))?,
                    );
                }
                let mut parsed = Vec::new();
                for w in &words {
                    parsed.extend(parse_ports(w).map_err(|e| error(e, span))?);
                }
                self.state_mut(i)
                    .image
                    .config
                    .exposed_ports
                    .extend(parsed.iter().cloned());
                self.history(i, format!("EXPOSE {}", go_list(&parsed)), false);
                Ok(())
            }
            Kind::Stopsignal(s) => {
                let s = self.expand(i, &s.signal.value, span)?;
                if !valid_signal(&s) {
                    return Err(error(format!("invalid signal: {s}"), span));
                }
                self.state_mut(i).image.config.stop_signal = s.clone();
                self.history(i, format!("STOPSIGNAL {s}"), false);
                Ok(())
            }
            Kind::Shell(shell) => {
                let shell = values(&shell.shell);
                self.history(i, format!("SHELL {}", go_list(&shell)), false);
                self.state_mut(i).image.config.shell = shell;
                Ok(())
            }
            Kind::Cmd(cmd) => {
                let (args, shell_form) = command_args(&cmd.cmd);
                let args = self.with_shell(i, args, shell_form);
                let st = self.state_mut(i);
                st.image.config.cmd = Some(args.clone());
                st.image.config.args_escaped = true;
                st.cmd_set = true;
                self.history(i, format!("CMD {}", go_quote_list(&args)), false);
                Ok(())
            }
            Kind::Entrypoint(cmd) => {
                let (args, shell_form) = command_args(&cmd.cmd);
                let args = self.with_shell(i, args, shell_form);
                let st = self.state_mut(i);
                st.image.config.entrypoint = Some(args.clone());
                if !st.cmd_set {
                    st.image.config.cmd = None;
                }
                self.history(i, format!("ENTRYPOINT {}", go_quote_list(&args)), false);
                Ok(())
            }
            Kind::Healthcheck(h) => self.dispatch_healthcheck(i, h),
            Kind::Onbuild(o) => {
                let expression = o.expression.clone();
                self.state_mut(i).image.config.on_build.push(expression);
                Ok(())
            }
            Kind::Run(run) => self.dispatch_run(i, command, run),
            Kind::Copy(copy) => self.dispatch_copy(i, command, &CopySpec::copy(copy)),
            Kind::Add(add) => self.dispatch_copy(i, command, &CopySpec::add(add)),
            // `instructions` starts a new stage at every FROM and triggers reject it.
            Kind::From(_) => Err(bug("FROM dispatched as a stage command", span)),
        }
    }

    /// A command's final argv: shell form is wrapped with the stage's SHELL.
    fn with_shell(&self, i: usize, args: Vec<String>, shell_form: bool) -> Vec<String> {
        if !shell_form {
            return args;
        }
        let st = self.state(i);
        let mut shell = if st.image.config.shell.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            st.image.config.shell.clone()
        };
        shell.push(args.join(" "));
        shell
    }

    fn dispatch_arg(
        &mut self,
        i: usize,
        args: &[(String, Option<String>)],
        span: Span,
    ) -> Result<()> {
        let mut commit = Vec::new();
        for (key, default) in args {
            let has_value = self.build_args.contains_key(key);
            let mut value = default.clone();
            let mut has_default = default.is_some();
            if !has_default
                && !has_value
                && let Some(v) = get_pair(&self.global_args, key)
            {
                value = Some(v.to_owned());
                has_default = false;
            }
            if has_value {
                value = self.build_args.get(key).cloned();
            } else if has_default && let Some(d) = &value {
                value = Some(self.expand(i, d, span)?);
            }
            let st = self.state_mut(i);
            if let Some(v) = &value
                && !is_proxy(key)
            {
                set_pair(&mut st.env, key, v);
            }
            st.build_args.push((key.clone(), value.clone()));
            if let Some(arg) = self
                .outline
                .args
                .iter_mut()
                .find(|a| &a.name == key && a.value.is_none())
            {
                arg.value = value.clone();
            }
            commit.push(match &value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            });
        }
        self.history(i, format!("ARG {}", commit.join(" ")), false);
        Ok(())
    }

    fn dispatch_workdir(
        &mut self,
        i: usize,
        path: &str,
        instr: &Instr,
        onbuild: bool,
    ) -> Result<()> {
        let st = self.state(i);
        let wd = if path.starts_with('/') {
            clean(path)
        } else {
            clean(&join(&st.cwd, path))
        };
        let user = st.user.clone();
        let env = st.env.clone();
        let base = st.fs;
        {
            let st = self.state_mut(i);
            st.cwd = wd.clone();
            st.image.config.working_dir = wd.clone();
        }
        let mut layer = false;
        if wd != "/" {
            let text = self.display_text(&instr.original, &env);
            let name = self.step_name(i, &text, onbuild);
            let meta = self.meta(i, name, Some(&instr.original));
            let op = Op::File(FileOp {
                base,
                actions: vec![FileAction::Mkdir(MkdirAction {
                    path: wd.clone(),
                    mode: 0o755,
                    make_parents: true,
                    owner: Owner::parse(&user),
                    timestamp: self.epoch,
                })],
            });
            let fs = self.add(op, meta, Some(instr.span))?;
            self.state_mut(i).fs = fs;
            layer = true;
        }
        self.history(i, format!("WORKDIR {wd}"), layer);
        Ok(())
    }

    fn dispatch_healthcheck(&mut self, i: usize, h: &HealthInstr) -> Result<()> {
        // `instructions` checked the durations (zero or at least 1ms) and retries.
        let nanos = |d: Option<std::time::Duration>| {
            d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        };
        let hc = match h {
            HealthInstr::None => Healthcheck {
                test: vec!["NONE".to_owned()],
                ..Healthcheck::default()
            },
            HealthInstr::Cmd(h) => {
                let test = match &h.cmd {
                    ShellOrExec::Shell(w) => vec!["CMD-SHELL".to_owned(), w.value.clone()],
                    ShellOrExec::Exec(words) => std::iter::once("CMD".to_owned())
                        .chain(words.iter().map(|w| w.value.clone()))
                        .collect(),
                };
                Healthcheck {
                    test,
                    interval: nanos(h.interval),
                    timeout: nanos(h.timeout),
                    start_period: nanos(h.start_period),
                    start_interval: nanos(h.start_interval),
                    retries: h.retries.map_or(0, i64::from),
                }
            }
        };
        let msg = format!(
            "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            go_list(&hc.test),
            format_go_duration(hc.interval),
            format_go_duration(hc.timeout),
            format_go_duration(hc.start_period),
            format_go_duration(hc.start_interval),
            hc.retries
        );
        self.state_mut(i).image.config.healthcheck = Some(hc);
        self.history(i, msg, false);
        Ok(())
    }

    fn dispatch_run(&mut self, i: usize, command: &Command, run: &Run) -> Result<()> {
        let span = command.instr.span;
        if let Some(device) = run.devices.first() {
            return Err(error("not supported yet: RUN --device", device.span));
        }
        let heredocs = &run.heredocs;
        let (mut args, shell_form) = command_args(&run.cmd);
        let mut extra_mounts = Vec::new();
        let mut name_suffix = String::new();
        if !heredocs.is_empty() {
            if args.len() != 1 || !shell_form {
                return Err(error(
                    format!(
                        "parsing produced an invalid run command: {}",
                        go_list(&args)
                    ),
                    span,
                ));
            }
            if is_single_heredoc(&args[0]) {
                let doc = &heredocs[0];
                let content = doc.body();
                if content.starts_with("#!") {
                    // A script with a shebang: write it to a file and run that file.
                    let scratch = self.scratch()?;
                    let file = self.add(
                        Op::File(FileOp {
                            base: scratch,
                            actions: vec![FileAction::Mkfile(MkfileAction {
                                path: format!("/{}", doc.name),
                                mode: 0o755,
                                data: content.as_bytes().to_vec(),
                                owner: None,
                                timestamp: None,
                            })],
                        }),
                        OpMetadata::named("preparing inline document"),
                        None,
                    )?;
                    extra_mounts.push(Mount {
                        target: "/dev/pipes".to_owned(),
                        kind: MountKind::Bind {
                            source: MountSource {
                                input: file,
                                selector: "/".to_owned(),
                            },
                            readonly: true,
                        },
                    });
                    args = vec![format!("/dev/pipes/{}", doc.name)];
                } else {
                    args = vec![content.clone()];
                }
                name_suffix = format!(" ({})", summarize_heredoc(&content));
            } else {
                let mut script = args[0].clone();
                for doc in heredocs {
                    script.push('\n');
                    script.push_str(&doc.body());
                    script.push_str(&doc.name);
                }
                args = vec![script];
            }
        }
        let args = self.with_shell(i, args, shell_form);

        let network = match run.network {
            _ if !run.network_explicit => self.opts.network,
            instructions::NetworkMode::Default => NetworkMode::Default,
            instructions::NetworkMode::None => NetworkMode::None,
            instructions::NetworkMode::Host => NetworkMode::Host,
        };
        let security = match run.security {
            instructions::SecurityMode::Sandbox => SecurityMode::Sandbox,
            instructions::SecurityMode::Insecure => SecurityMode::Insecure,
        };

        let (mut mounts, secret_env) = self.run_mounts(i, &run.mounts, span)?;
        mounts.extend(extra_mounts);

        let st = self.state(i).clone();
        let env: Vec<(String, String)> = st
            .env
            .iter()
            .filter(|(k, _)| !is_proxy(k))
            .cloned()
            .collect();
        let hostname = self
            .opts
            .hostname
            .clone()
            .or_else(|| self.build_args.get("BUILDKIT_SANDBOX_HOSTNAME").cloned());
        let exec = ExecOp {
            args: args.clone(),
            env: env.clone(),
            cwd: st.cwd.clone(),
            user: st.user.clone(),
            hostname,
            root: st.fs,
            mounts,
            secret_env,
            network,
            security,
        };
        let mut masked = env.clone();
        for s in &exec.secret_env {
            set_pair(&mut masked, &s.name, "****");
        }
        let text = format!(
            "{}{}",
            self.display_text(&command.instr.original, &masked),
            name_suffix
        );
        let name = self.step_name(i, &text, command.onbuild);
        let mut meta = self.meta(i, name, Some(&command.instr.original));
        meta.proxy_env = self.proxy_env.clone();
        let fs = self.add(Op::Exec(exec), meta, Some(span))?;
        self.state_mut(i).fs = fs;

        // History lists the build args in scope: `RUN |2 a=1 b=2 /bin/sh -c ...`.
        let mut listed: Vec<(String, String)> = Vec::new();
        for (k, v) in &st.build_args {
            if is_proxy(k) {
                continue;
            }
            let value = get_pair(&st.env, k)
                .map(str::to_owned)
                .unwrap_or_else(|| v.clone().unwrap_or_default());
            set_pair(&mut listed, k, &value);
        }
        let mut msg = String::from("RUN ");
        if !listed.is_empty() {
            msg.push_str(&format!("|{} ", listed.len()));
            for (k, v) in &listed {
                msg.push_str(&format!("{k}={v} "));
            }
        }
        msg.push_str(&args.join(" "));
        msg.push_str(" # buildkit");
        self.history(i, msg, true);
        Ok(())
    }

    fn run_mounts(
        &mut self,
        i: usize,
        flags: &[Word],
        span: Span,
    ) -> Result<(Vec<Mount>, Vec<SecretEnv>)> {
        let mut out = Vec::new();
        let mut secret_env = Vec::new();
        for flag in flags {
            let env = self.state(i).env.clone();
            let lexer = self.lexer.clone();
            let mut expand = |v: &str| -> std::result::Result<String, MountError> {
                lexer.process_word(v, &env).map_err(|e| MountError {
                    message: e.to_string(),
                    help: None,
                })
            };
            let m =
                mounts::parse_mount(&flag.value, &mut expand).map_err(|e| mount_diag(e, span))?;
            self.lower_mount(i, m, span, &mut out, &mut secret_env)?;
        }
        Ok((out, secret_env))
    }

    fn mount_target(&self, i: usize, target: &str) -> String {
        let cwd = &self.state(i).cwd;
        if target.starts_with('/') {
            clean(target)
        } else {
            join(&join("/", cwd), target)
        }
    }

    fn lower_mount(
        &mut self,
        i: usize,
        m: ParsedMount,
        span: Span,
        out: &mut Vec<Mount>,
        secret_env: &mut Vec<SecretEnv>,
    ) -> Result<()> {
        let line = span.start.line;
        match m.kind.as_str() {
            "secret" => {
                let id =
                    m.id.clone()
                        .or_else(|| m.source.clone())
                        .unwrap_or_else(|| {
                            let t = m.target.clone().unwrap_or_default();
                            t.rsplit('/').next().unwrap_or_default().to_owned()
                        });
                if !self.outline.secrets.iter().any(|s| s.id == id) {
                    self.outline.secrets.push(OutlineMount {
                        id: id.clone(),
                        required: m.required,
                        line,
                    });
                }
                if let Some(name) = &m.env {
                    secret_env.push(SecretEnv {
                        id: id.clone(),
                        name: name.clone(),
                        required: m.required,
                    });
                }
                let target = match (&m.target, &m.env) {
                    (Some(t), _) => Some(self.mount_target(i, t)),
                    (None, None) => Some(format!(
                        "/run/secrets/{}",
                        id.rsplit('/').next().unwrap_or(&id)
                    )),
                    (None, Some(_)) => None,
                };
                if let Some(target) = target {
                    out.push(Mount {
                        target,
                        kind: MountKind::Secret {
                            id,
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                            mode: m.mode.unwrap_or(0o400),
                            required: m.required,
                        },
                    });
                }
                return Ok(());
            }
            "ssh" => {
                let id = m.id.clone().unwrap_or_else(|| "default".to_owned());
                if !self.outline.ssh.iter().any(|s| s.id == id) {
                    self.outline.ssh.push(OutlineMount {
                        id: id.clone(),
                        required: m.required,
                        line,
                    });
                }
                let target = match &m.target {
                    Some(t) => self.mount_target(i, t),
                    None => {
                        self.ssh_count += 1;
                        format!("/run/buildkit/ssh_agent.{}", self.ssh_count - 1)
                    }
                };
                out.push(Mount {
                    target,
                    kind: MountKind::Ssh {
                        id,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o600),
                        required: m.required,
                    },
                });
                return Ok(());
            }
            _ => {}
        }
        let Some(raw_target) = m.target.clone() else {
            return Err(error("mount target is required", span));
        };
        let target = self.mount_target(i, &raw_target);
        if target == "/" {
            return Err(error(format!("invalid mount target {target:?}"), span));
        }
        let selector = join("/", m.source.as_deref().unwrap_or(""));
        // The source of a bind or cache mount: another stage, an image, or the context.
        let source_input = |l: &mut Self| -> Result<Input> {
            match &m.from {
                Some(from) => {
                    let s = l.stage_ref(from, span)?;
                    match &l.stages[s].state {
                        Some(st) => Ok(st.fs),
                        None if l.stages[s].def.is_none() => l.implicit_image(s),
                        None => Err(error(
                            format!(
                                "cannot mount from stage {from:?} to {raw_target:?}, stage needs to be defined before current command"
                            ),
                            span,
                        )),
                    }
                }
                None => {
                    let follow = vec![selector.trim_start_matches('/').to_owned()]
                        .into_iter()
                        .filter(|p| !p.is_empty())
                        .collect();
                    l.context(follow)
                }
            }
        };
        let kind = match m.kind.as_str() {
            "tmpfs" => MountKind::Tmpfs { size: m.size },
            "cache" => {
                let source = match &m.from {
                    Some(_) => Some(MountSource {
                        input: source_input(self)?,
                        selector: selector.clone(),
                    }),
                    None => None,
                };
                let sharing = match m.sharing.as_deref() {
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                };
                MountKind::Cache {
                    id: m
                        .id
                        .clone()
                        .unwrap_or_else(|| mounts::default_cache_id(&raw_target)),
                    sharing,
                    source,
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    mode: m.mode.unwrap_or(0o755),
                    readonly: m.readonly,
                }
            }
            _ => MountKind::Bind {
                source: MountSource {
                    input: source_input(self)?,
                    selector,
                },
                readonly: m.readonly,
            },
        };
        out.push(Mount { target, kind });
        Ok(())
    }

    /// The build context, narrowed to `follow_paths` (the paths this step reads), so a step's
    /// digest depends only on what it reads.
    fn context(&mut self, mut follow_paths: Vec<String>) -> Result<Input> {
        follow_paths.sort();
        follow_paths.dedup();
        if follow_paths.iter().any(|p| p.is_empty() || p == ".") {
            follow_paths.clear();
        }
        let op = Op::Source(SourceOp::Local(LocalSource {
            name: self.opts.context_name.clone(),
            include_patterns: Vec::new(),
            exclude_patterns: self.opts.dockerignore.clone(),
            follow_paths,
        }));
        self.add(
            op,
            OpMetadata::named(format!("[internal] load build {}", self.opts.context_name)),
            None,
        )
    }

    /// The filesystem of an image named only in `--from` (dispatched on first use).
    fn implicit_image(&mut self, s: usize) -> Result<Input> {
        if self.stages[s].base.is_none() {
            let base = self.resolve_base(s)?;
            self.stages[s].base = Some(base);
        }
        self.dispatch_stage(s)?;
        let span = self.stages[s].span;
        self.stages[s]
            .state
            .as_ref()
            .map(|st| st.fs)
            .ok_or_else(|| bug("implicit stage was not dispatched", span))
    }

    fn dispatch_copy(&mut self, i: usize, command: &Command, args: &CopySpec<'_>) -> Result<()> {
        let is_add = args.is_add;
        let span = command.instr.span;
        let instr = &command.instr;
        let st = self.state(i).clone();
        let dest_raw = self.expand(i, &args.dest.value, span)?;
        let dest = dest_path(&st.cwd, &dest_raw);
        let chown = match args.chown {
            Some(c) => {
                let c = self.expand(i, &c.value, span)?;
                Some(
                    Owner::parse(&c)
                        .ok_or_else(|| error(format!("invalid chown parameter: '{c}'"), span))?,
                )
                .map(|o| (c, o))
            }
            None => None,
        };
        let chmod = match args.chmod {
            Some(c) => {
                let c = self.expand(i, &c.value, span)?;
                Some((
                    FileMode::parse(&c).map_err(|e| error(e.to_string(), span))?,
                    c,
                ))
            }
            None => None,
        };
        let mut excludes = Vec::new();
        for e in args.exclude {
            excludes.push(self.expand(i, &e.value, span)?);
        }
        // Paths first, then heredoc files (written after them, in the history too).
        let mut sources = Vec::new();
        let mut heredocs = Vec::new();
        for s in args.sources {
            match s {
                Source::Path(p) => sources.push(self.expand(i, &p.value, span)?),
                Source::Heredoc { heredoc, .. } => heredocs.push(heredoc),
            }
        }
        let checksum = match args.checksum {
            Some(c) => Some(self.expand(i, &c.value, span)?),
            None => None,
        };
        if let Some(_c) = &checksum {
            if !is_add {
                return Err(error("checksum can't be specified for COPY", span));
            }
            if sources.len() != 1 {
                return Err(error(
                    "checksum can't be specified for multiple sources",
                    span,
                ));
            }
            if !is_http(&sources[0]) && git_ref(&sources[0]).is_none() {
                return Err(error("checksum requires HTTP(S) or Git sources", span));
            }
        }

        // Where files come from: another stage or image, or the context.
        let from_source = match args.from.map(|w| &w.value) {
            Some(from) => {
                let s = self.stage_ref(from, span)?;
                // Stages are listed in file order: a defined stage at or after this one is a
                // forward reference, which BuildKit rejects even when it could be built first.
                if self.stages[s].def.is_some() && s >= i {
                    return Err(error(
                        format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                            self.stages[i].progress_name
                        ),
                        span,
                    ));
                }
                let input = match &self.stages[s].state {
                    Some(st) => st.fs,
                    None if self.stages[s].def.is_none() => self.implicit_image(s)?,
                    None => {
                        return Err(error(
                            format!(
                                "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                                self.stages[i].progress_name
                            ),
                            span,
                        ));
                    }
                };
                Some(input)
            }
            None => None,
        };

        let mut msg = String::from(if is_add { "ADD" } else { "COPY" });
        if args.parents {
            msg.push_str(" --parents");
        }
        if let Some((c, _)) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some((_, c)) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }

        let owner = chown.as_ref().map(|(_, o)| o.clone());
        let mode = chmod.as_ref().map(|(m, _)| m.clone());
        let mut actions = Vec::new();
        let mut context_paths = Vec::new();
        for src in &sources {
            msg.push_str(&format!(" {src}"));
            if let Some(git) = git_ref(src) {
                if !is_add {
                    return Err(error("source can't be a git ref for COPY", span));
                }
                let op = Op::Source(SourceOp::Git(GitSource {
                    remote: git.remote,
                    reference: git.reference,
                    subdir: git.subdir,
                    keep_git_dir: args.keep_git_dir.unwrap_or(false),
                    checksum: checksum.clone(),
                }));
                let input = self.add(op, OpMetadata::named(format!("ADD {src}")), Some(span))?;
                let mut copy = CopyAction::new(input, "/", dest.clone());
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.follow_symlinks = false;
                copy.dir_contents_only = false;
                copy.allow_wildcard = false;
                copy.allow_empty_wildcard = false;
                copy.exclude_patterns = excludes.clone();
                actions.push(copy);
            } else if is_http(src) {
                if !is_add {
                    return Err(error("source can't be a URL for COPY", span));
                }
                let filename = url_filename(src);
                let checksum = match &checksum {
                    Some(c) => Some(
                        c.parse()
                            .map_err(|e: kiln_llb::DigestParseError| error(e.to_string(), span))?,
                    ),
                    None => None,
                };
                let op = Op::Source(SourceOp::Http(HttpSource {
                    url: src.clone(),
                    checksum,
                    filename: Some(filename.clone()),
                    chmod: None,
                }));
                let input = self.add(op, OpMetadata::named(format!("ADD {src}")), Some(span))?;
                let mut copy = CopyAction::new(input, format!("/{filename}"), dest.clone());
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.follow_symlinks = false;
                copy.dir_contents_only = false;
                copy.allow_wildcard = false;
                copy.allow_empty_wildcard = false;
                copy.unpack = args.unpack.unwrap_or(false);
                copy.exclude_patterns = excludes.clone();
                actions.push(copy);
            } else {
                let (src_dir, include) = if args.parents {
                    match src.split_once("/./") {
                        Some((parent, pattern)) => (
                            parent.to_owned(),
                            clean(&join("/", pattern))
                                .trim_start_matches('/')
                                .to_owned(),
                        ),
                        None => (
                            "/".to_owned(),
                            clean(&join("/", src)).trim_start_matches('/').to_owned(),
                        ),
                    }
                } else {
                    (src.clone(), String::new())
                };
                let src_path = clean(&join("/", &src_dir));
                if from_source.is_none() {
                    let p = clean(&join("/", src)).trim_start_matches('/').to_owned();
                    context_paths.push(if args.parents {
                        p.replace("/./", "/")
                    } else {
                        p
                    });
                }
                // Placeholder input, replaced once the context source is known.
                let mut copy = CopyAction::new(
                    Input::new(kiln_llb::Digest::of(b"")),
                    src_path,
                    dest.clone(),
                );
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.exclude_patterns = excludes.clone();
                copy.unpack = is_add && args.unpack.unwrap_or(true);
                if args.parents {
                    copy.parents = true;
                    copy.include_patterns = vec![include];
                }
                copy.timestamp = None;
                actions.push(copy);
            }
        }
        // Local sources: the context (narrowed to the paths named here) or the --from stage.
        let local_input = match from_source {
            Some(input) => Some(input),
            None if !context_paths.is_empty() => Some(self.context(context_paths)?),
            None => None,
        };
        let placeholder = Input::new(kiln_llb::Digest::of(b""));
        for a in &mut actions {
            if a.source == placeholder {
                a.source = local_input.ok_or_else(|| bug("copy without a source", span))?;
            }
        }
        for doc in heredocs {
            msg.push_str(&format!(" <<{}", doc.name));
            let data = if doc.expand {
                let env = self.state(i).env.clone();
                self.lexer
                    .process_heredoc(&doc.body(), &env)
                    .map_err(|e| error(e.to_string(), span))?
            } else {
                doc.body()
            };
            let scratch = self.scratch()?;
            let file = self.add(
                Op::File(FileOp {
                    base: scratch,
                    actions: vec![FileAction::Mkfile(MkfileAction {
                        path: format!("/{}", doc.name),
                        mode: 0o644,
                        data: data.into_bytes(),
                        owner: None,
                        timestamp: None,
                    })],
                }),
                OpMetadata::named("preparing inline document"),
                None,
            )?;
            let mut copy = CopyAction::new(file, format!("/{}", doc.name), dest.clone());
            copy.owner = owner.clone();
            copy.mode = mode.clone();
            copy.follow_symlinks = false;
            copy.dir_contents_only = false;
            copy.allow_wildcard = false;
            copy.allow_empty_wildcard = false;
            actions.push(copy);
        }
        msg.push_str(&format!(" {dest_raw}"));
        if actions.is_empty() {
            return Err(error(
                format!(
                    "{} requires at least one source",
                    if is_add { "ADD" } else { "COPY" }
                ),
                span,
            ));
        }

        let text = self.display_text(&instr.original, &st.env);
        let file_actions: Vec<FileAction> = actions.into_iter().map(FileAction::Copy).collect();
        if args.link && chmod.is_none() {
            // COPY --link: copy onto an empty layer, then stack it on the stage (BuildKit
            // shows both under one step number).
            let name = self.step_name(i, &text, command.onbuild);
            let scratch = self.scratch()?;
            let meta = self.meta(i, name.clone(), Some(&instr.original));
            let layer = self.add(
                Op::File(FileOp {
                    base: scratch,
                    actions: file_actions,
                }),
                meta,
                Some(span),
            )?;
            let link_name = link_name(&name, &text);
            let meta = self.meta(i, link_name, Some(&instr.original));
            let fs = self.add(
                Op::Merge(MergeOp {
                    inputs: vec![st.fs, layer],
                }),
                meta,
                Some(span),
            )?;
            self.state_mut(i).fs = fs;
        } else {
            let name = self.step_name(i, &text, command.onbuild);
            let meta = self.meta(i, name, Some(&instr.original));
            let fs = self.add(
                Op::File(FileOp {
                    base: st.fs,
                    actions: file_actions,
                }),
                meta,
                Some(span),
            )?;
            self.state_mut(i).fs = fs;
        }
        msg.push_str(" # buildkit");
        self.history(i, msg, true);
        Ok(())
    }
}

fn link_name(step: &str, text: &str) -> String {
    match step.strip_suffix(text) {
        Some(prefix) => format!("{prefix}LINK {text}"),
        None => format!("LINK {step}"),
    }
}

fn mount_diag(e: MountError, span: Span) -> Diagnostic {
    let mut d = error(e.message, span);
    if let Some(help) = e.help {
        d = d.with_help(help);
    }
    d
}

/// The starting state of a stage whose base is an image (or scratch): PATH defaulted, the
/// environment, working directory and user taken from the config.
fn from_image(fs: Input, mut image: ImageConfig) -> State {
    if image.config.env_value("PATH").is_none() {
        image
            .config
            .env
            .push(format!("PATH={}", default_path_env()));
    }
    let env = image
        .config
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let cwd = if image.config.working_dir.is_empty() {
        "/".to_owned()
    } else {
        clean(&join("/", &image.config.working_dir))
    };
    let user = image.config.user.clone();
    State {
        fs,
        env,
        cwd,
        user,
        image,
        build_args: Vec::new(),
        cmd_set: false,
    }
}

/// The config of `FROM scratch`, as BuildKit starts it.
fn empty_image(platform: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: RunConfig {
            working_dir: "/".to_owned(),
            env: vec![format!("PATH={}", default_path_env())],
            ..RunConfig::default()
        },
        ..ImageConfig::default()
    }
}

fn platform_string(p: &Platform) -> String {
    p.to_string()
}

fn set_pair(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => list.push((key.to_owned(), value.to_owned())),
    }
}

fn get_pair<'a>(list: &'a [(String, String)], key: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether a RUN command line is exactly one heredoc marker (`<<EOF`, `<<-"EOF"`).
fn is_single_heredoc(cmd: &str) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let word = rest.trim_matches(|c| c == '"' || c == '\'');
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The first line of a heredoc, with `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let normalized = doc.replace("\r\n", "\n");
    let mut lines = normalized.split('\n');
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

/// The file name ADD gives a download: the URL path's last segment, or `__unnamed__`.
fn url_filename(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match clean(&format!("/{path}")).rsplit('/').next() {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => "__unnamed__".to_owned(),
    }
}
