//! Scenario tests of the solver with toy arithmetic ops: results, caching, laziness, dedup,
//! parallelism, failures, cancellation and progress events.

mod common;

use std::sync::Arc;

use common::*;
use kiln_solver::{
    CacheKey, CancellationToken, EventKind, Graph, GraphError, SolveError, SolveOptions, Stream,
};
use tokio::sync::mpsc::unbounded_channel;

/// 1 ─┬─ 3 ── 4
/// 2 ─┘
fn diamond(stats: &Arc<Stats>) -> Graph<u32, Toy> {
    let mut g = Graph::new();
    g.add(1, Toy::new(1, 1, stats), &[]).unwrap();
    g.add(2, Toy::new(2, 10, stats), &[]).unwrap();
    g.add(3, Toy::new(3, 100, stats), &[1, 2]).unwrap();
    g.add(4, Toy::new(4, 1000, stats), &[3]).unwrap();
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solves_and_matches_sequential_evaluation() {
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let (solver, _) = new_solver(4);
    let out = bounded(solver.solve(&g, &[4, 1], SolveOptions::default()))
        .await
        .unwrap();
    let seq = sequential(&g);
    assert_eq!(out[0].value, 1111);
    assert_eq!(out[0].key, seq[&4].1);
    assert_eq!(out[1].value, 1);
    assert_eq!(stats.total(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_resolve_executes_nothing_and_reports_cached() {
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let (solver, store) = new_solver(4);
    solver
        .solve(&g, &[4], SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.total(), 4);
    assert_eq!(store.saves(), 4);

    let (tx, mut rx) = unbounded_channel();
    let out = bounded(solver.solve(
        &g,
        &[4],
        SolveOptions {
            events: Some(tx),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    assert_eq!(out[0].value, 1111);
    assert_eq!(stats.total(), 4, "a cached re-solve executed something");
    let events = drain(&mut rx);
    for v in 1..=4 {
        assert!(position(&events, v, is_cached).is_some(), "{v} not cached");
        assert!(position(&events, v, is_started).is_none(), "{v} started");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_on_a_dependent_skips_its_uncached_inputs() {
    // As after a garbage collection that dropped intermediate results: only 4 is stored.
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let (solver, store) = new_solver(4);
    solver
        .solve(&g, &[4], SolveOptions::default())
        .await
        .unwrap();
    for v in 1..=3 {
        assert!(store.remove(&cheap_key(&g, v)).is_some());
    }
    let out = solver
        .solve(&g, &[4], SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(out[0].value, 1111);
    assert_eq!(stats.total(), 4, "inputs of a cached vertex were executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_key_hits_when_only_the_covered_input_key_changed() {
    // 1 plays a local context whose cheap key changes every build (salt), 2 a COPY from it whose
    // content key covers input 1, 3 a RUN after it.
    let stats = Arc::new(Stats::default());
    let build = |salt: u64, context_value: i64| {
        let mut g = Graph::new();
        let mut ctx = Toy::new(1, context_value, &stats);
        ctx.salt = salt;
        g.add(1, ctx, &[]).unwrap();
        let mut copy = Toy::new(2, 5, &stats);
        copy.content_of_first_input = true;
        g.add(2, copy, &[1]).unwrap();
        g.add(3, Toy::new(3, 7, &stats), &[2]).unwrap();
        g
    };
    let (solver, _) = new_solver(2);
    let g1 = build(1, 40);
    assert_eq!(
        solver
            .solve(&g1, &[3], SolveOptions::default())
            .await
            .unwrap()[0]
            .value,
        52
    );
    assert_eq!(stats.total(), 3);

    // New session, same content: the context re-executes (its cheap key is new), the COPY hits
    // on its content key, and the RUN hits because the COPY hands it the same output key.
    let g2 = build(2, 40);
    let (tx, mut rx) = unbounded_channel();
    let out = solver
        .solve(
            &g2,
            &[3],
            SolveOptions {
                events: Some(tx),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out[0].value, 52);
    assert_eq!(stats.executions(1), 2);
    assert_eq!(stats.executions(2), 1);
    assert_eq!(stats.executions(3), 1);
    let events = drain(&mut rx);
    let copy_cached = events
        .iter()
        .find(|e| e.vertex == 2 && is_cached(&e.kind))
        .expect("copy not cached");
    assert!(matches!(
        copy_cached.kind,
        EventKind::Cached { content: true, .. }
    ));

    // Same session again: the COPY now hits its cheap key and still hands on the content key.
    let out = solver
        .solve(&g2, &[3], SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(out[0].value, 52);
    assert_eq!(stats.total(), 4);

    // Changed content: the COPY and the RUN rerun.
    let g3 = build(3, 41);
    assert_eq!(
        solver
            .solve(&g3, &[3], SolveOptions::default())
            .await
            .unwrap()[0]
            .value,
        53
    );
    assert_eq!(stats.executions(2), 2);
    assert_eq!(stats.executions(3), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_cache_reruns_only_that_vertex() {
    let stats = Arc::new(Stats::default());
    let (solver, _) = new_solver(2);
    let g = diamond(&stats);
    solver
        .solve(&g, &[4], SolveOptions::default())
        .await
        .unwrap();

    let mut g2 = Graph::new();
    g2.add(1, Toy::new(1, 1, &stats), &[]).unwrap();
    g2.add(2, Toy::new(2, 10, &stats), &[]).unwrap();
    let mut three = Toy::new(3, 100, &stats);
    three.ignore_cache = true;
    g2.add(3, three, &[1, 2]).unwrap();
    g2.add(4, Toy::new(4, 1000, &stats), &[3]).unwrap();
    // 4 is cached, so 3's value is never needed: ignore-cache alone does not force work.
    solver
        .solve(&g2, &[4], SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.total(), 4);
    // Asked for directly, 3 reruns (its inputs come from the cache).
    let out = solver
        .solve(&g2, &[3], SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(out[0].value, 111);
    assert_eq!(stats.executions(3), 2);
    assert_eq!(stats.total(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_vertices_overlap() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    g.add(1, Toy::new(1, 1, &stats).delay_ms(250), &[]).unwrap();
    g.add(2, Toy::new(2, 2, &stats).delay_ms(250), &[]).unwrap();
    g.add(3, Toy::new(3, 3, &stats), &[1, 2]).unwrap();
    let (solver, _) = new_solver(2);
    let (tx, mut rx) = unbounded_channel();
    solver
        .solve(
            &g,
            &[3],
            SolveOptions {
                events: Some(tx),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let events = drain(&mut rx);
    let started = |v| position(&events, v, is_started).unwrap();
    let completed = |v| position(&events, v, is_completed).unwrap();
    assert!(
        started(1) < completed(2) && started(2) < completed(1),
        "{events:#?}"
    );
    assert_eq!(stats.max_live.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The consumer starts after both inputs completed.
    assert!(started(3) > completed(1) && started(3) > completed(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallelism_one_serialises_execution() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    for v in 1..=4 {
        g.add(v, Toy::new(v, 1, &stats).delay_ms(10), &[]).unwrap();
    }
    g.add(5, Toy::new(5, 0, &stats), &[1, 2, 3, 4]).unwrap();
    let (solver, _) = new_solver(1);
    let (tx, mut rx) = unbounded_channel();
    let out = solver
        .solve(
            &g,
            &[5],
            SolveOptions {
                events: Some(tx),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out[0].value, 4);
    assert_eq!(stats.max_live.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Every Started is followed by that vertex's Completed before the next Started.
    let events = drain(&mut rx);
    let mut running = None;
    for e in &events {
        match e.kind {
            EventKind::Started => assert_eq!(running.replace(e.vertex), None, "{events:#?}"),
            EventKind::Completed { .. } => assert_eq!(running.take(), Some(e.vertex)),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_failure_cancels_running_siblings_and_is_not_cached() {
    let stats = Arc::new(Stats::default());
    let build = |fail: bool| {
        let mut g = Graph::new();
        let mut one = Toy::new(1, 1, &stats).delay_ms(20);
        one.fail = fail;
        g.add(1, one, &[]).unwrap();
        // Long enough that only cancellation ends it during the failing solve.
        g.add(
            2,
            Toy::new(2, 2, &stats).delay_ms(if fail { 60_000 } else { 1 }),
            &[],
        )
        .unwrap();
        g.add(3, Toy::new(3, 3, &stats), &[1, 2]).unwrap();
        g
    };
    let (solver, store) = new_solver(4);
    let g = build(true);
    let (tx, mut rx) = unbounded_channel();
    let err = bounded(solver.solve(
        &g,
        &[3],
        SolveOptions {
            events: Some(tx),
            ..Default::default()
        },
    ))
    .await
    .unwrap_err();
    match &err {
        SolveError::VertexFailed {
            vertex,
            source,
            cancelled,
        } => {
            assert_eq!(*vertex, 1);
            assert_eq!(cancelled, &vec![2]);
            assert!(
                source
                    .downcast_ref::<ToyError>()
                    .is_some_and(|e| matches!(e, ToyError::Failed(1)))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "vertex 1 failed; cancelled 2, which was running"
    );
    assert_eq!(stats.live(), 0, "an execution outlived the solve");
    let events = drain(&mut rx);
    let failed = events
        .iter()
        .find(|e| e.vertex == 1 && matches!(e.kind, EventKind::Failed { .. }));
    match failed.map(|e| &e.kind) {
        Some(EventKind::Failed { error, .. }) => assert_eq!(error, "toy op 1 failed on purpose"),
        other => panic!("no failed event: {other:?}"),
    }
    assert!(position(&events, 2, is_cancelled).is_some());
    assert!(
        store.get(&cheap_key(&g, 1)).is_none(),
        "a failure was cached"
    );

    // A later solve retries the failed vertex.
    let g = build(false);
    let out = bounded(solver.solve(&g, &[3], SolveOptions::default()))
        .await
        .unwrap();
    assert_eq!(out[0].value, 6);
    assert_eq!(stats.executions(1), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_cancel_waits_for_running_executions() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    g.add(1, Toy::new(1, 1, &stats).delay_ms(60_000), &[])
        .unwrap();
    g.add(2, Toy::new(2, 2, &stats).delay_ms(60_000), &[])
        .unwrap();
    g.add(3, Toy::new(3, 3, &stats), &[1, 2]).unwrap();
    let (solver, store) = new_solver(4);
    let (tx, mut rx) = unbounded_channel();
    let cancel = CancellationToken::new();
    let opts = SolveOptions {
        events: Some(tx),
        cancel: cancel.clone(),
    };
    let solve = solver.solve(&g, &[3], opts);
    let canceller = async {
        // Cancel once both are running.
        let mut started = 0;
        while let Some(e) = rx.recv().await {
            if is_started(&e.kind) {
                started += 1;
                if started == 2 {
                    break;
                }
            }
        }
        cancel.cancel();
    };
    let (result, ()) = bounded(async { tokio::join!(solve, canceller) }).await;
    match result {
        Err(SolveError::Cancelled { cancelled }) => assert_eq!(cancelled, vec![1, 2]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(stats.live(), 0, "an execution outlived the solve");
    assert!(store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_solves_share_a_vertex_and_the_last_requester_cancels_it() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    g.add(1, Toy::new(1, 1, &stats).delay_ms(200), &[]).unwrap();
    g.add(2, Toy::new(2, 2, &stats), &[1]).unwrap();
    g.add(3, Toy::new(3, 3, &stats), &[1]).unwrap();
    let (solver, _) = new_solver(4);

    // Two solves want 1 at once: it runs once.
    let (a, b) = bounded(async {
        tokio::join!(
            solver.solve(&g, &[2], SolveOptions::default()),
            solver.solve(&g, &[3], SolveOptions::default())
        )
    })
    .await;
    assert_eq!(a.unwrap()[0].value, 3);
    assert_eq!(b.unwrap()[0].value, 4);
    assert_eq!(stats.executions(1), 1);

    // One of two requesters cancels: the shared vertex keeps running for the other.
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    g.add(1, Toy::new(1, 1, &stats).delay_ms(200), &[]).unwrap();
    g.add(2, Toy::new(2, 2, &stats), &[1]).unwrap();
    g.add(3, Toy::new(3, 3, &stats), &[1]).unwrap();
    let (solver, _) = new_solver(4);
    let cancel = CancellationToken::new();
    let (tx, mut rx) = unbounded_channel();
    let first = solver.solve(
        &g,
        &[2],
        SolveOptions {
            events: Some(tx),
            cancel: cancel.clone(),
        },
    );
    let second = async {
        // Join after 1 started for the first solve, then cancel the first.
        while let Some(e) = rx.recv().await {
            if e.vertex == 1 && is_started(&e.kind) {
                break;
            }
        }
        let (tx2, mut rx2) = unbounded_channel();
        let other = solver.solve(
            &g,
            &[3],
            SolveOptions {
                events: Some(tx2),
                ..Default::default()
            },
        );
        let cancel_first = async {
            // The joining solve gets 1's history replayed, so it has seen 1 start by now.
            while let Some(e) = rx2.recv().await {
                if e.vertex == 1 {
                    break;
                }
            }
            cancel.cancel();
        };
        tokio::join!(other, cancel_first).0
    };
    let (a, b) = bounded(async { tokio::join!(first, second) }).await;
    match a {
        Err(SolveError::Cancelled { cancelled }) => assert!(cancelled.is_empty(), "{cancelled:?}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.unwrap()[0].value, 4);
    assert_eq!(stats.executions(1), 1);
    assert_eq!(stats.executions(2), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_number_vertices_in_order_of_first_appearance_and_carry_logs() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    let mut one = Toy::new(1, 1, &stats);
    one.log = Some("hello\n");
    g.add(1, one, &[]).unwrap();
    g.add(2, Toy::new(2, 2, &stats), &[1]).unwrap();
    g.add(3, Toy::new(3, 3, &stats), &[2]).unwrap();
    let (solver, _) = new_solver(2);
    let (tx, mut rx) = unbounded_channel();
    solver
        .solve(
            &g,
            &[3],
            SolveOptions {
                events: Some(tx),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let events = drain(&mut rx);
    // A chain runs in order, so it appears in order.
    let mut seen = Vec::new();
    for e in &events {
        if !seen.contains(&e.vertex) {
            seen.push(e.vertex);
            assert_eq!(e.number, seen.len() as u64);
        } else {
            let first = events.iter().find(|f| f.vertex == e.vertex).unwrap();
            assert_eq!(e.number, first.number);
        }
    }
    assert_eq!(seen, vec![1, 2, 3]);
    let log = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Log { .. }))
        .unwrap();
    assert_eq!(log.vertex, 1);
    assert_eq!(
        log.kind,
        EventKind::Log {
            stream: Stream::Stdout,
            data: b"hello\n".to_vec()
        }
    );
    // Logs come between start and completion.
    let i = events.iter().position(|e| std::ptr::eq(e, log)).unwrap();
    assert!(position(&events, 1, is_started).unwrap() < i);
    assert!(i < position(&events, 1, is_completed).unwrap());
    match &events[position(&events, 3, is_completed).unwrap()].kind {
        EventKind::Completed { key, .. } => assert_eq!(*key, sequential(&g)[&3].1),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_op_fails_the_build_without_hanging() {
    let stats = Arc::new(Stats::default());
    let mut g = Graph::new();
    let mut one = Toy::new(1, 1, &stats);
    one.panic = true;
    g.add(1, one, &[]).unwrap();
    g.add(2, Toy::new(2, 2, &stats), &[1]).unwrap();
    let (solver, _) = new_solver(2);
    let err = bounded(solver.solve(&g, &[2], SolveOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.vertex(), Some(&1));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("toy op 1 panicked") && source.contains("bug in kiln"),
        "{source}"
    );
}

#[tokio::test]
async fn unknown_targets_are_rejected() {
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let (solver, _) = new_solver(2);
    let err = solver
        .solve(&g, &[9], SolveOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SolveError::Graph(GraphError::UnknownTarget(9))
    ));
    assert_eq!(err.to_string(), "target 9 is not in the graph");
}

#[test]
fn solve_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let (solver, _) = new_solver(2);
    let fut = solver.solve(&g, &[4], SolveOptions::default());
    assert_send(&fut);
    let _ = CacheKey::for_vertex(b"", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_solves_do_not_share_a_vertex_id_over_different_inputs() {
    // Two builds in one process: the same COPY id (2) over two different contexts (1).
    let stats = Arc::new(Stats::default());
    let build = |salt: u64, content: i64| {
        let mut g = Graph::new();
        let mut ctx = Toy::new(1, content, &stats).delay_ms(50);
        ctx.salt = salt;
        g.add(1, ctx, &[]).unwrap();
        g.add(2, Toy::new(2, 5, &stats).delay_ms(50), &[1]).unwrap();
        g
    };
    let (a, b) = (build(1, 10), build(2, 20));
    let (solver, _) = new_solver(4);
    let (ra, rb) = bounded(async {
        tokio::join!(
            solver.solve(&a, &[2], SolveOptions::default()),
            solver.solve(&b, &[2], SolveOptions::default())
        )
    })
    .await;
    assert_eq!(ra.unwrap()[0].value, 15);
    assert_eq!(rb.unwrap()[0].value, 25);
    assert_eq!(stats.executions(2), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_solves_run_one_result_once_across_different_contexts_with_equal_content() {
    // Two builds of one Dockerfile in one process: each has its own context (1, keyed by its
    // session), the COPYs (2) select equal content, so they and the RUN after them (3) produce
    // the same output keys and run once.
    let stats = Arc::new(Stats::default());
    let build = |salt: u64| {
        let mut g = Graph::new();
        let mut ctx = Toy::new(1, 40, &stats);
        ctx.salt = salt;
        g.add(1, ctx, &[]).unwrap();
        let mut copy = Toy::new(2, 5, &stats).delay_ms(100);
        copy.content_of_first_input = true;
        g.add(2, copy, &[1]).unwrap();
        g.add(3, Toy::new(3, 7, &stats).delay_ms(100), &[2])
            .unwrap();
        g
    };
    let (a, b) = (build(1), build(2));
    let (solver, store) = new_solver(4);
    let (ta, mut ra) = unbounded_channel();
    let (tb, mut rb) = unbounded_channel();
    let (oa, ob) = bounded(async {
        tokio::join!(
            solver.solve(
                &a,
                &[3],
                SolveOptions {
                    events: Some(ta),
                    ..Default::default()
                }
            ),
            solver.solve(
                &b,
                &[3],
                SolveOptions {
                    events: Some(tb),
                    ..Default::default()
                }
            )
        )
    })
    .await;
    assert_eq!(oa.unwrap()[0].value, 52);
    assert_eq!(ob.unwrap()[0].value, 52);
    assert_eq!(stats.executions(1), 2);
    assert_eq!(stats.executions(2), 1);
    assert_eq!(stats.executions(3), 1);
    // One solve executed 2 and 3; the other joined its 3 in flight (reported as cached), which
    // made its own 2 unnecessary.
    let (ea, eb) = (drain(&mut ra), drain(&mut rb));
    let ran_in_a = position(&ea, 3, is_started).is_some();
    let (ran, joined) = if ran_in_a { (&ea, &eb) } else { (&eb, &ea) };
    assert!(position(ran, 2, is_completed).is_some());
    assert!(position(ran, 3, is_completed).is_some());
    assert!(position(joined, 3, is_cached).is_some(), "{joined:#?}");
    assert!(position(joined, 2, is_started).is_none());
    assert!(position(joined, 3, is_started).is_none());
    // Saves: two contexts, one COPY, one RUN.
    assert_eq!(store.saves(), 4);
}

/// A store whose loads fail, like a corrupt database.
struct BrokenStore;

#[derive(Debug, thiserror::Error)]
#[error("database is corrupt")]
struct Corrupt;

impl kiln_solver::CacheStore<i64> for BrokenStore {
    type Error = Corrupt;

    async fn load(&self, _: &CacheKey) -> Result<Option<kiln_solver::CacheRecord<i64>>, Corrupt> {
        Err(Corrupt)
    }

    async fn save(&self, _: &[CacheKey], _: &kiln_solver::CacheRecord<i64>) -> Result<(), Corrupt> {
        Err(Corrupt)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_fails_the_vertex_with_the_key_and_cause() {
    let stats = Arc::new(Stats::default());
    let g = diamond(&stats);
    let solver = kiln_solver::Solver::new(BrokenStore);
    let (tx, mut rx) = unbounded_channel();
    let err = bounded(solver.solve(
        &g,
        &[4],
        SolveOptions {
            events: Some(tx),
            ..Default::default()
        },
    ))
    .await
    .unwrap_err();
    let vertex = *err.vertex().unwrap();
    assert!([1, 2].contains(&vertex), "{err}");
    let source = std::error::Error::source(&err).unwrap();
    let step = source.downcast_ref::<kiln_solver::StepError>().unwrap();
    assert!(
        matches!(step, kiln_solver::StepError::CacheLoad { key, .. } if *key == cheap_key(&g, vertex))
    );
    let failed = drain(&mut rx)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Failed { error, .. } if e.vertex == vertex => Some(error),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        failed,
        format!(
            "failed to load cache record {}: database is corrupt",
            cheap_key(&g, vertex)
        )
    );
    assert_eq!(stats.total(), 0);
}
