//! Starting and stopping a worker: the security checks on the address, the listener with its
//! TLS, the gRPC services (kiln.v1 and health), keepalives, and the graceful shutdown that lets
//! running builds finish (or cancels them after a timeout).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_proto::tls::{self, Address, Listener, ServerOptions, ServerTls};
use kiln_proto::v1::kiln_server::KilnServer;
use tokio_stream::StreamExt as _;

use crate::worker::Worker;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub address: Address,
    /// The store's root.
    pub root: PathBuf,
    /// `None` serves plaintext: only on loopback and unix sockets, unless `insecure`.
    pub tls: Option<ServerTls>,
    /// Serve plaintext on an address other machines can reach (`--insecure`).
    pub insecure: bool,
    /// Builds that run at once; the rest queue.
    pub max_builds: usize,
    /// On shutdown, how long running builds may go on before they are cancelled.
    pub shutdown_timeout: Duration,
    /// How long a build whose clients all went away keeps running, waiting for an `Attach`.
    pub client_grace: Duration,
}

impl Config {
    pub fn new(address: Address, root: PathBuf) -> Config {
        Config {
            address,
            root,
            tls: None,
            insecure: false,
            max_builds: 4,
            shutdown_timeout: Duration::from_secs(60),
            client_grace: Duration::from_secs(30),
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve plaintext on {0}, which other machines can reach: give --tls-dir (see `kiln tls init`) or, on a network you trust, --insecure"
    )]
    PlaintextRefused(Address),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: Address,
        #[source]
        source: std::io::Error,
    },
    #[error("{address} is in use by a running worker")]
    SocketInUse { address: Address },
    #[error("failed to open the store at {root}: {source}")]
    Store {
        root: PathBuf,
        #[source]
        source: kiln_image::ImageError,
    },
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A running worker.
pub struct Server {
    address: Address,
    worker: Worker,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    health: kiln_proto::health::server::HealthReporter,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store, binds the address and starts serving.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        if config.tls.is_none() && !config.insecure && !config.address.is_local() {
            return Err(ServeError::PlaintextRefused(config.address.clone()));
        }
        let images =
            kiln_image::ImageStore::open(&config.root).map_err(|source| ServeError::Store {
                root: config.root.clone(),
                source,
            })?;
        let worker = Worker::new(Arc::new(images), &config)?;
        if let Address::Unix(path) = &config.address {
            remove_stale_socket(&config.address, path).await?;
        }
        let listener =
            Listener::bind(&config.address)
                .await
                .map_err(|source| ServeError::Bind {
                    address: config.address.clone(),
                    source,
                })?;
        let address = listener
            .local_address()
            .map_err(|source| ServeError::Bind {
                address: config.address.clone(),
                source,
            })?;
        let incoming = tls::incoming(
            listener,
            ServerOptions {
                tls: config.tls.clone(),
                ..ServerOptions::default()
            },
            |failed| tracing::warn!("{failed}"),
        );
        // A RUN step of this worker must not reach its API over loopback (steps on the host
        // network share it): such connections are dropped before tonic sees them.
        let listening = address.clone();
        let incoming = incoming.filter(move |conn| match conn {
            Ok(conn) => match crate::peer::refuse(&listening, conn.info()) {
                Some(why) => {
                    tracing::warn!("connection from {} refused: {why}", conn.info().addr);
                    false
                }
                None => true,
            },
            Err(_) => true,
        });
        let (health, health_service) = kiln_proto::health::server::health_reporter();
        health.set_serving::<KilnServer<Worker>>().await;
        let service = KilnServer::new(worker.clone())
            .max_decoding_message_size(crate::worker::MAX_MESSAGE)
            .max_encoding_message_size(crate::worker::MAX_MESSAGE);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                // A client that vanishes (killed, network gone) stops answering pings; its
                // streams end and its build starts its grace period.
                .http2_keepalive_interval(Some(Duration::from_secs(5)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .tcp_keepalive(Some(Duration::from_secs(30)))
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!("kiln worker {} serving on {address}", worker.id());
        Ok(Server {
            address,
            worker,
            stop: Some(stop),
            task,
            health,
        })
    }

    /// The address clients connect to (the real port when the config asked for port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The worker's stable id.
    pub fn worker_id(&self) -> &str {
        self.worker.id()
    }

    /// Waits until the server stops by itself (it only does on an error).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        match (&mut self.task).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(ServeError::Io {
                what: "run the gRPC server".into(),
                source: std::io::Error::other(e),
            }),
        }
    }

    /// Stops taking builds, lets running ones finish for up to `timeout`, cancels the rest,
    /// then stops serving. Returns how many builds had to be cancelled.
    pub async fn shutdown(mut self, timeout: Duration) -> usize {
        self.health.set_not_serving::<KilnServer<Worker>>().await;
        let cancelled = self.worker.drain(timeout).await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open streams (followers of finished builds) end by themselves; do not wait forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
        cancelled
    }
}

/// A unix socket file left by a worker that died is removed; one a live worker answers on is an
/// error, so two workers never share a socket.
async fn remove_stale_socket(address: &Address, path: &std::path::Path) -> Result<(), ServeError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Ok(());
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServeError::SocketInUse {
            address: address.clone(),
        });
    }
    std::fs::remove_file(path).map_err(|source| ServeError::Io {
        what: format!("remove the stale socket {}", path.display()),
        source,
    })
}
