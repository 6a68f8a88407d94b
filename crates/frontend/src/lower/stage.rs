//! Stages: the stage list, `--from` references and dependencies between stages, resolving
//! bases (images, earlier stages, scratch) and ONBUILD triggers, and each stage's starting state.

use std::collections::BTreeSet;

use kiln_llb::image::{ImageConfig, RunConfig};
use kiln_llb::{
    CopyAction, FileAction, FileOp, GitSource, HttpSource, ImageSource, Input, LocalSource, Op,
    OpMetadata, Platform, SourceOp,
};

use super::lint::OnceTracker;
use super::program::{Lowering, Result, bug, error, suggestion};
use super::run::mount_diag;
use crate::diagnostic::{Diagnostic, Severity, Span};
use crate::instructions::{self, Dockerfile, Instruction as Instr, InstructionKind as Kind};
use crate::lower::mounts;
use crate::lower::util::{clean, default_path_env, join};
use crate::lower::{NamedContext, ResolvedImage, StageInfo};
use crate::shell::Lexer;
use crate::syntax;

/// What a stage starts from.
#[derive(Debug, Clone)]
pub(super) enum Base {
    Scratch,
    Image {
        resolved: ResolvedImage,
        scratch_like: bool,
    },
    Stage(usize),
    /// A `--build-context` of files (a directory, git repository or download), with no
    /// image config of its own.
    Context {
        name: String,
        context: NamedContext,
    },
}

/// One instruction to dispatch; `onbuild` when it is a trigger from the base (ONBUILD).
#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) instr: Instr,
    pub(super) onbuild: bool,
}

/// The dispatch state of a stage: its filesystem so far and everything that is not files.
#[derive(Debug, Clone)]
pub(super) struct State {
    pub(super) fs: Input,
    /// The environment RUN sees: the image's Env plus ARGs in scope.
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: String,
    pub(super) user: String,
    pub(super) image: ImageConfig,
    /// ARGs declared in this stage (and its base stages), for RUN history entries.
    pub(super) build_args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
    /// The platform the stage's programs are for: its `FROM --platform`, its base stage's, or
    /// the target platform.
    pub(super) platform: Platform,
}

#[derive(Debug)]
pub(super) struct Stage {
    /// Index into `Dockerfile::stages`, `None` for an image named only by `--from`.
    pub(super) def: Option<usize>,
    base_name: String,
    /// Name used for lookups (`AS` name, lowercase).
    pub(super) lookup: Option<String>,
    /// Name in progress messages: the `AS` name or `stage-N`, empty when there is one stage.
    pub(super) progress_name: String,
    pub(super) platform: Option<Platform>,
    pub(super) span: Span,
    pub(super) base: Option<Base>,
    pub(super) commands: Vec<Command>,
    /// Stages read through `COPY --from` or `RUN --mount=from=`.
    deps: BTreeSet<usize>,
    triggers_done: bool,
    /// ONBUILD expressions of this stage, the triggers of stages built on it.
    pub(super) onbuild: Vec<String>,
    pub(super) cmd_total: usize,
    /// Counted steps dispatched so far, for `[stage i/n]`.
    pub(super) cmd_index: usize,
    pub(super) ignore_cache: bool,
    pub(super) state: Option<State>,
    /// CMD, ENTRYPOINT and HEALTHCHECK seen in this stage (MultipleInstructionsDisallowed).
    pub(super) once: OnceTracker,
    /// A WORKDIR of this stage has run (WorkdirRelativePath looks at the first one).
    pub(super) workdir_set: bool,
    /// A `--build-context` named like this stage, which replaces it.
    replaced_by: Option<NamedContext>,
}

