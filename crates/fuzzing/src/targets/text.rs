//! Text inputs of the frontend and the compose loader: a Dockerfile, a `.dockerignore` with
//! paths to match, a compose file.

use std::collections::BTreeMap;

use kiln_compose::{LoadOptions, Project};
use kiln_frontend::dockerignore::PatternMatcher;
use kiln_frontend::{instructions, syntax};

/// Arbitrary bytes as a Dockerfile through the parser, the BuildKit-format dump, the typed
/// instructions and the diagnostic renderer; every parse error has a span.
pub fn dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match syntax::parse(data) {
        Ok(ast) => {
            let _ = ast.dump();
            for warning in &ast.warnings {
                let _ = warning.render("Dockerfile", &text);
            }
            if let Err(d) = instructions::Dockerfile::from_ast(&ast) {
                let _ = d.render("Dockerfile", &text);
            }
            let _ = instructions::parse_instructions(&ast);
        }
        Err(d) => {
            assert!(d.span.is_some(), "parse error without a span: {d}");
            let _ = d.render("Dockerfile", &text);
        }
    }
}

/// `.dockerignore` text, a NUL byte, then newline-separated paths: nothing panics, and the
/// incremental walker API agrees with `is_excluded` for every path and each of its parents.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (ignore, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let Ok(matcher) = PatternMatcher::parse(ignore) else {
        return;
    };
    for path in paths.split('\n').take(64) {
        let excluded = matcher.is_excluded(path);
        let (direct, _) = matcher.matches_with_parent(path, None);
        assert_eq!(
            excluded, direct,
            "matches_with_parent(None) disagrees for {path:?}"
        );
        // Walk the path top-down as a context walker does, handing each directory's record
        // to its child.
        let components: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != "." && *c != "..")
            .collect();
        let mut parent = None;
        let mut prefix = String::new();
        for component in components.iter().take(32) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let (walked, record) = matcher.matches_with_parent(&prefix, parent.as_ref());
            assert_eq!(
                walked,
                matcher.is_excluded(&prefix),
                "walker disagrees with is_excluded for {prefix:?}"
            );
            parent = Some(record);
        }
        let _ = matcher.can_skip_dir(path);
    }
}

/// Arbitrary bytes as a compose file (`-f -`) through the loader, the renderers, the start
/// order and the config hashes.
pub fn compose(data: &[u8]) {
    let dir = std::env::temp_dir();
    let opts = LoadOptions {
        files: vec!["-".into()],
        project_name: Some("fuzz".into()),
        working_dir: dir.clone(),
        project_directory: Some(dir),
        environment: BTreeMap::from([("SET".to_string(), "1".to_string())]),
        stdin: Some(String::from_utf8_lossy(data).into_owned()),
        ..LoadOptions::default()
    };
    match Project::load(&opts) {
        Ok(loaded) => {
            let p = loaded.project;
            let _ = (p.to_yaml(), p.to_json(), p.start_order(), p.stop_order());
            for name in p.services.keys() {
                let _ = p.config_hash(name);
            }
            for w in &loaded.warnings {
                let _ = w.render();
            }
        }
        Err(e) => {
            let _ = e.render();
        }
    }
}
