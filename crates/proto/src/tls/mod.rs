//! Mutual TLS for kiln's remote workers with rustls (ring; no aws-lc, no openssl): the server and
//! client configurations from `ca.pem`, `cert.pem` and `key.pem` (`--tls-dir` or three separate
//! paths), `kiln tls init` (`init.rs`), the listener and connector that do the handshakes
//! themselves (`server.rs`, `client.rs`) so every failure is named in plain words
//! (`failure.rs`): unknown CA, expired, no client certificate, name mismatch, plaintext spoken
//! to a TLS port and TLS spoken to a plaintext port.

mod client;
mod failure;
mod init;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{
    Address, AddressError, ConnectError, ConnectOptions, Connection, connect,
    probe_plaintext_refusal,
};
pub use failure::{HandshakeFailure, Peer, classify_status};
pub use init::{Authority, InitReport, Issued, Validity, init};
pub use server::{Conn, FailedHandshake, Incoming, Listener, PeerInfo, ServerOptions, incoming};

/// The three files of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The CA that issued the *peer's* certificate.
    pub ca: PathBuf,
    /// This side's certificate (chain), PEM.
    pub cert: PathBuf,
    /// This side's private key, PEM.
    pub key: PathBuf,
}

impl TlsPaths {
    /// `DIR/ca.pem`, `DIR/cert.pem`, `DIR/key.pem` (what `kiln tls init` writes per side).
    pub fn in_dir(dir: &Path) -> TlsPaths {
        TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Why TLS files could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{path}: no certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a usable CA certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{cert} and {key} do not go together: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot make certificates: {0}")]
    Generate(String),
    #[error("{0} already exists: remove it or choose another directory")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The TLS library's crypto: ring, pinned here rather than through a process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(store))
}

/// A worker's TLS: its certificate, and client certificates required and checked against `ca`.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// The CA file, named in failures.
    ca: PathBuf,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("ca", &self.ca).finish()
    }
}

impl ServerTls {
    pub fn load(paths: &TlsPaths) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(&paths.ca)?, provider.clone())
                .build()
                .map_err(|e| TlsError::BadCa {
                    path: paths.ca.clone(),
                    reason: e.to_string(),
                })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Generate(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(read_certs(&paths.cert)?, read_key(&paths.key)?)
            .map_err(|e| TlsError::KeyMismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            ca: paths.ca.clone(),
        })
    }

    /// Wraps a configuration made elsewhere (tests, or a caller with other needs).
    pub fn from_config(config: Arc<ServerConfig>) -> ServerTls {
        ServerTls {
            config,
            ca: PathBuf::new(),
        }
    }

    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

/// A client's TLS: the CA that must have issued the worker's certificate, and the client's own
/// certificate for the worker to check.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    pub fn load(paths: &TlsPaths) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots(&paths.ca)?, provider.clone())
                .build()
                .map_err(|e| TlsError::BadCa {
                    path: paths.ca.clone(),
                    reason: e.to_string(),
                })?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Generate(e.to_string()))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(read_certs(&paths.cert)?, read_key(&paths.key)?)
            .map_err(|e| TlsError::KeyMismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// Wraps a configuration made elsewhere (tests, or a caller with other needs).
    pub fn from_config(config: Arc<ClientConfig>) -> ClientTls {
        ClientTls { config }
    }

    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}
