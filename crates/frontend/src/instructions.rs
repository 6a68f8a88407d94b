//! Typed Dockerfile instructions: the [`crate::syntax`] AST turned into one enum
//! variant per instruction, with flags checked and typed.
//!
//! Values stay raw: variables (`$FOO`) and, for ENV/LABEL/ARG, quotes are kept as written,
//! because expanding them needs the build's ARG/ENV state; lowering does that with
//! [`crate::shell`]. What can be checked without variables is checked here: known flags and
//! their value kinds, argument counts, stage names, HEALTHCHECK durations and retries, RUN
//! `--network`/`--security` modes and ONBUILD triggers.
//!
//! Entry points: [`parse_instructions`] (a flat list) and [`Dockerfile::from_ast`] (grouped
//! into build stages, with the ARGs before the first FROM kept apart).

mod duration;
mod flags;

use std::time::Duration;

use crate::diagnostic::{Diagnostic, Span};
use crate::syntax::{self, Args, Ast, Node};
use flags::{Flags, Kind};

pub use crate::syntax::{Heredoc, Word};

/// Every instruction keyword, uppercase.
pub const INSTRUCTION_NAMES: &[&str] = &[
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

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub kind: InstructionKind,
    /// The keyword as written (`RUN`, `run`, ...).
    pub keyword: String,
    /// The whole instruction, heredoc bodies included.
    pub span: Span,
    /// The instruction text with line continuations joined (BuildKit's `Original`).
    pub original: String,
    /// Comment lines directly above the instruction, without the `#`.
    pub comments: Vec<String>,
}

/// The instruction itself, one variant per Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    From(From),
    Run(Run),
    Cmd(Cmd),
    Label(Label),
    Maintainer(Maintainer),
    Expose(Expose),
    Env(Env),
    Add(Add),
    Copy(Copy),
    Entrypoint(Entrypoint),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Arg(Arg),
    Onbuild(Onbuild),
    Stopsignal(Stopsignal),
    Healthcheck(Healthcheck),
    Shell(Shell),
}

/// `FROM [--platform=<p>] <image> [AS <name>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base image reference, unexpanded (may contain `$VAR`).
    pub image: Word,
    /// The stage name, lowercased and validated (`^[a-z][a-z0-9-_.]*$`).
    pub name: Option<Word>,
    pub platform: Option<Word>,
    /// The `AS` keyword and the stage name as written (for the casing checks).
    pub as_written: Option<(Word, Word)>,
}

/// A command in shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// `RUN echo hi`: the text after the flags, as written. Empty for `CMD` with nothing.
    Shell(Word),
    /// `RUN ["echo", "hi"]`, decoded.
    Exec(Vec<Word>),
}

/// `RUN [--mount=...] [--network=...] [--security=...] <command>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub cmd: ShellOrExec,
    /// Heredoc bodies (`RUN <<EOF`), in opener order.
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount` values, e.g. `type=cache,target=/root/.cache`; parsed by lowering after
    /// variable expansion.
    pub mounts: Vec<Word>,
    pub network: NetworkMode,
    /// `--network` was written, even as `default`: lowering then uses that mode instead of the
    /// build's `--network`.
    pub network_explicit: bool,
    pub security: SecurityMode,
    /// Raw `--device` values.
    pub devices: Vec<Word>,
}

/// `RUN --network=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Not given, or `default`: the build's network.
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// `CMD <command>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub cmd: ShellOrExec,
}

/// `ENTRYPOINT <command>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub cmd: ShellOrExec,
}

/// `SHELL ["executable", "param"...]` (exec form only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    pub shell: Vec<Word>,
}

/// A `key=value` of ENV or LABEL, quotes and variables kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
    /// Written in the legacy `ENV KEY value` form (no `=`); the value is the rest of the line.
    pub legacy: bool,
}

/// `LABEL k=v ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub pairs: Vec<KeyValue>,
}

