//! The planner against hand-made observations: fresh up, no-op converge, changed hash, scale
//! up and down, dependency waits, orphans, and down's order.

use super::*;
use crate::LoadOptions;

fn project(yaml: &str) -> Project {
    let dir = std::env::temp_dir();
    let opts = LoadOptions {
        files: vec!["-".into()],
        project_name: Some("app".into()),
        working_dir: dir.clone(),
        project_directory: Some(dir),
        stdin: Some(yaml.into()),
        ..LoadOptions::default()
    };
    Project::load(&opts).unwrap().project
}

const THREE: &str = "services:
  db:
    image: busybox
    volumes: [data:/data]
    healthcheck: {test: [CMD, 'true']}
  api:
    image: busybox
    depends_on: {db: {condition: service_healthy}}
  web:
    image: busybox
    depends_on: [api]
    ports: ['8080:80']
volumes:
  data: {}
";

fn running(p: &Project, service: &str, number: u32) -> Observed {
    Observed {
        name: container_name(p, service, number),
        service: service.into(),
        number,
        config_hash: p.config_hash(service).unwrap(),
        running: true,
        oneoff: false,
        image_id: format!("sha256:{service}"),
    }
}

fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::EnsureNetwork { name, .. } => format!("network {name}"),
            Action::EnsureVolume { name, .. } => format!("volume {name}"),
            Action::Wait {
                service, condition, ..
            } => format!("wait {service} {condition:?}"),
            Action::Create { name, .. } => format!("create {name}"),
            Action::Recreate { name, .. } => format!("recreate {name}"),
            Action::Start { name, .. } => format!("start {name}"),
            Action::Keep { name, .. } => format!("keep {name}"),
            Action::Remove { name, .. } => format!("remove {name}"),
            Action::Orphan { name, .. } => format!("orphan {name}"),
            Action::RemoveNetwork { name } => format!("rm network {name}"),
            Action::RemoveVolume { name } => format!("rm volume {name}"),
        })
        .collect()
}

#[test]
fn fresh_up_creates_resources_then_services_in_dependency_order() {
    let p = project(THREE);
    let plan = plan_up(&p, &[], &UpOptions::default());
    assert_eq!(
        names(&plan),
        [
            "network app_default",
            "volume app_data",
            "create app-db-1",
            "wait db ServiceHealthy",
            "create app-api-1",
            "create app-web-1",
        ]
    );
}

#[test]
fn second_up_with_nothing_changed_keeps_everything() {
    let p = project(THREE);
    let seen: Vec<Observed> = ["db", "api", "web"]
        .iter()
        .map(|s| running(&p, s, 1))
        .collect();
    let plan = plan_up(&p, &seen, &UpOptions::default());
    assert!(
        plan.iter().all(|a| !matches!(
            a,
            Action::Create { .. } | Action::Recreate { .. } | Action::Remove { .. }
        )),
        "{plan:?}"
    );
    assert!(names(&plan).contains(&"keep app-web-1".to_string()));
}

#[test]
fn a_changed_hash_recreates_only_that_service_and_stopped_ones_start() {
    let p = project(THREE);
    let mut seen: Vec<Observed> = ["db", "api", "web"]
        .iter()
        .map(|s| running(&p, s, 1))
        .collect();
    seen[1].config_hash = "old".into();
    seen[2].running = false;
    let n = names(&plan_up(&p, &seen, &UpOptions::default()));
    assert!(n.contains(&"recreate app-api-1".to_string()), "{n:?}");
    assert!(n.contains(&"keep app-db-1".to_string()), "{n:?}");
    assert!(n.contains(&"start app-web-1".to_string()), "{n:?}");
    // --no-recreate keeps the changed one; --force-recreate recreates all.
    let keep = UpOptions {
        no_recreate: true,
        ..UpOptions::default()
    };
    assert!(names(&plan_up(&p, &seen, &keep)).contains(&"keep app-api-1".to_string()));
    let force = UpOptions {
        force_recreate: true,
        ..UpOptions::default()
    };
    let n = names(&plan_up(&p, &seen, &force));
    assert_eq!(
        n.iter().filter(|a| a.starts_with("recreate")).count(),
        3,
        "{n:?}"
    );
}

#[test]
fn scale_up_adds_numbers_and_scale_down_removes_the_highest_first() {
    let p = project("services:\n  web:\n    image: busybox\n");
    let up = UpOptions {
        scale: [("web".to_string(), 3)].into(),
        ..UpOptions::default()
    };
    let n = names(&plan_up(&p, &[running(&p, "web", 1)], &up));
    assert_eq!(
        n,
        [
            "network app_default",
            "keep app-web-1",
            "create app-web-2",
            "create app-web-3"
        ]
    );
    let seen: Vec<Observed> = (1..=3).map(|i| running(&p, "web", i)).collect();
    let n = names(&plan_up(&p, &seen, &UpOptions::default()));
    assert_eq!(
        n,
        [
            "network app_default",
            "keep app-web-1",
            "remove app-web-3",
            "remove app-web-2"
        ]
    );
}

