//! The worker's listener: accepts TCP or unix-socket connections and does the TLS handshake
//! itself (instead of tonic's), so a failed handshake is classified and reported to the worker
//! (`on_failure`) while the listener keeps serving everyone else. The first byte tells a TLS
//! ClientHello (0x16) from plaintext: a plaintext HTTP/2 client on a TLS port gets an HTTP/2
//! GOAWAY that says so, and a TLS client on a plaintext port is reported as such.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::failure::PLAINTEXT_MARKER;
use super::{Address, HandshakeFailure, Peer, ServerTls};

/// What the listener needs besides the socket.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `None` serves plaintext (loopback, unix sockets, or `--insecure`).
    pub tls: Option<ServerTls>,
    /// How long a client may take to finish its handshake (or, in plaintext, send its first
    /// byte) before it is dropped.
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `tcp://HOST:PORT` (port 0 picks one) or `unix:///PATH`.
    pub async fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Tcp { host, port } => Ok(Listener::Tcp(
                TcpListener::bind((host.trim_start_matches('[').trim_end_matches(']'), *port))
                    .await?,
            )),
            Address::Unix(path) => Ok(Listener::Unix(UnixListener::bind(path)?)),
        }
    }

    /// The address clients connect to (with the real port after binding port 0).
    pub fn local_address(&self) -> io::Result<Address> {
        match self {
            Listener::Tcp(l) => {
                let a = l.local_addr()?;
                Ok(Address::Tcp {
                    host: match a.ip() {
                        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                        ip => ip.to_string(),
                    },
                    port: a.port(),
                })
            }
            Listener::Unix(l) => {
                let a = l.local_addr()?;
                let path = a
                    .as_pathname()
                    .ok_or_else(|| io::Error::other("unnamed unix socket"))?;
                Ok(Address::Unix(path.to_path_buf()))
            }
        }
    }

    async fn accept(&self) -> io::Result<(Box<dyn Io>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), "unix socket peer".into()))
            }
        }
    }
}

/// A byte stream tonic can serve.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Who is on the other end of a connection; handlers find it in the request's extensions
/// (`request.extensions().get::<PeerInfo>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// `IP:PORT`, or "unix socket peer".
    pub addr: String,
    /// The client certificate (DER) the handshake verified; `None` without TLS.
    pub client_cert: Option<Vec<u8>>,
}

/// One accepted connection, after its handshake.
pub struct Conn {
    io: Box<dyn Io>,
    info: PeerInfo,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("info", &self.info).finish()
    }
}

impl Conn {
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// Bytes read to look at the start of a connection, handed back before the rest.
struct Rewind {
    prefix: Vec<u8>,
    inner: Box<dyn Io>,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// A handshake that failed, for the worker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedHandshake {
    pub peer: String,
    pub failure: HandshakeFailure,
}

impl std::fmt::Display for FailedHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection from {} refused: {}", self.peer, self.failure)
    }
}

/// The connections tonic serves (`Server::serve_with_incoming*`). Dropping it stops accepting.
pub struct Incoming {
    rx: mpsc::Receiver<Conn>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Incoming")
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// Accepts connections on `listener` and hands those whose handshake succeeded to tonic; every
/// failed handshake goes to `on_failure` and costs nobody else anything (each handshake runs in
/// its own task under `handshake_timeout`).
pub fn incoming(
    listener: Listener,
    options: ServerOptions,
    on_failure: impl Fn(FailedHandshake) + Send + Sync + 'static,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    let on_failure = Arc::new(on_failure);
    let acceptor = options
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.config().clone()));
    let accept = tokio::spawn(async move {
        loop {
            let (io, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            let on_failure = on_failure.clone();
            let acceptor = acceptor.clone();
            let limit = options.handshake_timeout;
            tokio::spawn(async move {
                let result = tokio::time::timeout(limit, handshake(io, acceptor, peer.clone()))
                    .await
                    .unwrap_or(Err(HandshakeFailure::Timeout(limit)));
                match result {
                    Ok(conn) => {
                        let _ = tx.send(conn).await;
                    }
                    Err(failure) => on_failure(FailedHandshake { peer, failure }),
                }
            });
        }
    });
    Incoming { rx, accept }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// HTTP/2's connection preface starts so.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

async fn handshake(
    mut io: Box<dyn Io>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    addr: String,
) -> Result<Conn, HandshakeFailure> {
    let mut first = vec![0u8; 64];
    let n = io
        .read(&mut first)
        .await
        .map_err(|e| HandshakeFailure::from_io(&e, Peer::Worker))?;
    if n == 0 {
        return Err(HandshakeFailure::Closed("the client hung up".into()));
    }
    first.truncate(n);
    let is_tls = first[0] == TLS_HANDSHAKE;
    match acceptor {
        Some(acceptor) if is_tls => {
            let rewound: Box<dyn Io> = Box::new(Rewind {
                prefix: first,
                inner: io,
            });
            let tls = match acceptor.accept(rewound).into_fallible().await {
                Ok(tls) => tls,
                Err((e, mut io)) => {
                    // rustls has queued its alert (unknown CA, certificate required...). Closing
                    // with the client's request unread would reset the connection and could
                    // destroy the alert before the client reads it, leaving it a bare
                    // "transport error": drain briefly first, as `refuse_h2` does.
                    let _ = io.flush().await;
                    let _ = io.shutdown().await;
                    let mut sink = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    return Err(HandshakeFailure::from_io(&e, Peer::Worker));
                }
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            Ok(Conn {
                io: Box::new(tls),
                info: PeerInfo { addr, client_cert },
            })
        }
        Some(_) => {
            if first.starts_with(&H2_PREFACE[..n.min(H2_PREFACE.len())]) {
                refuse_h2(&mut io, PLAINTEXT_MARKER).await;
            }
            Err(HandshakeFailure::PlaintextToTls)
        }
        None if is_tls => {
            // An HTTP/2 server would answer with its SETTINGS frame; the client's TLS reads
            // that as a non-TLS record and can say "TLS spoken to a plaintext port".
            refuse_h2(&mut io, "kiln: this port speaks plaintext, not TLS").await;
            Err(HandshakeFailure::TlsToPlaintext)
        }
        None => Ok(Conn {
            io: Box::new(Rewind {
                prefix: first,
                inner: io,
            }),
            info: PeerInfo {
                addr,
                client_cert: None,
            },
        }),
    }
}

/// Answers with an HTTP/2 server preface (empty SETTINGS) and a GOAWAY whose error is
/// INADEQUATE_SECURITY and whose debug data says what is wrong; h2 clients show the debug data
/// in their error. Then waits briefly for the client to read it: closing with unread input
/// would reset the connection and could destroy the answer before it is read.
async fn refuse_h2(io: &mut Box<dyn Io>, message: &str) {
    const INADEQUATE_SECURITY: u32 = 0xc;
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0]; // SETTINGS, no parameters
    let len = 8 + message.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]); // GOAWAY on stream 0
    out.extend_from_slice(&0u32.to_be_bytes()); // last stream id
    out.extend_from_slice(&INADEQUATE_SECURITY.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    let _ = io.write_all(&out).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
