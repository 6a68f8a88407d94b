//! The seccomp filter as a `kiln run` user sees it (root, busybox base image): on by default
//! for run and exec, off with `--security-opt seccomp=unconfined`, which `inspect` shows as
//! Docker does; unknown security options are refused.

mod common;
use common::containers::RunEnv as Env;

/// The container's `HostConfig.SecurityOpt` as `inspect` shows it.
fn security_opt(env: &Env, name: &str) -> serde_json::Value {
    env.inspect(name)["HostConfig"]["SecurityOpt"].clone()
}

const PROBE: &str = "grep '^Seccomp:' /proc/self/status; unshare -U true";

#[test]
fn run_and_exec_are_filtered_unless_unconfined() {
    let Some(env) = Env::new(&[]) else { return };

    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        PROBE,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t2\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );

    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        PROBE,
    ]);
    assert_eq!(out, "Seccomp:\t0\n");

    // Detached containers: inspect shows the option, exec inherits the container's choice.
    let base = ["run", "-d", "--network", "none"];
    env.ok(&[&base[..], &["--name", "filtered", "busybox", "sleep", "60"]].concat());
    env.ok(&[
        &base[..],
        &["--security-opt", "seccomp:unconfined"],
        &["--name", "open", "busybox", "sleep", "60"],
    ]
    .concat());
    assert_eq!(security_opt(&env, "filtered"), serde_json::Value::Null);
    assert_eq!(
        security_opt(&env, "open"),
        serde_json::json!(["seccomp=unconfined"])
    );
    let out = env.kiln(&["exec", "filtered", "sh", "-c", PROBE]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t2\n");
    assert_eq!(
        env.ok(&["exec", "open", "sh", "-c", PROBE]),
        "Seccomp:\t0\n"
    );
}

#[test]
fn unknown_security_options_are_refused() {
    let Some(env) = Env::new(&[]) else { return };
    for opt in ["seccomp=/etc/profile.json", "apparmor=unconfined"] {
        let out = env.kiln(&["run", "--rm", "--security-opt", opt, "busybox", "true"]);
        assert!(!out.status.success(), "{opt}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not supported yet"), "{opt}: {err}");
    }
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}
