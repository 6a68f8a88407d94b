//! Connecting to a worker the way every client command should: connect (TLS when configured),
//! call `Info`, negotiate the protocol, and turn a refused handshake into its named cause.

use tonic::transport::Channel;

use crate::negotiate::{self, NegotiationError};
use crate::tls::{self, Address, ConnectError, ConnectOptions, Connection, HandshakeFailure};
use crate::v1::InfoResponse;
use crate::v1::kiln_client::KilnClient;

/// A worker that answered `Info` with a protocol this client speaks.
#[derive(Debug, Clone)]
pub struct Worker {
    pub address: Address,
    /// The channel (for other services on the same connection, like health) and its refusals.
    pub connection: Connection,
    pub client: KilnClient<Channel>,
    pub info: InfoResponse,
    /// The negotiated protocol.
    pub protocol: u32,
}

/// Why a worker cannot be used. Each names the address.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{address}: {source}")]
    Protocol {
        address: Address,
        #[source]
        source: NegotiationError,
    },
    #[error("{address}: Info failed: {}", .status.message())]
    Call {
        address: Address,
        status: tonic::Status,
    },
}

impl ClientError {
    /// The classified handshake failure, if this is one.
    pub fn handshake(&self) -> Option<&HandshakeFailure> {
        match self {
            ClientError::Connect(c) => c.handshake(),
            _ => None,
        }
    }
}

/// Connects to `address`, calls `Info` and checks the protocol.
pub async fn connect(
    address: &Address,
    options: &ConnectOptions,
    client_version: &str,
) -> Result<Worker, ClientError> {
    let connection = tls::connect(address, options).await?;
    let mut client = KilnClient::new(connection.channel.clone());
    let info = match client.info(negotiate::info_request(client_version)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            // Under TLS 1.3 the worker refuses a client certificate after the client finished
            // its half of the handshake, so the refusal arrives here, on the first call.
            let failure = match connection.explain(&status) {
                Some(f) => Some(f),
                None if options.tls.is_none() => tls::probe_plaintext_refusal(address).await,
                None => None,
            };
            if let Some(failure) = failure {
                return Err(ClientError::Connect(ConnectError::Handshake {
                    address: address.clone(),
                    failure,
                }));
            }
            return Err(ClientError::Call {
                address: address.clone(),
                status,
            });
        }
    };
    let protocol = negotiate::check_response(&info).map_err(|source| ClientError::Protocol {
        address: address.clone(),
        source,
    })?;
    Ok(Worker {
        address: address.clone(),
        connection,
        client,
        info,
        protocol,
    })
}
