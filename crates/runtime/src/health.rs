//! HEALTHCHECK: while a monitored container runs, a thread of its monitor runs the image's test
//! command inside it (as `exec` does) on the configured schedule and records the result in
//! `health.json`, which `ps` and `inspect` show.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_llb::image::Healthcheck;
use serde::{Deserialize, Serialize};

use crate::container::Runtime;
use crate::exec::ExecOptions;
use crate::store::{Container, now_rfc3339, read_json, write_json};

/// Docker's defaults for fields left at zero.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// How many results `health.json` keeps.
const KEEP_LOG: usize = 5;

/// What `inspect` shows as `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// The command line of a HEALTHCHECK test, or `None` for `NONE`/empty.
pub(crate) fn test_argv(hc: &Healthcheck) -> Option<Vec<String>> {
    match hc.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

/// The container's recorded health, if it has a check.
pub fn read(c: &Container) -> Option<Health> {
    read_json(&c.dir.join("health.json")).ok()
}

/// Starts the checker for one run of `c`; it ends once `stop` is set.
pub(crate) fn start(rt: &Runtime, c: &Container, stop: Arc<AtomicBool>) {
    let Some(hc) = c.config.healthcheck.clone() else {
        return;
    };
    let Some(argv) = test_argv(&hc) else { return };
    let rt = rt.clone();
    let c = c.clone();
    let dur = |ns: i64, default: Duration| {
        if ns > 0 {
            Duration::from_nanos(ns as u64)
        } else {
            default
        }
    };
    let interval = dur(hc.interval, DEFAULT_INTERVAL);
    let start_period = dur(hc.start_period, Duration::ZERO);
    let retries = if hc.retries > 0 {
        hc.retries as u32
    } else {
        DEFAULT_RETRIES
    };
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut health = Health {
            status: "starting".into(),
            ..Health::default()
        };
        let path = c.dir.join("health.json");
        let _ = write_json(&path, &health);
        loop {
            let until = Instant::now() + interval;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50).min(interval));
            }
            let start = now_rfc3339();
            let opts = ExecOptions {
                argv: argv.clone(),
                ..ExecOptions::default()
            };
            let (code, output) = match rt.exec(&c, &opts) {
                Ok(code) => (code, String::new()),
                Err(e) => (-1, e.to_string()),
            };
            if stop.load(Ordering::SeqCst) {
                return;
            }
            health.log.push(HealthResult {
                start,
                end: now_rfc3339(),
                exit_code: code,
                output,
            });
            if health.log.len() > KEEP_LOG {
                health.log.remove(0);
            }
            if code == 0 {
                health.status = "healthy".into();
                health.failing_streak = 0;
            } else if began.elapsed() >= start_period {
                // Failures during the start period do not count, as in Docker.
                health.failing_streak += 1;
                if health.failing_streak >= retries {
                    health.status = "unhealthy".into();
                }
            }
            let _ = write_json(&path, &health);
        }
    });
}
