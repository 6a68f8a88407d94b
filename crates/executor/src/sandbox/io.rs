//! Process I/O and control: where output goes, what stdin is, how a run is cancelled, what
//! the caller gets back.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
///
/// With a pseudo-terminal ([`SandboxSpec::tty`](super::SandboxSpec::tty)) the command's stdin
/// is always the pty; `Bytes` and `Fd` are then copied into it (an `Fd` as input arrives) and
/// their end becomes the terminal's end-of-file character (^D), while `Null` sends nothing.
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

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl WindowSize {
    /// The size of the terminal behind `fd`; `None` when it is not a terminal.
    pub fn of(fd: BorrowedFd<'_>) -> Option<WindowSize> {
        sys::get_winsize(fd).map(|(rows, cols)| WindowSize { rows, cols })
    }
}

/// The master side of a pseudo-terminal: resizing it from another thread while
/// [`Sandbox::wait`](super::Sandbox::wait) (or an exec) streams the output.
#[derive(Debug)]
pub struct PtyMaster {
    fd: OwnedFd,
}

impl PtyMaster {
    /// Wraps the master side of a pty opened elsewhere (e.g. by [`open_pty`]).
    pub fn from_fd(fd: OwnedFd) -> PtyMaster {
        PtyMaster { fd }
    }

    /// Sets the terminal's size; the processes in its foreground get SIGWINCH.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        sys::set_winsize(self.fd.as_fd(), size.rows, size.cols)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Opens a new pseudo-terminal in the devpts filesystem mounted at `devpts_dir` (resolved in
/// the calling thread's mount namespace and root, so an exec thread that joined a container
/// gets one of the container's `/dev/pts/N`): the master and the slave, both close-on-exec
/// and neither becoming the caller's controlling terminal.
pub fn open_pty(devpts_dir: &std::path::Path) -> std::io::Result<(PtyMaster, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(devpts_dir)?;
    let (master, slave) = sys::open_pty_in(dir.as_fd())?;
    Ok((PtyMaster { fd: master }, slave))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn a_pty_from_open_pty_is_sized_through_its_master_and_translates_newlines() {
        let (master, slave) = match open_pty(std::path::Path::new("/dev/pts")) {
            Ok(p) => p,
            Err(e) => {
                println!("skipped: no devpts at /dev/pts here ({e})");
                return;
            }
        };
        let size = WindowSize {
            rows: 33,
            cols: 101,
        };
        master.resize(size).unwrap();
        assert_eq!(WindowSize::of(slave.as_fd()), Some(size));
        let mut slave = std::fs::File::from(slave);
        slave.write_all(b"hi\n").unwrap();
        let mut m = std::fs::File::from(master.into_fd());
        let mut buf = [0u8; 16];
        let n = m.read(&mut buf).unwrap();
        // The terminal's output processing turns \n into \r\n, as a container's tty does.
        assert_eq!(&buf[..n], b"hi\r\n");

        let (r, _w) = crate::sys::pipe().unwrap();
        assert_eq!(WindowSize::of(r.as_fd()), None);
    }
}
