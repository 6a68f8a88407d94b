//! Loading behaviour that needs files made on the fly: env-file precedence, stdin, the file
//! search's failures and warnings, include cycles, and config hashes across two loads.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_compose::{ComposeError, LoadOptions, Project};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn opts(dir: &Path, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        working_dir: dir.to_path_buf(),
        environment: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..LoadOptions::default()
    }
}

fn env_of(p: &Project, service: &str, var: &str) -> Option<String> {
    p.services[service].environment.get(var).cloned().flatten()
}

#[test]
fn shell_beats_env_files_and_env_file_replaces_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    environment:\n      X: $X\n      Y: ${Y:-unset}\n      Z: ${Z:-unset}\n",
    );
    write(d, ".env", "X=dotenv\nY=dotenv\n");
    write(d, "one.env", "X=one\nZ=one\n");
    write(d, "two.env", "Z=two\n");

    let p = Project::load(&opts(d, &[])).unwrap().project;
    assert_eq!(env_of(&p, "a", "X").as_deref(), Some("dotenv"));
    assert_eq!(env_of(&p, "a", "Y").as_deref(), Some("dotenv"));

    let p = Project::load(&opts(d, &[("X", "shell")])).unwrap().project;
    assert_eq!(env_of(&p, "a", "X").as_deref(), Some("shell"));

    // --env-file replaces .env (Y is no longer set); later files win.
    let mut o = opts(d, &[]);
    o.env_files = vec!["one.env".into(), "two.env".into()];
    let p = Project::load(&o).unwrap().project;
    assert_eq!(env_of(&p, "a", "X").as_deref(), Some("one"));
    assert_eq!(env_of(&p, "a", "Y").as_deref(), Some("unset"));
    assert_eq!(env_of(&p, "a", "Z").as_deref(), Some("two"));
    assert_eq!(p.env_files.len(), 2);

    // A missing --env-file is an error.
    let mut o = opts(d, &[]);
    o.env_files = vec!["missing.env".into()];
    assert!(matches!(Project::load(&o), Err(ComposeError::Read { .. })));
}

#[test]
fn stdin_file_and_project_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut o = opts(d, &[]);
    o.files = vec!["-".into()];
    o.project_directory = Some("proj".into());
    o.stdin = Some("services:\n  a:\n    build: .\n".into());
    std::fs::create_dir(d.join("proj")).unwrap();
    let p = Project::load(&o).unwrap().project;
    assert_eq!(p.name, "proj");
    assert_eq!(
        p.services["a"].build.as_ref().unwrap().context,
        d.join("proj").display().to_string()
    );
}

#[test]
fn no_file_is_an_error_and_several_defaults_warn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("empty");
    std::fs::create_dir(&d).unwrap();
    // The search goes up to the root; only test the failure where no ancestor has a file.
    if d.ancestors().skip(1).any(|a| {
        kiln_compose::DEFAULT_FILES
            .iter()
            .any(|f| a.join(f).exists())
    }) {
        println!("skipped: an ancestor of the temp dir has a compose file");
    } else {
        let e = Project::load(&opts(&d, &[])).unwrap_err();
        assert!(matches!(e, ComposeError::NoConfigFile { .. }), "{e}");
    }
    write(&d, "compose.yaml", "services: {a: {image: busybox}}\n");
    write(
        &d,
        "docker-compose.yml",
        "services: {b: {image: busybox}}\n",
    );
    let loaded = Project::load(&opts(&d, &[])).unwrap();
    assert_eq!(loaded.project.services.keys().collect::<Vec<_>>(), ["a"]);
    assert!(
        loaded.warnings[0].message.contains("docker-compose.yml"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn include_cycles_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "compose.yaml",
        "include: [sub/compose.yaml]\nservices: {a: {image: busybox}}\n",
    );
    write(
        d,
        "sub/compose.yaml",
        "include: [../compose.yaml]\nservices: {b: {image: busybox}}\n",
    );
    let e = Project::load(&opts(d, &[])).unwrap_err();
    assert!(e.to_string().contains("include cycle"), "{e}");
    assert!(e.to_string().starts_with("sub/compose.yaml:1:"), "{e}");
}

#[test]
fn config_hash_changes_only_for_the_changed_service() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = |v: &str| {
        format!(
            "services:\n  web:\n    image: busybox\n    environment: {{V: \"{v}\"}}\n  db:\n    image: busybox\n    scale: 1\n"
        )
    };
    write(d, "compose.yaml", &text("1"));
    let before = Project::load(&opts(d, &[])).unwrap().project;
    let again = Project::load(&opts(d, &[])).unwrap().project;
    write(
        d,
        "compose.yaml",
        &text("2").replace("scale: 1", "scale: 3"),
    );
    let after = Project::load(&opts(d, &[])).unwrap().project;
    assert_eq!(before.config_hash("web"), again.config_hash("web"));
    assert_ne!(before.config_hash("web"), after.config_hash("web"));
    // Scaling is not a change of what a container is.
    assert_eq!(before.config_hash("db"), after.config_hash("db"));
    assert_eq!(after.services["db"].replicas(), 3);
}

#[test]
fn naming_a_disabled_service_enables_it_and_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "compose.yaml",
        "services:\n  app: {image: busybox}\n  dbg: {image: busybox, profiles: [debug], depends_on: [helper]}\n  helper: {image: busybox, profiles: [debug]}\n",
    );
    let mut p = Project::load(&opts(d, &[])).unwrap().project;
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["app"]);
    assert!(p.enable_services(&["dbg"]).is_empty());
    assert_eq!(p.with_dependencies(&["dbg"]), ["helper", "dbg"]);
    assert_eq!(p.enable_services(&["nope"]), ["nope"]);
}

#[test]
fn later_checks_get_located_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    depends_on:\n      db: {condition: service_healthy}\n  db:\n    image: busybox\n",
    );
    let p = Project::load(&opts(d, &[])).unwrap().project;
    let diag = p.diagnostic(
        kiln_compose::Severity::Error,
        "services.web.depends_on.db",
        "db has no healthcheck",
    );
    assert_eq!(
        diag.to_string(),
        "compose.yaml:5:7: services.web.depends_on.db: db has no healthcheck"
    );
    assert!(
        diag.render()
            .contains("5 |       db: {condition: service_healthy}\n  |       ^^\n"),
        "{}",
        diag.render()
    );
}

#[test]
fn unreadable_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[]);
    o.files = vec!["missing.yaml".into()];
    let e = Project::load(&o).unwrap_err();
    assert!(
        e.to_string().starts_with("missing.yaml: cannot read "),
        "{e}"
    );
}
