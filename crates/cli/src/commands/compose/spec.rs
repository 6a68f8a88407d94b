//! One compose service's container as the run engine's `RunOptions`: the model's long forms
//! turned into what `kiln run` takes, the `com.docker.compose.*` labels, the service's networks
//! and aliases. Keys the run engine cannot honour fail as `not supported yet: services.S.KEY`.

use std::collections::BTreeMap;

use kiln_compose::plan::labels;
use kiln_compose::{Project, Service, VolumeKind};
use kiln_runtime::RunOptions;
use kiln_runtime::health::HealthOverrides;

/// The image a service runs: `image`, else the one `build` makes (`PROJECT-SERVICE`, as v2).
pub fn image_name(project: &Project, service: &str) -> String {
    project.services[service]
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{service}", project.name))
}

/// The service's networks in the order they are joined: by key (the first one is the
/// container's own network, the others are connected before it starts).
pub fn networks(project: &Project, service: &Service) -> Vec<(String, String)> {
    service
        .networks
        .keys()
        .filter_map(|k| project.networks.get(k).map(|n| (k.clone(), n.name.clone())))
        .collect()
}

fn unsupported(service: &str, key: &str) -> String {
    format!("not supported yet: services.{service}.{key}")
}

/// The container `number` of `name`, named `container`.
pub fn run_options(
    project: &Project,
    name: &str,
    number: u32,
    container: &str,
) -> Result<RunOptions, String> {
    let s = &project.services[name];
    if !s.secrets.is_empty() {
        return Err(unsupported(name, "secrets"));
    }
    if !s.configs.is_empty() {
        return Err(unsupported(name, "configs"));
    }
    let mut o = RunOptions {
        image: image_name(project, name),
        name: Some(container.to_string()),
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        read_only: s.read_only,
        init: s.init.unwrap_or(false),
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        restart: s.restart.clone(),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s
            .stop_grace_period
            .map(|d| i64::try_from(d.0 / 1_000_000_000).unwrap_or(i64::MAX)),
        expose: s.expose.clone(),
        tmpfs: s.tmpfs.clone(),
        add_hosts: s.extra_hosts.clone(),
        ..RunOptions::default()
    };
    // Entrypoint and command: an `entrypoint` list replaces the image's and drops its CMD.
    match &s.entrypoint {
        Some(ep) if ep.is_empty() => o.entrypoint = Some(String::new()),
        Some(ep) => {
            o.entrypoint = Some(ep[0].clone());
            o.command = ep[1..].to_vec();
        }
        None => {}
    }
    if let Some(cmd) = &s.command {
        o.command.extend(cmd.iter().cloned());
    }
    o.env = s
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();

    let limits = s
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    o.memory = s
        .mem_limit
        .or_else(|| limits.and_then(|l| l.memory))
        .map(|b| b.0.to_string());
    o.cpus = s
        .cpus
        .or_else(|| limits.and_then(|l| l.cpus))
        .map(|c| c.to_string());
    o.pids_limit = s.pids_limit.or_else(|| limits.and_then(|l| l.pids));

    for p in &s.ports {
        let published = match &p.published {
            Some(x) if x.contains('-') => {
                return Err(unsupported(name, "ports (a host port range)"));
            }
            Some(x) => format!("{x}:"),
            None => String::new(),
        };
        let ip = p
            .host_ip
            .as_ref()
            .map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]:")
                } else {
                    format!("{ip}:")
                }
            })
            .unwrap_or_default();
        let ip = if ip.is_empty() || !published.is_empty() {
            ip
        } else {
            // `IP::PORT`: a random host port on that address.
            format!("{ip}:")
        };
        o.publish
            .push(format!("{ip}{published}{}/{}", p.target, p.protocol));
    }

    for v in &s.volumes {
        let ro = if v.read_only { ",readonly" } else { "" };
        match v.kind {
            VolumeKind::Volume => match &v.source {
                Some(key) => {
                    let vol = project.volumes.get(key).ok_or_else(|| {
                        format!("services.{name}.volumes: undefined volume {key}")
                    })?;
                    let nocopy = if v.volume.as_ref().is_some_and(|x| x.nocopy) {
                        ",volume-nocopy"
                    } else {
                        ""
                    };
                    if v.volume.as_ref().is_some_and(|x| x.subpath.is_some()) {
                        return Err(unsupported(name, "volumes.volume.subpath"));
                    }
                    o.mounts.push(format!(
                        "type=volume,source={},target={}{ro}{nocopy}",
                        vol.name, v.target
                    ));
                }
                None => o.volumes.push(v.target.clone()),
            },
            VolumeKind::Bind => {
                let src = v.source.clone().unwrap_or_default();
                let b = v.bind.clone().unwrap_or_default();
                if b.propagation.is_some() || b.selinux.is_some() {
                    return Err(unsupported(name, "volumes.bind.propagation"));
                }
                if b.create_host_path {
                    // The short syntax makes a missing host directory, as `-v` does.
                    let suffix = if v.read_only { ":ro" } else { "" };
                    o.volumes.push(format!("{src}:{}{suffix}", v.target));
                } else {
                    o.mounts
                        .push(format!("type=bind,source={src},target={}{ro}", v.target));
                }
            }
            VolumeKind::Tmpfs => {
                let t = v.tmpfs.clone().unwrap_or_default();
                let mut spec = format!("type=tmpfs,target={}", v.target);
                if let Some(size) = t.size {
                    spec.push_str(&format!(",tmpfs-size={}", size.0));
                }
                if let Some(mode) = t.mode {
                    spec.push_str(&format!(",tmpfs-mode={mode:o}"));
                }
                o.mounts.push(spec);
            }
        }
    }

    if let Some(hc) = &s.healthcheck {
        o.health = health(name, hc)?;
    }

    match s.network_mode.as_deref() {
        Some(mode @ ("host" | "none")) => o.network = Some(mode.to_string()),
        Some("bridge") => o.network = Some("bridge".into()),
        Some(other) => return Err(unsupported(name, &format!("network_mode: {other}"))),
        None => {
            let nets = networks(project, s);
            // Every network: the service's name and aliases; the container's own name comes
            // from the record already.
            for (key, engine_name) in &nets {
                let mut names = vec![name.to_string()];
                if let Some(Some(opts)) = s.networks.get(key) {
                    if opts.ipv4_address.is_some() || opts.ipv6_address.is_some() {
                        return Err(unsupported(name, &format!("networks.{key}.ipv4_address")));
                    }
                    names.extend(opts.aliases.iter().cloned());
                }
                o.network_aliases.insert(engine_name.clone(), names);
            }
            o.network = nets.first().map(|(_, n)| n.clone());
        }
    }

    o.labels = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let files: Vec<String> = project
        .config_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let ours: BTreeMap<&str, String> = BTreeMap::from([
        (labels::PROJECT, project.name.clone()),
        (labels::SERVICE, name.to_string()),
        (labels::NUMBER, number.to_string()),
        (labels::CONFIG_HASH, s.config_hash()),
        (labels::ONEOFF, "False".into()),
        (
            labels::WORKING_DIR,
            project.working_dir.display().to_string(),
        ),
        (labels::CONFIG_FILES, files.join(",")),
        (
            labels::VERSION,
            format!("kiln-{}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    o.labels
        .extend(ours.into_iter().map(|(k, v)| format!("{k}={v}")));
    Ok(o)
}

/// `healthcheck:` as `kiln run`'s health flags.
fn health(service: &str, hc: &kiln_compose::Healthcheck) -> Result<HealthOverrides, String> {
    if hc.start_interval.is_some() {
        return Err(unsupported(service, "healthcheck.start_interval"));
    }
    let mut h = HealthOverrides {
        interval: hc.interval.map(|d| d.go_string()),
        timeout: hc.timeout.map(|d| d.go_string()),
        start_period: hc.start_period.map(|d| d.go_string()),
        retries: hc.retries.map(|r| u32::try_from(r).unwrap_or(u32::MAX)),
        ..HealthOverrides::default()
    };
    match hc.test.first().map(String::as_str) {
        _ if hc.disable => {
            return Ok(HealthOverrides {
                disable: true,
                ..HealthOverrides::default()
            });
        }
        Some("NONE") => h.disable = true,
        Some("CMD-SHELL") => h.cmd = hc.test.get(1).cloned(),
        Some("CMD") => h.cmd = Some(shell_words(&hc.test[1..])),
        None => {}
        Some(other) => {
            return Err(format!(
                "services.{service}.healthcheck.test: must start with CMD, CMD-SHELL or NONE, not {other:?}"
            ));
        }
    }
    Ok(h)
}

/// Arguments as one `sh -c` line that runs exactly them (each single-quoted).
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = std::env::temp_dir();
        let opts = kiln_compose::LoadOptions {
            files: vec!["-".into()],
            project_name: Some("app".into()),
            working_dir: dir.clone(),
            project_directory: Some(dir),
            stdin: Some(yaml.into()),
            ..kiln_compose::LoadOptions::default()
        };
        Project::load(&opts).unwrap().project
    }

    #[test]
    fn a_service_becomes_run_options_with_compose_labels() {
        let p = project(
            "services:
  web:
    image: busybox
    entrypoint: [/bin/sh, -c]
    command: [echo hi]
    environment: {A: '1', B: ~}
    ports: ['8080:80', '127.0.0.1::53/udp']
    volumes: [data:/data:ro, /tmp:/host, /anon]
    networks: {front: {aliases: [www]}, back: {}}
    healthcheck: {test: [CMD, wget, -q, 'it''s'], interval: 2s, retries: 5}
    mem_limit: 64m
volumes: {data: {}}
networks: {front: {}, back: {}}
",
        );
        let o = run_options(&p, "web", 2, "app-web-2").unwrap();
        assert_eq!(o.image, "busybox");
        assert_eq!(o.name.as_deref(), Some("app-web-2"));
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.command, ["-c", "echo hi"]);
        assert_eq!(o.env, ["A=1"]);
        assert_eq!(o.publish, ["8080:80/tcp", "127.0.0.1::53/udp"]);
        assert_eq!(
            o.mounts,
            ["type=volume,source=app_data,target=/data,readonly"]
        );
        assert_eq!(o.volumes, ["/tmp:/host", "/anon"]);
        assert_eq!(o.network.as_deref(), Some("app_back"));
        assert_eq!(o.network_aliases["app_front"], ["web", "www"]);
        assert_eq!(o.network_aliases["app_back"], ["web"]);
        assert_eq!(o.health.cmd.as_deref(), Some(r"'wget' '-q' 'it'\''s'"));
        assert_eq!(o.health.interval.as_deref(), Some("2s"));
        assert_eq!(o.health.retries, Some(5));
        assert_eq!(o.memory.as_deref(), Some("67108864"));
        for l in [
            "com.docker.compose.project=app",
            "com.docker.compose.service=web",
            "com.docker.compose.container-number=2",
            "com.docker.compose.oneoff=False",
        ] {
            assert!(o.labels.contains(&l.to_string()), "{l} in {:?}", o.labels);
        }
        let hash = format!(
            "com.docker.compose.config-hash={}",
            p.config_hash("web").unwrap()
        );
        assert!(o.labels.contains(&hash));
    }

    #[test]
    fn build_only_services_run_the_image_build_makes_and_unsupported_keys_fail() {
        let p = project(
            "services:\n  api:\n    build: .\n    network_mode: 'service:x'\n  x:\n    image: busybox\n",
        );
        assert_eq!(image_name(&p, "api"), "app-api");
        let e = run_options(&p, "api", 1, "app-api-1").unwrap_err();
        assert_eq!(e, "not supported yet: services.api.network_mode: service:x");
    }
}
