//! A probe binary: runs a command in a sandbox over a rootfs directory, e.g. for hyperfine.
//!
//! `sandbox_run [--runc PATH] [--net none|host] [--repeat N] ROOTFS -- CMD ARGS...`

use std::path::PathBuf;
use std::time::Instant;

use kiln_executor::sandbox::{self, CancelToken, Network, RootFs, SandboxSpec, Stream, runc};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut runtime: Option<PathBuf> = None;
    let mut network = Network::None;
    let mut repeat = 1u32;
    let mut rootfs = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runc" => runtime = args.next().map(PathBuf::from),
            "--net" => {
                network = match args.next().as_deref() {
                    Some("host") => Network::Host,
                    _ => Network::None,
                }
            }
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(1),
            "--" => break,
            other => rootfs = Some(PathBuf::from(other)),
        }
    }
    let argv: Vec<String> = args.collect();
    let Some(rootfs) = rootfs.filter(|_| !argv.is_empty()) else {
        eprintln!(
            "usage: sandbox_run [--runc PATH] [--net none|host] [--repeat N] ROOTFS -- CMD..."
        );
        std::process::exit(2);
    };
    let mut spec = SandboxSpec::new(RootFs::Path(rootfs), argv);
    spec.network = network;
    let cancel = CancelToken::new();
    let mut sink = |stream: Stream, data: &[u8]| {
        use std::io::Write;
        let _ = match stream {
            Stream::Stdout => std::io::stdout().write_all(data),
            Stream::Stderr => std::io::stderr().write_all(data),
        };
    };
    let start = Instant::now();
    let mut code = 0;
    for _ in 0..repeat {
        let res = match &runtime {
            Some(r) => runc::run(r, &spec, &mut sink, &cancel),
            None => sandbox::run(&spec, &mut sink, &cancel),
        };
        match res {
            Ok(info) => code = info.status.shell_code(),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(125);
            }
        }
    }
    if repeat > 1 {
        eprintln!("mean per run: {:?}", start.elapsed() / repeat);
    }
    std::process::exit(code);
}
