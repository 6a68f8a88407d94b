//! Build checks: the rules BuildKit's Dockerfile frontend lints a build with (`docker build
//! --check`), their configuration (the `# check=skip=...;error=true;experimental=...` directive
//! or the `BUILDKIT_DOCKERFILE_CHECK` build argument) and the warnings they produce.
//!
//! The rules themselves run inside lowering (`lower::lint` and the dispatch of each
//! instruction), where the stage's environment and the resolved base images are known; this
//! module owns their names, their configuration and the record of what they found.

use std::collections::BTreeSet;
use std::fmt;

use crate::diagnostic::Span;

/// One build check. The names are BuildKit's, because users skip rules by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    StageNameCasing,
    FromAsCasing,
    NoEmptyContinuation,
    ConsistentInstructionCasing,
    DuplicateStageName,
    ReservedStageName,
    JSONArgsRecommended,
    MaintainerDeprecated,
    UndefinedArgInFrom,
    WorkdirRelativePath,
    UndefinedVar,
    MultipleInstructionsDisallowed,
    LegacyKeyValueFormat,
    InvalidBaseImagePlatform,
    RedundantTargetPlatform,
    SecretsUsedInArgOrEnv,
    InvalidDefaultArgInFrom,
    FromPlatformFlagConstDisallowed,
    CopyIgnoredFile,
    InvalidDefinitionDescription,
    ExposeProtoCasing,
    ExposeInvalidFormat,
}

impl Rule {
    /// Every rule, in the order BuildKit's documentation lists them.
    pub const ALL: [Rule; 22] = [
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::NoEmptyContinuation,
        Rule::ConsistentInstructionCasing,
        Rule::DuplicateStageName,
        Rule::ReservedStageName,
        Rule::JSONArgsRecommended,
        Rule::MaintainerDeprecated,
        Rule::UndefinedArgInFrom,
        Rule::WorkdirRelativePath,
        Rule::UndefinedVar,
        Rule::MultipleInstructionsDisallowed,
        Rule::LegacyKeyValueFormat,
        Rule::InvalidBaseImagePlatform,
        Rule::RedundantTargetPlatform,
        Rule::SecretsUsedInArgOrEnv,
        Rule::InvalidDefaultArgInFrom,
        Rule::FromPlatformFlagConstDisallowed,
        Rule::CopyIgnoredFile,
        Rule::InvalidDefinitionDescription,
        Rule::ExposeProtoCasing,
        Rule::ExposeInvalidFormat,
    ];

