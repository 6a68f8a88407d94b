//! Dispatching an instruction, and the instructions that change the image config and the
//! stage's state rather than its files (ARG, ENV, LABEL, USER, WORKDIR, CMD, HEALTHCHECK, ...).

use kiln_llb::image::Healthcheck;
use kiln_llb::{FileAction, FileOp, MkdirAction, Op, Owner};

use super::copy::CopySpec;
use super::program::{
    Lowering, Result, arg_pairs, bug, command_args, error, get_pair, is_proxy, set_pair, values,
};
use super::stage::Command;
use crate::diagnostic::Span;
use crate::instructions::{
    Healthcheck as HealthInstr, Instruction as Instr, InstructionKind as Kind, ShellOrExec,
};
use crate::lower::util::{
    clean, format_go_duration, go_list, go_quote_list, join, parse_ports, valid_signal,
};

impl Lowering<'_> {
    /// Lowers one instruction of stage `i`.
    pub(super) fn dispatch(&mut self, i: usize, command: &Command) -> Result<()> {
        let instr = &command.instr;
        let span = instr.span;
        match &instr.kind {
            Kind::Arg(arg) => self.dispatch_arg(i, &arg_pairs(arg), span),
            Kind::Env(env) => {
                let mut expanded = Vec::new();
                for kv in &env.pairs {
                    if kv.legacy {
                        self.legacy_key_value("ENV", span);
                    }
                    let key = self.expand(i, &kv.key.value, span)?;
                    self.lint_secret_name("ENV", &key, span);
                    expanded.push((key, self.expand(i, &kv.value.value, span)?));
                }
                let mut msg = String::from("ENV");
                let st = self.state_mut(i);
                for (k, v) in &expanded {
                    msg.push_str(&format!(" {k}={v}"));
                    set_pair(&mut st.env, k, v);
                    st.image.config.set_env(k, v);
                }
                self.history(i, msg, false);
                Ok(())
            }
            Kind::Label(label) => {
                let mut msg = String::from("LABEL");
                for kv in &label.pairs {
                    if kv.legacy {
                        self.legacy_key_value("LABEL", span);
                    }
                    let k = self.expand(i, &kv.key.value, span)?;
                    let v = self.expand(i, &kv.value.value, span)?;
                    msg.push_str(&format!(" {k}={v}"));
                    self.state_mut(i).image.config.labels.insert(k, v);
                }
                self.history(i, msg, false);
                Ok(())
            }
            Kind::Maintainer(m) => {
                let m = &m.name.value;
                self.state_mut(i).image.author = Some(m.clone());
                self.history(i, format!("MAINTAINER {m}"), false);
                Ok(())
            }
            Kind::Workdir(w) => {
                let p = self.expand(i, &w.path.value, span)?;
                self.lint_workdir(i, &p, span);
                self.dispatch_workdir(i, &p, instr, command.onbuild)
            }
            Kind::User(u) => {
                let u = self.expand(i, &u.user.value, span)?;
                let st = self.state_mut(i);
                st.user = u.clone();
                st.image.config.user = u.clone();
                self.history(i, format!("USER {u}"), false);
                Ok(())
            }
            Kind::Volume(volume) => {
                let mut expanded = Vec::new();
                for v in &volume.paths {
                    let v = self.expand(i, &v.value, span)?;
                    if v.is_empty() {
                        return Err(error("VOLUME specified can not be an empty string", span));
                    }
                    expanded.push(v);
                }
                self.state_mut(i)
                    .image
                    .config
                    .volumes
                    .extend(expanded.iter().cloned());
                self.history(i, format!("VOLUME {}", go_list(&expanded)), false);
                Ok(())
            }
            Kind::Expose(expose) => {
                let mut words = Vec::new();
                for p in &expose.ports {
                    let env = self.state(i).env.clone();
                    words.extend(
                        self.lexer
                            .process_words(&p.value, &env)
                            .map_err(|e| error(e.to_string(), span))?,
                    );
                }
                let mut parsed = Vec::new();
                for w in &words {
                    self.lint_expose(w, span);
                    parsed.extend(parse_ports(w).map_err(|e| error(e, span))?);
                }
                self.state_mut(i)
                    .image
                    .config
                    .exposed_ports
                    .extend(parsed.iter().cloned());
                self.history(i, format!("EXPOSE {}", go_list(&parsed)), false);
                Ok(())
            }
            Kind::Stopsignal(s) => {
                let s = self.expand(i, &s.signal.value, span)?;
                if !valid_signal(&s) {
                    return Err(error(format!("invalid signal: {s}"), span));
                }
                self.state_mut(i).image.config.stop_signal = s.clone();
                self.history(i, format!("STOPSIGNAL {s}"), false);
                Ok(())
            }
            Kind::Shell(shell) => {
                let shell = values(&shell.shell);
                self.history(i, format!("SHELL {}", go_list(&shell)), false);
                self.state_mut(i).image.config.shell = shell;
                Ok(())
            }
            Kind::Cmd(cmd) => {
                let (args, shell_form) = command_args(&cmd.cmd);
                self.lint_once_and_json(i, "CMD", shell_form, span);
                let args = self.with_shell(i, args, shell_form);
                let st = self.state_mut(i);
                st.image.config.cmd = Some(args.clone());
                st.image.config.args_escaped = true;
                st.cmd_set = true;
                self.history(i, format!("CMD {}", go_quote_list(&args)), false);
                Ok(())
            }
            Kind::Entrypoint(cmd) => {
                let (args, shell_form) = command_args(&cmd.cmd);
                self.lint_once_and_json(i, "ENTRYPOINT", shell_form, span);
                let args = self.with_shell(i, args, shell_form);
                let st = self.state_mut(i);
                st.image.config.entrypoint = Some(args.clone());
                if !st.cmd_set {
                    st.image.config.cmd = None;
                }
                self.history(i, format!("ENTRYPOINT {}", go_quote_list(&args)), false);
                Ok(())
            }
            Kind::Healthcheck(h) => {
                self.lint_once_and_json(i, "HEALTHCHECK", false, span);
                self.dispatch_healthcheck(i, h)
            }
            Kind::Onbuild(o) => {
                let expression = o.expression.clone();
                self.state_mut(i).image.config.on_build.push(expression);
                Ok(())
            }
            Kind::Run(run) => self.dispatch_run(i, command, run),
            Kind::Copy(copy) => self.dispatch_copy(i, command, &CopySpec::copy(copy)),
            Kind::Add(add) => self.dispatch_copy(i, command, &CopySpec::add(add)),
            // `instructions` starts a new stage at every FROM and triggers reject it.
            Kind::From(_) => Err(bug("FROM dispatched as a stage command", span)),
        }
    }

    /// A command's final argv: shell form is wrapped with the stage's SHELL.
    pub(super) fn with_shell(&self, i: usize, args: Vec<String>, shell_form: bool) -> Vec<String> {
        if !shell_form {
            return args;
        }
        let st = self.state(i);
        let mut shell = if st.image.config.shell.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            st.image.config.shell.clone()
        };
        shell.push(args.join(" "));
        shell
    }

    fn dispatch_arg(
        &mut self,
        i: usize,
        args: &[(String, Option<String>)],
        span: Span,
    ) -> Result<()> {
        let mut commit = Vec::new();
        for (key, default) in args {
            self.lint_secret_name("ARG", key, span);
            let has_value = self.build_args.contains_key(key);
            let mut value = default.clone();
            let mut has_default = default.is_some();
            if !has_default
                && !has_value
                && let Some(v) = get_pair(&self.global_args, key)
            {
                value = Some(v.to_owned());
                has_default = false;
            }
            if has_value {
                value = self.build_args.get(key).cloned();
            } else if has_default && let Some(d) = &value {
                value = Some(self.expand(i, d, span)?);
            }
            let st = self.state_mut(i);
            if let Some(v) = &value
                && !is_proxy(key)
            {
                set_pair(&mut st.env, key, v);
            }
            st.build_args.push((key.clone(), value.clone()));
            if let Some(arg) = self
                .outline
                .args
                .iter_mut()
                .find(|a| &a.name == key && a.value.is_none())
            {
                arg.value = value.clone();
            }
            commit.push(match &value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            });
        }
        self.history(i, format!("ARG {}", commit.join(" ")), false);
        Ok(())
    }

    fn dispatch_workdir(
        &mut self,
        i: usize,
        path: &str,
        instr: &Instr,
        onbuild: bool,
    ) -> Result<()> {
        let st = self.state(i);
        let wd = if path.starts_with('/') {
            clean(path)
        } else {
            clean(&join(&st.cwd, path))
        };
        let user = st.user.clone();
        let env = st.env.clone();
        let base = st.fs;
        {
            let st = self.state_mut(i);
            st.cwd = wd.clone();
            st.image.config.working_dir = wd.clone();
        }
        let mut layer = false;
        if wd != "/" {
            let text = self.display_text(&instr.original, &env);
            let name = self.step_name(i, &text, onbuild);
            let meta = self.meta(i, name, Some(&instr.original));
            let op = Op::File(FileOp {
                base,
                actions: vec![FileAction::Mkdir(MkdirAction {
                    path: wd.clone(),
                    mode: 0o755,
                    make_parents: true,
                    owner: Owner::parse(&user),
                    timestamp: self.epoch,
                })],
            });
            let fs = self.add(op, meta, Some(instr.span))?;
            self.state_mut(i).fs = fs;
            layer = true;
        }
        self.history(i, format!("WORKDIR {wd}"), layer);
        Ok(())
    }

    fn dispatch_healthcheck(&mut self, i: usize, h: &HealthInstr) -> Result<()> {
        // `instructions` checked the durations (zero or at least 1ms) and retries.
        let nanos = |d: Option<std::time::Duration>| {
            d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        };
        let hc = match h {
            HealthInstr::None => Healthcheck {
                test: vec!["NONE".to_owned()],
                ..Healthcheck::default()
            },
            HealthInstr::Cmd(h) => {
                let test = match &h.cmd {
                    ShellOrExec::Shell(w) => vec!["CMD-SHELL".to_owned(), w.value.clone()],
                    ShellOrExec::Exec(words) => std::iter::once("CMD".to_owned())
                        .chain(words.iter().map(|w| w.value.clone()))
                        .collect(),
                };
                Healthcheck {
                    test,
                    interval: nanos(h.interval),
                    timeout: nanos(h.timeout),
                    start_period: nanos(h.start_period),
                    start_interval: nanos(h.start_interval),
                    retries: h.retries.map_or(0, i64::from),
                }
            }
        };
        let msg = format!(
            "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            go_list(&hc.test),
            format_go_duration(hc.interval),
            format_go_duration(hc.timeout),
            format_go_duration(hc.start_period),
            format_go_duration(hc.start_interval),
            hc.retries
        );
        self.state_mut(i).image.config.healthcheck = Some(hc);
        self.history(i, msg, false);
        Ok(())
    }
}