/// `ENV k=v ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub pairs: Vec<KeyValue>,
}

/// `MAINTAINER <name>` (deprecated, still honoured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub name: Word,
}

/// `EXPOSE <port>[/<proto>] ...`, in source order, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    pub ports: Vec<Word>,
}

/// A source of ADD or COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path, URL or git reference, unexpanded.
    Path(Word),
    /// A heredoc used as a file: `COPY <<EOF /dest`. The file is named after the delimiter.
    Heredoc { word: Word, heredoc: Heredoc },
}

/// `ADD [flags] <src>... <dest>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: Word,
    pub chown: Option<Word>,
    /// Raw: it may contain variables, so lowering checks its format.
    pub chmod: Option<Word>,
    pub link: bool,
    /// `--keep-git-dir`; `None` when not given.
    pub keep_git_dir: Option<bool>,
    pub checksum: Option<Word>,
    /// `--unpack`; `None` when not given (then archives from the context are unpacked and
    /// remote ones are not).
    pub unpack: Option<bool>,
    pub exclude: Vec<Word>,
    /// The JSON form was used.
    pub json: bool,
}

/// `COPY [flags] <src>... <dest>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: Word,
    /// `--from`: a stage name, stage index or image, unexpanded.
    pub from: Option<Word>,
    pub chown: Option<Word>,
    /// Raw: it may contain variables, so lowering checks its format.
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<Word>,
    /// The JSON form was used.
    pub json: bool,
}

/// `VOLUME <path>...` or `VOLUME ["<path>", ...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Trimmed of surrounding whitespace, never empty.
    pub paths: Vec<Word>,
}

/// `USER <user>[:<group>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: Word,
}

/// `WORKDIR <path>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir {
    pub path: Word,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: Word,
    /// The default value (quotes kept, unexpanded); `None` for a bare `ARG NAME`.
    pub value: Option<Word>,
}

/// `ARG <name>[=<default>] ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub args: Vec<ArgDecl>,
}

/// `ONBUILD <instruction>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger, parsed and checked now (BuildKit would only find errors in the child
    /// build).
    pub inner: Box<Instruction>,
    /// The trigger as stored in the image config: the text after `ONBUILD`, with any heredoc
    /// bodies and terminators appended on their own lines.
    pub expression: String,
}

/// `STOPSIGNAL <signal>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopsignal {
    pub signal: Word,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD <command>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// Disable any health check inherited from the base image.
    None,
    Cmd(HealthcheckCmd),
}

/// `HEALTHCHECK [options] CMD <command>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCmd {
    /// Shell form becomes `CMD-SHELL` in the image config, exec form `CMD`.
    pub cmd: ShellOrExec,
    /// Each option is `None` when not given. A zero duration means "inherit the default",
    /// as in Docker.
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// A build stage: its FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: From,
    /// The FROM instruction's span, original text and comments, and its keyword as written.
    pub span: Span,
    pub keyword: String,
    pub original: String,
    pub comments: Vec<String>,
    pub instructions: Vec<Instruction>,
}

/// A Dockerfile as build stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# syntax=` value, if any.
    pub syntax: Option<String>,
    /// `# check=` value, if any (raw, e.g. `skip=all;error=true`), and where it is.
    pub check: Option<Word>,
    /// The escape character: `\` or `` ` ``.
    pub escape: char,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Parser warnings (e.g. empty continuation lines).
    pub warnings: Vec<Diagnostic>,
}

impl Dockerfile {
    /// Parses and types a Dockerfile in one go.
    pub fn parse(source: &[u8]) -> Result<Dockerfile, Diagnostic> {
        Dockerfile::from_ast(&syntax::parse(source)?)
    }

