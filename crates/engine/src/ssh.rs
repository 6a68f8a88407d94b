//! `RUN --mount=type=ssh`: the ssh agents a build was given (`kiln build --ssh default`,
//! `ID=SOCKET` or `ID=KEYFILE[,KEYFILE]`) served to a step through a socket made for that step
//! alone and bind-mounted into its sandbox. A socket agent is proxied (only listing keys and
//! signing pass; adding or removing keys does not); key files are served by an agent in this
//! process; a remote client's agent is reached through an [`SshForward`] (kiln serve relays it
//! over the build's stream). Nothing of it is written to a layer or enters a cache key.

use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use signature::Signer;
use ssh_key::{PrivateKey, private::KeypairData};

use crate::error::EngineError;

/// One `--ssh` flag: an id and the socket or key files (none: `$SSH_AUTH_SOCK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    pub paths: Vec<PathBuf>,
}

impl SshSpec {
    /// Parses `default`, `ID`, `ID=SOCKET` or `ID=KEYFILE[,KEYFILE...]`.
    pub fn parse(value: &str) -> Result<SshSpec, String> {
        let (id, paths) = match value.split_once('=') {
            Some((id, rest)) => (
                id,
                rest.split(',')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect(),
            ),
            None => (value, Vec::new()),
        };
        if id.is_empty() || id.contains([',', '/']) {
            return Err(format!(
                "invalid --ssh {value:?}: expected default, ID, ID=SOCKET or ID=KEYFILE[,KEYFILE]"
            ));
        }
        Ok(SshSpec {
            id: id.to_owned(),
            paths,
        })
    }
}

/// A byte stream to an ssh agent somewhere else.
pub trait AgentStream: Read + Write + Send {}

impl<T: Read + Write + Send> AgentStream for T {}

/// Opens connections to agents that are not on this machine (a remote client's, which the
/// worker reaches over the build's stream). `connect` may block until the other side answers.
pub trait SshForward: Send + Sync + std::fmt::Debug {
    fn connect(&self, id: &str) -> std::io::Result<Box<dyn AgentStream>>;
}

/// Where a served agent's answers come from.
#[derive(Debug)]
enum Upstream {
    /// A running agent's socket (the client's `$SSH_AUTH_SOCK` or a given one).
    Socket(PathBuf),
    /// Keys read from files, signed with here.
    Keys(Vec<PrivateKey>),
    /// An agent reached through a forwarder, by its id there.
    Forward(Arc<dyn SshForward>, String),
}

/// The agents of one build, by id; key files are read (and refused when unusable) up front.
#[derive(Debug, Default)]
pub struct SshAgents(Vec<(String, Arc<Upstream>)>);

impl SshAgents {
    /// Reads every `--ssh`. A later spec with the same id wins. With `forward`, every spec
    /// names an agent the forwarder reaches (its paths are not read here).
    pub fn load(
        specs: &[SshSpec],
        forward: Option<&Arc<dyn SshForward>>,
    ) -> Result<SshAgents, EngineError> {
        let mut out = Vec::new();
        for spec in specs {
            let upstream = match (forward, spec.paths.as_slice()) {
                (Some(forward), _) => Upstream::Forward(forward.clone(), spec.id.clone()),
                (None, []) => {
                    let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                        EngineError::Ssh(format!(
                            "--ssh {}: SSH_AUTH_SOCK is not set: start an ssh-agent or give ID=SOCKET|KEYFILE",
                            spec.id
                        ))
                    })?;
                    Upstream::Socket(PathBuf::from(sock))
                }
                (None, [one]) if is_socket(one) => Upstream::Socket(one.clone()),
                (None, files) => Upstream::Keys(
                    files
                        .iter()
                        .map(|f| read_key(&spec.id, f))
                        .collect::<Result<_, _>>()?,
                ),
            };
            out.retain(|(id, _)| *id != spec.id);
            out.push((spec.id.clone(), Arc::new(upstream)));
        }
        Ok(SshAgents(out))
    }

    fn get(&self, id: &str) -> Option<&Arc<Upstream>> {
        let id = if id.is_empty() { "default" } else { id };
        self.0.iter().find(|(i, _)| i == id).map(|(_, u)| u)
    }

    /// The ids of the agents, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(id, _)| id.as_str())
    }

    /// A connection to agent `id` as a step would have through its socket (only listing and
    /// signing pass), for relaying it elsewhere: `kiln build --builder` answers the worker's
    /// forwarded connections with it. `None` when there is no such agent.
    pub fn connect(&self, id: &str) -> Result<Option<UnixStream>, EngineError> {
        let Some(upstream) = self.get(id).cloned() else {
            return Ok(None);
        };
        let (ours, theirs) = UnixStream::pair().map_err(|source| EngineError::Io {
            what: "make a socket pair for the ssh agent".into(),
            source,
        })?;
        std::thread::Builder::new()
            .name("ssh-agent-conn".into())
            .spawn(move || {
                let _ = serve_connection(ours, &upstream);
            })
            .map_err(|source| EngineError::Io {
                what: "start the ssh agent thread".into(),
                source,
            })?;
        Ok(Some(theirs))
    }

    /// Serves agent `id` on a new socket in `dir`, owned by `uid:gid` with `mode`; `None`
    /// when the build has no such agent.
    pub(crate) fn serve(
        &self,
        id: &str,
        dir: tempfile::TempDir,
        owner: (u32, u32),
        mode: u32,
    ) -> Result<Option<ServedAgent>, EngineError> {
        let Some(upstream) = self.get(id) else {
            return Ok(None);
        };
        ServedAgent::start(upstream.clone(), dir, owner, mode).map(Some)
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn read_key(id: &str, path: &Path) -> Result<PrivateKey, EngineError> {
    let text = std::fs::read(path).map_err(|source| EngineError::Io {
        what: format!("read ssh key {} (--ssh {id})", path.display()),
        source,
    })?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        EngineError::Ssh(format!(
            "--ssh {id}: {} is not an OpenSSH private key: {e}",
            path.display()
        ))
    })?;
    if key.is_encrypted() {
        return Err(EngineError::Ssh(format!(
            "--ssh {id}: {} is protected by a passphrase: add it to an ssh-agent and use --ssh {id}=$SSH_AUTH_SOCK",
            path.display()
        )));
    }
    Ok(key)
}

