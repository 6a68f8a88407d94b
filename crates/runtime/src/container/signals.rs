//! Signals: names parsed as Docker accepts them, sent to a container's pid 1, and forwarded
//! from an attached `kiln run` (or `exec`) to the container.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::RuntimeError;

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    if let Ok(n) = s.parse::<i32>()
        && (1..=64).contains(&n)
    {
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| RuntimeError::Invalid(format!("invalid signal {s:?}")))
}

pub(super) fn send_signal(pid: i32, signal: i32) -> Result<(), RuntimeError> {
    let sig = nix::sys::signal::Signal::try_from(signal)
        .map_err(|_| RuntimeError::Invalid(format!("invalid signal {signal}")))?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::Io {
            what: format!("send signal {signal} to pid {pid}"),
            source: e.into(),
        }),
    }
}

/// Forwards terminal signals that reach an attached `kiln run` to the container, as Docker's
/// sig-proxy does: the signals are blocked in the calling thread (and so in threads it starts
/// later) and a thread takes them with sigwait. The sandbox resets its mask before exec.
pub(crate) struct SignalForwarder {
    pid: Arc<AtomicI32>,
}

impl SignalForwarder {
    const SIGNALS: [nix::sys::signal::Signal; 4] = [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGQUIT,
    ];

    pub(crate) fn start() -> SignalForwarder {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        let pid = Arc::new(AtomicI32::new(0));
        let mut set = SigSet::empty();
        for s in Self::SIGNALS {
            set.add(s);
        }
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_ok() {
            let pid = pid.clone();
            std::thread::spawn(move || {
                while let Ok(sig) = set.wait() {
                    let p = pid.load(Ordering::SeqCst);
                    if p > 0 {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
                    }
                }
            });
        }
        SignalForwarder { pid }
    }

    pub(crate) fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::SeqCst);
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        self.pid.store(0, Ordering::SeqCst);
        let mut set = SigSet::empty();
        for s in Self::SIGNALS {
            set.add(s);
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
