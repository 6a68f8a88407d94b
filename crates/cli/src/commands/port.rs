//! `kiln port CONTAINER [PORT[/PROTO]]`: the host addresses a container's ports are published
//! on, as `docker port` prints them (random host ports included, once bound).

use std::process::ExitCode;

use crate::backend::Context;
use anyhow::bail;
use clap::Args;
use kiln_runtime::ports;

#[derive(Debug, Args)]
pub struct PortArgs {
    container: String,
    /// Only this container port (`80` or `80/udp`); prints just its host addresses.
    port: Option<String>,
}

pub fn run(args: PortArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    let published = ports::published(&c);
    let Some(filter) = &args.port else {
        for p in &published {
            println!("{}", ports::describe(p));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (port, proto) = filter.split_once('/').unwrap_or((filter, "tcp"));
    let Ok(port) = port.parse::<u16>() else {
        bail!("invalid port {filter:?}: expected PORT[/tcp|udp]");
    };
    let proto = proto.to_ascii_lowercase();
    let matching: Vec<_> = published
        .iter()
        .filter(|p| p.container_port == port && p.protocol == proto)
        .collect();
    if matching.is_empty() {
        bail!("no public port '{port}/{proto}' published for {}", c.name());
    }
    for p in matching {
        println!("{}", ports::host_address(p));
    }
    Ok(ExitCode::SUCCESS)
}