#[test]
fn file_scale_and_container_name() {
    let p = project(
        "services:\n  a:\n    image: x\n    scale: 2\n  b:\n    image: x\n    container_name: fixed\n",
    );
    let n = names(&plan_up(&p, &[], &UpOptions::default()));
    assert_eq!(
        n,
        [
            "network app_default",
            "create app-a-1",
            "create app-a-2",
            "create fixed"
        ]
    );
}

#[test]
fn completed_successfully_waits_and_selected_services_pull_their_dependencies() {
    let p = project(
        "services:\n  migrate:\n    image: x\n  app:\n    image: x\n    depends_on:\n      migrate: {condition: service_completed_successfully}\n  other:\n    image: x\n",
    );
    let up = UpOptions {
        services: vec!["app".into()],
        ..UpOptions::default()
    };
    let n = names(&plan_up(&p, &[], &up));
    assert_eq!(
        n,
        [
            "network app_default",
            "create app-migrate-1",
            "wait migrate ServiceCompletedSuccessfully",
            "create app-app-1"
        ]
    );
    let alone = UpOptions {
        services: vec!["app".into()],
        no_deps: true,
        ..UpOptions::default()
    };
    assert!(!names(&plan_up(&p, &[], &alone)).contains(&"create app-migrate-1".to_string()));
}

#[test]
fn orphans_are_reported_or_removed_and_oneoffs_ignored() {
    let p = project("services:\n  web:\n    image: x\n");
    let mut gone = running(&p, "web", 1);
    gone.service = "old".into();
    gone.name = "app-old-1".into();
    let mut oneoff = running(&p, "web", 7);
    oneoff.oneoff = true;
    let seen = [running(&p, "web", 1), gone, oneoff];
    let n = names(&plan_up(&p, &seen, &UpOptions::default()));
    assert_eq!(
        n,
        ["network app_default", "keep app-web-1", "orphan app-old-1"]
    );
    let rm = UpOptions {
        remove_orphans: true,
        ..UpOptions::default()
    };
    assert!(names(&plan_up(&p, &seen, &rm)).contains(&"remove app-old-1".to_string()));
}

#[test]
fn external_resources_are_never_made_or_removed() {
    let p = project(
        "services:\n  a:\n    image: x\n    networks: [ext]\n    volumes: [v:/v]\nnetworks:\n  ext: {external: true}\nvolumes:\n  v: {external: true}\n",
    );
    assert_eq!(
        names(&plan_up(&p, &[], &UpOptions::default())),
        ["create app-a-1"]
    );
    assert!(names(&plan_down(&p, &[], true, false)).is_empty());
}

#[test]
fn down_stops_in_reverse_order_then_networks_and_volumes_only_with_v() {
    let p = project(THREE);
    let seen: Vec<Observed> = vec![
        running(&p, "db", 1),
        running(&p, "web", 1),
        running(&p, "web", 2),
        running(&p, "api", 1),
    ];
    let n = names(&plan_down(&p, &seen, false, false));
    assert_eq!(
        n,
        [
            "remove app-web-2",
            "remove app-web-1",
            "remove app-api-1",
            "remove app-db-1",
            "rm network app_default"
        ]
    );
    let n = names(&plan_down(&p, &seen, true, false));
    assert_eq!(n.last().unwrap(), "rm volume app_data");
}

#[test]
fn a_new_image_for_the_service_recreates_its_containers() {
    let p = project(THREE);
    let seen: Vec<Observed> = ["db", "api", "web"]
        .iter()
        .map(|s| running(&p, s, 1))
        .collect();
    let mut up = UpOptions::default();
    up.images.insert("db".into(), "sha256:db".into());
    up.images.insert("api".into(), "sha256:rebuilt".into());
    let n = names(&plan_up(&p, &seen, &up));
    assert!(n.contains(&"keep app-db-1".to_string()), "{n:?}");
    assert!(n.contains(&"recreate app-api-1".to_string()), "{n:?}");
    assert!(n.contains(&"keep app-web-1".to_string()), "{n:?}");
}

#[test]
fn levels_put_independent_services_together() {
    let p = project(THREE);
    let l = levels(&p);
    assert_eq!((l["db"], l["api"], l["web"]), (0, 1, 2));
    let p = project(
        "services:\n  a: {image: x}\n  b: {image: x}\n  c: {image: x, depends_on: [a, b]}\n",
    );
    let l = levels(&p);
    assert_eq!((l["a"], l["b"], l["c"]), (0, 0, 1));
    let wait = plan_up(&project(THREE), &[], &UpOptions::default())
        .into_iter()
        .find(|a| matches!(a, Action::Wait { .. }))
        .unwrap();
    assert_eq!(wait.owner(), Some("api"));
}
