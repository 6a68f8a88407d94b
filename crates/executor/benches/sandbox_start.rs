//! The cost of one sandboxed `true`: kiln's own sandbox against `runc run` of an equivalent
//! bundle, in the same run. Needs root, busybox-static and runc; prints why when skipping.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_executor::sandbox::{
    self, CancelToken, CollectOutput, Network, RootFs, SandboxSpec, runc,
};

fn spec(root: &std::path::Path, state: &std::path::Path, network: Network) -> SandboxSpec {
    let mut spec = SandboxSpec::new(RootFs::Path(root.to_path_buf()), vec!["/bin/true".into()]);
    spec.state_dir = state.to_path_buf();
    spec.network = network;
    spec
}

fn bench(c: &mut Criterion) {
    if !common::can_run("sandbox_start bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    common::busybox_rootfs(&root).unwrap();
    // Mount points and /etc files exist, as in a real image, so no run creates stubs.
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(root.join("etc").join(f), "").unwrap();
    }
    let state = dir.path().join("state");
    let cancel = CancelToken::new();

    let mut g = c.benchmark_group("sandboxed_true");
    g.sample_size(30);
    for (name, net) in [
        ("kiln_net_none", Network::None),
        ("kiln_net_host", Network::Host),
    ] {
        let s = spec(&root, &state, net);
        g.bench_function(name, |b| {
            b.iter(|| {
                let info = sandbox::run(&s, &mut CollectOutput::default(), &cancel).unwrap();
                assert!(info.status.success());
            })
        });
    }
    let mut s = spec(&root, &state, Network::None);
    s.cgroup.memory_bytes = Some(256 << 20);
    s.cgroup.pids_max = Some(512);
    g.bench_function("kiln_net_none_cgroups", |b| {
        b.iter(|| {
            let info = sandbox::run(&s, &mut CollectOutput::default(), &cancel).unwrap();
            assert!(info.status.success());
        })
    });
    let runc_bin = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    match runc_bin {
        Some(bin) => {
            for (name, net) in [
                ("runc_net_none", Network::None),
                ("runc_net_host", Network::Host),
            ] {
                let s = spec(&root, &state, net);
                g.bench_function(name, |b| {
                    b.iter(|| {
                        let info =
                            runc::run(&bin, &s, &mut CollectOutput::default(), &cancel).unwrap();
                        assert!(info.status.success());
                    })
                });
            }
        }
        None => eprintln!("runc not installed: benchmarking kiln only"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