    /// Types every instruction and groups them into stages. Only ARG may come before the
    /// first FROM.
    pub fn from_ast(ast: &Ast) -> Result<Dockerfile, Diagnostic> {
        let dockerfile = Dockerfile::from_ast_allow_no_stage(ast)?;
        if dockerfile.stages.is_empty() {
            return Err(
                Diagnostic::error("the Dockerfile has no FROM instruction", ast.span)
                    .with_help("add a FROM line, e.g. `FROM alpine`"),
            );
        }
        Ok(dockerfile)
    }

    /// [`Dockerfile::from_ast`] without requiring a FROM: lowering reports a file of only
    /// global ARGs itself, in BuildKit's words, after every instruction was checked.
    pub(crate) fn from_ast_allow_no_stage(ast: &Ast) -> Result<Dockerfile, Diagnostic> {
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in &ast.children {
            let instr = parse_instruction(node)?;
            match (instr.kind, stages.last_mut()) {
                (InstructionKind::From(from), _) => stages.push(Stage {
                    from,
                    span: instr.span,
                    keyword: instr.keyword,
                    original: instr.original,
                    comments: instr.comments,
                    instructions: Vec::new(),
                }),
                (kind, Some(stage)) => stage.instructions.push(Instruction { kind, ..instr }),
                (kind @ InstructionKind::Arg(_), None) => {
                    meta_args.push(Instruction { kind, ..instr });
                }
                (_, None) => {
                    return Err(Diagnostic::error(
                        format!(
                            "{} instruction comes before any FROM",
                            instr.keyword.to_uppercase()
                        ),
                        node.keyword.span,
                    )
                    .with_note("no build stage in current context")
                    .with_help("start the Dockerfile with a FROM instruction (only ARG may come before it)"));
                }
            }
        }
        let directive = |n: &str| ast.directive(n).map(|d| d.value.clone());
        Ok(Dockerfile {
            syntax: directive("syntax"),
            check: ast.directive("check").map(|d| Word {
                value: d.value.clone(),
                span: d.span,
            }),
            escape: ast.escape,
            meta_args,
            stages,
            warnings: ast.warnings.clone(),
        })
    }
}

/// Types every instruction of `ast`, in order.
pub fn parse_instructions(ast: &Ast) -> Result<Vec<Instruction>, Diagnostic> {
    ast.children.iter().map(parse_instruction).collect()
}

/// Types one instruction node.
pub fn parse_instruction(node: &Node) -> Result<Instruction, Diagnostic> {
    parse_with_heredocs(node, &node.heredocs)
}

fn parse_with_heredocs(node: &Node, heredocs: &[Heredoc]) -> Result<Instruction, Diagnostic> {
    let p = Parser { node, heredocs };
    let kind = match syntax::known_command(&node.keyword.value).unwrap_or("") {
        "from" => InstructionKind::From(p.from()?),
        "run" => InstructionKind::Run(p.run()?),
        "cmd" => InstructionKind::Cmd(Cmd {
            cmd: p.no_flags().and_then(|()| p.command(true))?,
        }),
        "entrypoint" => InstructionKind::Entrypoint(Entrypoint {
            cmd: p.no_flags().and_then(|()| p.command(true))?,
        }),
        "shell" => InstructionKind::Shell(p.shell()?),
        "label" => InstructionKind::Label(Label {
            pairs: p.pairs("LABEL")?,
        }),
        "env" => InstructionKind::Env(Env {
            pairs: p.pairs("ENV")?,
        }),
        "maintainer" => InstructionKind::Maintainer(Maintainer {
            name: p.exactly_one("MAINTAINER")?,
        }),
        "expose" => InstructionKind::Expose(Expose {
            ports: p.at_least_one("EXPOSE")?,
        }),
        "add" => InstructionKind::Add(p.add()?),
        "copy" => InstructionKind::Copy(p.copy()?),
        "volume" => InstructionKind::Volume(p.volume()?),
        "user" => InstructionKind::User(User {
            user: p.exactly_one("USER")?,
        }),
        "workdir" => InstructionKind::Workdir(Workdir {
            path: p.exactly_one("WORKDIR")?,
        }),
        "arg" => InstructionKind::Arg(p.arg()?),
        "onbuild" => InstructionKind::Onbuild(p.onbuild()?),
        "stopsignal" => InstructionKind::Stopsignal(Stopsignal {
            signal: p.exactly_one("STOPSIGNAL")?,
        }),
        "healthcheck" => InstructionKind::Healthcheck(p.healthcheck()?),
        _ => return Err(unknown_instruction(node)),
    };
    Ok(Instruction {
        kind,
        keyword: node.keyword.value.clone(),
        span: node.span,
        original: node.original.clone(),
        comments: node.comments.clone(),
    })
}

