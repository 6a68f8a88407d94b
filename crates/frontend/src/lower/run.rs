//! RUN: the Exec op (shell form, heredocs, network and security modes) and its `--mount`s
//! (bind, cache, tmpfs, secret, ssh), with the history entry BuildKit writes.

use kiln_llb::{
    CacheSharing, Device, ExecOp, FileAction, FileOp, Input, MkfileAction, Mount, MountKind,
    MountSource, NetworkMode, Op, OpMetadata, Platform, SecretEnv, SecurityMode,
};

use super::program::{Lowering, Result, command_args, error, get_pair, is_proxy, set_pair};
use super::stage::Command;
use crate::diagnostic::{Diagnostic, Span};
use crate::instructions::{self, Run, Word};
use crate::lower::OutlineMount;
use crate::lower::mounts::{self, MountError, ParsedMount};
use crate::lower::util::{clean, go_list, join};

impl Lowering<'_> {
    /// RUN: one Exec op on the stage's filesystem.
    pub(super) fn dispatch_run(&mut self, i: usize, command: &Command, run: &Run) -> Result<()> {
        let span = command.instr.span;
        let mut devices = Vec::new();
        for d in &run.devices {
            let value = self.expand(i, &d.value, span)?;
            devices.push(parse_device(&value).map_err(|m| error(m, d.span))?);
        }
        let heredocs = &run.heredocs;
        let (mut args, shell_form) = command_args(&run.cmd);
        let mut extra_mounts = Vec::new();
        let mut name_suffix = String::new();
        if !heredocs.is_empty() {
            if args.len() != 1 || !shell_form {
                return Err(error(
                    format!(
                        "parsing produced an invalid run command: {}",
                        go_list(&args)
                    ),
                    span,
                ));
            }
            if is_single_heredoc(&args[0]) {
                let doc = &heredocs[0];
                let content = doc.body();
                // BuildKit looks for the shebang before stripping tabs: `<<-` with an indented
                // `#!` line runs as a shell script.
                if doc.content.starts_with("#!") {
                    // A script with a shebang: write it to a file and run that file.
                    let scratch = self.scratch()?;
                    let file = self.add(
                        Op::File(FileOp {
                            base: scratch,
                            actions: vec![FileAction::Mkfile(MkfileAction {
                                path: format!("/{}", doc.name),
                                mode: 0o755,
                                data: content.as_bytes().to_vec(),
                                owner: None,
                                timestamp: None,
                            })],
                        }),
                        OpMetadata::named("preparing inline document"),
                        None,
                    )?;
                    extra_mounts.push(Mount {
                        target: "/dev/pipes".to_owned(),
                        kind: MountKind::Bind {
                            source: MountSource {
                                input: file,
                                selector: "/".to_owned(),
                            },
                            readonly: true,
                        },
                    });
                    args = vec![format!("/dev/pipes/{}", doc.name)];
                } else {
                    args = vec![content.clone()];
                }
                name_suffix = format!(" ({})", summarize_heredoc(&doc.content));
            } else {
                // The shell reads the heredocs itself (stripping tabs for `<<-`), so they go to
                // it exactly as written, as BuildKit passes them.
                let mut script = args[0].clone();
                for doc in heredocs {
                    script.push('\n');
                    script.push_str(&doc.content);
                    script.push_str(&doc.name);
                }
                args = vec![script];
            }
        }
        let args = self.with_shell(i, args, shell_form);

        let network = match run.network {
            _ if !run.network_explicit => self.opts.network,
            instructions::NetworkMode::Default => NetworkMode::Default,
            instructions::NetworkMode::None => NetworkMode::None,
            instructions::NetworkMode::Host => NetworkMode::Host,
        };
        let security = match run.security {
            instructions::SecurityMode::Sandbox => SecurityMode::Sandbox,
            instructions::SecurityMode::Insecure => SecurityMode::Insecure,
        };

        let (mut mounts, secret_env) = self.run_mounts(i, &run.mounts, span)?;
        mounts.extend(extra_mounts);

        let st = self.state(i).clone();
        let mut env: Vec<(String, String)> = st
            .env
            .iter()
            .filter(|(k, _)| !is_proxy(k))
            .cloned()
            .collect();
        // The first ssh socket is the step's agent unless the environment names one.
        let first_ssh = mounts
            .iter()
            .find(|m| matches!(m.kind, MountKind::Ssh { .. }))
            .map(|m| m.target.clone());
        if let Some(target) = first_ssh
            && !env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK")
        {
            env.push(("SSH_AUTH_SOCK".to_owned(), target));
        }
        let hostname = self
            .opts
            .hostname
            .clone()
            .or_else(|| self.build_args.get("BUILDKIT_SANDBOX_HOSTNAME").cloned());
        let exec = ExecOp {
            args: args.clone(),
            env: env.clone(),
            cwd: st.cwd.clone(),
            user: st.user.clone(),
            hostname,
            root: st.fs,
            mounts,
            secret_env,
            network,
            security,
            devices,
            // Only another platform than the host's is named, so the digests of native steps
            // are what they were before platforms entered the op.
            platform: (st.platform != Platform::host()).then(|| st.platform.clone()),
        };
        let mut masked = env.clone();
        for s in &exec.secret_env {
            set_pair(&mut masked, &s.name, "****");
        }
        let text = format!(
            "{}{}",
            self.display_text(&command.instr.original, &masked),
            name_suffix
        );
        let name = self.step_name(i, &text, command.onbuild);
        let mut meta = self.meta(i, name, Some(&command.instr.original));
        meta.proxy_env = self.proxy_env.clone();
        let fs = self.add(Op::Exec(exec), meta, Some(span))?;
        self.state_mut(i).fs = fs;

        // History lists the build args in scope: `RUN |2 a=1 b=2 /bin/sh -c ...`.
        let mut listed: Vec<(String, String)> = Vec::new();
        for (k, v) in &st.build_args {
            if is_proxy(k) {
                continue;
            }
            let value = get_pair(&st.env, k)
                .map(str::to_owned)
                .unwrap_or_else(|| v.clone().unwrap_or_default());
            set_pair(&mut listed, k, &value);
        }
        let mut msg = String::from("RUN ");
        if !listed.is_empty() {
            msg.push_str(&format!("|{} ", listed.len()));
            for (k, v) in &listed {
                msg.push_str(&format!("{k}={v} "));
            }
        }
        msg.push_str(&args.join(" "));
        msg.push_str(" # buildkit");
        self.history(i, msg, true);
        Ok(())
    }

    fn run_mounts(
        &mut self,
        i: usize,
        flags: &[Word],
        span: Span,
    ) -> Result<(Vec<Mount>, Vec<SecretEnv>)> {
        let mut out = Vec::new();
        let mut secret_env = Vec::new();
        // Default ssh socket paths are numbered per RUN, as BuildKit numbers them.
        self.ssh_count = 0;
        for flag in flags {
            let env = self.state(i).env.clone();
            let lexer = self.lexer.clone();
            let mut unmatched = std::collections::BTreeSet::new();
            let mut expand = |v: &str| -> std::result::Result<String, MountError> {
                let e = lexer.expand(v, &env).map_err(|e| MountError {
                    message: e.to_string(),
                    help: None,
                })?;
                unmatched.extend(e.unmatched);
                Ok(e.value)
            };
            let m =
                mounts::parse_mount(&flag.value, &mut expand).map_err(|e| mount_diag(e, span))?;
            self.lint_undefined(i, &unmatched, span);
            self.lower_mount(i, m, span, &mut out, &mut secret_env)?;
        }
        Ok((out, secret_env))
    }

    fn mount_target(&self, i: usize, target: &str) -> String {
        let cwd = &self.state(i).cwd;
        if target.starts_with('/') {
            clean(target)
        } else {
            join(&join("/", cwd), target)
        }
    }

    fn lower_mount(
        &mut self,
        i: usize,
        m: ParsedMount,
        span: Span,
        out: &mut Vec<Mount>,
        secret_env: &mut Vec<SecretEnv>,
    ) -> Result<()> {
        let line = span.start.line;
        match m.kind.as_str() {
            "secret" => {
                let id =
                    m.id.clone()
                        .or_else(|| m.source.clone())
                        .unwrap_or_else(|| {
                            let t = m.target.clone().unwrap_or_default();
                            t.rsplit('/').next().unwrap_or_default().to_owned()
                        });
                if !self.outline.secrets.iter().any(|s| s.id == id) {
                    self.outline.secrets.push(OutlineMount {
                        id: id.clone(),
                        required: m.required,
                        line,
                    });
                }
                if let Some(name) = &m.env {
                    secret_env.push(SecretEnv {
                        id: id.clone(),
                        name: name.clone(),
                        required: m.required,
                    });
                }
                let target = match (&m.target, &m.env) {
                    (Some(t), _) => Some(self.mount_target(i, t)),
                    (None, None) => Some(format!(
                        "/run/secrets/{}",
                        id.rsplit('/').next().unwrap_or(&id)
                    )),
                    (None, Some(_)) => None,
                };
                if let Some(target) = target {
                    out.push(Mount {
                        target,
                        kind: MountKind::Secret {
                            id,
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                            mode: m.mode.unwrap_or(0o400),
                            required: m.required,
                        },
                    });
                }
                return Ok(());
            }
            "ssh" => {
                let id = m.id.clone().unwrap_or_else(|| "default".to_owned());
                if !self.outline.ssh.iter().any(|s| s.id == id) {
                    self.outline.ssh.push(OutlineMount {
                        id: id.clone(),
                        required: m.required,
                        line,
                    });
                }
                let target = match &m.target {
                    Some(t) => self.mount_target(i, t),
                    None => {
                        self.ssh_count += 1;
                        format!("/run/buildkit/ssh_agent.{}", self.ssh_count - 1)
                    }
                };
                out.push(Mount {
                    target,
                    kind: MountKind::Ssh {
                        id,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o600),
                        required: m.required,
                    },
                });
                return Ok(());
            }
            _ => {}
        }
        let Some(raw_target) = m.target.clone() else {
            return Err(error("mount target is required", span));
        };
        let target = self.mount_target(i, &raw_target);
        if target == "/" {
            return Err(error(format!("invalid mount target {target:?}"), span));
        }
        let selector = join("/", m.source.as_deref().unwrap_or(""));
        // The source of a bind or cache mount: another stage, an image, or the context.
        let source_input = |l: &mut Self| -> Result<Input> {
            match &m.from {
                Some(from) => {
                    let s = l.stage_ref(from, span)?;
                    match &l.stages[s].state {
                        Some(st) => Ok(st.fs),
                        None if l.stages[s].def.is_none() => l.implicit_image(s),
                        None => Err(error(
                            format!(
                                "cannot mount from stage {from:?} to {raw_target:?}, stage needs to be defined before current command"
                            ),
                            span,
                        )),
                    }
                }
                None => {
                    let follow = vec![selector.trim_start_matches('/').to_owned()]
                        .into_iter()
                        .filter(|p| !p.is_empty())
                        .collect();
                    l.context(follow)
                }
            }
        };
        let kind = match m.kind.as_str() {
            "tmpfs" => MountKind::Tmpfs { size: m.size },
            "cache" => {
                let source = match &m.from {
                    Some(_) => Some(MountSource {
                        input: source_input(self)?,
                        selector: selector.clone(),
                    }),
                    None => None,
                };
                let sharing = match m.sharing.as_deref() {
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                };
                MountKind::Cache {
                    id: m
                        .id
                        .clone()
                        .unwrap_or_else(|| mounts::default_cache_id(&raw_target)),
                    sharing,
                    source,
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    mode: m.mode.unwrap_or(0o755),
                    readonly: m.readonly,
                }
            }
            _ => MountKind::Bind {
                source: MountSource {
                    input: source_input(self)?,
                    selector,
                },
                readonly: m.readonly,
            },
        };
        out.push(Mount { target, kind });
        Ok(())
    }
}

pub(super) fn mount_diag(e: MountError, span: Span) -> Diagnostic {
    let mut d = error(e.message, span);
    if let Some(help) = e.help {
        d = d.with_help(help);
    }
    d
}

/// A `RUN --device` value: `NAME[,required[=true|false]]`.
fn parse_device(value: &str) -> std::result::Result<Device, String> {
    let mut parts = value.split(',');
    let name = parts.next().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(format!("invalid device {value:?}: no device name"));
    }
    let mut required = false;
    for part in parts {
        required = match part.trim() {
            "required" | "required=true" => true,
            "required=false" => false,
            other => return Err(format!("invalid device option {other:?} in {value:?}")),
        };
    }
    Ok(Device {
        name: name.to_owned(),
        required,
    })
}

/// Whether a RUN command line is exactly one heredoc marker (`<<EOF`, `<<-"EOF"`).
fn is_single_heredoc(cmd: &str) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let word = rest.trim_matches(|c| c == '"' || c == '\'');
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The first line of a heredoc, with `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let normalized = doc.replace("\r\n", "\n");
    let mut lines = normalized.split('\n');
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}
