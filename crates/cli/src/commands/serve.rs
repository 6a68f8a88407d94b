//! `kiln serve` (a build worker over gRPC) and `kiln tls init` (certificates for it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kiln_proto::tls::{Address, ServerTls, TlsPaths};

use crate::backend::Context;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: `tcp://HOST:PORT` or `unix:///PATH`.
    #[arg(long, value_name = "ADDRESS")]
    addr: String,
    /// mTLS files: DIR/ca.pem (the clients' CA), DIR/cert.pem, DIR/key.pem (`kiln tls init`
    /// writes DIR/server).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tls_ca", "tls_cert", "tls_key"])]
    tls_dir: Option<PathBuf>,
    /// The CA that issued the clients' certificates (with --tls-cert and --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Serve plaintext on an address other machines can reach (only on a network you trust).
    #[arg(long)]
    insecure: bool,
    /// Builds that run at once; more wait in a queue.
    #[arg(long, default_value_t = 4)]
    max_builds: usize,
    /// On SIGTERM or Ctrl-C, how long running builds may finish before they are cancelled
    /// (e.g. 30s, 5m).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    shutdown_timeout: String,
    /// How long a build whose client disappeared keeps running, waiting for `kiln build
    /// attach`.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    client_grace: String,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a CA, a server certificate and a client certificate for a quick start:
    /// DIR/server/{ca,cert,key}.pem for `kiln serve --tls-dir`, DIR/client/... for
    /// `kiln build --tls-dir`.
    Init {
        /// The directory to create.
        dir: PathBuf,
        /// A name (DNS name or IP) clients use to reach the worker; repeatable. localhost,
        /// 127.0.0.1 and ::1 are always included.
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
    },
}

pub fn tls(command: TlsCommand) -> anyhow::Result<ExitCode> {
    match command {
        TlsCommand::Init { dir, sans } => {
            let report = kiln_proto::tls::init(&dir, &sans)?;
            println!(
                "wrote {} (for `kiln serve --tls-dir`) and {} (for `kiln build --tls-dir`)",
                report.server_dir.display(),
                report.client_dir.display()
            );
            println!(
                "the server certificate is for {} until {}",
                report.sans.join(", "),
                report.not_after.date()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tls_paths(args: &ServeArgs) -> Option<TlsPaths> {
    if let Some(dir) = &args.tls_dir {
        return Some(TlsPaths::in_dir(dir));
    }
    Some(TlsPaths {
        ca: args.tls_ca.clone()?,
        cert: args.tls_cert.clone()?,
        key: args.tls_key.clone()?,
    })
}

pub fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let address: Address = args
        .addr
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid --addr {:?}: {e}", args.addr))?;
    let shutdown_timeout = parse_duration(&args.shutdown_timeout, "--shutdown-timeout")?;
    let client_grace = parse_duration(&args.client_grace, "--client-grace")?;
    let tls = match tls_paths(&args) {
        Some(paths) => Some(ServerTls::load(&paths)?),
        None => None,
    };
    let mut config = kiln_serve::Config::new(address, ctx.root().to_path_buf());
    config.tls = tls;
    config.insecure = args.insecure;
    config.max_builds = args.max_builds;
    config.shutdown_timeout = shutdown_timeout;
    config.client_grace = client_grace;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let mut server = kiln_serve::Server::start(config).await?;
        let plaintext = if args.tls_dir.is_none() && args.tls_ca.is_none() {
            " (plaintext)"
        } else {
            " (mTLS)"
        };
        eprintln!(
            "kiln worker {} listening on {}{plaintext}, store {}",
            server.worker_id(),
            server.address(),
            ctx.root().display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to watch SIGTERM")?;
        let failed = tokio::select! {
            r = server.wait() => Some(r),
            _ = term.recv() => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        if let Some(result) = failed {
            result?;
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "shutting down: running builds have {} to finish",
            humantime_like(shutdown_timeout)
        );
        let cancelled = server.shutdown(shutdown_timeout).await;
        if cancelled > 0 {
            eprintln!("cancelled {cancelled} build(s) that did not finish in time");
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn parse_duration(text: &str, flag: &str) -> anyhow::Result<Duration> {
    super::system::parse_duration(text).with_context(|| format!("invalid {flag} {text:?}"))
}

fn humantime_like(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
