//! The service dependency graph: `depends_on` plus the implicit edge of
//! `network_mode: service:NAME`. Start order is topological (dependencies first, ties by name),
//! stop order its reverse; a cycle is found and named.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Project, Service};

/// The services `service` must start after (only those present in `services`).
pub(crate) fn edges<'a>(
    service: &'a Service,
    services: &'a BTreeMap<String, Service>,
) -> impl Iterator<Item = &'a str> + 'a {
    let shared = service
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("service:"));
    service
        .depends_on
        .keys()
        .map(String::as_str)
        .chain(shared)
        .filter(|d| services.contains_key(*d))
}

impl Project {
    /// The enabled services `name` depends on directly (sorted, no duplicates).
    pub fn dependencies(&self, name: &str) -> Vec<String> {
        let Some(s) = self.services.get(name) else {
            return Vec::new();
        };
        let set: BTreeSet<&str> = edges(s, &self.services).collect();
        set.into_iter().map(String::from).collect()
    }

    /// Every enabled service, dependencies before their dependents; among services that are
    /// ready at the same time, by name. A cycle was refused at load time; if the model was
    /// changed to have one since, its services come last, by name.
    pub fn start_order(&self) -> Vec<String> {
        let mut remaining: BTreeMap<&str, BTreeSet<&str>> = self
            .services
            .iter()
            .map(|(n, s)| (n.as_str(), edges(s, &self.services).collect()))
            .collect();
        let mut order = Vec::new();
        loop {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, deps)| deps.is_empty())
                .map(|(n, _)| *n)
                .collect();
            if ready.is_empty() {
                break;
            }
            for n in &ready {
                remaining.remove(n);
                order.push(n.to_string());
            }
            for deps in remaining.values_mut() {
                for n in &ready {
                    deps.remove(n);
                }
            }
        }
        order.extend(remaining.keys().map(|n| n.to_string()));
        order
    }

    /// The reverse of [`Project::start_order`]: dependents stop before their dependencies.
    pub fn stop_order(&self) -> Vec<String> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// `names` and everything they depend on, transitively, in start order.
    pub fn with_dependencies(&self, names: &[&str]) -> Vec<String> {
        let mut wanted = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        while let Some(n) = todo.pop() {
            if wanted.insert(n.clone()) {
                todo.extend(self.dependencies(&n));
            }
        }
        self.start_order()
            .into_iter()
            .filter(|n| wanted.contains(n))
            .collect()
    }
}

/// A dependency cycle among `services`, as `[a, b, c, a]`, if there is one.
pub(crate) fn find_cycle(services: &BTreeMap<String, Service>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        services: &'a BTreeMap<String, Service>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        path.push(name);
        if let Some(s) = services.get(name) {
            for dep in edges(s, services) {
                if let Some(c) = visit(dep, services, marks, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in services.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(name, services, &mut marks, &mut path) {
            return Some(c);
        }
    }
    None
}
