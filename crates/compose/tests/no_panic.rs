//! Nothing panics on user input: arbitrary text, and compose-shaped YAML with random values,
//! loaded as a `-f -` file either load or fail with diagnostics.

use std::collections::BTreeMap;

use kiln_compose::{LoadOptions, Project};
use proptest::prelude::*;

fn load(text: String) {
    let dir = std::env::temp_dir();
    let opts = LoadOptions {
        files: vec!["-".into()],
        project_name: Some("fuzz".into()),
        working_dir: dir.clone(),
        project_directory: Some(dir),
        environment: BTreeMap::from([("SET".to_string(), "1".to_string())]),
        stdin: Some(text),
        ..LoadOptions::default()
    };
    match Project::load(&opts) {
        Ok(loaded) => {
            let p = loaded.project;
            let _ = (p.to_yaml(), p.to_json(), p.start_order());
            for name in p.services.keys() {
                let _ = p.config_hash(name);
            }
        }
        Err(e) => {
            let _ = e.render();
        }
    }
}

/// Values that exercise the typed fields: numbers, sizes, ports, strings with `$`.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("80:80".to_string()),
        Just("${SET:-x}".to_string()),
        Just("$".to_string()),
        Just("[a, {b: c}]".to_string()),
        Just("{x: 1}".to_string()),
        Just("~".to_string()),
        Just("!reset []".to_string()),
        Just("*a".to_string()),
        Just("512m".to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("image"),
        Just("build"),
        Just("command"),
        Just("ports"),
        Just("volumes"),
        Just("environment"),
        Just("depends_on"),
        Just("networks"),
        Just("healthcheck"),
        Just("extends"),
        Just("scale"),
        Just("deploy"),
        Just("secrets"),
        Just("env_file"),
        Just("network_mode"),
        Just("tmpfs"),
        Just("extra_hosts"),
        Just("restart"),
        Just("x-ext"),
        Just("bogus"),
    ]
    .prop_map(String::from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_does_not_panic(text in "[ -~\n]{0,200}") {
        load(text);
    }

    #[test]
    fn compose_shaped_yaml_does_not_panic(
        services in proptest::collection::vec(
            ("[a-c]", proptest::collection::vec((key(), value()), 0..6)),
            0..4,
        ),
        top in proptest::collection::vec((prop_oneof![Just("networks"), Just("volumes"), Just("include"), Just("name")], value()), 0..3),
    ) {
        let mut text = String::from("services:\n");
        for (name, fields) in &services {
            text.push_str(&format!("  {name}:\n    image: busybox\n"));
            for (k, v) in fields {
                text.push_str(&format!("    {k}: {v}\n"));
            }
        }
        for (k, v) in &top {
            text.push_str(&format!("{k}: {v}\n"));
        }
        load(text);
    }
}