/// The stage list for `--print=targets`.
pub(super) fn stage_infos(program: &Dockerfile) -> Vec<StageInfo> {
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
pub(super) fn stage_name(stage: &instructions::Stage) -> Option<String> {
    stage.from.name.as_ref().map(|n| n.value.clone())
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

impl Lowering<'_> {
    pub(super) fn build_stages(&mut self, program: &Dockerfile) -> Result<()> {
        let declared: BTreeSet<String> = program
            .meta_args
            .iter()
            .filter_map(|i| match &i.kind {
                Kind::Arg(a) => Some(a.args.iter().map(|d| d.name.value.clone())),
                _ => None,
            })
            .flatten()
            .chain(self.global_args.iter().map(|(k, _)| k.clone()))
            .collect();
        for (i, def) in program.stages.iter().enumerate() {
            let globals = self.global_args.clone();
            let base = &def.from.image.value;
            let expanded = self
                .lexer
                .expand(base, &globals)
                .map_err(|e| error(e.to_string(), def.span))?;
            self.lint_from_vars(&expanded, &declared, def.span);
            let base_name = expanded.value;
            if base_name.is_empty() {
                return Err(error(
                    format!("base name ({base}) should not be blank"),
                    def.span,
                ));
            }
            let platform = match def.from.platform.as_ref().map(|p| &p.value) {
                None => None,
                Some(p) => {
                    let expanded = self
                        .lexer
                        .expand(p, &globals)
                        .map_err(|e| error(e.to_string(), def.span))?;
                    self.lint_from_vars(&expanded, &declared, def.span);
                    let name = stage_name(def);
                    self.lint_from_platform(p, &expanded, name.as_deref(), def.span);
                    let v = expanded.value;
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
            // A build context named like the stage replaces it: its instructions never run.
            let replaced_by = stage_name(def).and_then(|n| self.named_context(&n).cloned());
            let commands = def
                .instructions
                .iter()
                .filter(|_| replaced_by.is_none())
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
                once: OnceTracker::default(),
                workdir_set: false,
                replaced_by,
            });
        }
        Ok(())
    }

    pub(super) fn find_target(&self) -> Result<usize> {
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
    pub(super) fn stage_ref(&mut self, from: &str, span: Span) -> Result<usize> {
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
            once: OnceTracker::default(),
            workdir_set: false,
            replaced_by: None,
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

    pub(super) fn find_dependencies(&mut self) -> Result<()> {
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
    pub(super) fn resolve_reachable(&mut self, target: usize) -> Result<BTreeSet<usize>> {
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

    /// The `--build-context` called `name`, if any (never for `scratch` and `context`).
    pub(super) fn named_context(&self, name: &str) -> Option<&NamedContext> {
        if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
            return None;
        }
        let contexts = &self.opts.named_contexts;
        if let Some(c) = contexts.get(name) {
            return Some(c);
        }
        // An image name matches in its short form, `:latest` left out (`busybox` for
        // `docker.io/library/busybox:latest`), as buildx names contexts.
        let reference = kiln_llb::Reference::parse(name).ok()?;
        let familiar = reference.familiar();
        contexts
            .get(familiar.strip_suffix(":latest").unwrap_or(&familiar))
            .or_else(|| contexts.get(&familiar))
    }

    fn resolve_base(&mut self, i: usize) -> Result<Base> {
        let stage = &self.stages[i];
        let span = stage.span;
        let context = match &stage.replaced_by {
            Some(c) => Some((stage.lookup.clone().unwrap_or_default(), c.clone())),
            None => self
                .named_context(&stage.base_name)
                .map(|c| (stage.base_name.clone(), c.clone())),
        };
        match context {
            Some((_, NamedContext::Image { reference })) => {
                return self.resolve_image(i, &reference, &reference, span);
            }
            Some((name, context)) => return Ok(Base::Context { name, context }),
            None => {}
        }
        if stage.base_name == "scratch" {
            return Ok(Base::Scratch);
        }
        let orig = stage.base_name.clone();
        let reference = match kiln_llb::Reference::parse(&orig) {
            Ok(r) => r.to_string(),
            Err(e) => {
                return Err(error(
                    format!("failed to parse stage name {orig:?}: {e}"),
                    span,
                ));
            }
        };
        self.resolve_image(i, &orig, &reference, span)
    }

    /// Resolves the image `reference` (written `orig`) as the base of stage `i`.
    fn resolve_image(&mut self, i: usize, orig: &str, reference: &str, span: Span) -> Result<Base> {
        let stage = &self.stages[i];
        let orig = orig.to_owned();
        let platform = stage
            .platform
            .clone()
            .unwrap_or_else(|| self.target_platform.clone());
        match self.resolver.resolve(reference, &platform) {
            Ok(mut resolved) => {
                self.lint_base_platform(&orig, &platform, &resolved.config, span);
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

    pub(super) fn dispatch_stage(&mut self, i: usize) -> Result<()> {
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
                // As BuildKit: a stage on a stage runs on the base stage's platform unless it
                // names its own.
                if let Some(own) = &self.stages[i].platform {
                    st.platform = own.clone();
                }
                st
            }
            Base::Scratch => {
                let fs = self.scratch()?;
                from_image(fs, empty_image(&stage_platform), &stage_platform)
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
                from_image(fs, image, &stage_platform)
            }
            Base::Context { name, context } => {
                let fs = self.context_files(i, &name, &context, span)?;
                from_image(fs, empty_image(&stage_platform), &stage_platform)
            }
        };
        self.stages[i].state = Some(state);

        let commands = self.stages[i].commands.clone();
        for command in &commands {
            self.dispatch(i, command)?;
        }
        Ok(())
    }

    /// The files of a `--build-context` that is not an image: a git checkout, a download, or
    /// a directory from the client (copied into a layer, so that RUN can use it as its root).
    fn context_files(
        &mut self,
        i: usize,
        name: &str,
        context: &NamedContext,
        span: Span,
    ) -> Result<Input> {
        let label = |what: &str| OpMetadata::named(format!("[context {name}] {what}"));
        match context {
            NamedContext::Git {
                remote,
                reference,
                subdir,
            } => {
                let op = Op::Source(SourceOp::Git(GitSource {
                    remote: remote.clone(),
                    reference: reference.clone(),
                    subdir: subdir.clone(),
                    keep_git_dir: false,
                    checksum: None,
                }));
                self.add(op, label(remote), Some(span))
            }
            NamedContext::Http { url } => {
                let op = Op::Source(SourceOp::Http(HttpSource {
                    url: url.clone(),
                    checksum: None,
                    filename: None,
                    chmod: None,
                }));
                self.add(op, label(url), Some(span))
            }
            NamedContext::Local { source } => {
                let local = self.add(
                    Op::Source(SourceOp::Local(LocalSource {
                        name: source.clone(),
                        ..LocalSource::default()
                    })),
                    label("load from client"),
                    None,
                )?;
                let scratch = self.scratch()?;
                let mut copy = CopyAction::new(local, "/", "/");
                copy.allow_wildcard = false;
                let meta = self.meta(i, format!("[context {name}] copy from client"), None);
                self.add(
                    Op::File(FileOp {
                        base: scratch,
                        actions: vec![FileAction::Copy(copy)],
                    }),
                    meta,
                    Some(span),
                )
            }
            NamedContext::Image { .. } => Err(bug("image contexts resolve as images", span)),
        }
    }

    /// The filesystem of an image named only in `--from` (dispatched on first use).
    pub(super) fn implicit_image(&mut self, s: usize) -> Result<Input> {
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
}

/// The starting state of a stage whose base is an image (or scratch): PATH defaulted, the
/// environment, working directory and user taken from the config.
fn from_image(fs: Input, mut image: ImageConfig, platform: &Platform) -> State {
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
        platform: platform.clone(),
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
