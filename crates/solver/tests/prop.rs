//! Property tests: random DAGs with random delays, failures and cancellation points, checked
//! against a sequential evaluation.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kiln_solver::{CancellationToken, Graph, SolveError, SolveOptions};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
struct Spec {
    constant: i64,
    delay_ms: u64,
    fail: bool,
    content: bool,
    inputs: Vec<Index>,
}

#[derive(Debug, Clone)]
struct Case {
    vertices: Vec<Spec>,
    targets: Vec<Index>,
    cancel_after_ms: Option<u64>,
    parallelism: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        -5i64..5,
        0u64..4,
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.2),
        prop::collection::vec(any::<Index>(), 0..4),
    )
        .prop_map(|(constant, delay_ms, fail, content, inputs)| Spec {
            constant,
            delay_ms,
            fail,
            content,
            inputs,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(spec(), 1..14),
        prop::collection::vec(any::<Index>(), 1..3),
        prop::option::weighted(0.25, 0u64..6),
        1usize..4,
    )
        .prop_map(|(vertices, targets, cancel_after_ms, parallelism)| Case {
            vertices,
            targets,
            cancel_after_ms,
            parallelism,
        })
}

/// Vertex `i` gets id `i`; inputs only point at earlier vertices, so the graph is a DAG.
fn build(case: &Case, stats: &Arc<Stats>, with_failures: bool) -> Graph<u32, Toy> {
    let mut g = Graph::new();
    for (i, s) in case.vertices.iter().enumerate() {
        let id = i as u32;
        let inputs: Vec<u32> = if i == 0 {
            vec![]
        } else {
            s.inputs.iter().map(|x| x.index(i) as u32).collect()
        };
        let mut op = Toy::new(id, s.constant, stats).delay_ms(s.delay_ms);
        op.fail = with_failures && s.fail;
        op.content_of_first_input = s.content;
        g.add(id, op, &inputs).unwrap();
    }
    g
}

fn targets(case: &Case) -> Vec<u32> {
    let mut t: Vec<u32> = case
        .targets
        .iter()
        .map(|x| x.index(case.vertices.len()) as u32)
        .collect();
    t.dedup();
    t
}

