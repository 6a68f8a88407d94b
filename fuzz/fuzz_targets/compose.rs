//! Fuzz target: arbitrary bytes as a compose file (`-f -`) through the whole loader, the config
//! renderers, the dependency order and the config hashes. Any panic is a bug.

#![no_main]

use std::collections::BTreeMap;

use kiln_compose::{LoadOptions, Project};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
