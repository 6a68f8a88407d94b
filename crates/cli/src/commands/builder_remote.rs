//! `kiln builder info|du|prune --builder ADDR`: the same questions asked of remote workers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kiln_image::PruneOptions;
use kiln_runtime::system::human_size;

use crate::backend::Context;
use crate::backend::remote::RemoteBackend;

#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Ask remote workers: `tcp://HOST:PORT`, `unix:///PATH` (comma-separated) or a builder
    /// named in ~/.config/kiln/config.toml.
    #[arg(long, env = "KILN_BUILDER", value_name = "ADDR[,ADDR...]|NAME")]
    builder: Option<String>,
    /// mTLS files for --builder (DIR/ca.pem, DIR/cert.pem, DIR/key.pem).
    #[arg(long, env = "KILN_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<PathBuf>,
}

impl RemoteArgs {
    pub fn is_remote(&self) -> bool {
        self.builder.as_deref().is_some_and(|b| !b.is_empty())
    }

    fn backend(&self, ctx: &Context) -> anyhow::Result<RemoteBackend> {
        let Some(builder) = self.builder.as_deref().filter(|b| !b.is_empty()) else {
            anyhow::bail!("give --builder ADDR (or set KILN_BUILDER)");
        };
        ctx.remote(builder, self.tls_dir.as_deref(), false)
    }
}

pub fn info(args: &RemoteArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = args.backend(ctx)?;
    let mut code = ExitCode::SUCCESS;
    for (i, answer) in backend.info()?.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        match answer {
            Ok(w) => {
                let i = &w.info;
                println!("{:<14}{}", "Address:", w.address);
                println!("{:<14}{}", "Worker:", i.worker_id);
                println!("{:<14}{}", "Version:", i.version);
                println!(
                    "{:<14}{} (worker speaks {}..={})",
                    "Protocol:", w.protocol, i.min_protocol, i.max_protocol
                );
                if let Some(p) = &i.platform {
                    let variant = if p.variant.is_empty() {
                        String::new()
                    } else {
                        format!("/{}", p.variant)
                    };
                    println!("{:<14}{}/{}{variant}", "Platform:", p.os, p.architecture);
                }
                if let (Some(l), Some(load)) = (&i.limits, &i.load) {
                    println!(
                        "{:<14}{} running, {} queued, at most {} at once",
                        "Builds:", load.running_builds, load.queued_builds, l.max_builds
                    );
                    println!(
                        "{:<14}{} CPUs, load {:.2}, {} free",
                        "Load:",
                        load.cpus,
                        load.load_average_centi as f64 / 100.0,
                        human_size(load.disk_free_bytes)
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

pub fn du(args: &RemoteArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = args.backend(ctx)?;
    for (address, usage) in backend.disk_usage_remote()? {
        let cache = usage.build_cache.unwrap_or_default();
        println!("{:<14}{}", "Builder:", address);
        println!("{:<14}{}", "Records:", cache.count);
        println!("{:<14}{}", "Reclaimable:", human_size(cache.reclaimable));
        println!("{:<14}{}", "Total:", human_size(cache.bytes));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(args: &RemoteArgs, options: &PruneOptions, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = args.backend(ctx)?;
    for (address, report) in backend.prune_remote(options)? {
        for error in &report.errors {
            eprintln!("warning: {address}: {error}");
        }
        println!(
            "{address}: total reclaimed space: {} ({} records, {} snapshots, {} blobs)",
            report.reclaimed_bytes,
            report.records_removed,
            report.snapshots_removed,
            report.blobs_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
