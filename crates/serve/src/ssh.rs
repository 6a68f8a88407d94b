//! Forwarded ssh agents (`kiln build --builder ... --ssh`): the engine's `SshForward` for one
//! build. Each connection a step opens to its agent socket becomes an `SshOpen` on the Build
//! stream and its bytes `SshData` both ways; the client answers from its own agent. Nothing of
//! it is written to the worker's disk: the engine's socket sits in a private directory for the
//! step, and the bytes live only in the stream and in memory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_engine::{AgentStream, SshForward};
use kiln_proto::v1 as pb;
use pb::build_down::Msg;

use crate::builds::Build;

/// How long a step's agent request may wait for the client's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The forwarder of one build; cloned into the engine's request and the stream reader.
#[derive(Clone)]
pub(crate) struct Forward(Arc<Inner>);

struct Inner {
    build: Arc<Build>,
    next: AtomicU64,
    /// Bytes from the client by connection; an empty chunk is its end.
    conns: Mutex<HashMap<u64, Sender<Vec<u8>>>>,
    /// The client's stream ended: no new connection can reach it.
    closed: AtomicBool,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forward(build {})", self.0.build.id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Forward {
    pub(crate) fn new(build: Arc<Build>) -> Forward {
        Forward(Arc::new(Inner {
            build,
            next: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }))
    }

    /// The client's bytes (or end) for one connection.
    pub(crate) fn deliver(&self, data: pb::SshData) {
        let mut conns = lock(&self.0.conns);
        let Some(tx) = conns.get(&data.connection_id) else {
            return;
        };
        if !data.data.is_empty() {
            let _ = tx.send(data.data);
        }
        if data.eof {
            let _ = tx.send(Vec::new());
            conns.remove(&data.connection_id);
        }
    }

    /// The client's stream ended: every open connection reads its end.
    pub(crate) fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        lock(&self.0.conns).clear();
    }
}

impl SshForward for Forward {
    fn connect(&self, id: &str) -> std::io::Result<Box<dyn AgentStream>> {
        if self.0.closed.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the client that forwards this ssh agent is gone",
            ));
        }
        let connection_id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&self.0.conns).insert(connection_id, tx);
        self.0.build.push(Msg::SshOpen(pb::SshOpen {
            connection_id,
            id: id.to_string(),
        }));
        Ok(Box::new(Connection {
            forward: self.0.clone(),
            id: connection_id,
            rx,
            buffer: Vec::new(),
            at: 0,
            ended: false,
        }))
    }
}

/// One forwarded connection, as the engine's agent proxy reads and writes it.
struct Connection {
    forward: Arc<Inner>,
    id: u64,
    rx: Receiver<Vec<u8>>,
    buffer: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for Connection {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buffer.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv_timeout(ANSWER_TIMEOUT) {
                Ok(chunk) if chunk.is_empty() => self.ended = true,
                Ok(chunk) => {
                    self.buffer = chunk;
                    self.at = 0;
                }
                Err(RecvTimeoutError::Disconnected) => self.ended = true,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client's ssh agent did not answer",
                    ));
                }
            }
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Connection {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.ended || self.forward.closed.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client's ssh agent connection is closed",
            ));
        }
        self.forward.build.push(Msg::SshData(pb::SshData {
            connection_id: self.id,
            data: data.to_vec(),
            eof: false,
        }));
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.forward.conns).remove(&self.id);
        if !self.forward.closed.load(Ordering::SeqCst) {
            self.forward.build.push(Msg::SshData(pb::SshData {
                connection_id: self.id,
                data: Vec::new(),
                eof: true,
            }));
        }
    }
}