/// A socket serving one agent for one step, until dropped.
pub(crate) struct ServedAgent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl ServedAgent {
    fn start(
        upstream: Arc<Upstream>,
        dir: tempfile::TempDir,
        owner: (u32, u32),
        mode: u32,
    ) -> Result<ServedAgent, EngineError> {
        let path = dir.path().join("agent.sock");
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| EngineError::Io { what, source }
        };
        let listener = UnixListener::bind(&path).map_err(io("listen on the ssh agent socket"))?;
        chown(&path, Some(owner.0), Some(owner.1)).map_err(io("set the owner of"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of"))?;
        // The directory only has to let the bind mount reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .map_err(io("open"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ssh-agent".into())
                .spawn(move || accept_loop(&listener, &upstream, &stop))
                .map_err(|source| EngineError::Io {
                    what: "start the ssh agent thread".into(),
                    source,
                })?
        };
        Ok(ServedAgent {
            path,
            stop,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The socket on the host, to bind-mount into the sandbox.
    pub(crate) fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for ServedAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &UnixListener, upstream: &Arc<Upstream>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let upstream = upstream.clone();
        // A connection lives as long as the step's client keeps it; the step's processes all
        // die with its sandbox, which closes it.
        let _ = std::thread::Builder::new()
            .name("ssh-agent-conn".into())
            .spawn(move || {
                let _ = serve_connection(conn, &upstream);
            });
    }
}

// The agent protocol (draft-miller-ssh-agent): length-prefixed messages, a type byte first.
const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const FLAG_RSA_SHA2_256: u32 = 2;
const FLAG_RSA_SHA2_512: u32 = 4;
/// Larger requests are refused: an agent message is a key and some data to sign.
const MAX_MESSAGE: usize = 256 * 1024;

fn read_message(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad ssh agent message length",
        ));
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg)?;
    Ok(Some(msg))
}

fn write_message(w: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    w.write_all(&(msg.len() as u32).to_be_bytes())?;
    w.write_all(msg)?;
    w.flush()
}

fn serve_connection(mut conn: UnixStream, upstream: &Upstream) -> std::io::Result<()> {
    let mut agent: Option<Box<dyn AgentStream>> = match upstream {
        Upstream::Socket(path) => Some(Box::new(UnixStream::connect(path)?)),
        Upstream::Forward(forward, id) => Some(forward.connect(id)?),
        Upstream::Keys(_) => None,
    };
    while let Some(msg) = read_message(&mut conn)? {
        let reply = match (&mut agent, upstream) {
            // Only listing and signing pass through: the step cannot change the client's agent.
            (Some(agent), _) if matches!(msg[0], REQUEST_IDENTITIES | SIGN_REQUEST) => {
                write_message(agent, &msg)?;
                match read_message(agent)? {
                    Some(reply) => reply,
                    None => return Ok(()),
                }
            }
            (None, Upstream::Keys(keys)) => answer(keys, &msg),
            _ => vec![FAILURE],
        };
        write_message(&mut conn, &reply)?;
    }
    Ok(())
}

/// The in-process agent's answer to one request.
fn answer(keys: &[PrivateKey], msg: &[u8]) -> Vec<u8> {
    match msg[0] {
        REQUEST_IDENTITIES => {
            let mut out = vec![IDENTITIES_ANSWER];
            let listed: Vec<Vec<u8>> = keys
                .iter()
                .filter_map(|k| k.public_key().to_bytes().ok())
                .collect();
            out.extend_from_slice(&(listed.len() as u32).to_be_bytes());
            for blob in listed {
                put_string(&mut out, &blob);
                // No comment, as BuildKit's agent lists key files (`ssh-add -l` in a step
                // prints the same line under both).
                put_string(&mut out, b"");
            }
            out
        }
        SIGN_REQUEST => sign(keys, &msg[1..]).unwrap_or_else(|| vec![FAILURE]),
        _ => vec![FAILURE],
    }
}

