//! Creating a container: the image and command resolved, its name claimed, its directories,
//! lease and volumes made (a new volume seeded from the image), and the sandbox spec every
//! start is built from.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_cache::LeaseOptions;
use kiln_executor::snapshot::{Driver, SnapshotId};

use super::settings::Settings;
use super::{Runtime, lease_id, parse_signal, read_from_layers};
use crate::error::{RuntimeError, io_err};
use crate::options::{self, RunOptions};
use crate::store::{
    self, Container, ContainerConfig, ContainerState, MountConfig, NetworkMode, RestartPolicy,
    now_rfc3339, write_json,
};
use crate::volume;

/// A container just created, with what its creator should be told about it (Docker's create
/// answers with warnings the same way).
#[derive(Debug, Clone)]
pub struct Created {
    pub container: Container,
    /// One sentence each, lowercase, for the caller to show as warnings.
    pub warnings: Vec<String>,
}

impl Runtime {
    /// Creates a container from `opts`: resolves the image and command, prepares its
    /// directories, volumes and lease, and records it as `created`.
    pub fn create(&self, opts: &RunOptions) -> Result<Created, RuntimeError> {
        // `kiln run` starts the container right after this: its cgroup join gets cheap now.
        self.warm_cgroups_ahead();
        let mut warnings = Vec::new();
        if opts.network.as_deref() == Some("host") && (!opts.publish.is_empty() || opts.publish_all)
        {
            warnings.push("published ports are discarded when using host network mode".into());
        }
        if self.images.snapshots().driver() == Driver::Copy {
            return Err(RuntimeError::NotSupported(
                "containers on the copy snapshot driver (the store needs overlayfs)".into(),
            ));
        }
        // Every flag is checked before anything is made (the host gateway, if one is
        // asked for, is checked again once the network is known).
        let net_host = opts.network.as_deref() == Some("host");
        let early_gateway = Some(String::new());
        self.host_settings(opts, net_host, early_gateway)?;
        let platform = opts
            .platform
            .as_deref()
            .map(kiln_llb::Platform::parse)
            .transpose()
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let image = self.images.image_for(&opts.image, platform.as_ref())?;
        // Programs for another architecture run through binfmt_misc: say what to install when
        // there is no emulator, rather than letting the start fail with "exec format error".
        if !image.config.architecture.is_empty() {
            let wanted = kiln_image::platform_of_config(&image.config);
            let host = kiln_llb::Platform::host();
            fn view(p: &kiln_llb::Platform) -> kiln_executor::emulation::Platform<'_> {
                kiln_executor::emulation::Platform {
                    os: &p.os,
                    architecture: &p.architecture,
                    variant: p.variant.as_deref(),
                }
            }
            kiln_executor::emulation::check(
                &view(&wanted),
                &view(&host),
                &kiln_executor::emulation::binfmt_dir(),
            )
            .map_err(RuntimeError::Invalid)?;
        }
        let joined = crate::network::resolve(self.root(), opts.network.as_deref())?;
        warnings.extend(joined.warnings);
        let gateway = self.host_gateway(joined.name.as_deref());
        let settings = match self.host_settings(opts, net_host, gateway) {
            Ok(s) => s,
            Err(e) => {
                crate::network::release_lease(
                    self.root(),
                    joined.name.as_deref(),
                    joined.ip.as_deref(),
                );
                return Err(e);
            }
        };
        warnings.extend(settings.warnings.iter().cloned());
        let container =
            self.create_container(opts, &image, settings, joined.mode, joined.name, joined.ip)?;
        Ok(Created {
            container,
            warnings,
        })
    }

    fn create_container(
        &self,
        opts: &RunOptions,
        image: &kiln_image::Image,
        settings: Settings,
        network: NetworkMode,
        network_name: Option<String>,
        ip: Option<String>,
    ) -> Result<Container, RuntimeError> {
        let top = self.images.unpack(image)?;
        let rc = &image.config.config;
        let (entrypoint, cmd) =
            options::resolve_command(rc, opts.entrypoint.as_deref(), &opts.command)?;
        let mut argv = entrypoint.clone();
        argv.extend(cmd.iter().cloned());

        let id = store::new_id()?;
        let name = match &opts.name {
            Some(n) => {
                let n = n.trim_start_matches('/');
                let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => store::generated_name(&id),
        };
        // A first check before the slow part; the one that counts is made under the lock.
        check_name_free(self.root(), &name)?;
        // With `--uts host` the processes see the host's name, while the record, HOSTNAME and
        // /etc/hostname keep the container's (as Docker's do).
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let user = opts.user.clone().unwrap_or_else(|| rc.user.clone());
        let working_dir = match opts.workdir.as_deref() {
            Some(w) if !w.starts_with('/') => {
                return Err(RuntimeError::Invalid(format!(
                    "the working directory {w:?} is not an absolute path"
                )));
            }
            Some(w) => w.to_string(),
            None if rc.working_dir.is_empty() => "/".to_string(),
            None => rc.working_dir.clone(),
        };
        let mut file_env = Vec::new();
        for f in &opts.env_files {
            file_env.extend(options::read_env_file(f)?);
        }
        let exposed: Vec<String> = rc
            .exposed_ports
            .iter()
            .cloned()
            .chain(opts.expose.iter().cloned())
            .collect();
        let ports_ = options::published_ports(&opts.publish, opts.publish_all, &exposed)?;
        let mut mounts = Vec::new();
        for v in &opts.volumes {
            mounts.push(options::parse_volume(v)?);
        }
        for m in &opts.mounts {
            mounts.push(options::parse_mount(m)?);
        }
        for t in &opts.tmpfs {
            mounts.push(options::parse_tmpfs(t)?);
        }
        // Image VOLUME entries not covered by a mount get anonymous volumes.
        for v in &rc.volumes {
            let target = format!("/{}", v.trim_matches('/'));
            if !mounts.iter().any(|m| m.target() == target) {
                mounts.push(MountConfig::Volume {
                    name: String::new(),
                    target,
                    readonly: false,
                    anonymous: true,
                    nocopy: false,
                });
            }
        }
        for m in &mounts {
            match m {
                // `-v`: a missing host directory is made, as Docker does.
                MountConfig::Bind {
                    source,
                    create: true,
                    ..
                } if !source.exists() => fs::create_dir_all(source).map_err(io_err(format!(
                    "create the bind source {}",
                    source.display()
                )))?,
                MountConfig::Bind { source, .. } if !source.exists() => {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        source.display()
                    )));
                }
                _ => {}
            }
        }
        let labels = options::host::labels(&rc.labels, &opts.label_files, &opts.labels)?;

        let dir = store::containers_dir(self.root()).join(&id);
        fs::create_dir_all(dir.join("upper")).map_err(io_err(format!(
            "create container directory {}",
            dir.display()
        )))?;
        fs::create_dir_all(dir.join("work")).map_err(io_err(format!(
            "create container directory {}",
            dir.display()
        )))?;
        let result = (|| {
            if let Some(top) = &top {
                let lease = self.images.store().create_lease(&LeaseOptions {
                    id: Some(lease_id(&id)),
                    ttl: None,
                    bind_to_process: false,
                })?;
                self.images
                    .store()
                    .lease_snapshot(&lease.id, top.as_str())?;
            }
            // HOME from the image's passwd entry of the user, as Docker does.
            let layers = self.layers(top.as_ref(), &dir)?;
            let home = home_of(&layers, &user);
            let env = options::merge_env(&rc.env, &file_env, &opts.env, &hostname, &home, opts.tty);
            for m in &mut mounts {
                if let MountConfig::Volume {
                    name, anonymous, ..
                } = m
                    && name.is_empty()
                {
                    *name = store::new_id()?;
                    *anonymous = true;
                }
            }
            for m in &mounts {
                if let MountConfig::Volume {
                    name,
                    target,
                    anonymous,
                    nocopy,
                    ..
                } = m
                {
                    let v = volume::create(self.root(), name, *anonymous)?;
                    if !v.initialized && !*nocopy {
                        self.seed_volume(top.as_ref(), target, &v.mountpoint)?;
                        volume::mark_initialized(self.root(), v)?;
                    }
                }
            }
            let config = ContainerConfig {
                id: id.clone(),
                name: name.clone(),
                image: opts.image.clone(),
                image_id: image.id().to_string(),
                snapshot: top.as_ref().map(|t| t.as_str().to_string()),
                created: now_rfc3339(),
                path: argv[0].clone(),
                args: argv[1..].to_vec(),
                entrypoint,
                cmd,
                env,
                working_dir,
                user,
                hostname,
                network,
                mounts,
                ports: ports_,
                memory: opts
                    .memory
                    .as_deref()
                    .map(options::parse_size)
                    .transpose()?,
                cpus_millis: opts.cpus.as_deref().map(options::parse_cpus).transpose()?,
                pids_limit: match opts.pids_limit {
                    Some(n) if n > 0 => Some(n as u64),
                    _ => None,
                },
                read_only: opts.read_only,
                restart: options::parse_restart(opts.restart.as_deref().unwrap_or("no"))?,
                stop_signal: match (&opts.stop_signal, rc.stop_signal.is_empty()) {
                    (Some(s), _) => s.clone(),
                    (None, true) => "SIGTERM".into(),
                    (None, false) => rc.stop_signal.clone(),
                },
                auto_remove: opts.auto_remove,
                open_stdin: opts.interactive,
                healthcheck: opts.health.apply(rc.healthcheck.clone())?,
                tty: opts.tty,
                network_name,
                ip,
                security_opt: settings.security_opt.clone(),
                labels: labels.clone(),
                host: settings.host.clone(),
                extra_networks: Vec::new(),
                aliases: opts.network_aliases.clone(),
            };
            parse_signal(&config.stop_signal).map_err(|_| {
                RuntimeError::Invalid(format!("invalid signal: {}", config.stop_signal))
            })?;
            if config.auto_remove && config.restart != RestartPolicy::No {
                return Err(RuntimeError::Invalid(
                    "--restart and --rm cannot be used together".into(),
                ));
            }
            // The name check and the record that claims the name, as one step for concurrent
            // creates (`list` skips a record until its state.json exists).
            let names = store::lock_names(self.root())?;
            check_name_free(self.root(), &name)?;
            write_json(&dir.join("config.json"), &config)?;
            let state = ContainerState::created();
            write_json(&dir.join("state.json"), &state)?;
            drop(names);
            if let Some(n) = &config.network_name {
                crate::network::refresh_hosts(self.root(), n)?;
            }
            let c = Container {
                config,
                state,
                dir: dir.clone(),
            };
            crate::events::record(self.root(), crate::events::container(&c, "create"));
            Ok(c)
        })();
        if result.is_err() {
            let _ = self.images.store().delete_lease(&lease_id(&id));
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Copies the image's content at `target` into a fresh volume, as Docker does at the first
    /// mount. The image is mounted read-only in a private mount namespace for the copy.
    fn seed_volume(
        &self,
        top: Option<&SnapshotId>,
        target: &str,
        data: &Path,
    ) -> Result<(), RuntimeError> {
        let Some(top) = top else { return Ok(()) };
        let is_empty = fs::read_dir(data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !is_empty {
            return Ok(());
        }
        let mnt = self.images.tempdir("volume-seed-")?;
        let images = self.images.clone();
        let top = top.clone();
        let (mnt_path, target, data) = (
            mnt.path().to_path_buf(),
            target.trim_start_matches('/').to_string(),
            data.to_path_buf(),
        );
        kiln_image::with_private_mounts(move || {
            images.snapshots().mount(&top, &mnt_path)?;
            let src = mnt_path.join(&target);
            // A symlink in the image could point anywhere on the host through the mount: only
            // copy a real directory.
            let is_dir = fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir());
            if is_dir {
                let status = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", src.display()))
                    .arg(&data)
                    .status()
                    .map_err(|source| kiln_image::ImageError::Io {
                        what: "run cp to fill a volume".into(),
                        source,
                    })?;
                if !status.success() {
                    return Err(kiln_image::ImageError::Io {
                        what: format!("fill a volume from the image's /{target}"),
                        source: std::io::Error::other(format!("cp exited with {status}")),
                    });
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// For a container on a user network: its namespace, wired to the bridge, until dropped.
    pub(super) fn attach_network(
        &self,
        c: &Container,
    ) -> Result<Option<crate::network::Attachment>, RuntimeError> {
        match (&c.config.network_name, &c.config.ip) {
            (Some(name), Some(ip)) if c.config.network == NetworkMode::Named => {
                let info = crate::network::inspect(self.root(), name)?;
                let att = crate::network::attach(self.root(), &info, c.id(), ip)?;
                for link in &c.config.extra_networks {
                    let info = crate::network::inspect(self.root(), &link.name)?;
                    crate::network::attach_extra(self.root(), &info, c.id(), &link.ip, link.index)?;
                }
                Ok(Some(att))
            }
            _ => Ok(None),
        }
    }
}

/// Fails with Docker's conflict error when a container already has `name`.
fn check_name_free(root: &Path, name: &str) -> Result<(), RuntimeError> {
    match store::list(root)?
        .into_iter()
        .find(|c| c.config.name == name)
    {
        Some(c) => Err(RuntimeError::NameInUse {
            name: name.to_string(),
            id: c.config.id,
        }),
        None => Ok(()),
    }
}

/// The home directory of `user` (name or uid, before any `:group`) from the rootfs's passwd.
fn home_of(layers: &[PathBuf], user: &str) -> String {
    let user = user.split(':').next().unwrap_or("");
    let user = if user.is_empty() { "root" } else { user };
    read_from_layers(layers, "/etc/passwd")
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && (f[0] == user || f[2] == user)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            if user == "root" || user == "0" {
                "/root".into()
            } else {
                "/".into()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        let layers = vec![dir.path().to_path_buf()];
        assert_eq!(home_of(&layers, "www"), "/var/www");
        assert_eq!(home_of(&layers, "33:33"), "/var/www");
        assert_eq!(home_of(&layers, ""), "/root");
        assert_eq!(home_of(&layers, "1234"), "/");
    }
}
