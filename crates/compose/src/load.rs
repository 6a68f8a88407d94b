//! The loading pipeline: find the files, assemble the environment, read each file (YAML →
//! interpolation → short forms → paths → `include` → `extends`), merge the files, name the
//! project, convert to the typed model, apply profiles, validate.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::convert::{Cx, convert_project};
use crate::diagnostic::{Diagnostic, Severity, SourceMap};
use crate::error::{ComposeError, Problem, invalid};
use crate::extends::apply_extends;
use crate::interpolate::interpolate_node;
use crate::merge::{drop_resets, merge_files, normalize_service};
use crate::model::Project;
use crate::options::{LoadOptions, check_project_name, find_default_files, normalize_project_name};
use crate::yaml::{self, Map, Node, Value};
use crate::{dotenv, paths, profiles, validate};

/// A loaded project and the warnings found on the way (unset variables, obsolete `version`,
/// shadowed default files, optional dependencies that are missing).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<Diagnostic>,
}

pub(crate) struct Loader {
    pub sources: SourceMap,
    pub problems: Vec<Problem>,
    pub home: Option<String>,
    /// The shell environment: included projects interpolate with it over their own `.env`.
    pub shell: Env,
    stdin: Option<String>,
    /// Files being included, to refuse include cycles.
    including: Vec<PathBuf>,
    /// `extends` cycles already reported (by their members), so each is named once.
    pub reported_cycles: std::collections::BTreeSet<Vec<(PathBuf, String)>>,
    pub cwd: PathBuf,
}

/// The variables one project interpolates with: its env files overlaid by the shell.
pub(crate) type Env = BTreeMap<String, String>;

