//! Benchmarks: cache-key derivation and a fully cached (no-op) solve of a 1,000-vertex graph.

use std::convert::Infallible;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_solver::{
    CacheKey, ExecCtx, Graph, MemoryStore, Operation, SolveOptions, Solver, SolverConfig,
};

const VERTICES: u32 = 1_000;

/// Adds its inputs and a constant; stands in for an op whose key material is a 32-byte digest.
struct Add {
    digest: [u8; 32],
    constant: i64,
}

impl Operation for Add {
    type Value = i64;
    type Error = Infallible;

    fn cache_key_base(&self) -> Vec<u8> {
        self.digest.to_vec()
    }

    async fn execute(&self, inputs: &[i64], _ctx: &ExecCtx) -> Result<i64, Infallible> {
        Ok(inputs.iter().sum::<i64>() + self.constant)
    }
}

/// A deterministic DAG: each vertex takes up to three earlier vertices as inputs.
fn graph() -> Graph<u32, Add> {
    let mut g = Graph::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    for id in 0..VERTICES {
        let mut inputs = Vec::new();
        if id > 0 {
            inputs.push(id - 1);
            for _ in 0..next() % 3 {
                inputs.push((next() % u64::from(id)) as u32);
            }
        }
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&id.to_be_bytes());
        g.add(
            id,
            Add {
                digest,
                constant: 1,
            },
            &inputs,
        )
        .unwrap();
    }
    g
}

fn cache_keys(c: &mut Criterion) {
    let g = graph();
    let ids: Vec<u32> = g.ids().copied().collect();
    c.bench_function("cache keys of 1000 vertices", |b| {
        b.iter(|| {
            let mut keys: Vec<CacheKey> = Vec::with_capacity(ids.len());
            for id in &ids {
                let inputs: Vec<CacheKey> = g
                    .inputs(id)
                    .unwrap()
                    .into_iter()
                    .map(|i| keys[*i as usize])
                    .collect();
                keys.push(CacheKey::for_vertex(
                    &g.op(id).unwrap().cache_key_base(),
                    &inputs,
                ));
            }
            keys
        })
    });
}

fn noop_solve(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let g = graph();
    // Every vertex is a target, so every record is loaded (the worst cached case).
    let targets: Vec<u32> = g.ids().copied().collect();
    let store = Arc::new(MemoryStore::new());
    let solver = Solver::with_config(store.clone(), SolverConfig::default());
    rt.block_on(solver.solve(&g, &targets, SolveOptions::default()))
        .unwrap();
    let last = [VERTICES - 1];
    c.bench_function("no-op solve of 1000 vertices, all targets", |b| {
        b.iter(|| {
            rt.block_on(solver.solve(&g, &targets, SolveOptions::default()))
                .unwrap()
        })
    });
    c.bench_function(
        "no-op solve of 1000 vertices, one target needing all",
        |b| {
            b.iter(|| {
                rt.block_on(solver.solve(&g, &last, SolveOptions::default()))
                    .unwrap()
            })
        },
    );
}

criterion_group!(benches, cache_keys, noop_solve);
criterion_main!(benches);
