//! Mutual TLS over real loopback connections: `kiln tls init` files give a working handshake,
//! and each broken setup fails within 5 s with its cause named on the client (and on the worker,
//! which keeps serving the good client afterwards).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_proto::client::{self, ClientError};
use kiln_proto::tls::{
    self, Authority, ClientTls, ConnectOptions, HandshakeFailure, Peer, ServerTls, TlsPaths,
    Validity,
};
use time::OffsetDateTime;

fn client_options(paths: &TlsPaths) -> ConnectOptions {
    ConnectOptions {
        tls: Some(ClientTls::load(paths).unwrap()),
        ..ConnectOptions::default()
    }
}

/// Connects and calls Info; must fail within 5 s with a handshake failure.
async fn failure(server: &common::Running, options: &ConnectOptions) -> HandshakeFailure {
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        client::connect(&server.address, options, "test"),
    )
    .await
    .expect("the failure must come within 5 s");
    let err = match result {
        Ok(_) => panic!("the connection should have failed"),
        Err(e) => e,
    };
    assert!(start.elapsed() < Duration::from_secs(5));
    let message = err.to_string();
    assert!(
        message.contains(&server.address.to_string()),
        "the error names the worker: {message}"
    );
    match err {
        ClientError::Connect(c) => c
            .handshake()
            .cloned()
            .unwrap_or_else(|| panic!("not classified: {c}")),
        other => panic!("not a handshake failure: {other}"),
    }
}

/// The good client still gets answers, and the worker logged `expect` for the bad one.
async fn still_serving(server: &common::Running, good: &ConnectOptions) {
    let worker = client::connect(&server.address, good, "test")
        .await
        .expect("the good client still connects");
    assert!(worker.info.worker_id.contains("client cert: true"));
}