    /// The rule's name, as `check=skip=` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "StageNameCasing",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::ReservedStageName => "ReservedStageName",
            Rule::JSONArgsRecommended => "JSONArgsRecommended",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::InvalidBaseImagePlatform => "InvalidBaseImagePlatform",
            Rule::RedundantTargetPlatform => "RedundantTargetPlatform",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
            Rule::InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom",
            Rule::FromPlatformFlagConstDisallowed => "FromPlatformFlagConstDisallowed",
            Rule::CopyIgnoredFile => "CopyIgnoredFile",
            Rule::InvalidDefinitionDescription => "InvalidDefinitionDescription",
            Rule::ExposeProtoCasing => "ExposeProtoCasing",
            Rule::ExposeInvalidFormat => "ExposeInvalidFormat",
        }
    }

    /// What the rule asks for, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "stage names are written in lowercase",
            Rule::FromAsCasing => "the AS keyword has the same case as its FROM",
            Rule::NoEmptyContinuation => {
                "an empty line inside a continued instruction is deprecated and will become an error"
            }
            Rule::ConsistentInstructionCasing => {
                "instruction keywords are all uppercase or all lowercase across the Dockerfile"
            }
            Rule::DuplicateStageName => "each stage has its own name",
            Rule::ReservedStageName => "`context` and `scratch` are not stage names",
            Rule::JSONArgsRecommended => {
                "CMD and ENTRYPOINT in exec (JSON) form, so the process gets signals directly"
            }
            Rule::MaintainerDeprecated => {
                "MAINTAINER is deprecated; the image author goes in a LABEL"
            }
            Rule::UndefinedArgInFrom => "FROM uses only ARGs declared before the first stage",
            Rule::WorkdirRelativePath => {
                "the first WORKDIR of a stage is absolute, so a new base image cannot move it"
            }
            Rule::UndefinedVar => "variables are defined before they are used",
            Rule::MultipleInstructionsDisallowed => {
                "CMD, ENTRYPOINT and HEALTHCHECK appear once per stage (only the last counts)"
            }
            Rule::LegacyKeyValueFormat => "ENV and LABEL use key=value, not `key value`",
            Rule::InvalidBaseImagePlatform => {
                "the base image's platform is the platform being built for"
            }
            Rule::RedundantTargetPlatform => {
                "FROM --platform=$TARGETPLATFORM says what FROM does anyway"
            }
            Rule::SecretsUsedInArgOrEnv => {
                "secrets go through RUN --mount=type=secret, not ARG or ENV (both end up in the image)"
            }
            Rule::InvalidDefaultArgInFrom => {
                "the default values of global ARGs give FROM a valid image name"
            }
            Rule::FromPlatformFlagConstDisallowed => {
                "FROM --platform takes a variable, not a fixed platform"
            }
            Rule::CopyIgnoredFile => "COPY and ADD do not name files that .dockerignore excludes",
            Rule::InvalidDefinitionDescription => {
                "a comment right above a stage or ARG starts with its name, as a description"
            }
            Rule::ExposeProtoCasing => "EXPOSE protocols are lowercase",
            Rule::ExposeInvalidFormat => {
                "EXPOSE lists container ports only, without an address or host port"
            }
        }
    }

    /// Experimental rules run only when `check=experimental=` names them (or `all`).
    pub fn experimental(self) -> bool {
        matches!(
            self,
            Rule::CopyIgnoredFile | Rule::InvalidDefinitionDescription
        )
    }

    /// The rule's documentation page (Docker's, where BuildKit links one).
    pub fn url(self) -> Option<String> {
        if self == Rule::InvalidBaseImagePlatform {
            return None;
        }
        let mut kebab = String::new();
        let name = self.name();
        let chars: Vec<char> = name.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            // A capital starts a word, unless it continues an acronym (`JSONArgs` -> json-args).
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if c.is_ascii_uppercase() && i > 0 && (!prev_upper || next_lower) {
                kebab.push('-');
            }
            kebab.push(c.to_ascii_lowercase());
        }
        Some(format!(
            "https://docs.docker.com/go/dockerfile/rule/{kebab}/"
        ))
    }

    /// A rule by name (as written in `check=skip=`).
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rules run and what a violation means, from `# check=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    /// Rule names to skip. Unknown names are kept (and ignored), as BuildKit does.
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: a violation fails the build.
    pub error: bool,
}

/// Why a `check=` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid check option {0:?}: expected skip=RULE,...|all, experimental=RULE,...|all or error=true|false, separated by ';'"
)]
pub struct CheckConfigError(pub String);

impl CheckConfig {
    /// Parses `skip=A,B;error=true;experimental=all` (any order, each key optional).
    pub fn parse(text: &str) -> Result<CheckConfig, CheckConfigError> {
        let mut config = CheckConfig::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(config);
        }
        let names = |v: &str| -> BTreeSet<String> {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for part in text.split(';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(CheckConfigError(part.to_owned()));
            };
            let value = value.trim();
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip = names(value),
                "experimental" if value == "all" => config.experimental_all = true,
                "experimental" => config.experimental = names(value),
                "error" => {
                    config.error = parse_bool(value).ok_or(CheckConfigError(part.to_owned()))?
                }
                _ => return Err(CheckConfigError(part.to_owned())),
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs under this configuration.
    pub fn enabled(&self, rule: Rule) -> bool {
        if rule.experimental() {
            self.experimental_all || self.experimental.contains(rule.name())
        } else {
            !(self.skip_all || self.skip.contains(rule.name()))
        }
    }
}

/// Go's `strconv.ParseBool`, which BuildKit reads `error=` with.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One violation: which rule, what exactly, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckWarning {
    pub rule: Rule,
    pub message: String,
    /// The Dockerfile's name as the user gave it.
    pub file: String,
    /// The instruction the rule reports (its first line and column for a one-line summary).
    pub span: Span,
}

impl CheckWarning {
    /// `RULE: message (FILE:LINE:COL)`, the line a progress view shows.
    pub fn short(&self) -> String {
        format!(
            "{}: {} ({}:{}:{})",
            self.rule, self.message, self.file, self.span.start.line, self.span.start.column
        )
    }
}

/// The running record of one lowering's checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checker {
    pub(crate) config: CheckConfig,
    pub(crate) warnings: Vec<CheckWarning>,
    file: String,
}

impl Checker {
    pub(crate) fn new(config: CheckConfig, file: &str) -> Checker {
        Checker {
            config,
            warnings: Vec::new(),
            file: file.to_owned(),
        }
    }

    /// Records a violation of `rule` at `span`, unless the configuration turns the rule off.
    pub(crate) fn report(&mut self, rule: Rule, span: Span, message: impl Into<String>) {
        if self.config.enabled(rule) {
            self.warnings.push(CheckWarning {
                rule,
                message: message.into(),
                file: self.file.clone(),
                span,
            });
        }
    }

    /// With `error=true`, the message that fails the build: every rule that was violated.
    pub(crate) fn failure(&self) -> Option<String> {
        if !self.config.error || self.warnings.is_empty() {
            return None;
        }
        let rules: BTreeSet<&str> = self.warnings.iter().map(|w| w.rule.name()).collect();
        Some(format!(
            "lint violation found for rules: {}",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }

    /// The warnings in Dockerfile order (by line; a line's warnings in the order found).
    pub(crate) fn into_sorted(mut self) -> Vec<CheckWarning> {
        self.warnings.sort_by_key(|w| w.span.start.line);
        self.warnings
    }
}

/// Whether `key` (an ARG or ENV name) looks like it holds a secret: one of its `_`-separated
/// words is a credential word (`token`, `password`, `key`, ...) and none is `public`.
pub fn looks_secret(key: &str) -> bool {
    const SECRET: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let words: Vec<String> = key.split('_').map(str::to_ascii_lowercase).collect();
    words.iter().any(|w| SECRET.contains(&w.as_str())) && !words.iter().any(|w| w == "public")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_the_directive_grammar() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert!(c.error);
        assert!(!c.enabled(Rule::JSONArgsRecommended));
        assert!(!c.enabled(Rule::StageNameCasing));
        assert!(c.enabled(Rule::UndefinedVar));
        assert!(
            !c.enabled(Rule::CopyIgnoredFile),
            "experimental is off by default"
        );
        let all = CheckConfig::parse("skip=all;experimental=all").unwrap();
        assert!(!all.enabled(Rule::UndefinedVar));
        assert!(all.enabled(Rule::CopyIgnoredFile));
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("colour=red").is_err());
        assert!(CheckConfig::parse("skip").is_err());
        assert_eq!(CheckConfig::parse("  ").unwrap(), CheckConfig::default());
    }

    #[test]
    fn urls_are_kebab_case_names() {
        assert_eq!(
            Rule::JSONArgsRecommended.url().unwrap(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            Rule::FromAsCasing.url().unwrap(),
            "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
        );
        assert_eq!(Rule::InvalidBaseImagePlatform.url(), None);
        for rule in Rule::ALL {
            assert_eq!(Rule::from_name(rule.name()), Some(rule));
        }
    }

    #[test]
    fn secret_names_are_whole_words() {
        assert!(looks_secret("API_TOKEN"));
        assert!(looks_secret("db_password"));
        assert!(looks_secret("AUTH"));
        assert!(!looks_secret("PUBLIC_KEY"));
        assert!(!looks_secret("TOKENIZER"));
        assert!(!looks_secret("MONKEY"));
    }
}
