//! The command's stdin, stdout, stderr and pty: the pipes (or the pty) and the status pipe,
//! made before clone, and the feed that copies input into the command while it runs.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::SandboxError;
use super::io::Stdin;
use super::process::{Sandbox, io_err};
use super::spec::SandboxSpec;
use super::wait::{read_some, write_some};
use crate::sys;

/// Input on its way to the command: the write end of its stdin pipe, or with a pty a duplicate
/// of the master.
#[derive(Debug)]
pub(super) struct StdinFeed {
    pub(super) to: fs::File,
    pub(super) pending: Vec<u8>,
    pub(super) pos: usize,
    /// Copied into `to` as it comes (the caller's terminal for `run -i -t`); read only while
    /// nothing is pending, so a slow command holds the caller back instead of memory growing.
    pub(super) from: Option<fs::File>,
    /// With a pty, closing `to` is no end of file: the terminal's EOF character is.
    tty: bool,
}

/// The terminal's end-of-file character (^D): a canonical-mode read at the start of a line
/// returns 0 bytes on it.
const TTY_EOF: u8 = 0x04;

/// A pseudo-terminal for the command, opened in a devpts instance of its own.
pub(super) struct Pty {
    /// The devpts instance as a detached mount, for the child to attach at /dev/pts.
    pub(super) devpts: OwnedFd,
    pub(super) master: OwnedFd,
    /// Moved above 0, 1 and 2 so the child's dup3 onto them cannot clobber it.
    pub(super) slave: OwnedFd,
}

impl Pty {
    /// The pty of a spec with [`SandboxSpec::tty`]: a fresh devpts instance and its first pty
    /// (so the command's terminal is /dev/pts/0 of its own /dev/pts), sized and owned by the
    /// command's user.
    pub(super) fn open(spec: &SandboxSpec) -> Result<Option<Pty>, SandboxError> {
        if !spec.tty {
            return Ok(None);
        }
        let devpts = sys::devpts_mount_fd().map_err(io_err(
            "failed to mount a devpts instance for the pty".into(),
        ))?;
        let (master, slave) = sys::open_pty_in(devpts.as_fd())
            .map_err(io_err("failed to open a pseudo-terminal".into()))?;
        if let Some(size) = spec.tty_size {
            sys::set_winsize(master.as_fd(), size.rows, size.cols)
                .map_err(io_err("failed to set the pty's size".into()))?;
        }
        if spec.user.uid != 0 {
            sys::fchown(slave.as_fd(), spec.user.uid, None).map_err(io_err(
                "failed to hand the pty to the container's user".into(),
            ))?;
        }
        let slave =
            sys::above_stdio(slave).map_err(io_err("failed to move the pty's fd".into()))?;
        Ok(Some(Pty {
            devpts,
            master,
            slave,
        }))
    }
}

/// The parent's ends of the command's stdio and of the status pipe.
pub(super) struct ParentEnds {
    pub(super) status: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) stdin: Option<StdinFeed>,
    /// With a pty, its master; it then carries all output and the pipes stay unused.
    pub(super) pty_master: Option<OwnedFd>,
}

/// The child's ends: closed in the parent right after clone, so that end of file on the
/// pipes means "child done" and the pty's master reads EIO once the command is gone.
pub(super) struct ChildEnds {
    pub(super) status: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    /// Above 0, 1 and 2, like the pty's slave.
    pub(super) stdin: OwnedFd,
    pub(super) pty_slave: Option<OwnedFd>,
}