fn unknown_instruction(node: &Node) -> Diagnostic {
    let kw = &node.keyword;
    if kw.value.is_empty() {
        return Diagnostic::error("empty instruction", node.span)
            .with_help("remove the line continuation that has nothing after it");
    }
    let d = Diagnostic::error(format!("unknown instruction: {}", kw.value), kw.span);
    match flags::did_you_mean(&kw.value, INSTRUCTION_NAMES) {
        Some(best) => d.with_help(format!("did you mean {best}?")),
        None => d,
    }
}

struct Parser<'n> {
    node: &'n Node,
    heredocs: &'n [Heredoc],
}

impl Parser<'_> {
    fn kw(&self) -> String {
        self.node.keyword.value.to_uppercase()
    }

    fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message, self.node.span)
    }

    fn flags(&self, spec: &[(&'static str, Kind)]) -> Result<Flags, Diagnostic> {
        Flags::parse(&self.kw(), &self.node.flags, spec)
    }

    fn no_flags(&self) -> Result<(), Diagnostic> {
        self.flags(&[]).map(drop)
    }

    /// The plain or JSON words.
    fn words(&self) -> &[Word] {
        match &self.node.args {
            Args::Words(w) | Args::Json(w) => w,
            _ => &[],
        }
    }

    fn at_least_one(&self, kw: &str) -> Result<Vec<Word>, Diagnostic> {
        self.no_flags()?;
        let words = self.words();
        if words.is_empty() {
            return Err(self.error(format!("{kw} requires at least one argument")));
        }
        Ok(words.to_vec())
    }

    fn exactly_one(&self, kw: &str) -> Result<Word, Diagnostic> {
        self.no_flags()?;
        match self.words() {
            [one] => Ok(one.clone()),
            _ => Err(self.error(format!("{kw} requires exactly one argument"))),
        }
    }

    /// A shell-or-exec command from the instruction's arguments.
    fn command(&self, allow_empty: bool) -> Result<ShellOrExec, Diagnostic> {
        command_of(&self.node.args, self.node, allow_empty, &self.kw())
    }

    fn from(&self) -> Result<From, Diagnostic> {
        let flags = self.flags(&[("platform", Kind::String)])?;
        let words = self.words();
        let (image, name, as_written) = match words {
            [image] => (image.clone(), None, None),
            [image, as_kw, name] if as_kw.value.eq_ignore_ascii_case("as") => {
                let lower = name.value.to_lowercase();
                let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                    && lower.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                    });
                if !valid {
                    return Err(Diagnostic::error(
                        format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            syntax::go_quote(&name.value)
                        ),
                        name.span,
                    )
                    .with_help("stage names match [a-z][a-z0-9-_.]*"));
                }
                (
                    image.clone(),
                    Some(Word {
                        value: lower,
                        span: name.span,
                    }),
                    Some((as_kw.clone(), name.clone())),
                )
            }
            [_, second, _] => {
                return Err(Diagnostic::error(
                    format!("expected AS, found {}", second.value),
                    second.span,
                )
                .with_help("name a stage with FROM <image> AS <name>"));
            }
            _ => return Err(self.error("FROM requires either one or three arguments")),
        };
        Ok(From {
            image,
            name,
            platform: flags.string("platform"),
            as_written,
        })
    }

    fn run(&self) -> Result<Run, Diagnostic> {
        let flags = self.flags(&[
            ("mount", Kind::Strings),
            ("network", Kind::String),
            ("security", Kind::String),
            ("device", Kind::Strings),
        ])?;
        let network_flag = flags.string("network");
        let network = match &network_flag {
            None => NetworkMode::Default,
            Some(w) => match w.value.as_str() {
                "default" => NetworkMode::Default,
                "none" => NetworkMode::None,
                "host" => NetworkMode::Host,
                other => {
                    return Err(Diagnostic::error(
                        format!("invalid network mode {}", syntax::go_quote(other)),
                        w.span,
                    )
                    .with_help("use --network=default, --network=none or --network=host"));
                }
            },
        };
        let security = match flags.string("security") {
            None => SecurityMode::Sandbox,
            Some(w) => match w.value.as_str() {
                "sandbox" => SecurityMode::Sandbox,
                "insecure" => SecurityMode::Insecure,
                other => {
                    return Err(Diagnostic::error(
                        format!("security {} is not valid", syntax::go_quote(other)),
                        w.span,
                    )
                    .with_help("use --security=sandbox or --security=insecure"));
                }
            },
        };
        let cmd = self.command(!self.heredocs.is_empty())?;
        Ok(Run {
            cmd,
            heredocs: self.heredocs.to_vec(),
            mounts: flags.strings("mount"),
            network,
            network_explicit: network_flag.is_some(),
            security,
            devices: flags.strings("device"),
        })
    }

    fn shell(&self) -> Result<Shell, Diagnostic> {
        self.no_flags()?;
        match &self.node.args {
            Args::Json(words) if !words.is_empty() => Ok(Shell {
                shell: words.clone(),
            }),
            Args::Json(_) | Args::Words(_) if self.words().is_empty() => {
                Err(self.error("SHELL requires at least one argument"))
            }
            _ => Err(self
                .error("SHELL requires the arguments to be in JSON form")
                .with_help("write it as SHELL [\"executable\", \"parameters\"]")),
        }
    }

    fn pairs(&self, kw: &str) -> Result<Vec<KeyValue>, Diagnostic> {
        self.no_flags()?;
        let pairs = match &self.node.args {
            Args::Pairs(p) => p,
            _ => return Err(self.error(format!("{kw} requires at least one argument"))),
        };
        pairs
            .iter()
            .map(|p| {
                if p.key.value.is_empty() {
                    return Err(Diagnostic::error(
                        format!("{kw} names can not be blank"),
                        p.key.span.to(p.value.span),
                    ));
                }
                Ok(KeyValue {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    legacy: p.legacy,
                })
            })
            .collect()
    }

    fn arg(&self) -> Result<Arg, Diagnostic> {
        let words = self.at_least_one("ARG")?;
        let args = words
            .into_iter()
            .map(|w| {
                let Some((name, value)) = w.value.split_once('=') else {
                    return Ok(ArgDecl {
                        name: w,
                        value: None,
                    });
                };
                if name.is_empty() {
                    return Err(Diagnostic::error("ARG names can not be blank", w.span));
                }
                Ok(ArgDecl {
                    name: Word {
                        value: name.to_string(),
                        span: w.span,
                    },
                    value: Some(Word {
                        value: value.to_string(),
                        span: w.span,
                    }),
                })
            })
            .collect::<Result<_, Diagnostic>>()?;
        Ok(Arg { args })
    }

    /// Sources and destination of ADD/COPY, with heredoc sources resolved.
    fn sources_and_dest(&self, kw: &str) -> Result<(Vec<Source>, Word, bool), Diagnostic> {
        let words = self.words();
        let json = matches!(self.node.args, Args::Json(_));
        let Some((dest, srcs)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(self
                .error(format!(
                    "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
                ))
                .with_help(format!("write it as {kw} <src>... <dest>")));
        };
        let heredoc_word = |w: &Word| {
            if json {
                return None;
            }
            syntax::heredoc_opener_name(&w.value)
        };
        if heredoc_word(dest).is_some() {
            return Err(Diagnostic::error(
                format!("{kw} cannot accept a heredoc as a destination"),
                dest.span,
            ));
        }
        let sources = srcs
            .iter()
            .map(|w| match heredoc_word(w) {
                Some(name) => match self.heredocs.iter().find(|h| h.name == name) {
                    Some(h) => Ok(Source::Heredoc {
                        word: w.clone(),
                        heredoc: h.clone(),
                    }),
                    None => Err(Diagnostic::error(
                        format!("heredoc {} has no body", w.value),
                        w.span,
                    )),
                },
                None => Ok(Source::Path(w.clone())),
            })
            .collect::<Result<_, Diagnostic>>()?;
        Ok((sources, dest.clone(), json))
    }

    fn add(&self) -> Result<Add, Diagnostic> {
        let flags = self.flags(&[
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
            ("unpack", Kind::Bool),
            ("exclude", Kind::Strings),
        ])?;
        let (sources, dest, json) = self.sources_and_dest("ADD")?;
        Ok(Add {
            sources,
            dest,
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            keep_git_dir: flags.bool("keep-git-dir"),
            checksum: flags.string("checksum"),
            unpack: flags.bool("unpack"),
            exclude: flags.strings("exclude"),
            json,
        })
    }

    fn copy(&self) -> Result<Copy, Diagnostic> {
        let flags = self.flags(&[
            ("chown", Kind::String),
            ("from", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
            ("parents", Kind::Bool),
        ])?;
        let (sources, dest, json) = self.sources_and_dest("COPY")?;
        Ok(Copy {
            sources,
            dest,
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            parents: flags.bool("parents").unwrap_or(false),
            exclude: flags.strings("exclude"),
            json,
        })
    }

    fn volume(&self) -> Result<Volume, Diagnostic> {
        let words = self.at_least_one("VOLUME")?;
        let paths = words
            .into_iter()
            .map(|w| {
                let trimmed = w.value.trim();
                if trimmed.is_empty() {
                    return Err(Diagnostic::error(
                        "VOLUME specified can not be an empty string",
                        w.span,
                    ));
                }
                Ok(Word {
                    value: trimmed.to_string(),
                    span: w.span,
                })
            })
            .collect::<Result<_, Diagnostic>>()?;
        Ok(Volume { paths })
    }

    fn onbuild(&self) -> Result<Onbuild, Diagnostic> {
        self.no_flags()?;
        let Args::Onbuild(inner) = &self.node.args else {
            return Err(self.error("ONBUILD requires at least one argument"));
        };
        let trigger = syntax::known_command(&inner.keyword.value).unwrap_or("");
        match trigger {
            "onbuild" => {
                return Err(Diagnostic::error(
                    "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    inner.keyword.span,
                ));
            }
            "from" | "maintainer" => {
                return Err(Diagnostic::error(
                    format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        trigger.to_uppercase()
                    ),
                    inner.keyword.span,
                ));
            }
            _ => {}
        }
        let mut inner_instr = parse_with_heredocs(inner, self.heredocs)?;
        // The nested node's span covers only its own text; heredoc bodies belong to it too.
        inner_instr.span = Span::new(inner.span.start, self.node.span.end);
        let mut expression = inner.original.clone();
        for h in self.heredocs {
            expression.push('\n');
            expression.push_str(&h.content);
            expression.push_str(&h.name);
        }
        Ok(Onbuild {
            inner: Box::new(inner_instr),
            expression,
        })
    }

    fn healthcheck(&self) -> Result<Healthcheck, Diagnostic> {
        let Args::Healthcheck { kind, args } = &self.node.args else {
            return Err(self.error("HEALTHCHECK requires at least one argument"));
        };
        let spec = [
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ];
        let flags = self.flags(&spec)?;
        match kind.value.to_uppercase().as_str() {
            "NONE" => {
                let has_args = match &**args {
                    Args::Words(w) | Args::Json(w) => !w.is_empty(),
                    _ => true,
                };
                if has_args {
                    return Err(self.error("HEALTHCHECK NONE takes no arguments"));
                }
                return Ok(Healthcheck::None);
            }
            "CMD" => {}
            _ => {
                return Err(Diagnostic::error(
                    format!(
                        "unknown type {} in HEALTHCHECK (try CMD)",
                        syntax::go_quote(&kind.value)
                    ),
                    kind.span,
                )
                .with_help("use HEALTHCHECK CMD <command> or HEALTHCHECK NONE"));
            }
        }
        let cmd = command_of(args, self.node, false, "HEALTHCHECK CMD")
            .map_err(|_| self.error("missing command after HEALTHCHECK CMD"))?;
        let retries = match flags.string("retries") {
            None => None,
            Some(w) => Some(parse_retries(&w)?),
        };
        Ok(Healthcheck::Cmd(HealthcheckCmd {
            cmd,
            interval: interval(&flags, "interval")?,
            timeout: interval(&flags, "timeout")?,
            start_period: interval(&flags, "start-period")?,
            start_interval: interval(&flags, "start-interval")?,
            retries,
        }))
    }
}

