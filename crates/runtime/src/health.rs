//! HEALTHCHECK: while a monitored container runs, a thread of its monitor runs the test command
//! (the image's, or `kiln run --health-*`'s) inside it (as `exec` does) on the configured
//! schedule and records the result in `health.json`, which `ps` and `inspect` show. A probe
//! that outlives its timeout is killed (with everything it started) and counts as a failure;
//! the last five results keep their output, cut at 4096 bytes, as Docker's do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_llb::image::Healthcheck;
use serde::{Deserialize, Serialize};

use crate::container::Runtime;
use crate::error::RuntimeError;
use crate::exec::ExecOptions;
use crate::store::{Container, now_rfc3339, read_json, write_json};

/// Docker's defaults for fields left at zero.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// How many results `health.json` keeps.
const KEEP_LOG: usize = 5;
/// How much of a probe's output a result keeps.
pub(crate) const MAX_OUTPUT: usize = 4096;

/// `kiln run`'s health flags, laid over the image's HEALTHCHECK as Docker does: a flag left
/// unset keeps the image's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    /// `--health-cmd`: run with `/bin/sh -c`.
    pub cmd: Option<String>,
    /// `--health-interval`, `--health-timeout`, `--health-start-period` (Go-style durations
    /// such as `1s`, `500ms`, `1m30s`).
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`: no checks, whatever the image says.
    pub disable: bool,
}

impl HealthOverrides {
    pub(crate) fn is_empty(&self) -> bool {
        *self == HealthOverrides::default()
    }

    /// The container's check from the image's and these flags.
    pub(crate) fn apply(
        &self,
        image: Option<Healthcheck>,
    ) -> Result<Option<Healthcheck>, RuntimeError> {
        if self.disable {
            if self.cmd.is_some() {
                return Err(RuntimeError::Invalid(
                    "--no-healthcheck conflicts with --health-* options".into(),
                ));
            }
            return Ok(Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Healthcheck::default()
            }));
        }
        if self.is_empty() {
            return Ok(image);
        }
        let mut hc = image.unwrap_or_default();
        if let Some(cmd) = &self.cmd {
            hc.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        let nanos = |flag: &str, v: &Option<String>, into: &mut i64| -> Result<(), RuntimeError> {
            if let Some(v) = v {
                let d = parse_duration(v).ok_or_else(|| {
                    RuntimeError::Invalid(format!("invalid duration {v:?} for --health-{flag}"))
                })?;
                *into = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            }
            Ok(())
        };
        nanos("interval", &self.interval, &mut hc.interval)?;
        nanos("timeout", &self.timeout, &mut hc.timeout)?;
        nanos("start-period", &self.start_period, &mut hc.start_period)?;
        if let Some(r) = self.retries {
            hc.retries = i64::from(r);
        }
        Ok(Some(hc))
    }
}

/// Parses a Go duration (`300ms`, `1.5s`, `2m`, `1h30m`); `0` is zero.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Formats a duration as Go prints one (`30s`, `1.5s`, `500ms`, `1m30s`), for messages that
/// match Docker's.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1e3;
        return if ms >= 1.0 {
            format!("{}ms", trim_float(ms))
        } else {
            format!("{}µs", trim_float(ms * 1e3))
        };
    }
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor();
    let m = ((secs - h * 3600.0) / 60.0).floor();
    let s = secs - h * 3600.0 - m * 60.0;
    let mut out = String::new();
    if h > 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0.0 || m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim_float(s)));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

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
    let timeout = dur(hc.timeout, DEFAULT_TIMEOUT);
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
            let (code, output) = match rt.exec_capture(&c, &opts, timeout, MAX_OUTPUT) {
                Ok(out) if out.timed_out => (
                    -1,
                    format!(
                        "Health check exceeded timeout ({})",
                        format_duration(timeout)
                    ),
                ),
                Ok(out) => (
                    out.exit_code,
                    String::from_utf8_lossy(&out.output).into_owned(),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_and_print_as_docker_shows_them() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn run_flags_lay_over_the_images_check() {
        let image = Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 7,
            ..Healthcheck::default()
        };
        assert_eq!(
            HealthOverrides::default()
                .apply(Some(image.clone()))
                .unwrap(),
            Some(image.clone())
        );
        let o = HealthOverrides {
            cmd: Some("test -f /ok".into()),
            timeout: Some("2s".into()),
            ..HealthOverrides::default()
        };
        let hc = o.apply(Some(image.clone())).unwrap().unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "test -f /ok"]);
        assert_eq!(hc.timeout, 2_000_000_000);
        // Unset flags keep the image's values.
        assert_eq!((hc.interval, hc.retries), (5_000_000_000, 7));
        let none = HealthOverrides {
            disable: true,
            ..HealthOverrides::default()
        };
        let hc = none.apply(Some(image)).unwrap().unwrap();
        assert_eq!(test_argv(&hc), None);
        let bad = HealthOverrides {
            interval: Some("soon".into()),
            ..HealthOverrides::default()
        };
        assert!(bad.apply(None).is_err());
    }
}
