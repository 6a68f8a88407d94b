//! Attaching to a container that runs under its monitor (`kiln attach`, and `kiln run -i`,
//! which starts the container detached and attaches to it, so it can be detached from):
//! the monitor serves `<container>/attach.sock`, copying the command's output to every
//! attached client and the clients' input into the command's stdin (or pty), and telling
//! them its exit code; the client copies between that socket and its own terminal, in raw
//! mode with a tty, until the command exits or the detach keys (ctrl-p ctrl-q) are typed.
//!
//! The wire: the client sends one JSON line (which streams it wants, whether its end of
//! input closes the command's stdin), then both sides exchange frames of one kind byte, a
//! big-endian u32 length and the payload.

use std::fs;
use std::io::{self, BufRead as _, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kiln_executor::sandbox::{OutputSink, PtyMaster, Stream, WindowSize};
use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STDIN_EOF: u8 = 3;
const RESIZE: u8 = 4;
const EXIT: u8 = 5;

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Docker's `--detach-keys` syntax: comma-separated `ctrl-X` (X a letter or one of
/// `@[\]^_`) or single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, RuntimeError> {
    let bad = |k: &str| RuntimeError::Invalid(format!("invalid detach keys ({k}) provided"));
    s.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                match c.as_bytes() {
                    [b @ b'a'..=b'z'] => Ok(b - b'a' + 1),
                    [b'@'] => Ok(0),
                    [b @ (b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(b - b'@'),
                    _ => Err(bad(k)),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(bad(k))
            }
        })
        .collect()
}

/// What a client asks for when it connects.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    /// The client's end of input closes the command's stdin (`run -i`; not `attach`).
    close_stdin: bool,
}

fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + data.len());
    buf.push(kind);
    buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buf.extend_from_slice(data);
    w.write_all(&buf)
}

fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > 1 << 20 {
        return Err(io::Error::other("attach frame too large"));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

/// The socket of a container directory. Its path goes through `/proc/self/fd` of an open
/// handle on the directory, so it stays under the 108 bytes a socket path may have however
/// deep the store root is.
struct SocketPath {
    _dir: fs::File,
    path: PathBuf,
}

fn socket_path(dir: &Path) -> Result<SocketPath, RuntimeError> {
    let handle = fs::File::open(dir).map_err(io_err(format!("open {}", dir.display())))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/attach.sock", handle.as_raw_fd()));
    Ok(SocketPath { _dir: handle, path })
}

struct Client {
    out: UnixStream,
    stdout: bool,
    stderr: bool,
}

#[derive(Default)]
struct Shared {
    clients: Mutex<Vec<Client>>,
    /// The write end of the running command's stdin, while it runs.
    stdin: Mutex<Option<fs::File>>,
    pty: Mutex<Option<PtyMaster>>,
    /// Clients that have connected so far (for a start that waits for its first one).
    arrived: Mutex<usize>,
    arrival: Condvar,
}

/// The monitor's side: a listener thread for clients, and the output they get.
pub(crate) struct AttachServer {
    shared: Arc<Shared>,
}

impl AttachServer {
    /// Listens on the container's socket (a stale one from a killed monitor is replaced).
    pub(crate) fn start(dir: &Path) -> Result<AttachServer, RuntimeError> {
        let sock = socket_path(dir)?;
        let _ = fs::remove_file(dir.join("attach.sock"));
        let listener = UnixListener::bind(&sock.path).map_err(io_err(format!(
            "listen on {}",
            dir.join("attach.sock").display()
        )))?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve_client(&s, conn));
            }
        });
        Ok(AttachServer { shared })
    }

    /// Waits until a client has connected, at most `timeout`.
    pub(crate) fn wait_for_client(&self, timeout: Duration) {
        let arrived = self
            .shared
            .arrived
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = self
            .shared
            .arrival
            .wait_timeout_while(arrived, timeout, |n| *n == 0);
    }

    /// Where clients' input goes while the command runs (`None` in between).
    pub(crate) fn set_input(&self, stdin: Option<fs::File>, pty: Option<PtyMaster>) {
        *self.shared.stdin.lock().unwrap_or_else(|e| e.into_inner()) = stdin;
        *self.shared.pty.lock().unwrap_or_else(|e| e.into_inner()) = pty;
    }

    /// Tells every client the command's exit code and lets them go.
    pub(crate) fn finish(&self, exit_code: i32) {
        self.set_input(None, None);
        let mut clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for c in clients.iter_mut() {
            let _ = write_frame(&mut c.out, EXIT, &exit_code.to_be_bytes());
            let _ = c.out.shutdown(std::net::Shutdown::Both);
        }
        clients.clear();
    }
}

impl OutputSink for &AttachServer {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        let kind = match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        };
        let mut clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A client that cannot take output (gone, or stuck for the write timeout) is dropped.
        clients.retain_mut(|c| {
            let wanted = match stream {
                Stream::Stdout => c.stdout,
                Stream::Stderr => c.stderr,
            };
            !wanted || write_frame(&mut c.out, kind, data).is_ok()
        });
    }
}

