//! The build checks as lowering runs them: those that need only the parsed Dockerfile (casing,
//! stage names, MAINTAINER, empty continuation lines, descriptions), those of FROM lines
//! (undeclared and invalid default ARGs, `--platform` values, the base's platform) and the
//! helpers the dispatch of each instruction calls (undefined variables, secrets in ARG/ENV,
//! EXPOSE formats, JSON arguments, repeated CMD/ENTRYPOINT/HEALTHCHECK).

use std::collections::{BTreeMap, BTreeSet};

use kiln_llb::Platform;
use kiln_llb::image::ImageConfig;

use super::program::Lowering;
use crate::checks::{CheckConfig, Rule, looks_secret};
use crate::diagnostic::{Diagnostic, Span};
use crate::instructions::{Dockerfile, Instruction, InstructionKind as Kind};
use crate::shell::Expansion;

/// Where a stage last set an instruction that only counts once (CMD, ENTRYPOINT, HEALTHCHECK).
#[derive(Debug, Clone, Default)]
pub(super) struct OnceTracker {
    seen: BTreeMap<&'static str, Span>,
}

impl OnceTracker {
    /// Records `name` at `span`; the span of the earlier one when there was one (it is the one
    /// that will be ignored, so that is where the warning points).
    fn mark(&mut self, name: &'static str, span: Span) -> Option<Span> {
        self.seen.insert(name, span)
    }
}

/// The check configuration: the `BUILDKIT_DOCKERFILE_CHECK` build argument wins over the
/// Dockerfile's `# check=` directive.
pub(super) fn check_config(
    program: &Dockerfile,
    build_args: &[(String, String)],
) -> Result<CheckConfig, Diagnostic> {
    let from_arg = build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "BUILDKIT_DOCKERFILE_CHECK");
    match (from_arg, &program.check) {
        (Some((_, v)), _) => CheckConfig::parse(v).map_err(|e| {
            Diagnostic::new(
                crate::diagnostic::Severity::Error,
                format!("failed to parse check options: {e}"),
                None,
            )
        }),
        (None, Some(word)) => CheckConfig::parse(&word.value).map_err(|e| {
            Diagnostic::error(format!("failed to parse check options: {e}"), word.span)
        }),
        (None, None) => Ok(CheckConfig::default()),
    }
}

