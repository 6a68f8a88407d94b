//! The instruction shapes lowering works on: raw (unexpanded) values with their spans.
//!
//! Lowering reads the parser's typed instructions through `adapt`, which builds these; keeping
//! this small model between the two lets ONBUILD triggers (re-parsed text) and the parser's
//! own types evolve without touching the semantics in `convert`.

use crate::diagnostic::Span;

/// A whole Dockerfile as lowering sees it.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// The escape character (`\` or `` ` ``), for word expansion.
    pub escape: char,
    /// ARG instructions before the first FROM.
    pub meta_args: Vec<Instr>,
    pub stages: Vec<StageDef>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone)]
pub(crate) struct StageDef {
    /// The image or stage name as written (may contain `$ARG`s).
    pub base: String,
    /// `AS name`, lowercased (stage names are case-insensitive).
    pub name: Option<String>,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// The FROM instruction's span.
    pub span: Span,
    /// Comment lines right above the FROM (for `--print=targets` descriptions).
    pub comment: Option<String>,
    pub instrs: Vec<Instr>,
}

/// One instruction.
#[derive(Debug, Clone)]
pub(crate) struct Instr {
    pub span: Span,
    /// The instruction as written, continuation lines joined (used in progress names and the
    /// op description).
    pub original: String,
    pub kind: Kind,
}

/// A command line in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CmdLine {
    /// Exec form: the arguments. Shell form: one element, the command text.
    pub args: Vec<String>,
    /// Shell form: wrap with the current SHELL.
    pub prepend_shell: bool,
}

/// A heredoc attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heredoc {
    /// The delimiter word (quotes removed), also the file name for COPY.
    pub name: String,
    /// The body, ending with a newline, tabs already stripped for `<<-`.
    pub content: String,
    /// `false` when the delimiter was quoted: the body is taken literally.
    pub expand: bool,
}

/// COPY and ADD arguments and flags, unexpanded.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyArgs {
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub unpack: Option<bool>,
}

/// HEALTHCHECK arguments; `None` in `Kind::Healthcheck` means `HEALTHCHECK NONE`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthArgs {
    pub cmd: Option<CmdLine>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `ARG k[=v] ...`
    Arg(Vec<(String, Option<String>)>),
    /// `ENV k=v ...` (the legacy `ENV k v` form arrives as one pair).
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    Run {
        cmd: CmdLine,
        heredocs: Vec<Heredoc>,
        mounts: Vec<String>,
        network: Option<String>,
        security: Option<String>,
    },
    Cmd(CmdLine),
    Entrypoint(CmdLine),
    Copy(CopyArgs),
    Add(CopyArgs),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    Expose(Vec<String>),
    StopSignal(String),
    Healthcheck(Option<HealthArgs>),
    Shell(Vec<String>),
    /// The trigger instruction's text, e.g. `RUN echo hi`.
    Onbuild(String),
}

impl Kind {
    /// Whether the step is counted in progress names (`[stage 2/4]`), as BuildKit counts.
    pub fn counted(&self) -> bool {
        matches!(
            self,
            Kind::Run { .. } | Kind::Copy(_) | Kind::Add(_) | Kind::Workdir(_)
        )
    }
}