fn command_of(
    args: &Args,
    node: &Node,
    allow_empty: bool,
    kw: &str,
) -> Result<ShellOrExec, Diagnostic> {
    match args {
        Args::Json(words) => Ok(ShellOrExec::Exec(words.clone())),
        Args::Words(words) => match words.as_slice() {
            [one] => Ok(ShellOrExec::Shell(one.clone())),
            [] if allow_empty => Ok(ShellOrExec::Shell(Word {
                value: String::new(),
                span: Span::new(node.span.end, node.span.end),
            })),
            _ => Err(Diagnostic::error(
                format!("{kw} requires at least one argument"),
                node.span,
            )),
        },
        _ => Err(Diagnostic::error(
            format!("{kw} requires at least one argument"),
            node.span,
        )),
    }
}

/// A HEALTHCHECK duration: Go syntax, zero or at least 1ms.
fn interval(flags: &Flags, name: &str) -> Result<Option<Duration>, Diagnostic> {
    let Some(w) = flags.string(name) else {
        return Ok(None);
    };
    let Some(ns) = duration::parse_go_duration(&w.value) else {
        return Err(Diagnostic::error(
            format!(
                "invalid duration for --{name}: {}",
                syntax::go_quote(&w.value)
            ),
            w.span,
        )
        .with_help("use a number with a unit, e.g. 30s, 1m30s or 500ms"));
    };
    if ns != 0 && ns < 1_000_000 {
        return Err(Diagnostic::error(
            format!("interval \"{name}\" cannot be less than 1ms"),
            w.span,
        ));
    }
    let ns = u64::try_from(ns).unwrap_or(0);
    Ok(Some(Duration::from_nanos(ns)))
}

fn parse_retries(w: &Word) -> Result<u32, Diagnostic> {
    let v: i64 = w
        .value
        .parse()
        .ok()
        .filter(|n| i32::try_from(*n).is_ok())
        .ok_or_else(|| {
            Diagnostic::error(
                format!(
                    "invalid value for --retries: {}",
                    syntax::go_quote(&w.value)
                ),
                w.span,
            )
            .with_help("use a whole number, e.g. --retries=3")
        })?;
    u32::try_from(v)
        .map_err(|_| Diagnostic::error(format!("--retries cannot be negative ({v})"), w.span))
}

impl Instruction {
    /// The keyword in uppercase, e.g. `RUN`.
    pub fn name(&self) -> &'static str {
        match &self.kind {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Stopsignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
        }
    }
}
