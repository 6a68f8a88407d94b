//! The client's side: worker addresses, and a tonic channel whose connector does the TCP or
//! unix-socket connect and the TLS handshake itself, so a failure comes back classified
//! ([`ConnectError::Handshake`]) instead of as tonic's "transport error".

use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

use super::server::Io;
use super::{ClientTls, HandshakeFailure, Peer};

/// Where a worker listens: `tcp://HOST:PORT` or `unix:///PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `host` as written: a name, an IPv4 address, or an IPv6 address in brackets.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

/// Why an address was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker address {input:?}: {reason} (expected tcp://HOST:PORT or unix:///PATH)")]
pub struct AddressError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Address, AddressError> {
        let bad = |reason: &str| AddressError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp://") else {
            return Err(bad("unknown scheme"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad("an IPv6 address goes in brackets"));
        }
        Ok(Address::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl Address {
    /// Whether only this machine can reach it (a unix socket, or a loopback IP or
    /// `localhost`): where a worker may serve plaintext without `--insecure`.
    pub fn is_local(&self) -> bool {
        match self {
            Address::Unix(_) => true,
            Address::Tcp { host, .. } => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                bare == "localhost"
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }

    /// The name the worker's certificate must carry when connecting here.
    pub fn tls_name(&self) -> String {
        match self {
            Address::Tcp { host, .. } => host.trim_start_matches('[').trim_end_matches(']').into(),
            Address::Unix(_) => "localhost".into(),
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `None` speaks plaintext.
    pub tls: Option<ClientTls>,
    /// The name to check the worker's certificate against, instead of the address's host.
    pub server_name: Option<String>,
    /// For the TCP connect and the TLS handshake together.
    pub connect_timeout: Duration,
    /// HTTP/2 pings: a worker that stops answering for `keepalive_interval +
    /// keepalive_timeout` fails every call on the channel instead of hanging it.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: None,
            server_name: None,
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a worker could not be reached. Each names the address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {address}: {source}")]
    Io {
        address: Address,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {address}: {failure}")]
    Handshake {
        address: Address,
        failure: HandshakeFailure,
    },
    #[error("cannot connect to {address}: no answer within {after:?}")]
    Timeout { address: Address, after: Duration },
    #[error("cannot connect to {address}: {name:?} is not a valid TLS server name")]
    ServerName { address: Address, name: String },
    #[error("cannot connect to {address}: {message}")]
    Transport { address: Address, message: String },
}

impl ConnectError {
    /// The classified handshake failure, if this is one.
    pub fn handshake(&self) -> Option<&HandshakeFailure> {
        match self {
            ConnectError::Handshake { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

async fn open(address: &Address) -> io::Result<Box<dyn Io>> {
    match address {
        Address::Tcp { host, port } => {
            let s = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), *port))
                .await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        Address::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
    }
}

/// After a plaintext call failed without a reason: asks the port once more, by hand, whether
/// it is a TLS port refusing plaintext. HTTP/2 clients may drop the worker's GOAWAY (and the
/// reason in it) when the connection closes right after it; this reads the answer directly.
pub async fn probe_plaintext_refusal(address: &Address) -> Option<HandshakeFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut io = open(address).await.ok()?;
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while answer.len() < 8192 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&answer).contains(super::failure::PLAINTEXT_MARKER) {
                return Some(HandshakeFailure::PlaintextToTls);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}

/// One connection: connect, then the TLS handshake when configured.
async fn dial(
    address: Address,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    limit: Duration,
    refusal: Slot,
) -> Result<TokioIo<Box<dyn Io>>, ConnectError> {
    let work = async {
        let io = open(&address).await.map_err(|source| ConnectError::Io {
            address: address.clone(),
            source,
        })?;
        let Some((connector, name)) = tls else {
            return Ok(TokioIo::new(io));
        };
        let tls = connector
            .connect(name, io)
            .await
            .map_err(|e| ConnectError::Handshake {
                address: address.clone(),
                failure: HandshakeFailure::from_io(&e, Peer::Client),
            })?;
        Ok(TokioIo::new(Box::new(Refusals(tls, refusal)) as Box<dyn Io>))
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(ConnectError::Timeout {
            address: address.clone(),
            after: limit,
        })
    })
}

/// The client's TLS stream, which names a late refusal. Under TLS 1.3 the worker checks the
/// client's certificate after the client finished its half of the handshake, so its alert
/// (unknown CA, expired, certificate required) arrives on a read after `connect` returned, and
/// the I/O error rustls gives there carries only text. rustls keeps the typed error in the
/// connection, so this wrapper fetches it and puts the classified [`HandshakeFailure`] in the
/// I/O error. HTTP/2 keeps only the text of I/O errors, so the failure is also noted in the
/// [`Connection`]'s slot, where [`Connection::explain`] finds it.
struct Refusals(tokio_rustls::client::TlsStream<Box<dyn Io>>, Slot);

type Slot = Arc<Mutex<Option<HandshakeFailure>>>;

/// A channel to a worker, and what its TLS connections learned about refusals.
#[derive(Debug, Clone)]
pub struct Connection {
    pub channel: Channel,
    refusal: Slot,
}

impl Connection {
    /// The handshake failure behind a failed call, if there is one: a classified error in the
    /// status's chain, or a refusal the worker sent after the handshake (taken, so a later
    /// unrelated failure is not blamed on it).
    pub fn explain(&self, status: &tonic::Status) -> Option<HandshakeFailure> {
        super::classify_status(status).or_else(|| {
            self.refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        })
    }
}

impl Refusals {
    fn name(&mut self, e: io::Error) -> io::Error {
        match self.0.get_mut().1.process_new_packets() {
            Err(tls @ (rustls::Error::AlertReceived(_) | rustls::Error::InvalidCertificate(_))) => {
                let failure = HandshakeFailure::from_rustls(&tls, Peer::Client);
                *self.1.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure.clone());
                io::Error::new(e.kind(), failure)
            }
            _ => e,
        }
    }
}

impl tokio::io::AsyncRead for Refusals {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(self.name(e))),
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for Refusals {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match std::pin::Pin::new(&mut self.0).poll_write(cx, buf) {
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(self.name(e))),
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A channel to the worker at `address`, connected now (so a wrong address or a refused
/// handshake is reported here), reconnecting later through the same checks. A client
/// certificate the worker refuses shows only on the first call under TLS 1.3: pass that
/// call's status to [`Connection::explain`], or use [`crate::client::connect`], which does.
pub async fn connect(
    address: &Address,
    options: &ConnectOptions,
) -> Result<Connection, ConnectError> {
    let tls = match &options.tls {
        Some(tls) => {
            let name = options
                .server_name
                .clone()
                .unwrap_or_else(|| address.tls_name());
            let server_name =
                ServerName::try_from(name.clone()).map_err(|_| ConnectError::ServerName {
                    address: address.clone(),
                    name,
                })?;
            Some((
                tokio_rustls::TlsConnector::from(tls.config().clone()),
                server_name,
            ))
        }
        None => None,
    };
    let endpoint = Endpoint::from_static("http://kiln.worker")
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let target = address.clone();
    let limit = options.connect_timeout;
    let refusal = Slot::default();
    let slot = refusal.clone();
    let connector =
        tower::service_fn(move |_: Uri| dial(target.clone(), tls.clone(), limit, slot.clone()));
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| from_transport(address, &e))?;
    Ok(Connection { channel, refusal })
}

/// Finds our own error inside tonic's.
fn from_transport(address: &Address, error: &(dyn std::error::Error + 'static)) -> ConnectError {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(ours) = e.downcast_ref::<ConnectError>() {
            return match ours {
                ConnectError::Io { address, source } => ConnectError::Io {
                    address: address.clone(),
                    source: io::Error::new(source.kind(), source.to_string()),
                },
                ConnectError::Handshake { address, failure } => ConnectError::Handshake {
                    address: address.clone(),
                    failure: failure.clone(),
                },
                ConnectError::Timeout { address, after } => ConnectError::Timeout {
                    address: address.clone(),
                    after: *after,
                },
                ConnectError::ServerName { address, name } => ConnectError::ServerName {
                    address: address.clone(),
                    name: name.clone(),
                },
                ConnectError::Transport { address, message } => ConnectError::Transport {
                    address: address.clone(),
                    message: message.clone(),
                },
            };
        }
        current = e.source();
    }
    ConnectError::Transport {
        address: address.clone(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for text in [
            "tcp://127.0.0.1:1234",
            "tcp://build.example.com:443",
            "tcp://[::1]:9",
            "unix:///run/kiln.sock",
        ] {
            let a: Address = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        let a: Address = "tcp://[::1]:9".parse().unwrap();
        assert!(a.is_local());
        assert_eq!(a.tls_name(), "::1");
        assert!(!"tcp://10.0.0.1:1".parse::<Address>().unwrap().is_local());
        assert!("tcp://localhost:1".parse::<Address>().unwrap().is_local());
        assert!("unix:///x".parse::<Address>().unwrap().is_local());
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (text, needle) in [
            ("127.0.0.1:1", "unknown scheme"),
            ("tcp://host", "no port"),
            ("tcp://host:http", "not a number"),
            ("tcp://:1", "no host"),
            ("tcp://::1:9", "brackets"),
            ("unix://relative.sock", "absolute"),
        ] {
            let err = text.parse::<Address>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains("expected tcp://HOST:PORT or unix:///PATH"));
        }
    }
}