pub(crate) fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
    // Everything below works on absolute paths; a relative (or empty) working directory is
    // taken from the process's.
    let owned;
    let opts = if opts.working_dir.is_absolute() {
        opts
    } else {
        let cwd = std::env::current_dir().map_err(|source| ComposeError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        owned = LoadOptions {
            working_dir: paths::clean(&cwd.join(&opts.working_dir)),
            ..opts.clone()
        };
        &owned
    };
    let shell = &opts.environment;
    let mut loader = Loader {
        sources: SourceMap::default(),
        problems: Vec::new(),
        home: shell.get("HOME").cloned(),
        shell: shell.clone(),
        stdin: opts.stdin.clone(),
        including: Vec::new(),
        reported_cycles: Default::default(),
        cwd: opts.working_dir.clone(),
    };
    let mut warnings = Vec::new();

    // COMPOSE_* settings may come from the `.env` of the project directory or the cwd.
    let pre_dir = opts
        .project_directory
        .as_ref()
        .map_or_else(|| opts.working_dir.clone(), |d| opts.absolute(d));
    let explicit_env_files: Vec<PathBuf> =
        opts.env_files.iter().map(|f| opts.absolute(f)).collect();
    let pre_env = if explicit_env_files.is_empty() {
        loader.env_from_files(&[pre_dir.join(".env")], shell, false)?
    } else {
        loader.env_from_files(&explicit_env_files, shell, true)?
    };
    let setting = |k: &str| pre_env.get(k).filter(|v| !v.is_empty()).cloned();

    let files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files
            .iter()
            .map(|f| {
                if f == Path::new("-") {
                    f.clone()
                } else {
                    opts.absolute(f)
                }
            })
            .collect()
    } else if let Some(list) = setting("COMPOSE_FILE") {
        let sep = setting("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|| ":".into());
        list.split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| opts.absolute(Path::new(f)))
            .collect()
    } else {
        let (found, shadowed) = find_default_files(&opts.working_dir)?;
        if !shadowed.is_empty() {
            warnings.push(Diagnostic::unlocated(
                Severity::Warning,
                format!(
                    "found several config files ({}), using {}",
                    shadowed.join(", "),
                    found[0].display()
                ),
            ));
        }
        found
    };
    let project_dir = match &opts.project_directory {
        Some(d) => opts.absolute(d),
        None => match files.first() {
            Some(f) if f != Path::new("-") => f.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => opts.working_dir.clone(),
        },
    };
    let (env, env_files) = if explicit_env_files.is_empty() {
        let dotenv = project_dir.join(".env");
        let env = loader.env_from_files(std::slice::from_ref(&dotenv), shell, false)?;
        (
            env,
            if dotenv.is_file() {
                vec![dotenv]
            } else {
                Vec::new()
            },
        )
    } else {
        (pre_env.clone(), explicit_env_files)
    };

    // Each file on its own, then merged in order.
    let mut merged: Option<Node> = None;
    for file in &files {
        let Some(tree) = loader.load_project_file(file, &project_dir, &env) else {
            continue;
        };
        merged = Some(match merged {
            None => tree,
            Some(base) => merge_files(base, tree),
        });
    }
    loader.fail_on_errors(&mut warnings)?;
    let mut root = merged.unwrap_or_else(|| Node::map(Map::default(), Default::default()));
    drop_resets(&mut root);
    let root_map = root.as_map().cloned().unwrap_or_default();

    if let Some(e) = root_map.entry("version") {
        loader.problems.push(Problem::warning(
            e.key_loc,
            "",
            "the attribute `version` is obsolete, it will be ignored",
        ));
    }
    let name = project_name(&mut loader, opts, &pre_env, &root_map, &project_dir)?;

    let mut cx = Cx {
        problems: std::mem::take(&mut loader.problems),
        locations: HashMap::new(),
        sources: &mut loader.sources,
        env: &env,
        project_dir: &project_dir,
    };
    let mut project = convert_project(&mut cx, &root_map, &name);
    let Cx {
        problems,
        locations,
        ..
    } = cx;
    loader.problems = problems;
    project.locations = locations;
    loader.fail_on_errors(&mut warnings)?;

    project.working_dir = project_dir;
    project.config_files = files;
    project.env_files = env_files;
    project.environment = env;
    let mut active: Vec<String> = opts.profiles.clone();
    if let Some(list) = setting("COMPOSE_PROFILES") {
        active.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    profiles::apply(&mut project, active);
    loader.problems.extend(validate::validate(&project));
    loader.fail_on_errors(&mut warnings)?;
    project.sources = loader.sources;
    Ok(Loaded { project, warnings })
}

/// `-p` > `COMPOSE_PROJECT_NAME` > the last `name:` > the project directory's name.
fn project_name(
    loader: &mut Loader,
    opts: &LoadOptions,
    pre_env: &Env,
    root: &Map,
    project_dir: &Path,
) -> Result<String, ComposeError> {
    if let Some(n) = &opts.project_name {
        check_project_name(n, "-p")?;
        return Ok(n.clone());
    }
    if let Some(n) = pre_env
        .get("COMPOSE_PROJECT_NAME")
        .filter(|n| !n.is_empty())
    {
        check_project_name(n, "COMPOSE_PROJECT_NAME")?;
        return Ok(n.clone());
    }
    if let Some(e) = root.entry("name")
        && let Some(n) = e.value.as_str()
    {
        let normalized = normalize_project_name(n);
        if normalized.is_empty() {
            loader.problems.push(Problem::new(
                e.value.loc,
                "name",
                format!("{n:?} is not a usable project name"),
            ));
            return Err(invalid(
                std::mem::take(&mut loader.problems),
                &loader.sources,
            ));
        }
        return Ok(normalized);
    }
    let base = project_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let normalized = normalize_project_name(&base);
    if normalized.is_empty() {
        return Err(ComposeError::Usage(format!(
            "cannot derive a project name from the directory {}: use -p or `name:`",
            project_dir.display()
        )));
    }
    Ok(normalized)
}

