//! Property tests: arbitrary ignore files never panic the matcher, and directory pruning
//! never hides a path that `is_excluded` would include.

use proptest::prelude::*;

use kiln_frontend::dockerignore::Dockerignore;

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just("**".to_owned()),
        Just("a*".to_owned()),
        Just("[ab]".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..4)).prop_map(|(exception, parts)| {
        format!("{}{}", if exception { "!" } else { "" }, parts.join("/"))
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("ab"), Just("c")],
        1..5,
    )
    .prop_map(|parts| parts.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(text in any::<String>(), path in any::<String>()) {
        if let Ok(m) = Dockerignore::parse(&text) {
            let _ = m.is_excluded(&path);
            let _ = m.can_skip_dir(&path);
        }
    }

    #[test]
    fn never_panics_on_globby_text(text in "[ab!*?/\\[\\]\\\\^. \n#-]{0,40}", path in "[ab/.*]{0,12}") {
        if let Ok(m) = Dockerignore::parse(&text) {
            let _ = m.is_excluded(&path);
            let _ = m.can_skip_dir(&path);
        }
    }

    #[test]
    fn incremental_matching_agrees(patterns in prop::collection::vec(pattern(), 1..5), path in path()) {
        let m = Dockerignore::parse(&patterns.join("\n")).unwrap();
        let mut parent = None;
        let mut prefix = String::new();
        for component in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let (excluded, record) = m.matches_with_parent(&prefix, parent.as_ref());
            prop_assert_eq!(excluded, m.is_excluded(&prefix), "{:?} on {}", patterns, prefix);
            parent = Some(record);
        }
    }

    #[test]
    fn pruning_is_sound(patterns in prop::collection::vec(pattern(), 1..5), dir in path(), below in path()) {
        let m = Dockerignore::parse(&patterns.join("\n")).unwrap();
        if m.can_skip_dir(&dir) {
            let inner = format!("{dir}/{below}");
            prop_assert!(m.is_excluded(&inner), "{:?}: skipped {} but {} is included", patterns, dir, inner);
        }
    }
}
