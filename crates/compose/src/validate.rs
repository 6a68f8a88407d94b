//! Checks across the model, each located: references to services, networks, volumes, secrets
//! and configs that do not exist (with a did-you-mean), `depends_on` cycles (named), services
//! with neither `image` nor `build`, `container_name` with several replicas, `network_mode`
//! together with `networks`.

use crate::convert::{did_you_mean, join};
use crate::diagnostic::{Diagnostic, Loc, Severity};
use crate::error::Problem;
use crate::model::{Project, VolumeKind};
use crate::order::find_cycle;

pub(crate) fn validate(p: &Project) -> Vec<Problem> {
    let mut out = Vec::new();
    let loc = |path: &str| p.location(path).unwrap_or_default();
    let missing = |out: &mut Vec<Problem>, path: &str, what: &str, name: &str, known: Vec<&str>| {
        let mut problem = Problem::new(loc(path), path, format!("undefined {what} {name:?}"));
        if let Some(best) = did_you_mean(name, known.iter()) {
            problem = problem.with_help(format!("did you mean `{best}`?"));
        }
        out.push(problem);
    };
    for (name, s) in &p.services {
        let base = format!("services.{name}");
        if s.image.is_none() && s.build.is_none() {
            out.push(Problem::new(
                loc(&base),
                &base,
                "has neither an image nor a build context",
            ));
        }
        for (dep, d) in &s.depends_on {
            let path = join(&join(&base, "depends_on"), dep);
            if p.services.contains_key(dep) {
                continue;
            }
            if let Some(disabled) = p.disabled.get(dep) {
                let msg = format!(
                    "depends on {dep:?}, which no active profile enables (its profiles: {})",
                    disabled.profiles.join(", ")
                );
                out.push(if d.required {
                    Problem::new(loc(&path), &path, msg)
                } else {
                    Problem::warning(loc(&path), &path, msg)
                });
            } else if d.required {
                let known: Vec<&str> = p.services.keys().map(String::as_str).collect();
                missing(&mut out, &path, "service", dep, known);
            } else {
                out.push(Problem::warning(
                    loc(&path),
                    &path,
                    format!("optional dependency {dep:?} is not defined, ignored"),
                ));
            }
        }
        if let Some(mode) = &s.network_mode {
            let path = join(&base, "network_mode");
            if let Some(other) = mode.strip_prefix("service:") {
                if !p.services.contains_key(other) {
                    let known: Vec<&str> = p.services.keys().map(String::as_str).collect();
                    missing(&mut out, &path, "service", other, known);
                }
            } else if !(matches!(mode.as_str(), "host" | "none" | "bridge")
                || mode.starts_with("container:"))
            {
                out.push(Problem::new(
                    loc(&path),
                    &path,
                    format!("invalid network_mode {mode:?}, expected host, none, bridge, service:NAME or container:NAME"),
                ));
            }
            if !s.networks.is_empty() {
                out.push(Problem::new(
                    loc(&path),
                    &path,
                    "network_mode and networks cannot be combined",
                ));
            }
        }
        for net in s.networks.keys() {
            if !p.networks.contains_key(net) {
                let path = join(&join(&base, "networks"), net);
                missing(
                    &mut out,
                    &path,
                    "network",
                    net,
                    p.networks.keys().map(String::as_str).collect(),
                );
            }
        }
        for (i, v) in s.volumes.iter().enumerate() {
            if v.kind != VolumeKind::Volume {
                continue;
            }
            if let Some(src) = &v.source
                && !p.volumes.contains_key(src)
            {
                let path = format!("{base}.volumes[{i}]");
                missing(
                    &mut out,
                    &path,
                    "volume",
                    src,
                    p.volumes.keys().map(String::as_str).collect(),
                );
            }
        }
        for (section, refs, defined) in [
            ("secrets", &s.secrets, &p.secrets),
            ("configs", &s.configs, &p.configs),
        ] {
            for (i, r) in refs.iter().enumerate() {
                if !defined.contains_key(&r.source) {
                    let path = format!("{base}.{section}[{i}]");
                    let what = if section == "secrets" {
                        "secret"
                    } else {
                        "config"
                    };
                    missing(
                        &mut out,
                        &path,
                        what,
                        &r.source,
                        defined.keys().map(String::as_str).collect(),
                    );
                }
            }
        }
        if s.container_name.is_some() && s.replicas() > 1 {
            let path = join(&base, "container_name");
            out.push(Problem::new(
                loc(&path),
                &path,
                format!(
                    "a service with a container_name cannot have {} replicas",
                    s.replicas()
                ),
            ));
        }
    }
    if let Some(cycle) = find_cycle(&p.services) {
        let path = format!("services.{}.depends_on.{}", cycle[0], cycle[1]);
        let at = loc(&path);
        out.push(Problem::new(
            at,
            &path,
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    out
}

impl Project {
    /// Where a model path (`services.web.depends_on.db`, `services.web.volumes[0]`) was
    /// defined, or the nearest enclosing path that has a location.
    pub(crate) fn location(&self, path: &str) -> Option<Loc> {
        let mut key = path.to_string();
        loop {
            if let Some(l) = self.locations.get(&key) {
                return Some(*l);
            }
            let i = key.rfind(['.', '['])?;
            key.truncate(i);
        }
    }

    /// A diagnostic about `path` for checks made after loading (the planner's, e.g. a
    /// `service_healthy` dependency without a healthcheck), located and rendered like the
    /// loader's own. Unlocated if nothing along the path has a location.
    pub fn diagnostic(
        &self,
        severity: Severity,
        path: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        match self.location(path) {
            Some(loc) => self.sources.diagnostic(severity, loc, path, message),
            None => {
                let mut d = Diagnostic::unlocated(severity, message);
                d.path = Some(path.to_string());
                d
            }
        }
    }
}
