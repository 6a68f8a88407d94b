//! The caller's side of a container's pseudo-terminal (`run -t`, `exec -t`): the caller's
//! terminal in raw mode while its input goes to the container, and the container's pty kept
//! at the caller's window size (set at start, then on every SIGWINCH).

use std::fs;
use std::io::Read as _;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use kiln_executor::sandbox::{PtyMaster, WindowSize};
use nix::sys::termios::{self, SetArg, Termios};

/// The size of the caller's terminal: stdout's (where the output goes, as Docker takes it),
/// else stdin's; `None` when neither is a terminal.
pub(crate) fn caller_size() -> Option<WindowSize> {
    size_source().and_then(|fd| WindowSize::of(fd.as_fd()))
}

/// The first of stdout and stdin that is a terminal.
fn size_source() -> Option<OwnedFd> {
    [std::io::stdout().as_fd(), std::io::stdin().as_fd()]
        .into_iter()
        .find(|fd| WindowSize::of(*fd).is_some())
        .and_then(|fd| fd.try_clone_to_owned().ok())
}

/// The caller's terminal set up for an attached pty; everything is undone on drop (also on an
/// error path or a panic unwinding through the caller).
pub(crate) struct TerminalSession {
    _raw: Option<RawMode>,
    _winch: Option<WinchWatcher>,
}

impl TerminalSession {
    /// With `interactive` (our stdin goes to the container) and stdin a terminal, puts it in
    /// raw mode, so keys such as ^C and ^D reach the container's terminal as bytes. Without
    /// input attached the terminal stays as it is, so ^C still interrupts (and kiln forwards
    /// the signal), as Docker does. Keeps `master` at the caller's size.
    pub(crate) fn attach(master: Option<PtyMaster>, interactive: bool) -> TerminalSession {
        let input = if interactive {
            std::io::stdin().as_fd().try_clone_to_owned().ok()
        } else {
            None
        };
        TerminalSession::attach_to(master, input, size_source())
    }

    /// [`TerminalSession::attach`] for a pty elsewhere (`kiln attach`'s container, through
    /// its monitor): `resize` is told the caller's size now and on every change.
    pub(crate) fn attach_with(resize: Resize, interactive: bool) -> TerminalSession {
        let input = if interactive {
            std::io::stdin().as_fd().try_clone_to_owned().ok()
        } else {
            None
        };
        TerminalSession {
            _raw: input.and_then(RawMode::enable),
            _winch: size_source().and_then(|from| WinchWatcher::start(resize, from)),
        }
    }

    /// [`TerminalSession::attach`] with the caller's terminal given: `input` to put in raw
    /// mode, `size_from` to follow.
    fn attach_to(
        master: Option<PtyMaster>,
        input: Option<OwnedFd>,
        size_from: Option<OwnedFd>,
    ) -> TerminalSession {
        TerminalSession {
            _raw: input.and_then(RawMode::enable),
            _winch: master.zip(size_from).and_then(|(m, from)| {
                WinchWatcher::start(
                    Box::new(move |size| {
                        let _ = m.resize(size);
                    }),
                    from,
                )
            }),
        }
    }
}

/// What to do with the caller's window size.
pub(crate) type Resize = Box<dyn Fn(WindowSize) + Send>;

/// A terminal in raw mode until dropped.
struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    fn enable(fd: OwnedFd) -> Option<RawMode> {
        // Not a terminal (a pipe, /dev/null): nothing to do.
        let saved = termios::tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // TCSADRAIN: what the container printed last goes out first, then the shell gets its
        // terminal back as it was.
        if let Err(e) = termios::tcsetattr(&self.fd, SetArg::TCSADRAIN, &self.saved) {
            tracing::warn!(error = %e, "failed to restore the terminal's settings");
        }
    }
}

/// Passes the size of the terminal `from` to a resize function now and whenever this
/// process gets SIGWINCH. A handler (process-wide, so it runs whichever thread gets the signal) wakes a
/// thread that copies the size.
struct WinchWatcher {
    handler: crate::sys::WinchHandler,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WinchWatcher {
    fn start(resize: Resize, from: OwnedFd) -> Option<WinchWatcher> {
        let follow = move || {
            if let Some(size) = WindowSize::of(from.as_fd()) {
                resize(size);
            }
        };
        follow();
        let handler = crate::sys::WinchHandler::install().ok()?;
        let wakeups = fs::File::from(handler.wakeups().ok()?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while (&wakeups).read(&mut buf).is_ok_and(|n| n > 0) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    follow();
                }
            })
        };
        Some(WinchWatcher {
            handler,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for WinchWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handler.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_executor::sandbox::open_pty;
    use nix::sys::termios::LocalFlags;
    use std::path::Path;

    #[test]
    fn the_callers_terminal_is_raw_while_attached_and_sizes_follow_sigwinch() {
        // Two ptys: one plays the caller's terminal, the other the container's.
        let (Ok((caller_master, caller)), Ok((ctr_master, ctr))) = (
            open_pty(Path::new("/dev/pts")),
            open_pty(Path::new("/dev/pts")),
        ) else {
            println!("skipped: no devpts at /dev/pts");
            return;
        };
        let first = WindowSize { rows: 24, cols: 80 };
        caller_master.resize(first).unwrap();
        let canonical = |fd: &OwnedFd| {
            termios::tcgetattr(fd)
                .unwrap()
                .local_flags
                .contains(LocalFlags::ICANON)
        };
        assert!(canonical(&caller));

        let session = TerminalSession::attach_to(
            Some(ctr_master),
            Some(caller.try_clone().unwrap()),
            Some(caller.try_clone().unwrap()),
        );
        assert!(!canonical(&caller), "raw mode is on while attached");
        assert_eq!(WindowSize::of(ctr.as_fd()), Some(first));

        // The caller's terminal changes size; its SIGWINCH reaches the watcher.
        let second = WindowSize {
            rows: 50,
            cols: 132,
        };
        caller_master.resize(second).unwrap();
        // Whichever thread gets it, the handler wakes the watcher.
        nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGWINCH).unwrap();
        let mut seen = None;
        for _ in 0..500 {
            seen = WindowSize::of(ctr.as_fd());
            if seen == Some(second) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some(second));

        drop(session);
        assert!(canonical(&caller), "the terminal is restored");
    }

    #[test]
    fn nothing_changes_without_a_terminal() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let s = TerminalSession::attach_to(None, Some(r.try_clone().unwrap()), Some(r));
        assert!(s._raw.is_none() && s._winch.is_none());
    }
}
