//! `kiln build --check` (`--call=check`): the Dockerfile lowered for every stage with BuildKit's
//! build checks, their warnings printed with the Dockerfile lines, and exit status 1 when any
//! rule was violated or the Dockerfile does not lower.

use std::process::ExitCode;

use kiln_engine::{BuildError, BuildRequest};
use kiln_frontend::checks::CheckWarning;
use kiln_frontend::diagnostic::{Diagnostic, Severity};

use crate::backend::Backend;

/// What `--call` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Build,
    /// The checks; `json` prints them as one JSON document.
    Check {
        json: bool,
    },
    Outline,
    Targets,
}

impl Call {
    /// Parses `build`, `check[,format=json]`, `outline`, `targets` (and buildx's `lint`).
    pub fn parse(value: &str) -> anyhow::Result<Call> {
        let mut parts = value.split(',');
        let name = parts.next().unwrap_or_default().trim();
        let mut json = false;
        for part in parts {
            match part.trim() {
                "format=json" => json = true,
                "format=text" => json = false,
                other => anyhow::bail!("invalid --call option {other:?}: expected format=json"),
            }
        }
        Ok(match name {
            "build" | "" => Call::Build,
            "check" | "lint" => Call::Check { json },
            "outline" => Call::Outline,
            "targets" => Call::Targets,
            other => {
                anyhow::bail!("unknown --call {other:?}: expected build, check, outline or targets")
            }
        })
    }
}

/// Runs the checks and prints what they found.
pub fn run(backend: &dyn Backend, mut request: BuildRequest, json: bool) -> ExitCode {
    request.options.check_only = true;
    let source = String::from_utf8_lossy(&request.dockerfile).into_owned();
    let lowered = match backend.lower(&request) {
        Ok(l) => l,
        Err(BuildError::Frontend {
            diagnostic,
            source_text,
        }) => {
            let file = diagnostic
                .file
                .clone()
                .unwrap_or_else(|| request.dockerfile_name.clone());
            eprint!("{}", diagnostic.render(&file, &source_text));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let warnings = &lowered.warnings;
    let error = lowered.check_error.as_deref();
    if json {
        println!("{}", to_json(warnings, error));
    } else {
        print!(
            "{}",
            render(warnings, error, &request.dockerfile_name, &source)
        );
    }
    if warnings.is_empty() && error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The human report: a count, each warning with its lines, then the error if there is one.
pub fn render(
    warnings: &[CheckWarning],
    error: Option<&Diagnostic>,
    file: &str,
    source: &str,
) -> String {
    let mut out = String::new();
    match warnings.len() {
        0 if error.is_none() => out.push_str("Check complete, no warnings found.\n"),
        0 => {}
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => out.push_str(&format!("Check complete, {n} warnings have been found!\n")),
    }
    for w in warnings {
        out.push('\n');
        out.push_str(&warning_diagnostic(w).render(&w.file, source));
    }
    if let Some(e) = error {
        out.push('\n');
        let name = e.file.clone().unwrap_or_else(|| file.to_owned());
        out.push_str(&e.render(&name, source));
    }
    out
}

/// One warning as a located diagnostic: `warning: RULE: message`, the rule's description as a
/// note and its documentation as help.
fn warning_diagnostic(w: &CheckWarning) -> Diagnostic {
    let mut d = Diagnostic::new(
        Severity::Warning,
        format!("{}: {}", w.rule, w.message),
        Some(w.span),
    )
    .with_note(w.rule.description());
    if let Some(url) = w.rule.url() {
        d = d.with_help(format!("see {url}"));
    }
    d
}

/// `--call=check,format=json`: `{"warnings": [...], "error": ...}`.
fn to_json(warnings: &[CheckWarning], error: Option<&Diagnostic>) -> String {
    let warnings: Vec<serde_json::Value> = warnings
        .iter()
        .map(|w| {
            serde_json::json!({
                "rule": w.rule.name(),
                "description": w.rule.description(),
                "url": w.rule.url(),
                "message": w.message,
                "file": w.file,
                "line": w.span.start.line,
                "column": w.span.start.column,
                "endLine": w.span.end.line,
            })
        })
        .collect();
    let error = error.map(|e| {
        serde_json::json!({
            "message": e.message,
            "line": e.span.map(|s| s.start.line),
            "column": e.span.map(|s| s.start.column),
        })
    });
    serde_json::to_string_pretty(&serde_json::json!({ "warnings": warnings, "error": error }))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_values_parse() {
        assert_eq!(Call::parse("check").unwrap(), Call::Check { json: false });
        assert_eq!(
            Call::parse("check,format=json").unwrap(),
            Call::Check { json: true }
        );
        assert_eq!(Call::parse("outline").unwrap(), Call::Outline);
        assert_eq!(Call::parse("targets").unwrap(), Call::Targets);
        assert_eq!(Call::parse("build").unwrap(), Call::Build);
        assert!(Call::parse("frobnicate").is_err());
        assert!(Call::parse("check,colour=red").is_err());
    }
}
