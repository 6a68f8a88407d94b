//! Data-driven fixtures: each directory under `tests/fixtures/` is a compose project; its
//! optional `args` file holds command-line flags (one per line) and `env` the shell environment
//! (`KEY=VALUE` lines; nothing else from the process leaks in). The output — warnings, then the
//! `config` rendering or the rendered errors — is compared with an insta snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_compose::{LoadOptions, Project};

fn run_fixture(dir: &Path) -> String {
    let mut opts = LoadOptions {
        working_dir: dir.to_path_buf(),
        ..LoadOptions::default()
    };
    let mut env = BTreeMap::new();
    env.insert("HOME".to_string(), "/home/user".to_string());
    if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            env.insert(k.to_string(), v.to_string());
        }
    }
    opts.environment = env;
    let mut output = "yaml";
    let mut services: Option<Vec<String>> = None;
    if let Ok(text) = std::fs::read_to_string(dir.join("args")) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (flag, value) = line.split_once(' ').unwrap_or((line, ""));
            match flag {
                "-f" => opts.files.push(PathBuf::from(value)),
                "-p" => opts.project_name = Some(value.to_string()),
                "--profile" => opts.profiles.push(value.to_string()),
                "--env-file" => opts.env_files.push(PathBuf::from(value)),
                "--project-directory" => opts.project_directory = Some(PathBuf::from(value)),
                "--cwd" => opts.working_dir = dir.join(value),
                "--json" => output = "json",
                "--services" => output = "services",
                "--volumes" => output = "volumes",
                "--order" => output = "order",
                "--enable" => services = Some(value.split(',').map(String::from).collect()),
                other => panic!("unknown fixture flag {other}"),
            }
        }
    }
    let mut out = String::new();
    match Project::load(&opts) {
        Ok(mut loaded) => {
            for w in &loaded.warnings {
                out.push_str(&w.render());
            }
            if let Some(names) = services {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let unknown = loaded.project.enable_services(&names);
                assert!(unknown.is_empty(), "{unknown:?}");
            }
            let p = &loaded.project;
            out.push_str(&match output {
                "json" => p.to_json(),
                "services" => p.service_names().join("\n") + "\n",
                "volumes" => p.volume_names().join("\n") + "\n",
                "order" => format!(
                    "start: {}\nstop: {}\n",
                    p.start_order().join(" "),
                    p.stop_order().join(" ")
                ),
                _ => p.to_yaml(),
            });
        }
        Err(e) => out.push_str(&e.render()),
    }
    out.replace(&dir.display().to_string(), "<DIR>")
}

#[test]
fn fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let output = run_fixture(&dir);
        insta::with_settings!({snapshot_path => "snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(name, output);
        });
    }
}
