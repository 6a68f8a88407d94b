//! The crate's error type and the located problems the loader collects before it builds one.

use std::path::PathBuf;

use crate::diagnostic::{Diagnostic, Loc, Severity, SourceMap};

/// Why a compose project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The files are wrong: one or more located diagnostics (syntax, types, unknown keys,
    /// unsupported keys, references, cycles, interpolation). Render each with
    /// [`Diagnostic::render`], or all with [`ComposeError::render`].
    #[error("{}", summary(.0))]
    Invalid(Vec<Diagnostic>),
    /// A file could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No `-f`, no `COMPOSE_FILE`, and no default file in the directory or above.
    #[error(
        "no configuration file provided: not found (looked for compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml in {} and its parents)",
        dir.display()
    )]
    NoConfigFile { dir: PathBuf },
    /// A bad command-line or environment setting (project name, profile, env file format).
    #[error("{0}")]
    Usage(String),
}

impl ComposeError {
    /// Every diagnostic rendered with its source line and caret, or the one-line message.
    pub fn render(&self) -> String {
        match self {
            ComposeError::Invalid(diags) => diags.iter().map(Diagnostic::render).collect(),
            other => format!("error: {other}\n"),
        }
    }

    /// The diagnostics of an [`ComposeError::Invalid`], empty for the other kinds.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ComposeError::Invalid(d) => d,
            _ => &[],
        }
    }
}

fn summary(diags: &[Diagnostic]) -> String {
    match diags {
        [] => "invalid compose project".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// A located problem found while loading, before file names and texts are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub loc: Loc,
    /// The model path (`services.web.ports[0]`), empty for syntax errors.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
    pub severity: Severity,
}

impl Problem {
    pub fn new(loc: Loc, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            loc,
            path: path.into(),
            message: message.into(),
            help: None,
            severity: Severity::Error,
        }
    }

    pub fn warning(loc: Loc, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::new(loc, path, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn into_diagnostic(self, sources: &SourceMap) -> Diagnostic {
        let d = sources.diagnostic(self.severity, self.loc, &self.path, self.message);
        match self.help {
            Some(h) => d.with_help(h),
            None => d,
        }
    }
}

/// Problems → the error, with names and texts from `sources`.
pub(crate) fn invalid(problems: Vec<Problem>, sources: &SourceMap) -> ComposeError {
    ComposeError::Invalid(
        problems
            .into_iter()
            .map(|p| p.into_diagnostic(sources))
            .collect(),
    )
}
