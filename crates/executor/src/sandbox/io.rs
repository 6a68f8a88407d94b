//! Process I/O and control: where output goes, what stdin is, how a run is cancelled, what
//! the caller gets back.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sys;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives output as the command writes it (chunks as read from the pipe, not lines).
pub trait OutputSink {
    fn write(&mut self, stream: Stream, data: &[u8]);
}

impl<F: FnMut(Stream, &[u8])> OutputSink for F {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        self(stream, data)
    }
}

/// An [`OutputSink`] that keeps everything in memory.
#[derive(Debug, Default, Clone)]
pub struct CollectOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl OutputSink for CollectOutput {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(data),
            Stream::Stderr => self.stderr.extend_from_slice(data),
        }
    }
}

impl CollectOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The command's standard input.
#[derive(Debug, Default)]
pub enum Stdin {
    /// `/dev/null` (an empty pipe, closed at once).
    #[default]
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// An open descriptor handed to the command as it is (e.g. the terminal of `kiln run -i`).
    Fd(OwnedFd),
}

/// Cancels one or more runs from any thread. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Debug)]
struct CancelInner {
    cancelled: AtomicBool,
    // An eventfd, so a blocked `wait` wakes up immediately instead of polling a flag.
    event: OwnedFd,
}

impl CancelToken {
    /// A token that is not cancelled.
    ///
    /// # Panics
    /// Never in practice: only if the process is out of file descriptors, where nothing
    /// else would work either.
    pub fn new() -> CancelToken {
        let event = sys::eventfd().expect("failed to create an eventfd for a cancel token");
        CancelToken {
            inner: Arc::new(CancelInner {
                cancelled: AtomicBool::new(false),
                event,
            }),
        }
    }

    /// Cancels every run waiting on this token (now and later).
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        sys::eventfd_signal(self.inner.event.as_fd());
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.event.as_fd()
    }
}

impl Default for CancelToken {
    fn default() -> CancelToken {
        CancelToken::new()
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The shell's view: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub status: ExitStatus,
    /// The kernel's OOM killer killed a process of the sandbox because of its memory limit.
    /// Always false without a memory limit, and with an external runtime (not detectable).
    pub oom_killed: bool,
    /// From start of setup to the exit of the command.
    pub wall_time: Duration,
}