fn all_upper_or_lower(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

impl Lowering<'_> {
    pub(super) fn report(&self, rule: Rule, span: Span, message: impl Into<String>) {
        self.checker.borrow_mut().report(rule, span, message);
    }

    /// The checks that read only the parsed Dockerfile.
    pub(super) fn lint_program(&self, program: &Dockerfile) {
        for instr in &program.meta_args {
            self.lint_description(instr);
        }
        let mut names = BTreeSet::new();
        for stage in &program.stages {
            if let Some((as_kw, name)) = &stage.from.as_written {
                if name.value != name.value.to_lowercase() {
                    self.report(
                        Rule::StageNameCasing,
                        stage.span,
                        format!("stage name '{}' should be lowercase", name.value),
                    );
                }
                let kw = &stage.keyword;
                let mismatch = (kw == &kw.to_lowercase()
                    && as_kw.value != as_kw.value.to_lowercase())
                    || (kw == &kw.to_uppercase() && as_kw.value != as_kw.value.to_uppercase());
                if mismatch {
                    self.report(
                        Rule::FromAsCasing,
                        stage.span,
                        format!("'{}' is not cased like '{kw}'", as_kw.value),
                    );
                }
            }
            if let Some(name) = &stage.from.name {
                self.lint_comment_description(
                    "FROM",
                    std::slice::from_ref(&name.value),
                    &stage.comments,
                    stage.span,
                );
                if matches!(name.value.as_str(), "context" | "scratch") {
                    self.report(
                        Rule::ReservedStageName,
                        stage.span,
                        format!("stage name {:?} is reserved", name.value),
                    );
                }
                if !names.insert(name.value.clone()) {
                    self.report(
                        Rule::DuplicateStageName,
                        stage.span,
                        format!(
                            "stage name {:?} is used by an earlier stage too",
                            name.value
                        ),
                    );
                }
            }
            for instr in &stage.instructions {
                if matches!(instr.kind, Kind::Maintainer(_)) {
                    self.report(
                        Rule::MaintainerDeprecated,
                        instr.span,
                        "MAINTAINER is deprecated: set the author with a LABEL instead",
                    );
                }
                self.lint_description(instr);
            }
        }
        self.lint_casing(program);
        self.lint_empty_continuations(program);
    }

    /// ConsistentInstructionCasing: every keyword (FROM lines and stage instructions) has the
    /// casing most keywords have; a tie counts as uppercase.
    fn lint_casing(&self, program: &Dockerfile) {
        let keywords = || {
            program.stages.iter().flat_map(|s| {
                std::iter::once((s.keyword.as_str(), s.span))
                    .chain(s.instructions.iter().map(|i| (i.keyword.as_str(), i.span)))
            })
        };
        let (mut lower, mut upper) = (0, 0);
        for (kw, _) in keywords() {
            if all_upper_or_lower(kw) {
                if kw == kw.to_lowercase() {
                    lower += 1;
                } else {
                    upper += 1;
                }
            }
        }
        let majority_lower = lower > upper;
        for (kw, span) in keywords() {
            let wanted = if majority_lower && kw != kw.to_lowercase() {
                "lowercase"
            } else if !majority_lower && kw != kw.to_uppercase() {
                "uppercase"
            } else {
                continue;
            };
            self.report(
                Rule::ConsistentInstructionCasing,
                span,
                format!("'{kw}' should be {wanted} like most instructions of this Dockerfile"),
            );
        }
    }

    /// NoEmptyContinuation, reported at the last line of the instruction that has the empty
    /// line (where BuildKit's parser is when it notices).
    fn lint_empty_continuations(&self, program: &Dockerfile) {
        let spans: Vec<Span> =
            program
                .meta_args
                .iter()
                .map(|i| i.span)
                .chain(program.stages.iter().flat_map(|s| {
                    std::iter::once(s.span).chain(s.instructions.iter().map(|i| i.span))
                }))
                .collect();
        for warning in &program.warnings {
            let Some(at) = warning.span else { continue };
            let line = at.start.line;
            let end = spans
                .iter()
                .find(|s| s.start.line <= line && line <= s.end.line)
                .map_or(line, |s| s.end.line);
            self.report(
                Rule::NoEmptyContinuation,
                Span::lines(end, end),
                format!("empty continuation line (line {line}) inside an instruction"),
            );
        }
    }

    /// InvalidDefinitionDescription for ARG (experimental).
    fn lint_description(&self, instr: &Instruction) {
        if let Kind::Arg(arg) = &instr.kind {
            let keys: Vec<String> = arg.args.iter().map(|a| a.name.value.clone()).collect();
            self.lint_comment_description("ARG", &keys, &instr.comments, instr.span);
        }
    }

    fn lint_comment_description(
        &self,
        what: &str,
        keys: &[String],
        comments: &[String],
        span: Span,
    ) {
        let Some(last) = comments.last() else { return };
        if keys.is_empty() {
            return;
        }
        let first = last.trim().split(' ').next().unwrap_or_default();
        if keys.iter().any(|k| k == first) {
            return;
        }
        let example = if keys.len() > 1 {
            "<arg_key>"
        } else {
            &keys[0]
        };
        self.report(
            Rule::InvalidDefinitionDescription,
            span,
            format!(
                "a comment describing {what} starts with its name: `# {example} <description>`"
            ),
        );
    }

    /// InvalidDefaultArgInFrom: with the global ARGs at their defaults (no `--build-arg`),
    /// a FROM names no valid image. Runs before the global ARGs are evaluated for the build.
    pub(super) fn lint_default_from_args(&self, program: &Dockerfile) {
        let mut globals = self.global_args.clone();
        for instr in &program.meta_args {
            let Kind::Arg(arg) = &instr.kind else {
                continue;
            };
            for decl in &arg.args {
                let Some(default) = &decl.value else { continue };
                // An expansion error is reported when the build evaluates the ARGs for real.
                let Ok(value) = self.lexer.process_word(&default.value, &globals) else {
                    return;
                };
                globals.retain(|(k, _)| k != &decl.name.value);
                globals.push((decl.name.value.clone(), value));
            }
        }
        for stage in &program.stages {
            let Ok(name) = self.lexer.process_word(&stage.from.image.value, &globals) else {
                return;
            };
            if kiln_llb::Reference::parse(&name).is_err() {
                self.report(
                    Rule::InvalidDefaultArgInFrom,
                    stage.span,
                    format!(
                        "with the default values of its ARGs, FROM {} names no valid image ({name:?})",
                        stage.from.image.value
                    ),
                );
            }
        }
    }

    /// UndefinedArgInFrom: variables in a FROM line (image or `--platform`) that no global ARG
    /// declares and no automatic ARG provides.
    pub(super) fn lint_from_vars(
        &self,
        expansion: &Expansion,
        declared: &BTreeSet<String>,
        span: Span,
    ) {
        for var in &expansion.unmatched {
            if declared.contains(var) {
                continue;
            }
            let options: Vec<String> = declared.iter().cloned().collect();
            let mut message =
                format!("FROM uses ARG '{var}', which is not declared before the first FROM");
            if let Some(s) = closest(var, &options) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            self.report(Rule::UndefinedArgInFrom, span, message);
        }
    }

    /// RedundantTargetPlatform and FromPlatformFlagConstDisallowed for `FROM --platform=`.
    pub(super) fn lint_from_platform(
        &self,
        written: &str,
        expansion: &Expansion,
        stage_name: Option<&str>,
        span: Span,
    ) {
        if expansion.matched.len() == 1
            && expansion.unmatched.is_empty()
            && expansion.matched.contains("TARGETPLATFORM")
            && self.global_value("TARGETPLATFORM").as_deref() == Some(expansion.value.as_str())
        {
            self.report(
                Rule::RedundantTargetPlatform,
                span,
                format!("--platform={written} is redundant: FROM uses the target platform anyway"),
            );
        }
        if expansion.matched.is_empty() && expansion.unmatched.is_empty() {
            let Ok(p) = Platform::parse(&expansion.value) else {
                return;
            };
            let name = stage_name.unwrap_or_default();
            if !name.contains(&p.os) && !name.contains(&p.architecture) {
                self.report(
                    Rule::FromPlatformFlagConstDisallowed,
                    span,
                    format!(
                        "FROM --platform={} fixes the platform; use a build argument such as $BUILDPLATFORM",
                        expansion.value
                    ),
                );
            }
        }
    }

    fn global_value(&self, key: &str) -> Option<String> {
        self.global_args
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// InvalidBaseImagePlatform: the resolved base is for another OS or architecture.
    pub(super) fn lint_base_platform(
        &self,
        name: &str,
        expected: &Platform,
        config: &ImageConfig,
        span: Span,
    ) {
        if config.os.is_empty() && config.architecture.is_empty() {
            return;
        }
        let actual = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        if actual.os != expected.os || actual.architecture != expected.architecture {
            self.report(
                Rule::InvalidBaseImagePlatform,
                span,
                format!("base image {name} is for {actual}, but this build is for {expected}"),
            );
        }
    }

    /// UndefinedVar: variables an instruction of stage `i` expands that are neither in the
    /// stage's environment nor declared by an ARG of the stage.
    pub(super) fn lint_undefined(&self, i: usize, unmatched: &BTreeSet<String>, span: Span) {
        if unmatched.is_empty() {
            return;
        }
        let Some(st) = self.stages[i].state.as_ref() else {
            return;
        };
        for var in unmatched {
            if st.build_args.iter().any(|(k, _)| k == var) {
                continue;
            }
            let options: Vec<String> = st.env.iter().map(|(k, _)| k.clone()).collect();
            let mut message = format!("variable '${var}' is used but not defined");
            if let Some(s) = closest(var, &options) {
                message.push_str(&format!(" (did you mean ${s}?)"));
            }
            self.report(Rule::UndefinedVar, span, message);
        }
    }

    /// CopyIgnoredFile (experimental): a COPY or ADD source from the context that
    /// `.dockerignore` excludes, so the build never sees it.
    pub(super) fn lint_ignored_source(&self, is_add: bool, path: &str, span: Span) {
        if self.opts.dockerignore.is_empty()
            || !self.checker.borrow().config.enabled(Rule::CopyIgnoredFile)
        {
            return;
        }
        let Ok(matcher) = crate::dockerignore::PatternMatcher::new(&self.opts.dockerignore) else {
            return;
        };
        if matcher.is_excluded(path) {
            let what = if is_add { "ADD" } else { "COPY" };
            self.report(
                Rule::CopyIgnoredFile,
                span,
                format!("{what} names {path:?}, which .dockerignore excludes from the context"),
            );
        }
    }

    /// LegacyKeyValueFormat: `ENV key value` instead of `ENV key=value`.
    pub(super) fn legacy_key_value(&self, instruction: &str, span: Span) {
        self.report(
            Rule::LegacyKeyValueFormat,
            span,
            format!("write \"{instruction} key=value\"; the \"{instruction} key value\" form is deprecated"),
        );
    }

    /// SecretsUsedInArgOrEnv.
    pub(super) fn lint_secret_name(&self, instruction: &str, key: &str, span: Span) {
        if looks_secret(key) {
            self.report(
                Rule::SecretsUsedInArgOrEnv,
                span,
                format!(
                    "{instruction} {key:?} may hold a secret: ARG and ENV values are kept in the image; use RUN --mount=type=secret"
                ),
            );
        }
    }

    /// ExposeProtoCasing and ExposeInvalidFormat for one expanded EXPOSE word.
    pub(super) fn lint_expose(&self, port: &str, span: Span) {
        let parts: Vec<&str> = port.split(':').collect();
        let container = parts.last().copied().unwrap_or_default();
        if let Some((_, proto)) = container.split_once('/')
            && proto != proto.to_lowercase()
        {
            self.report(
                Rule::ExposeProtoCasing,
                span,
                format!("the protocol of EXPOSE {port} should be lowercase"),
            );
        }
        if parts.len() > 1 && parts[..parts.len() - 1].iter().any(|p| !p.is_empty()) {
            self.report(
                Rule::ExposeInvalidFormat,
                span,
                format!("EXPOSE {port} names an address or a host port; EXPOSE takes container ports only"),
            );
        }
    }

    /// JSONArgsRecommended (shell-form CMD or ENTRYPOINT without a SHELL) and
    /// MultipleInstructionsDisallowed, for CMD, ENTRYPOINT and HEALTHCHECK of stage `i`.
    pub(super) fn lint_once_and_json(
        &mut self,
        i: usize,
        name: &'static str,
        shell_form: bool,
        span: Span,
    ) {
        if let Some(earlier) = self.stages[i].once.mark(name, span) {
            self.report(
                Rule::MultipleInstructionsDisallowed,
                earlier,
                format!(
                    "{name} appears more than once in this stage; only the last one takes effect"
                ),
            );
        }
        let has_shell = self.stages[i]
            .state
            .as_ref()
            .is_some_and(|st| !st.image.config.shell.is_empty());
        if shell_form && name != "HEALTHCHECK" && !has_shell {
            self.report(
                Rule::JSONArgsRecommended,
                span,
                format!(
                    "{name} in shell form runs under /bin/sh, which does not pass signals on; write it as a JSON array"
                ),
            );
        }
    }

    /// WorkdirRelativePath: the first WORKDIR a stage sets is relative.
    pub(super) fn lint_workdir(&mut self, i: usize, path: &str, span: Span) {
        let stage = &mut self.stages[i];
        if !stage.workdir_set && !path.starts_with('/') {
            self.report(
                Rule::WorkdirRelativePath,
                span,
                format!("WORKDIR {path:?} is relative to the base image's working directory, which may change"),
            );
        }
        self.stages[i].workdir_set = true;
    }
}

/// The option closest to `value` by edit distance, if one is close enough to be a typo.
fn closest(value: &str, options: &[String]) -> Option<String> {
    options
        .iter()
        .map(|o| (strsim::levenshtein(value, o), o))
        .filter(|(d, o)| *d > 0 && *d <= 2.max(o.len() / 3))
        .min()
        .map(|(_, o)| o.clone())
}
