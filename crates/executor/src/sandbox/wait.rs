//! While the command runs: one poll loop over stdout, stderr, stdin, the pidfd and the cancel
//! eventfd, until pid 1 has exited and both pipes reached end of file.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::SandboxError;
use super::io::{CancelToken, ExitInfo, OutputSink, Stream};
use super::process::{Sandbox, io_err};
use crate::sys;

impl Sandbox {
    /// Streams output to `io` until the command exits, then cleans up. With `cancel`
    /// cancelled, kills the sandbox, cleans up and returns [`SandboxError::Cancelled`].
    pub fn wait(
        mut self,
        io: &mut dyn OutputSink,
        cancel: &CancelToken,
    ) -> Result<ExitInfo, SandboxError> {
        let mut cancelled = false;
        let mut drain_until: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !cancelled && cancel.is_cancelled() {
                cancelled = true;
                self.kill(libc::SIGKILL)?;
            }
            if self.exit.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                break;
            }
            // Order: stdout, stderr, stdin, pidfd, cancel, stdin's source.
            let mut fds = Vec::with_capacity(6);
            let mut kinds = Vec::with_capacity(6);
            if let Some(f) = &self.stdout {
                fds.push((f.as_fd(), false));
                kinds.push(0);
            }
            if let Some(f) = &self.stderr {
                fds.push((f.as_fd(), false));
                kinds.push(1);
            }
            if let Some(feed) = &self.stdin
                && feed.pos < feed.pending.len()
            {
                fds.push((feed.to.as_fd(), true));
                kinds.push(2);
            }
            if self.exit.is_none() {
                fds.push((self.pidfd.as_fd(), false));
                kinds.push(3);
            }
            if !cancelled {
                fds.push((cancel.fd(), false));
                kinds.push(4);
            }
            if let Some(feed) = &self.stdin
                && feed.pos >= feed.pending.len()
                && let Some(from) = &feed.from
            {
                fds.push((from.as_fd(), false));
                kinds.push(5);
            }
            let timeout = match drain_until {
                Some(t) => t.saturating_duration_since(Instant::now()).as_millis() as i32,
                None => -1,
            };
            let ready =
                sys::poll(&fds, timeout).map_err(io_err("failed to poll sandbox".into()))?;
            drop(fds);
            let Some(ready) = ready else {
                // pid 1 exited and its namespace is gone, yet a pipe stays open: some process
                // outside the sandbox holds it. Stop waiting for it.
                tracing::warn!(id = %self.id, "sandbox output still open after exit; not waiting");
                self.stdout = None;
                self.stderr = None;
                continue;
            };
            for (kind, r) in kinds.iter().zip(ready) {
                if !(r.readable || r.writable || r.hangup) {
                    continue;
                }
                match kind {
                    0 | 1 => {
                        let (slot, stream) = if *kind == 0 {
                            (&mut self.stdout, Stream::Stdout)
                        } else {
                            (&mut self.stderr, Stream::Stderr)
                        };
                        if let Some(fd) = slot {
                            match read_some(fd, &mut buf) {
                                Ok(0) => *slot = None,
                                Ok(n) => io.write(stream, &buf[..n]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(_) => *slot = None,
                            }
                        }
                    }
                    2 => self.feed_stdin(),
                    3 => {
                        if let Some(exit) = sys::wait_pidfd(self.pidfd.as_fd(), true)
                            .map_err(io_err("failed to wait for sandbox".into()))?
                        {
                            self.exit = Some((exit, Instant::now()));
                            self.stdin = None;
                            self.end_leftovers();
                            drain_until = Some(Instant::now() + Duration::from_secs(5));
                        }
                    }
                    4 => {
                        cancelled = true;
                        self.kill(libc::SIGKILL)?;
                    }
                    _ => self.read_stdin_source(&mut buf),
                }
            }
        }
        let info = self.finish();
        if cancelled {
            return Err(SandboxError::Cancelled);
        }
        info
    }
}

impl Sandbox {
    /// Without a pid namespace of its own, the command's exit ends nothing else: kill what
    /// it left in its cgroups (as runc does for a container sharing a pid namespace).
    pub(super) fn end_leftovers(&self) {
        if !self.own_pid_namespace
            && let Some(c) = &self.cgroups
        {
            c.kill_all();
        }
    }
}

pub(super) fn read_some(mut f: &fs::File, buf: &mut [u8]) -> io::Result<usize> {
    f.read(buf)
}

pub(super) fn write_some(mut f: &fs::File, data: &[u8]) -> io::Result<usize> {
    f.write(data)
}