/// Waits briefly for the worker to log a failure matching `pred` (its handshake task may
/// finish just after the client gave up).
async fn worker_logged(server: &common::Running, pred: impl Fn(&HandshakeFailure) -> bool) {
    for _ in 0..50 {
        if server.failures().iter().any(|f| pred(&f.failure)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the worker did not log it: {:?}", server.failures());
}

struct Setup {
    _dir: tempfile::TempDir,
    server: TlsPaths,
    client: TlsPaths,
    root: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let report = tls::init(dir.path(), &["kiln.test".to_string()]).unwrap();
    assert!(report.sans.iter().any(|s| s == "127.0.0.1"));
    Setup {
        server: TlsPaths::in_dir(&report.server_dir),
        client: TlsPaths::in_dir(&report.client_dir),
        root: dir.path().to_path_buf(),
        _dir: dir,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn init_files_work_as_they_are_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let mode = std::fs::metadata(&s.server.key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second init into the same directory refuses to overwrite.
    let again = tls::init(&s.root, &[]).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");

    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let good = client_options(&s.client);
    let worker = client::connect(&server.address, &good, "test")
        .await
        .unwrap();
    assert!(worker.info.worker_id.contains("client cert: true"));
    // gRPC health over the same TLS channel.
    let channel = tls::connect(&server.address, &good).await.unwrap().channel;
    let mut health = kiln_proto::health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(kiln_proto::health::pb::HealthCheckRequest {
            service: kiln_proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1); // SERVING
    assert!(server.failures().is_empty(), "{:?}", server.failures());
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_named() {
    let s = setup();
    let other = setup();
    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let good = client_options(&s.client);
    let foreign = client_options(&TlsPaths {
        ca: s.client.ca.clone(),
        ..other.client.clone()
    });
    let f = failure(&server, &foreign).await;
    assert_eq!(
        f,
        HandshakeFailure::UnknownCa {
            cert: Peer::Client,
            refused_by: Peer::Worker
        }
    );
    assert!(
        f.to_string()
            .starts_with("unknown CA: the worker does not trust the client's certificate"),
        "{f}"
    );
    worker_logged(&server, |f| {
        *f == HandshakeFailure::UnknownCa {
            cert: Peer::Client,
            refused_by: Peer::Worker,
        }
    })
    .await;
    still_serving(&server, &good).await;
}

#[tokio::test]
async fn a_worker_certificate_from_another_ca_is_named() {
    let s = setup();
    let other = setup();
    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let wrong_ca = client_options(&TlsPaths {
        ca: other.client.ca.clone(),
        ..s.client.clone()
    });
    let f = failure(&server, &wrong_ca).await;
    assert_eq!(
        f,
        HandshakeFailure::UnknownCa {
            cert: Peer::Worker,
            refused_by: Peer::Client
        }
    );
    worker_logged(&server, |f| {
        matches!(
            f,
            HandshakeFailure::UnknownCa {
                refused_by: Peer::Client,
                ..
            }
        )
    })
    .await;
    still_serving(&server, &client_options(&s.client)).await;
}

#[tokio::test]
async fn no_client_certificate_is_named() {
    let s = setup();
    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&s.client.ca).unwrap();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let anonymous = ConnectOptions {
        tls: Some(ClientTls::from_config(Arc::new(config))),
        ..ConnectOptions::default()
    };
    let f = failure(&server, &anonymous).await;
    assert_eq!(f, HandshakeFailure::NoClientCertificate);
    assert!(f.to_string().starts_with("no client certificate"));
    worker_logged(&server, |f| *f == HandshakeFailure::NoClientCertificate).await;
    still_serving(&server, &client_options(&s.client)).await;
}

#[tokio::test]
async fn a_wrong_server_name_is_named() {
    let s = setup();
    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let mut options = client_options(&s.client);
    options.server_name = Some("build.example.com".into());
    let f = failure(&server, &options).await;
    match &f {
        HandshakeFailure::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "build.example.com");
            assert!(presented.contains("kiln.test"), "{presented}");
        }
        other => panic!("{other}"),
    }
    assert!(
        f.to_string()
            .starts_with("name mismatch: the worker's certificate is for"),
        "{f}"
    );
    still_serving(&server, &client_options(&s.client)).await;
}

fn past() -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
    }
}

#[tokio::test]
async fn an_expired_worker_certificate_is_named() {
    let s = setup();
    let ca = Authority::new("expired test CA", Validity::days(10)).unwrap();
    let issued = ca.server(&["127.0.0.1".into()], past()).unwrap();
    let client = ca.client("client", Validity::days(10)).unwrap();
    let dir = &s.root;
    let server_paths = TlsPaths {
        ca: write(dir, "ca2.pem", ca.cert_pem()),
        cert: write(dir, "server-expired.pem", &issued.cert_pem),
        key: write(dir, "server-expired.key", &issued.key_pem),
    };
    let client_paths = TlsPaths {
        ca: server_paths.ca.clone(),
        cert: write(dir, "client2.pem", &client.cert_pem),
        key: write(dir, "client2.key", &client.key_pem),
    };
    let server = common::start(Some(ServerTls::load(&server_paths).unwrap())).await;
    let f = failure(&server, &client_options(&client_paths)).await;
    match &f {
        HandshakeFailure::Expired {
            cert: Peer::Worker,
            detail,
        } => {
            assert!(detail.starts_with("expired at "), "{detail}");
        }
        other => panic!("{other}"),
    }
    worker_logged(&server, |f| {
        matches!(
            f,
            HandshakeFailure::Expired {
                cert: Peer::Worker,
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_named() {
    let s = setup();
    let ca = Authority::new("test CA", Validity::days(10)).unwrap();
    let server_cert = ca
        .server(&["127.0.0.1".into()], Validity::days(10))
        .unwrap();
    let expired = ca.client("client", past()).unwrap();
    let good = ca.client("client", Validity::days(10)).unwrap();
    let dir = &s.root;
    let ca_path = write(dir, "ca3.pem", ca.cert_pem());
    let server_paths = TlsPaths {
        ca: ca_path.clone(),
        cert: write(dir, "server3.pem", &server_cert.cert_pem),
        key: write(dir, "server3.key", &server_cert.key_pem),
    };
    let server = common::start(Some(ServerTls::load(&server_paths).unwrap())).await;
    let f = failure(
        &server,
        &client_options(&TlsPaths {
            ca: ca_path.clone(),
            cert: write(dir, "client3.pem", &expired.cert_pem),
            key: write(dir, "client3.key", &expired.key_pem),
        }),
    )
    .await;
    assert!(
        matches!(
            f,
            HandshakeFailure::Expired {
                cert: Peer::Client,
                ..
            }
        ),
        "{f}"
    );
    assert!(
        f.to_string()
            .starts_with("expired certificate: the client's certificate"),
        "{f}"
    );
    worker_logged(&server, |f| {
        matches!(
            f,
            HandshakeFailure::Expired {
                cert: Peer::Client,
                ..
            }
        )
    })
    .await;
    still_serving(
        &server,
        &client_options(&TlsPaths {
            ca: ca_path,
            cert: write(dir, "client4.pem", &good.cert_pem),
            key: write(dir, "client4.key", &good.key_pem),
        }),
    )
    .await;
}

#[tokio::test]
async fn plaintext_to_a_tls_port_is_named() {
    let s = setup();
    let server = common::start(Some(ServerTls::load(&s.server).unwrap())).await;
    let f = failure(&server, &ConnectOptions::default()).await;
    assert_eq!(f, HandshakeFailure::PlaintextToTls);
    assert!(f.to_string().starts_with("plaintext spoken to a TLS port"));
    worker_logged(&server, |f| *f == HandshakeFailure::PlaintextToTls).await;
    still_serving(&server, &client_options(&s.client)).await;
}

#[tokio::test]
async fn tls_to_a_plaintext_port_is_named() {
    let s = setup();
    let server = common::start(None).await;
    let f = failure(&server, &client_options(&s.client)).await;
    assert_eq!(f, HandshakeFailure::TlsToPlaintext);
    assert!(f.to_string().starts_with("TLS spoken to a plaintext port"));
    worker_logged(&server, |f| *f == HandshakeFailure::TlsToPlaintext).await;
    // Plaintext clients are still served.
    client::connect(&server.address, &ConnectOptions::default(), "test")
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_tls_files_name_the_file() {
    let s = setup();
    let dir = &s.root;
    let mut paths = s.server.clone();
    paths.key = write(dir, "empty.key", "");
    let err = ServerTls::load(&paths).unwrap_err().to_string();
    assert!(
        err.contains("empty.key") && err.contains("no usable private key"),
        "{err}"
    );
    paths.key = s.client.key.clone(); // the client's key with the server's certificate
    let err = ServerTls::load(&paths).unwrap_err().to_string();
    assert!(err.contains("do not go together"), "{err}");
    paths.key = s.server.key.clone();
    paths.ca = dir.join("missing.pem");
    let err = ServerTls::load(&paths).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
