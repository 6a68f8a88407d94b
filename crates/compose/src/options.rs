//! What a load needs to know (the `docker compose` global flags and the environment), the
//! default file search, and project-name rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ComposeError;

/// The default compose files, in the order Compose prefers them.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The override files; the first one found beside the default file is merged over it.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The inputs of [`Project::load`](crate::Project::load): the global flags of `docker compose`
/// and the process environment, passed in so that loading stays a function of its inputs.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; `-` reads [`LoadOptions::stdin`]. Empty: `COMPOSE_FILE`, else the
    /// default search from `working_dir` upwards.
    pub files: Vec<PathBuf>,
    /// `--project-directory`; default: the first file's directory.
    pub project_directory: Option<PathBuf>,
    /// `-p`; must already be a valid name.
    pub project_name: Option<String>,
    /// `--env-file`s, in order (later wins); giving any replaces the project's `.env`.
    pub env_files: Vec<PathBuf>,
    /// `--profile`s (added to `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// The directory relative paths on the command line are taken from (the process's cwd).
    pub working_dir: PathBuf,
    /// The shell environment; it wins over every env file.
    pub environment: BTreeMap<String, String>,
    /// The content of a `-` file.
    pub stdin: Option<String>,
}

impl LoadOptions {
    /// Options for the current process: its cwd and environment, no flags.
    pub fn from_process() -> std::io::Result<LoadOptions> {
        Ok(LoadOptions {
            working_dir: std::env::current_dir()?,
            environment: std::env::vars().collect(),
            ..LoadOptions::default()
        })
    }

    /// A path from the command line, absolute.
    pub(crate) fn absolute(&self, p: &Path) -> PathBuf {
        crate::paths::clean(&self.working_dir.join(p))
    }
}

/// The default file search: the first of [`DEFAULT_FILES`] in `dir` or its nearest ancestor,
/// plus the first override file beside it. Also returns the names that were shadowed (Compose
/// warns when several default files exist).
pub(crate) fn find_default_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>), ComposeError> {
    for d in dir.ancestors() {
        let found: Vec<&str> = DEFAULT_FILES
            .iter()
            .copied()
            .filter(|f| d.join(f).is_file())
            .collect();
        let Some(first) = found.first() else { continue };
        let mut files = vec![d.join(first)];
        if let Some(o) = OVERRIDE_FILES.iter().find(|f| d.join(f).is_file()) {
            files.push(d.join(o));
        }
        let shadowed = found[1..].iter().map(|s| s.to_string()).collect();
        return Ok((files, shadowed));
    }
    Err(ComposeError::NoConfigFile {
        dir: dir.to_path_buf(),
    })
}

/// Compose's normalization: lowercase, keep `[a-z0-9_-]`, no leading `_` or `-`.
pub fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// A name given with `-p` or `COMPOSE_PROJECT_NAME` must already be normalized.
pub(crate) fn check_project_name(name: &str, from: &str) -> Result<(), ComposeError> {
    if name.is_empty() || normalize_project_name(name) != name {
        return Err(ComposeError::Usage(format!(
            "invalid project name {name:?} (from {from}): it must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_as_compose() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("__x-y"), "x-y");
        assert_eq!(normalize_project_name("-_-"), "");
        assert!(check_project_name("good_name-1", "-p").is_ok());
        assert!(check_project_name("Bad", "-p").is_err());
        assert!(check_project_name("-bad", "-p").is_err());
    }
}
