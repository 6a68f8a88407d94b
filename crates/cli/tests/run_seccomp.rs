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
    for (opt, says) in [
        ("apparmor=docker-default", "not supported yet"),
        ("label=type:spc_t", "not supported yet"),
        ("seccomp=/no/such/profile.json", "opening seccomp profile"),
    ] {
        let out = env.kiln(&["run", "--rm", "--security-opt", opt, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{opt}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{opt}: {err}");
    }
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn a_profile_file_is_recorded_and_enforced() {
    let Some(env) = Env::new(&[]) else { return };
    let profile = env.dir().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = env.kiln(&[
        "run",
        "--name",
        "p",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "mkdir /x 2>&1; echo $?",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "mkdir: can't create directory '/x': Operation not permitted\n1\n",
        "{out:?}"
    );
    // Docker records the profile's text, not its path.
    let recorded = security_opt(&env, "p");
    assert!(
        recorded[0].as_str().unwrap().contains("SCMP_ACT_ALLOW"),
        "{recorded}"
    );
}
