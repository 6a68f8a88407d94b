//! Measures where a sandboxed command's time goes: setup until execve (`spawn`) and execve
//! until exit plus cleanup (`wait`). `sandbox_phases ROOTFS N [host]`.

use std::time::{Duration, Instant};

use kiln_executor::sandbox::{
    CancelToken, CollectOutput, Network, RootFs, Sandbox, SandboxSpec, Stdin,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(root), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: sandbox_phases ROOTFS N [host]");
        std::process::exit(2);
    };
    let mut spec = SandboxSpec::new(RootFs::Path(root.into()), vec!["/bin/true".into()]);
    if args.get(3).map(String::as_str) == Some("host") {
        spec.network = Network::Host;
    }
    let cancel = CancelToken::new();
    let (mut spawn, mut wait) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let sb = Sandbox::spawn(&spec, Stdin::Null).expect("spawn");
        let t2 = Instant::now();
        sb.wait(&mut CollectOutput::default(), &cancel)
            .expect("wait");
        spawn += t2 - t;
        wait += t2.elapsed();
    }
    println!("spawn {:?} wait {:?}", spawn / n, wait / n);
}
