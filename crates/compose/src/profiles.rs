//! Profiles: which services a project runs. A service without `profiles` always runs; one
//! with profiles runs when one of them is active (`*` activates all). Naming a service on the
//! command line enables it and what it depends on, whatever its profiles.

use std::collections::BTreeSet;

use crate::model::Project;

/// Moves the services that no active profile enables to `project.disabled`.
pub(crate) fn apply(project: &mut Project, mut active: Vec<String>) {
    active.sort();
    active.dedup();
    let all = active.iter().any(|p| p == "*");
    let names: Vec<String> = project.services.keys().cloned().collect();
    for name in names {
        let enabled = {
            let s = &project.services[&name];
            s.profiles.is_empty() || all || s.profiles.iter().any(|p| active.contains(p))
        };
        if !enabled && let Some(s) = project.services.remove(&name) {
            project.disabled.insert(name, s);
        }
    }
    project.profiles = active;
}

impl Project {
    /// Enables the named services (as `docker compose up NAME` does for a service behind a
    /// profile) and, transitively, the services they depend on. Unknown names are returned.
    pub fn enable_services(&mut self, names: &[&str]) -> Vec<String> {
        let mut unknown = Vec::new();
        let mut todo: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(s) = self.disabled.remove(&name) {
                self.services.insert(name.clone(), s);
            }
            match self.services.get(&name) {
                Some(s) => todo.extend(s.depends_on.keys().cloned()),
                None => unknown.push(name),
            }
        }
        unknown
    }
}