fn sign(keys: &[PrivateKey], mut body: &[u8]) -> Option<Vec<u8>> {
    let blob = get_string(&mut body)?;
    let data = get_string(&mut body)?;
    let flags = body
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let key = keys
        .iter()
        .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(blob))?;
    let (algorithm, signature) = match key.key_data() {
        KeypairData::Rsa(rsa) => sign_rsa(rsa, data, flags)?,
        _ => {
            let sig = key.try_sign(data).ok()?;
            (sig.algorithm().as_str().to_owned(), sig.as_bytes().to_vec())
        }
    };
    let mut encoded = Vec::new();
    put_string(&mut encoded, algorithm.as_bytes());
    put_string(&mut encoded, &signature);
    let mut out = vec![SIGN_RESPONSE];
    put_string(&mut out, &encoded);
    Some(out)
}

/// An RSA signature with the hash the client asked for: `rsa-sha2-512`, `rsa-sha2-256`, or
/// without a flag the original SHA-1 `ssh-rsa` (servers refuse it by default, but a client may
/// still ask, as `ssh-add -T` does).
fn sign_rsa(
    key: &ssh_key::private::RsaKeypair,
    data: &[u8],
    flags: u32,
) -> Option<(String, Vec<u8>)> {
    let n = |m: &ssh_key::Mpint| rsa::BigUint::from_bytes_be(m.as_positive_bytes().unwrap_or(&[]));
    let private = rsa::RsaPrivateKey::from_components(
        n(&key.public.n),
        n(&key.public.e),
        n(&key.private.d),
        vec![n(&key.private.p), n(&key.private.q)],
    )
    .ok()?;
    if flags & FLAG_RSA_SHA2_512 != 0 {
        let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private).try_sign(data);
        Some((
            "rsa-sha2-512".into(),
            Box::<[u8]>::from(sig.ok()?).into_vec(),
        ))
    } else if flags & FLAG_RSA_SHA2_256 != 0 {
        let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private).try_sign(data);
        Some((
            "rsa-sha2-256".into(),
            Box::<[u8]>::from(sig.ok()?).into_vec(),
        ))
    } else {
        let sig = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(private).try_sign(data);
        Some(("ssh-rsa".into(), Box::<[u8]>::from(sig.ok()?).into_vec()))
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn get_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let s = buf.get(4..4 + len)?;
    *buf = &buf[4 + len..];
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unencrypted ed25519 key in OpenSSH format (made for this test only).
    const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDJ1PKH1rjN+79o6uazRbQQtvniqy+DIpFQf12dX7KOSwAAAJhGb16kRm9e
pAAAAAtzc2gtZWQyNTUxOQAAACDJ1PKH1rjN+79o6uazRbQQtvniqy+DIpFQf12dX7KOSw
AAAECPrBD78oYfY+Css0C0K7ZICWvN4s+z6cveXn+JndzigcnU8ofWuM37v2jq5rNFtBC2
+eKrL4MikVB/XZ1fso5LAAAADmtpbG4tdW5pdC10ZXN0AQIDBAUGBw==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn specs_parse_like_buildx() {
        assert_eq!(
            SshSpec::parse("default").unwrap(),
            SshSpec {
                id: "default".into(),
                paths: vec![]
            }
        );
        assert_eq!(
            SshSpec::parse("gh=/k1,/k2").unwrap().paths,
            vec![PathBuf::from("/k1"), PathBuf::from("/k2")]
        );
        assert!(SshSpec::parse("=x").is_err());
    }

    #[test]
    fn the_in_process_agent_lists_and_signs() {
        use signature::Verifier;
        let key = PrivateKey::from_openssh(ED25519).expect("test key");
        let keys = vec![key.clone()];
        let list = answer(&keys, &[REQUEST_IDENTITIES]);
        assert_eq!(list[0], IDENTITIES_ANSWER);
        assert_eq!(&list[1..5], &1u32.to_be_bytes());
        let blob = key.public_key().to_bytes().unwrap();
        let mut req = vec![SIGN_REQUEST];
        put_string(&mut req, &blob);
        put_string(&mut req, b"session data");
        req.extend_from_slice(&0u32.to_be_bytes());
        let reply = answer(&keys, &req);
        assert_eq!(reply[0], SIGN_RESPONSE);
        let mut body = &reply[1..];
        let mut sig = get_string(&mut body).unwrap();
        assert_eq!(get_string(&mut sig).unwrap(), b"ssh-ed25519");
        let raw = get_string(&mut sig).unwrap();
        let parsed = ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, raw.to_vec()).unwrap();
        key.public_key()
            .key_data()
            .verify(b"session data", &parsed)
            .expect("a valid signature");
        // An unknown key and an unknown request fail politely.
        let mut other = vec![SIGN_REQUEST];
        put_string(&mut other, b"not a key");
        put_string(&mut other, b"x");
        assert_eq!(answer(&keys, &other), vec![FAILURE]);
        assert_eq!(answer(&keys, &[17]), vec![FAILURE]);
    }
}
