//! `kiln compose` end to end (issue 15): real projects of busybox containers, run by the kiln
//! binary inside a network namespace each test makes to play the host (`common/netns.rs`), so
//! bridges, rules and published ports never touch the real host. Every container, network and
//! volume is removed from inside the namespace before it goes.

mod common;

use common::compose::{Stack, eventually};

const THREE_TIER: &str = r#"
services:
  frontend:
    image: busybox
    init: true
    command: [httpd, -f, -p, "80", -h, /www]
    ports: ["8080:80"]
    volumes: [./www:/www:ro]
    depends_on: [backend]
  backend:
    build: ./backend
    init: true
  db:
    image: busybox
    init: true
    command: [sh, -c, "date +%s >> /data/boots; exec sleep 3600"]
    volumes: [data:/data]
volumes:
  data: {}
"#;

const BACKEND_DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /srv && echo 'hello from backend' > /srv/index.html
EXPOSE 5000
CMD [\"httpd\", \"-f\", \"-p\", \"5000\", \"-h\", \"/srv\"]
";

const FRONTEND_CGI: &str = "#!/bin/sh
echo 'Content-Type: text/plain'
echo
wget -q -O - http://backend:5000/
";

#[test]
fn issue_15_three_tier_app_up_reaches_backend_by_name_and_keeps_data_until_down_v() {
    let Some(s) = Stack::new(
        "3tier",
        &[
            ("compose.yaml", THREE_TIER),
            ("backend/Dockerfile", BACKEND_DOCKERFILE),
            ("www/index.html", "frontend\n"),
            ("www/cgi-bin/api", FRONTEND_CGI),
        ],
    ) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        s.project.join("www/cgi-bin/api"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    s.compose(&["up", "-d"]);
    assert_eq!(s.names(), ["app-backend-1", "app-db-1", "app-frontend-1"]);
    // The backend's image was built by kiln under compose's name for it.
    assert!(
        s.ok(&["images", "--format", "{{.Repository}}"])
            .contains("app-backend")
    );
    // Labels, network and volume names as Docker Compose makes them.
    let labels = s.ok(&["inspect", "--format", "{{json .Config.Labels}}", "app-db-1"]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["com.docker.compose.project"], "app");
    assert_eq!(labels["com.docker.compose.service"], "db");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(
        labels["com.docker.compose.config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(
        s.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("app_default")
    );
    assert!(
        s.ok(&["volume", "ls", "--format", "{{.Name}}"])
            .contains("app_data")
    );

    // The published port serves the frontend; its CGI reaches the backend by service name.
    assert_eq!(s.http_get("http://127.0.0.1:8080/"), "frontend\n");
    assert_eq!(
        s.http_get("http://127.0.0.1:8080/cgi-bin/api"),
        "hello from backend\n"
    );

    // `up --build` after the backend's Dockerfile changed: a new image, so only the backend
    // is recreated (the config hash leaves `build` out; the image ID decides).
    let (front, db) = (s.id("app-frontend-1"), s.id("app-db-1"));
    let backend = s.id("app-backend-1");
    std::fs::write(
        s.project.join("backend/Dockerfile"),
        BACKEND_DOCKERFILE.replace("hello from backend", "hello again"),
    )
    .unwrap();
    s.compose(&["up", "-d", "--build", "-t", "1"]);
    assert_ne!(s.id("app-backend-1"), backend);
    assert_eq!((s.id("app-frontend-1"), s.id("app-db-1")), (front, db));
    // The new backend may still be starting its server: ask until it answers. It has the old
    // one's address and so its MAC (the frontend's ARP cache stays right).
    eventually("the rebuilt backend answers", || {
        s.http_get("http://127.0.0.1:8080/cgi-bin/api") == "hello again\n"
    });

    // ps and logs.
    let ps = s.compose(&["ps"]);
    assert!(
        ps.contains("app-frontend-1") && ps.contains("0.0.0.0:8080->80/tcp"),
        "{ps}"
    );
    let services = s.compose(&["ps", "--services"]);
    assert_eq!(services, "backend\ndb\nfrontend\n");

    // Data survive down + up...
    eventually("db wrote", || {
        s.exec("app-db-1", "wc -l < /data/boots").trim() == "1"
    });
    s.compose(&["down", "-t", "1"]);
    assert!(s.names().is_empty());
    assert!(
        !s.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("app_default")
    );
    assert!(
        s.ok(&["volume", "ls", "--format", "{{.Name}}"])
            .contains("app_data")
    );
    s.compose(&["up", "-d"]);
    eventually("db wrote again", || {
        s.exec("app-db-1", "wc -l < /data/boots").trim() == "2"
    });
    // ...and are gone after down -v.
    s.compose(&["down", "-v", "-t", "1"]);
    assert!(
        !s.ok(&["volume", "ls", "--format", "{{.Name}}"])
            .contains("app_data")
    );
    s.compose(&["up", "-d"]);
    eventually("db fresh", || {
        s.exec("app-db-1", "wc -l < /data/boots").trim() == "1"
    });
    s.compose(&["down", "-v", "-t", "1"]);
}

#[test]
fn issue_15_up_converges_recreating_only_what_changed_and_scales() {
    let file = |greeting: &str| {
        format!(
            "services:\n  web:\n    image: busybox\n    init: true\n    command: [sleep, '3600']\n    environment: {{GREETING: {greeting}}}\n  other:\n    image: busybox\n    init: true\n    command: [sleep, '3600']\n"
        )
    };
    let Some(s) = Stack::new("converge", &[("compose.yaml", &file("hi"))]) else {
        return;
    };
    s.compose(&["up", "-d"]);
    let web = s.id("app-web-1");
    let other = s.id("app-other-1");
    // Nothing changed: nothing recreated.
    s.compose(&["up", "-d"]);
    assert_eq!(s.id("app-web-1"), web);
    assert_eq!(s.id("app-other-1"), other);
    // One service's environment changed: only it is recreated.
    std::fs::write(s.project.join("compose.yaml"), file("hello")).unwrap();
    s.compose(&["up", "-d"]);
    assert_ne!(s.id("app-web-1"), web);
    assert_eq!(s.id("app-other-1"), other);
    assert_eq!(s.exec("app-web-1", "echo $GREETING"), "hello\n");

    // Scale up: three replicas, and `web` names all three on the network.
    s.compose(&["up", "-d", "--scale", "web=3"]);
    assert_eq!(
        s.names(),
        ["app-other-1", "app-web-1", "app-web-2", "app-web-3"]
    );
    let hosts = s.exec("app-other-1", "cat /etc/hosts");
    let web_lines = hosts
        .lines()
        .filter(|l| l.split_whitespace().skip(1).any(|n| n == "web"))
        .count();
    assert_eq!(web_lines, 3, "{hosts}");
    let addrs = s.exec("app-other-1", "ping -c1 -W1 web >/dev/null 2>&1; echo $?");
    assert_eq!(addrs, "0\n", "web resolves and answers");
    // Scale down: the highest numbers go.
    s.compose(&["up", "-d", "--scale", "web=1", "-t", "1"]);
    assert_eq!(s.names(), ["app-other-1", "app-web-1"]);
    s.compose(&["down", "-t", "1"]);
    assert!(s.names().is_empty());
}

#[test]
fn issue_15_depends_on_conditions_wait_for_health_and_completion() {
    let Some(s) = Stack::new(
        "depends",
        &[(
            "compose.yaml",
            r#"
services:
  db:
    image: busybox
    init: true
    command: [sh, -c, "sleep 1; touch /shared/db-ready /tmp/ready; exec sleep 3600"]
    volumes: [shared:/shared]
    healthcheck:
      test: [CMD, test, -f, /tmp/ready]
      interval: 200ms
      retries: 50
  migrate:
    image: busybox
    command: [sh, -c, "sleep 1; touch /shared/migrated"]
    volumes: [shared:/shared]
  app:
    image: busybox
    init: true
    command: [sh, -c, "ls /shared > /shared/app-saw; exec sleep 3600"]
    volumes: [shared:/shared]
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
volumes:
  shared: {}
"#,
        )],
    ) else {
        return;
    };
    s.compose(&["up", "-d"]);
    // What app saw when it started: the marks of a healthy db and a finished migration.
    eventually("app started", || {
        s.kiln(&["exec", "app-app-1", "test", "-f", "/shared/app-saw"])
            .status
            .success()
    });
    let saw = s.exec("app-app-1", "cat /shared/app-saw");
    assert!(
        saw.contains("db-ready"),
        "app started before db was healthy: {saw}"
    );
    assert!(
        saw.contains("migrated"),
        "app started before migrate finished: {saw}"
    );
    let ps = s.compose(&["ps", "-a", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&ps).unwrap();
    let db = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Service"] == "db")
        .unwrap();
    assert_eq!(db["Health"], "healthy");

    // A failing one-shot stops `up` with its exit code named.
    std::fs::write(
        s.project.join("compose.yaml"),
        "services:\n  migrate:\n    image: busybox\n    command: [sh, -c, 'exit 3']\n  app:\n    image: busybox\n    command: [sleep, '60']\n    depends_on:\n      migrate: {condition: service_completed_successfully}\n",
    )
    .unwrap();
    let out = s.kiln(&[
        "compose",
        "-p",
        "app",
        "up",
        "-d",
        "--remove-orphans",
        "-t",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("didn't complete successfully: exit 3"),
        "{err}"
    );
    // `db` is an orphan now: down leaves it (and the network it uses) without the flag.
    let out = s.kiln(&["compose", "-p", "app", "down", "-t", "1"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("orphan container app-db-1"));
    assert_eq!(s.names(), ["app-db-1"]);
    s.compose(&["down", "-v", "-t", "1", "--remove-orphans"]);
    assert!(s.names().is_empty());
}

#[test]
fn issue_15_services_reach_each_other_only_on_shared_networks_and_by_alias() {
    let Some(s) = Stack::new(
        "nets",
        &[(
            "compose.yaml",
            r#"
services:
  a:
    image: busybox
    init: true
    command: [sleep, "3600"]
    networks: [front]
  b:
    image: busybox
    init: true
    command: [sleep, "3600"]
    networks:
      front: {aliases: [bee]}
      back: {}
  c:
    image: busybox
    init: true
    command: [sleep, "3600"]
    networks: [back]
networks:
  front: {}
  back: {}
"#,
        )],
    ) else {
        return;
    };
    s.compose(&["up", "-d"]);
    let ping = |from: &str, to: &str| {
        s.kiln(&["exec", from, "ping", "-c1", "-W1", to])
            .status
            .success()
    };
    assert!(ping("app-a-1", "b"));
    assert!(ping("app-a-1", "bee"));
    assert!(ping("app-a-1", "app-b-1"));
    assert!(ping("app-c-1", "b"));
    // a and c share no network: no name, and no route to the address either.
    assert!(!ping("app-a-1", "c"));
    // c's address, as b (on both networks) sees it.
    let hosts = s.exec("app-b-1", "cat /etc/hosts");
    let c_ip = hosts
        .lines()
        .find(|l| l.split_whitespace().any(|n| n == "app-c-1"))
        .and_then(|l| l.split_whitespace().next())
        .expect("c in b's hosts file")
        .to_string();
    assert!(!ping("app-a-1", &c_ip));
    s.compose(&["down", "-t", "1"]);
}

#[test]
fn issue_15_unsupported_keys_and_commands_fail_by_name() {
    let Some(s) = Stack::new(
        "unsupported",
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: busybox\n    network_mode: 'service:b'\n  b:\n    image: busybox\n",
        )],
    ) else {
        return;
    };
    let out = s.kiln(&["compose", "up", "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not supported yet: services.a.network_mode: service:b"),
        "{err}"
    );
    assert!(s.names().is_empty(), "nothing was made");
    // A missing image without `build:` is pulled (here from a registry that is not there).
    std::fs::write(
        s.project.join("compose.yaml"),
        "services:\n  a:\n    image: 127.0.0.1:1/nothing:latest\n",
    )
    .unwrap();
    let out = s.kiln(&["compose", "up", "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Pulling 127.0.0.1:1/nothing:latest"), "{err}");
    assert!(err.contains("service a: failed to pull"), "{err}");
    assert!(s.names().is_empty(), "nothing was made");
    let out = s.kiln(&["compose", "exec", "a", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet: compose exec"));
}

#[test]
fn issue_15_attached_up_prefixes_logs_and_files_and_profiles_select_services() {
    let Some(s) = Stack::new(
        "attached",
        &[
            (
                "compose.yaml",
                "services:\n  a:\n    image: busybox\n    command: [echo, hello-a]\n  b:\n    image: busybox\n    command: [sh, -c, 'echo hello-b; echo err-b >&2']\n  debug:\n    image: busybox\n    profiles: [debug]\n    command: [echo, dbg]\n",
            ),
            (
                "docker-compose.prod.yml",
                "services:\n  a:\n    command: [echo, prod-a]\n    environment: {MODE: prod}\n",
            ),
        ],
    ) else {
        return;
    };
    // Attached: every container's output, prefixed, until they all exit.
    let out = s.compose(&["up"]);
    assert!(out.contains("a-1  | hello-a\n"), "{out}");
    assert!(out.contains("b-1  | hello-b\n"), "{out}");
    assert!(!out.contains("dbg"), "{out}");
    let logs = s.compose(&["logs", "b"]);
    assert!(
        logs.contains("b-1  | hello-b\n") && logs.contains("b-1  | err-b\n"),
        "{logs}"
    );
    assert_eq!(s.compose(&["logs", "--no-log-prefix", "a"]), "hello-a\n");
    assert_eq!(s.compose(&["ps", "-a", "--services"]), "a\nb\n");
    assert_eq!(
        s.compose(&["ps"]).lines().count(),
        1,
        "only the header: all exited"
    );

    // A profile adds its service; a second file overrides the first.
    let out = s.compose(&["--profile", "debug", "up"]);
    assert!(out.contains("debug-1  | dbg\n"), "{out}");
    // Restarted containers show only their new output, padded to the longest prefix.
    assert_eq!(out.matches("hello-b").count(), 1, "{out}");
    assert!(out.contains("b-1      | hello-b\n"), "{out}");
    let files = ["-f", "compose.yaml", "-f", "docker-compose.prod.yml"];
    let mut args = files.to_vec();
    args.extend(["config", "--services"]);
    assert_eq!(s.compose(&args), "a\nb\n");
    let mut args = files.to_vec();
    args.push("up");
    let out = s.compose(&args);
    assert!(out.contains("a-1  | prod-a\n"), "{out}");
    assert!(!out.contains("debug"), "{out}");
    let env = s.ok(&["inspect", "--format", "{{json .Config.Env}}", "app-a-1"]);
    assert!(env.contains("\"MODE=prod\""), "{env}");
    let mut args = files.to_vec();
    args.extend(["down", "--remove-orphans"]);
    s.compose(&args);
    assert!(s.names().is_empty());
}

/// `kiln compose config` (no containers, no root): the resolved model, and a broken file's
/// errors with the file, line and column.
#[test]
fn issue_15_config_prints_the_model_and_errors_point_at_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kiln = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("compose")
            .args(args)
            .current_dir(d)
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .output()
            .unwrap()
    };
    std::fs::write(
        d.join("compose.yaml"),
        "name: demo\nservices:\n  web:\n    image: busybox\n    environment: {GREETING: '${GREETING:-hi}'}\n",
    )
    .unwrap();
    let out = kiln(&["config", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "demo");
    assert_eq!(v["services"]["web"]["environment"]["GREETING"], "hi");
    assert_eq!(
        String::from_utf8_lossy(&kiln(&["config", "--services"]).stdout),
        "web\n"
    );

    std::fs::write(
        d.join("compose.yaml"),
        "services:\n  web:\n    image: busybox\n    portz: ['80']\n",
    )
    .unwrap();
    let out = kiln(&["config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("compose.yaml:4:5"), "{err}");
    assert!(err.contains("portz"), "{err}");
    assert!(err.contains("ports"), "did-you-mean: {err}");
}