fn closure(g: &Graph<u32, Toy>, targets: &[u32]) -> HashSet<u32> {
    let mut out = HashSet::new();
    let mut stack = targets.to_vec();
    while let Some(v) = stack.pop() {
        if out.insert(v) {
            stack.extend(g.inputs(&v).unwrap().into_iter().copied());
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn check(case: Case) -> Result<(), TestCaseError> {
    runtime().block_on(async move {
        let stats = Arc::new(Stats::default());
        let g = build(&case, &stats, true);
        let targets = targets(&case);
        let needed = closure(&g, &targets);
        let seq = sequential(&g);
        let (solver, store) = new_solver(case.parallelism);

        // First solve: failures and a cancellation point.
        let cancel = CancellationToken::new();
        if let Some(ms) = case.cancel_after_ms {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cancel.cancel();
            });
        }
        let opts = SolveOptions {
            events: None,
            cancel,
        };
        let result = bounded(solver.solve(&g, &targets, opts)).await;
        prop_assert_eq!(stats.live(), 0, "an execution outlived the solve");
        for (v, n) in stats.snapshot() {
            prop_assert!(n <= 1, "vertex {} executed {} times", v, n);
            prop_assert!(needed.contains(&v), "vertex {} is not needed", v);
        }
        let failing: HashSet<u32> = needed
            .iter()
            .copied()
            .filter(|v| case.vertices[*v as usize].fail)
            .collect();
        match &result {
            Ok(out) => {
                prop_assert!(
                    failing.is_empty(),
                    "succeeded despite failing {:?}",
                    failing
                );
                for (t, solved) in targets.iter().zip(out) {
                    prop_assert_eq!(solved.value, seq[t].0);
                    prop_assert_eq!(solved.key, seq[t].1);
                }
                // A fresh store: everything needed ran exactly once.
                prop_assert_eq!(stats.total(), needed.len());
            }
            Err(SolveError::VertexFailed { vertex, .. }) => {
                prop_assert!(
                    failing.contains(vertex),
                    "{:?} is not a failing vertex",
                    vertex
                );
            }
            Err(SolveError::Cancelled { .. }) => prop_assert!(case.cancel_after_ms.is_some()),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
        if failing.is_empty() && case.cancel_after_ms.is_none() {
            prop_assert!(result.is_ok());
        }
        // Failures are never cached.
        for v in &failing {
            prop_assert!(
                store.get(&cheap_key(&g, *v)).is_none(),
                "failure of {} cached",
                v
            );
        }

        // Second solve without failures: it completes, and what the first solve finished is not
        // executed again.
        let before = stats.snapshot();
        let finished: HashSet<u32> = needed
            .iter()
            .copied()
            .filter(|v| store.get(&cheap_key(&g, *v)).is_some())
            .collect();
        let g2 = build(&case, &stats, false);
        let out = bounded(solver.solve(&g2, &targets, SolveOptions::default()))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (t, solved) in targets.iter().zip(&out) {
            prop_assert_eq!(solved.value, seq[t].0);
        }
        let after = stats.snapshot();
        for (v, n) in &after {
            let prev = before.get(v).copied().unwrap_or(0);
            prop_assert!(n - prev <= 1, "vertex {} executed twice in one solve", v);
            if finished.contains(v) {
                prop_assert_eq!(*n, prev, "vertex {} finished before but ran again", v);
            }
        }

        // Third solve: everything cached, nothing executes.
        let total = stats.total();
        bounded(solver.solve(&g2, &targets, SolveOptions::default()))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stats.total(), total);
        prop_assert_eq!(stats.live(), 0);
        Ok(())
    })
}

/// Two solves of overlapping parts of one graph at once run each vertex at most once, also when
/// the first is cancelled part way: the second still gets its values.
fn check_concurrent(case: Case, other_targets: Vec<Index>) -> Result<(), TestCaseError> {
    runtime().block_on(async move {
        let stats = Arc::new(Stats::default());
        let g = build(&case, &stats, false);
        let seq = sequential(&g);
        let a = targets(&case);
        let b: Vec<u32> = other_targets
            .iter()
            .map(|x| x.index(case.vertices.len()) as u32)
            .collect();
        let (solver, _) = new_solver(case.parallelism);
        let cancel = CancellationToken::new();
        if let Some(ms) = case.cancel_after_ms {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cancel.cancel();
            });
        }
        let (ra, rb) = bounded(async {
            tokio::join!(
                solver.solve(
                    &g,
                    &a,
                    SolveOptions {
                        events: None,
                        cancel
                    }
                ),
                solver.solve(&g, &b, SolveOptions::default())
            )
        })
        .await;
        prop_assert_eq!(stats.live(), 0, "an execution outlived the solves");
        let rb = rb.map_err(|e| TestCaseError::fail(format!("uncancelled solve failed: {e}")))?;
        for (t, s) in b.iter().zip(&rb) {
            prop_assert_eq!(s.value, seq[t].0);
        }
        let mut needed = closure(&g, &a);
        needed.extend(closure(&g, &b));
        match ra {
            Ok(ra) => {
                for (t, s) in a.iter().zip(&ra) {
                    prop_assert_eq!(s.value, seq[t].0);
                }
                prop_assert_eq!(stats.snapshot().len(), needed.len());
            }
            Err(SolveError::Cancelled { .. }) => prop_assert!(case.cancel_after_ms.is_some()),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
        for (v, n) in stats.snapshot() {
            prop_assert!(needed.contains(&v));
            prop_assert_eq!(n, 1, "vertex {} executed {} times", v, n);
        }
        Ok(())
    })
}

proptest! {
    // Modest by default so the suite stays fast; PROPTEST_CASES=1000 for a soak run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_dags_match_sequential_evaluation(case in case()) {
        check(case)?;
    }

    #[test]
    fn concurrent_solves_run_shared_vertices_once(
        case in case(),
        other in prop::collection::vec(any::<Index>(), 1..3),
    ) {
        check_concurrent(case, other)?;
    }
}
