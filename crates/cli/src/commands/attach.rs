//! `kiln attach`, and the interactive side of `kiln run -i` and `kiln start -a`: the
//! container runs under its monitor and this process attaches to it, so the detach keys
//! (ctrl-p ctrl-q) leave it running.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use kiln_runtime::attach::{AttachEnd, AttachOptions, DEFAULT_DETACH_KEYS, parse_detach_keys};
use kiln_runtime::{Container, Runtime};

use super::run::{failure, kiln_exe};
use crate::backend::Context;

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Don't attach stdin.
    #[arg(long)]
    no_stdin: bool,
    /// The key sequence that detaches (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Forward signals to the container (the default; false is not supported yet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    sig_proxy: Option<String>,
    container: String,
}

/// The exit code of an attachment: the command's, 0 after detaching.
fn end_code(end: AttachEnd) -> ExitCode {
    match end {
        AttachEnd::Exited(code) => ExitCode::from(code.clamp(0, 255) as u8),
        AttachEnd::Detached => ExitCode::SUCCESS,
        AttachEnd::Lost => {
            eprintln!("error: the container's monitor went away");
            ExitCode::from(125)
        }
    }
}

fn keys(spec: Option<&str>) -> Result<Vec<u8>, ExitCode> {
    match spec {
        None => Ok(DEFAULT_DETACH_KEYS.to_vec()),
        Some(s) => parse_detach_keys(s).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }),
    }
}

/// `kiln run -i`: start under a monitor, attached from the first byte.
pub fn run_interactive(rt: &Runtime, c: &Container, detach_keys: Option<&str>) -> ExitCode {
    let detach_keys = match keys(detach_keys) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let exe = match kiln_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(125);
        }
    };
    let opts = AttachOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        detach_keys,
        close_stdin: true,
        tty: c.config.tty,
    };
    match rt.start_attached(c, &exe, &opts) {
        Ok(end) => end_code(end),
        Err(e) => failure(&e),
    }
}

pub fn attach(args: AttachArgs, ctx: &Context) -> ExitCode {
    if args.sig_proxy.as_deref().is_some_and(|v| v != "true") {
        eprintln!("error: not supported yet: --sig-proxy=false");
        return ExitCode::from(125);
    }
    let detach_keys = match keys(args.detach_keys.as_deref()) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let rt = match ctx.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(125);
        }
    };
    let result = rt.get(&args.container).and_then(|c| {
        let opts = AttachOptions {
            stdin: !args.no_stdin && c.config.open_stdin,
            stdout: true,
            stderr: true,
            detach_keys,
            close_stdin: false,
            tty: c.config.tty && std::io::stdin().is_terminal(),
        };
        rt.attach(&c, &opts)
    });
    match result {
        Ok(end) => end_code(end),
        Err(e) => failure(&e),
    }
}
