//! `--ssh` with a builder: for each connection a step opens to its agent socket the worker sends
//! `SshOpen`, and the connection's bytes travel as `SshData` both ways on the Build stream. The
//! client answers each through the engine's agent proxy (`SshAgents::connect`: the client's
//! `$SSH_AUTH_SOCK`, a given socket, or key files served in this process; only listing and
//! signing pass), so keys and the agent never leave this machine.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_engine::{BuildError, SshAgents, SshSpec};
use kiln_proto::v1 as pb;
use pb::build_up;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The agents of one build and its open relays.
#[derive(Default)]
pub(super) struct Relays {
    agents: Option<Arc<SshAgents>>,
    /// Bytes from the worker by connection; an empty chunk is its end.
    writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
}

impl Relays {
    /// Reads every `--ssh` now, so a missing agent or a bad key file fails before the build
    /// starts, as it does locally.
    pub(super) fn load(specs: &[SshSpec]) -> Result<Relays, BuildError> {
        if specs.is_empty() {
            return Ok(Relays::default());
        }
        let agents = SshAgents::load(specs, None)
            .map_err(|e| BuildError::Invalid(crate::error::chain_of(&e)))?;
        Ok(Relays {
            agents: Some(Arc::new(agents)),
            writers: HashMap::new(),
        })
    }

    /// The worker opened a connection to agent `open.id`: relay it, or end it at once when
    /// there is no such agent.
    pub(super) fn open(&mut self, open: pb::SshOpen, up: &mpsc::Sender<pb::BuildUp>) {
        let connection_id = open.connection_id;
        let stream = self
            .agents
            .as_ref()
            .and_then(|a| a.connect(&open.id).ok().flatten())
            .and_then(|s| {
                s.set_nonblocking(true).ok()?;
                tokio::net::UnixStream::from_std(s).ok()
            });
        let Some(stream) = stream else {
            let up = up.clone();
            tokio::spawn(async move { send(&up, connection_id, Vec::new(), true).await });
            return;
        };
        let (mut read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.writers.insert(connection_id, tx);
        let up = up.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        send(&up, connection_id, Vec::new(), true).await;
                        return;
                    }
                    Ok(n) => send(&up, connection_id, buf[..n].to_vec(), false).await,
                }
            }
        });
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if chunk.is_empty() || write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
    }

    /// Bytes (or the end) of a connection from the worker.
    pub(super) fn data(&mut self, data: pb::SshData) {
        let Some(tx) = self.writers.get(&data.connection_id) else {
            return;
        };
        if !data.data.is_empty() {
            let _ = tx.send(data.data);
        }
        if data.eof {
            let _ = tx.send(Vec::new());
            self.writers.remove(&data.connection_id);
        }
    }
}

async fn send(up: &mpsc::Sender<pb::BuildUp>, connection_id: u64, data: Vec<u8>, eof: bool) {
    let _ = up
        .send(pb::BuildUp {
            msg: Some(build_up::Msg::Ssh(pb::SshData {
                connection_id,
                data,
                eof,
            })),
        })
        .await;
}