/// The pipes for stdout, stderr and the status reports, and stdin as `stdin` says: /dev/null,
/// a pipe fed from the parent, the caller's descriptor, or with a pty its slave (fed from
/// the master).
pub(super) fn pipes(
    stdin: Stdin,
    pty: Option<(OwnedFd, OwnedFd)>,
) -> Result<(ParentEnds, ChildEnds), SandboxError> {
    let (out_r, out_w) = sys::pipe().map_err(io_err("failed to create stdout pipe".into()))?;
    let (err_r, err_w) = sys::pipe().map_err(io_err("failed to create stderr pipe".into()))?;
    let (status_r, status_w) =
        sys::pipe().map_err(io_err("failed to create status pipe".into()))?;
    let (stdin_child, stdin_parent) = match (stdin, &pty) {
        (input, Some((master, slave))) => {
            let to = || -> Result<fs::File, SandboxError> {
                Ok(fs::File::from(master.try_clone().map_err(io_err(
                    "failed to duplicate the pty's master".into(),
                ))?))
            };
            let feed = match input {
                Stdin::Null => None,
                Stdin::Bytes(mut bytes) => {
                    bytes.push(TTY_EOF);
                    Some(StdinFeed {
                        to: to()?,
                        pending: bytes,
                        pos: 0,
                        from: None,
                        tty: true,
                    })
                }
                Stdin::Fd(fd) => Some(StdinFeed {
                    to: to()?,
                    pending: Vec::new(),
                    pos: 0,
                    from: Some(fs::File::from(fd)),
                    tty: true,
                }),
            };
            let slave = slave
                .try_clone()
                .map_err(io_err("failed to duplicate the pty's slave".into()))?;
            (slave, feed)
        }
        (Stdin::Null, None) => (
            OwnedFd::from(
                fs::File::open("/dev/null").map_err(io_err("failed to open /dev/null".into()))?,
            ),
            None,
        ),
        (Stdin::Bytes(bytes), None) => {
            let (r, w) = sys::pipe().map_err(io_err("failed to create stdin pipe".into()))?;
            let feed = StdinFeed {
                to: fs::File::from(w),
                pending: bytes,
                pos: 0,
                from: None,
                tty: false,
            };
            (r, Some(feed))
        }
        (Stdin::Fd(fd), None) => (fd, None),
    };
    let stdin_child =
        sys::above_stdio(stdin_child).map_err(io_err("failed to move stdin fd".into()))?;
    let (pty_master, pty_slave) = match pty {
        Some((master, slave)) => (Some(master), Some(slave)),
        None => (None, None),
    };
    Ok((
        ParentEnds {
            status: status_r,
            stdout: out_r,
            stderr: err_r,
            stdin: stdin_parent,
            pty_master,
        },
        ChildEnds {
            status: status_w,
            stdout: out_w,
            stderr: err_w,
            stdin: stdin_child,
            pty_slave,
        },
    ))
}

impl Sandbox {
    /// Writes what is pending into the command's stdin; closes it at the end of the input.
    pub(super) fn feed_stdin(&mut self) {
        let Some(feed) = &mut self.stdin else {
            return;
        };
        if feed.pos >= feed.pending.len() {
            if feed.from.is_none() {
                self.stdin = None;
            }
            return;
        }
        match write_some(&feed.to, &feed.pending[feed.pos..]) {
            Ok(n) => {
                feed.pos += n;
                if feed.pos >= feed.pending.len() {
                    feed.pending.clear();
                    feed.pos = 0;
                    if feed.from.is_none() {
                        // Closing our end is the command's end of file (with a pty, the EOF
                        // character already went in).
                        self.stdin = None;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EPIPE: the command closed its stdin; the rest is not wanted.
            Err(_) => self.stdin = None,
        }
    }

    /// Moves what the caller typed (the source of a pty's input) into the pending buffer.
    pub(super) fn read_stdin_source(&mut self, buf: &mut [u8]) {
        let Some(feed) = &mut self.stdin else {
            return;
        };
        let Some(from) = &feed.from else {
            return;
        };
        match read_some(from, buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Ok(0) | Err(_) => {
                // The caller's input ended (or broke): the command sees end of file.
                feed.from = None;
                if feed.tty {
                    feed.pending.push(TTY_EOF);
                }
            }
            Ok(n) => feed.pending.extend_from_slice(&buf[..n]),
        }
        if feed.from.is_none() && feed.pending.is_empty() {
            self.stdin = None;
        }
    }
}
