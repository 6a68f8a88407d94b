//! Fuzz target: arbitrary text as a `.dockerignore` file plus paths to match. The input is
//! split at the first NUL byte: before it the `.dockerignore` text, after it newline-separated
//! paths. Checks that nothing panics and that the incremental walker API agrees with
//! `is_excluded` for every path and each of its parent directories.

#![no_main]

use kiln_frontend::dockerignore::PatternMatcher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ignore, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let Ok(matcher) = PatternMatcher::parse(ignore) else {
        return;
    };
    for path in paths.split('\n').take(64) {
        let excluded = matcher.is_excluded(path);
        let (direct, _) = matcher.matches_with_parent(path, None);
        assert_eq!(excluded, direct, "matches_with_parent(None) disagrees for {path:?}");

        // Walk the path top-down the way a context walker would, handing each directory's
        // record to its child.
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
});