impl Loader {
    /// Errors end the load; warnings move to `warnings`.
    fn fail_on_errors(&mut self, warnings: &mut Vec<Diagnostic>) -> Result<(), ComposeError> {
        let (errors, warns): (Vec<Problem>, Vec<Problem>) = std::mem::take(&mut self.problems)
            .into_iter()
            .partition(|p| p.severity == Severity::Error);
        warnings.extend(warns.into_iter().map(|p| p.into_diagnostic(&self.sources)));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(errors, &self.sources))
        }
    }

    /// The shell environment over the given env files (later files win). Missing files are
    /// an error only when `required` (files named with `--env-file`).
    pub fn env_from_files(
        &mut self,
        files: &[PathBuf],
        shell: &Env,
        required: bool,
    ) -> Result<Env, ComposeError> {
        let mut from_files: Env = BTreeMap::new();
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(source) => {
                    return Err(ComposeError::Read {
                        path: f.clone(),
                        source,
                    });
                }
            };
            let id = self.sources.add(self.display(f), Arc::from(text.as_str()));
            let lookup = |n: &str| shell.get(n).or_else(|| from_files.get(n)).cloned();
            match dotenv::parse(&text, id, &lookup) {
                Ok(vars) => from_files.extend(vars),
                Err(p) => return Err(invalid(vec![p], &self.sources)),
            }
        }
        from_files.extend(shell.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(from_files)
    }

    /// How a file is named in diagnostics: relative to the cwd when below it.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.cwd)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Reads and parses one file, interpolates it and normalizes its services and paths.
    /// Problems go to `self.problems`; `None` when the file is unusable.
    pub fn read_tree(&mut self, file: &Path, base: &Path, env: &Env) -> Option<Node> {
        let text = if file == Path::new("-") {
            self.stdin.clone().unwrap_or_default()
        } else {
            match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    let id = self.sources.add(self.display(file), Arc::from(""));
                    self.problems.push(Problem::new(
                        crate::diagnostic::Loc {
                            file: id,
                            span: Default::default(),
                        },
                        "",
                        format!("cannot read {}: {e}", file.display()),
                    ));
                    return None;
                }
            }
        };
        let id = self
            .sources
            .add(self.display(file), Arc::from(text.as_str()));
        let docs = match yaml::parse(&text, id) {
            Ok(d) => d,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        let mut root = docs
            .into_iter()
            .reduce(merge_files)
            .unwrap_or_else(|| Node::map(Map::default(), Default::default()));
        if root.is_null() {
            root = Node::map(Map::default(), root.loc);
        }
        if root.as_map().is_none() {
            self.problems.push(Problem::new(
                root.loc,
                "",
                format!("a compose file is a mapping, found {}", root.describe()),
            ));
            return None;
        }
        let lookup = |n: &str| env.get(n).cloned();
        interpolate_node(&mut root, "", &lookup, &mut self.problems);
        if let Some(services) = root.as_map_mut().and_then(|m| m.get_mut("services"))
            && let Value::Map(m) = &mut services.value
        {
            for s in &mut m.entries {
                normalize_service(&mut s.value);
            }
        }
        paths::resolve_file(&mut root, base, self.home.as_deref());
        Some(root)
    }

    /// A file of the project (or of an included project): read, then its `include`s merged
    /// under it, then its `extends` resolved.
    pub fn load_project_file(&mut self, file: &Path, base: &Path, env: &Env) -> Option<Node> {
        let mut root = self.read_tree(file, base, env)?;
        let includes = root.as_map_mut().and_then(|m| m.remove("include"));
        if let Some(entry) = includes {
            let key = file.to_path_buf();
            self.including.push(key);
            for included in crate::include::load_includes(self, &entry.value, base, env) {
                root = merge_files(included, root);
            }
            self.including.pop();
        }
        apply_extends(self, &mut root, file, env);
        Some(root)
    }

    pub fn is_including(&self, file: &Path) -> bool {
        self.including.iter().any(|f| f == file)
    }
}