/// One client: its hello, then its input frames until it goes.
fn serve_client(s: &Shared, conn: UnixStream) {
    let mut reader = io::BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(hello) = serde_json::from_str::<Hello>(&line) else {
        return;
    };
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    s.clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Client {
            out: conn,
            stdout: hello.stdout,
            stderr: hello.stderr,
        });
    *s.arrived.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    s.arrival.notify_all();
    let close = || {
        if hello.close_stdin {
            *s.stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    };
    loop {
        match read_frame(&mut reader) {
            Ok(Some((STDIN, data))) if hello.stdin => {
                if let Some(w) = &mut *s.stdin.lock().unwrap_or_else(|e| e.into_inner()) {
                    let _ = w.write_all(&data);
                }
            }
            Ok(Some((STDIN_EOF, _))) => close(),
            Ok(Some((RESIZE, d))) if d.len() == 4 => {
                let size = WindowSize {
                    rows: u16::from_be_bytes([d[0], d[1]]),
                    cols: u16::from_be_bytes([d[2], d[3]]),
                };
                if let Some(p) = &*s.pty.lock().unwrap_or_else(|e| e.into_inner()) {
                    let _ = p.resize(size);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                close();
                return;
            }
        }
    }
}

/// What `kiln attach` (or `run -i`) connects with.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub detach_keys: Vec<u8>,
    /// The end of this process's input closes the command's stdin (`run -i`).
    pub close_stdin: bool,
    /// The container has a pty: the caller's terminal goes raw and its size follows.
    pub tty: bool,
}

/// How an attachment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The command exited with this code.
    Exited(i32),
    /// The detach keys were typed; the container runs on.
    Detached,
    /// The monitor went away without an exit code.
    Lost,
}

/// A connected client, its hello sent.
pub(crate) struct Connection {
    stream: UnixStream,
}

/// Connects to the monitor of the container in `dir`.
pub(crate) fn connect(dir: &Path, opts: &AttachOptions) -> Result<Connection, RuntimeError> {
    let sock = socket_path(dir)?;
    let mut stream = UnixStream::connect(&sock.path).map_err(|e| {
        RuntimeError::Invalid(format!(
            "cannot attach: the container's monitor does not answer ({e})"
        ))
    })?;
    let hello = Hello {
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
        close_stdin: opts.close_stdin,
    };
    let mut line = serde_json::to_vec(&hello).map_err(|e| RuntimeError::Bug(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(io_err("greet the container's monitor"))?;
    Ok(Connection { stream })
}

/// Looks for the detach keys in the input, holding back bytes that may start them.
struct Escape {
    keys: Vec<u8>,
    held: usize,
}

impl Escape {
    /// The bytes to pass on, and whether the whole sequence was typed.
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for &b in data {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if b == self.keys[0] {
                    self.held = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

impl Connection {
    /// Copies this process's stdin (with `opts.stdin`) to the command and its output to this
    /// process's stdout and stderr until it exits or the detach keys are typed.
    pub(crate) fn pump(self, opts: &AttachOptions) -> Result<AttachEnd, RuntimeError> {
        let writer = Arc::new(Mutex::new(
            self.stream
                .try_clone()
                .map_err(io_err("duplicate the attach socket"))?,
        ));
        let _terminal = opts.tty.then(|| {
            let w = writer.clone();
            crate::pty::TerminalSession::attach_with(
                Box::new(move |size: WindowSize| {
                    let mut d = size.rows.to_be_bytes().to_vec();
                    d.extend_from_slice(&size.cols.to_be_bytes());
                    let _ = write_frame(
                        &mut *w.lock().unwrap_or_else(|e| e.into_inner()),
                        RESIZE,
                        &d,
                    );
                }),
                opts.stdin,
            )
        });
        let detached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if opts.stdin {
            let w = writer.clone();
            let detached = detached.clone();
            let mut escape = Escape {
                keys: opts.detach_keys.clone(),
                held: 0,
            };
            let stream = self
                .stream
                .try_clone()
                .map_err(io_err("duplicate the attach socket"))?;
            std::thread::spawn(move || {
                let mut input = io::stdin().lock();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = write_frame(
                                &mut *w.lock().unwrap_or_else(|e| e.into_inner()),
                                STDIN_EOF,
                                &[],
                            );
                            return;
                        }
                        Ok(n) => n,
                    };
                    let (pass, escaped) = escape.feed(&buf[..n]);
                    if !pass.is_empty() {
                        let _ = write_frame(
                            &mut *w.lock().unwrap_or_else(|e| e.into_inner()),
                            STDIN,
                            &pass,
                        );
                    }
                    if escaped {
                        detached.store(true, std::sync::atomic::Ordering::SeqCst);
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            });
        }
        let mut reader = io::BufReader::new(self.stream);
        let (mut out, mut err) = (io::stdout(), io::stderr());
        loop {
            match read_frame(&mut reader) {
                Ok(Some((STDOUT, d))) => {
                    let _ = out.write_all(&d).and_then(|()| out.flush());
                }
                Ok(Some((STDERR, d))) => {
                    let _ = err.write_all(&d).and_then(|()| err.flush());
                }
                Ok(Some((EXIT, d))) if d.len() == 4 => {
                    return Ok(AttachEnd::Exited(i32::from_be_bytes([
                        d[0], d[1], d[2], d[3],
                    ])));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Ok(if detached.load(std::sync::atomic::Ordering::SeqCst) {
                        AttachEnd::Detached
                    } else {
                        AttachEnd::Lost
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            DEFAULT_DETACH_KEYS
        );
        assert_eq!(parse_detach_keys("ctrl-@,a,ctrl-_").unwrap(), [0, b'a', 31]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("shift-a").is_err());
        let mut e = Escape {
            keys: DEFAULT_DETACH_KEYS.to_vec(),
            held: 0,
        };
        assert_eq!(e.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(e.feed(b"\x10"), (Vec::new(), false));
        assert_eq!(e.feed(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").unwrap();
        write_frame(&mut buf, EXIT, &7i32.to_be_bytes()).unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((EXIT, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }
}
