//! The client against a scripted registry on loopback: the bearer-token flow (challenge, token
//! endpoint with basic credentials and the repository scope, token reuse), a 503 retried, and a
//! blob cut off mid-transfer downloaded again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use kiln_oci::{BlobSink, Digest, MemoryBlobs};
use kiln_registry::{Client, DockerConfig, PullOptions, Reference, RegistryConfig};

#[derive(Default)]
struct Log {
    requests: Vec<String>,
    counts: HashMap<String, usize>,
}

struct Fake {
    port: u16,
    log: Arc<Mutex<Log>>,
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    declared: usize,
) {
    let mut head =
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {declared}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

impl Fake {
    fn start(manifest: Vec<u8>, blobs: HashMap<String, Vec<u8>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                        auth = v.trim().to_owned();
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let n = {
                    let mut l = thread_log.lock().unwrap();
                    l.requests.push(format!("{path} auth={auth}"));
                    let c = l.counts.entry(path.clone()).or_default();
                    *c += 1;
                    *c
                };
                if path.starts_with("/token") {
                    // "kiln:pw" in base64.
                    if auth == "basic a2lsbjpwdw==" {
                        respond(&mut stream, "200 OK", &[], br#"{"token":"t1"}"#, 14);
                    } else {
                        respond(&mut stream, "401 Unauthorized", &[], b"", 0);
                    }
                    continue;
                }
                if auth != "bearer t1" {
                    let challenge = format!(
                        r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:team/app:pull""#
                    );
                    respond(
                        &mut stream,
                        "401 Unauthorized",
                        &[("WWW-Authenticate", challenge)],
                        b"",
                        0,
                    );
                    continue;
                }
                if path == "/v2/team/app/manifests/v1" {
                    if n == 2 {
                        // The first authorized attempt: the server has a moment.
                        respond(&mut stream, "503 Service Unavailable", &[], b"", 0);
                        continue;
                    }
                    let mt = "application/vnd.oci.image.manifest.v1+json".to_owned();
                    respond(
                        &mut stream,
                        "200 OK",
                        &[("Content-Type", mt)],
                        &manifest,
                        manifest.len(),
                    );
                    continue;
                }
                if let Some(digest) = path.strip_prefix("/v2/team/app/blobs/")
                    && let Some(b) = blobs.get(digest)
                {
                    if n == 1 {
                        // Cut off half way: the client must fetch it again.
                        respond(&mut stream, "200 OK", &[], &b[..b.len() / 2], b.len());
                    } else {
                        respond(&mut stream, "200 OK", &[], b, b.len());
                    }
                    continue;
                }
                respond(&mut stream, "404 Not Found", &[], b"", 0);
            }
        });
        Fake { port, log }
    }
}

#[test]
fn bearer_tokens_retries_and_resumed_blobs() {
    let layer: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let (ld, cd) = (Digest::of(&layer), Digest::of(&config));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let fake = Fake::start(
        manifest.clone(),
        HashMap::from([
            (ld.to_string(), layer.clone()),
            (cd.to_string(), config.clone()),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("config.json");
    let host = format!("127.0.0.1:{}", fake.port);
    // A docker config with the credential for this registry.
    std::fs::write(
        &docker,
        format!(r#"{{"auths":{{"{host}":{{"auth":"a2lsbjpwdw=="}}}}}}"#),
    )
    .unwrap();
    let client = Client::new(RegistryConfig::default(), DockerConfig::at(&docker));
    let sink = MemoryBlobs::new();
    let events = Mutex::new(Vec::new());
    let pulled = kiln_registry::pull(
        &client,
        &Reference::parse(&format!("{host}/team/app:v1")).unwrap(),
        &sink,
        &PullOptions {
            platform: kiln_llb::Platform::new("linux", "amd64", None),
            concurrency: 2,
            progress: &|e| events.lock().unwrap().push(format!("{e:?}")),
        },
    )
    .unwrap();
    assert_eq!(pulled.manifest.digest, Digest::of(&manifest));
    for d in [ld, cd, Digest::of(&manifest)] {
        assert!(sink.contains(&d).unwrap(), "{d} stored");
    }
    assert_eq!(&*sink.get(&ld).unwrap(), &layer[..]);
    let log = fake.log.lock().unwrap();
    let tokens: Vec<&String> = log
        .requests
        .iter()
        .filter(|r| r.starts_with("/token"))
        .collect();
    // One token, asked for with the repository's pull scope, reused for every blob.
    assert_eq!(tokens.len(), 1, "{:?}", log.requests);
    assert!(
        tokens[0].contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        tokens[0]
    );
    assert!(tokens[0].contains("service=fake"), "{}", tokens[0]);
    assert_eq!(
        log.counts["/v2/team/app/manifests/v1"], 3,
        "401, 503, then 200"
    );
    assert_eq!(
        log.counts[&format!("/v2/team/app/blobs/{ld}")],
        2,
        "cut off, then whole"
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("BlobRetry")),
        "{:?}",
        events.lock().unwrap()
    );
}

#[test]
fn wrong_credentials_name_the_registry() {
    let fake = Fake::start(Vec::new(), HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("config.json");
    let host = format!("127.0.0.1:{}", fake.port);
    let client = Client::new(RegistryConfig::default(), DockerConfig::at(&docker));
    let err = kiln_registry::pull(
        &client,
        &Reference::parse(&format!("{host}/team/app:v1")).unwrap(),
        &MemoryBlobs::new(),
        &PullOptions {
            platform: kiln_llb::Platform::host(),
            concurrency: 1,
            progress: &|_| {},
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("authentication required by registry {host}")),
        "{err}"
    );
    assert!(err.contains("anonymous"), "{err}");
}
