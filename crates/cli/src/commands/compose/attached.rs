//! `compose up` without `-d`: the started containers' output, prefixed, until they stop.

use std::process::ExitCode;
use std::time::Duration;

use kiln_compose::plan;
use kiln_runtime::Status;

use super::containers;
use super::up::Executor;

/// `up` without `-d`: the containers' output, prefixed, until they all stop; Ctrl-C stops
/// them (dependants first) as Compose does.
pub(super) fn attached(
    ex: &Executor<'_>,
    only: &[String],
    since: String,
) -> anyhow::Result<ExitCode> {
    let project = ex.project;
    let wanted = |c: &kiln_runtime::Container| {
        let s = c.config.labels.get(plan::labels::SERVICE);
        s.is_some_and(|s| project.services.contains_key(s))
            && (only.is_empty() || s.is_some_and(|s| only.contains(s)))
    };
    let list: Vec<_> = containers(ex.rt, project)?
        .into_iter()
        .filter(|c| wanted(c))
        .collect();
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let opts = kiln_runtime::LogOptions {
        follow: true,
        tail: None,
        timestamps: false,
        since: Some(since),
    };
    std::thread::scope(|scope| {
        // Ctrl-C: stop every container, which ends the log threads.
        scope.spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if rt.block_on(tokio::signal::ctrl_c()).is_err() {
                return;
            }
            interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            for service in project.stop_order() {
                for c in containers(ex.rt, project).unwrap_or_default() {
                    if c.config.labels.get(plan::labels::SERVICE) == Some(&service)
                        && matches!(c.state.status, Status::Running | Status::Restarting)
                    {
                        let t = ex.stop_timeout.unwrap_or(Duration::from_secs(10));
                        let _ = ex.rt.stop(&c, Some(t));
                        eprintln!(" Container {}  Stopped", c.name());
                    }
                }
            }
        });
        let errors = super::view::print_logs(ex.rt, &list, &opts, true, true);
        for e in &errors {
            eprintln!("error: {e}");
        }
        // The log threads are done: every container stopped. The signal thread stays
        // blocked, so leave through exit rather than joining it.
        let code = if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            130
        } else {
            0
        };
        std::process::exit(code);
    })
}
