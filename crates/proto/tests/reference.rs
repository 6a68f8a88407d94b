//! The generated API over a real connection with the reference worker: Info and protocol
//! negotiation, FindMissing, Upload verified on write (a wrong digest is refused and nothing is
//! stored), Download resumed from an offset, and the context tree synced through the RPCs.

mod common;

use kiln_llb::Digest;
use kiln_proto::client;
use kiln_proto::tls::ConnectOptions;
use kiln_proto::tree::{Diff, Input, InputKind, Metadata, Tree};
use kiln_proto::upload::chunks;
use kiln_proto::v1::{
    BlobKind, BlobRef, DownloadRequest, FindMissingRequest, UploadChunk, UploadHeader,
};

fn stream(msgs: Vec<UploadChunk>) -> impl tokio_stream::Stream<Item = UploadChunk> {
    tokio_stream::iter(msgs)
}

#[tokio::test]
async fn info_negotiates_the_protocol_over_loopback() {
    let server = common::start(None).await;
    let worker = client::connect(&server.address, &ConnectOptions::default(), "test")
        .await
        .unwrap();
    assert_eq!(worker.protocol, kiln_proto::negotiate::MAX_PROTOCOL);
    assert_eq!(worker.info.platform.as_ref().unwrap().os, "linux");
    assert!(worker.info.worker_id.contains("client cert: false"));
}

#[tokio::test]
async fn a_unix_socket_works_like_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let address: kiln_proto::tls::Address =
        format!("unix://{}", dir.path().join("kiln.sock").display())
            .parse()
            .unwrap();
    let server = common::start_on(&address, None).await;
    assert_eq!(server.address, address);
    let worker = client::connect(&address, &ConnectOptions::default(), "test")
        .await
        .unwrap();
    assert_eq!(worker.protocol, kiln_proto::negotiate::MAX_PROTOCOL);
    // A socket nobody listens on is named with its address.
    drop(server);
    std::fs::remove_file(dir.path().join("kiln.sock")).unwrap();
    let err = client::connect(&address, &ConnectOptions::default(), "test")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot connect to {address}")),
        "{err}"
    );
}

#[tokio::test]
async fn upload_verifies_on_write_and_download_resumes() {
    let server = common::start(None).await;
    let mut worker = client::connect(&server.address, &ConnectOptions::default(), "test")
        .await
        .unwrap()
        .client;
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Digest::of(&data);

    // A wrong digest is refused, naming both, and nothing is stored.
    let mut wrong = chunks(&data, BlobKind::File);
    wrong[0].header.as_mut().unwrap().digest = Digest::of(b"something else").to_string();
    let status = worker.upload(stream(wrong)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(&digest.to_string()),
        "{}",
        status.message()
    );
    assert!(server.worker.blobs.lock().unwrap().is_empty());

    // A short upload is refused too.
    let short = vec![UploadChunk {
        header: Some(UploadHeader {
            digest: digest.to_string(),
            size: data.len() as u64,
            kind: BlobKind::File as i32,
            compression: 0,
        }),
        data: data[..10].to_vec(),
    }];
    let status = worker.upload(stream(short)).await.unwrap_err();
    assert!(
        status
            .message()
            .contains("10 bytes instead of the announced 5000")
    );

    // FindMissing before and after a good upload.
    let ask = FindMissingRequest {
        blobs: vec![BlobRef {
            digest: digest.to_string(),
            size: data.len() as u64,
            kind: BlobKind::File as i32,
        }],
    };
    let missing = worker.find_missing(ask.clone()).await.unwrap().into_inner();
    assert_eq!(missing.missing, vec![digest.to_string()]);
    let ok = worker
        .upload(stream(chunks(&data, BlobKind::File)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.digest, ok.received_bytes), (digest.to_string(), 5000));
    let missing = worker.find_missing(ask).await.unwrap().into_inner();
    assert!(missing.missing.is_empty());

    // Download: stop after the first chunk, resume from there, and get the same bytes.
    let mut first = worker
        .download(DownloadRequest {
            digest: digest.to_string(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let chunk = first.message().await.unwrap().unwrap();
    assert_eq!((chunk.offset, chunk.size), (0, 5000));
    let mut got = chunk.data;
    drop(first);
    let mut rest = worker
        .download(DownloadRequest {
            digest: digest.to_string(),
            offset: got.len() as u64,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(c) = rest.message().await.unwrap() {
        assert_eq!(c.offset, got.len() as u64);
        got.extend_from_slice(&c.data);
    }
    assert_eq!(got, data);
    let past = worker
        .download(DownloadRequest {
            digest: digest.to_string(),
            offset: 5001,
        })
        .await
        .unwrap_err();
    assert_eq!(past.code(), tonic::Code::OutOfRange);
}

fn input(path: &str, content: &[u8]) -> Input {
    Input {
        path: path.into(),
        meta: Metadata {
            mode: 0o644,
            ..Metadata::default()
        },
        kind: InputKind::File {
            size: content.len() as u64,
            digest: Digest::of(content),
        },
    }
}

#[tokio::test]
async fn a_context_tree_syncs_through_find_missing_and_upload() {
    let server = common::start(None).await;
    let mut worker = client::connect(&server.address, &ConnectOptions::default(), "test")
        .await
        .unwrap()
        .client;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("Dockerfile", b"FROM busybox\n".to_vec()),
        ("src/a", vec![1; 3000]),
        ("src/deep/b", vec![2; 10]),
    ];
    let tree = Tree::build(files.iter().map(|(p, c)| input(p, c))).unwrap();
    let mut diff = Diff::new(&tree);
    while !diff.is_done() {
        let missing = worker
            .find_missing(FindMissingRequest {
                blobs: diff.query().to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .missing;
        diff.answer(&missing).unwrap();
    }
    let plan = diff.plan();
    assert_eq!((plan.nodes.len(), plan.files.len()), (3, 3));
    for d in &plan.nodes {
        let bytes = tree.node(d).unwrap().bytes().to_vec();
        worker
            .upload(stream(chunks(&bytes, BlobKind::Tree)))
            .await
            .unwrap();
    }
    for d in &plan.files {
        let content = &files.iter().find(|(_, c)| Digest::of(c) == *d).unwrap().1;
        worker
            .upload(stream(chunks(content, BlobKind::File)))
            .await
            .unwrap();
    }
    // The worker can now name nothing it lacks under the root.
    struct Store(std::collections::HashMap<Digest, Vec<u8>>);
    impl kiln_proto::tree::Source for Store {
        fn contains(&self, d: &Digest) -> std::io::Result<bool> {
            Ok(self.0.contains_key(d))
        }
        fn read(&self, d: &Digest) -> std::io::Result<Option<Vec<u8>>> {
            Ok(self.0.get(d).cloned())
        }
        fn open(&self, d: &Digest) -> std::io::Result<Option<Box<dyn std::io::Read + '_>>> {
            Ok(self
                .0
                .get(d)
                .map(|b| Box::new(&b[..]) as Box<dyn std::io::Read>))
        }
    }
    let store = Store(server.worker.blobs.lock().unwrap().clone());
    assert!(
        kiln_proto::tree::missing_under(&tree.root(), &store)
            .unwrap()
            .is_empty()
    );
    let dir = tempfile::tempdir().unwrap();
    kiln_proto::tree::materialize(
        &tree.root(),
        &store,
        &dir.path().join("ctx"),
        &kiln_proto::tree::MaterializeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("ctx/src/deep/b")).unwrap(),
        vec![2; 10]
    );
}

#[tokio::test]
async fn a_worker_that_stops_answering_fails_the_call_instead_of_hanging() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A "worker" that speaks the first HTTP/2 words, then goes silent with the socket open, as
    // a frozen or partitioned machine does: only keepalive pings can notice it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // SETTINGS
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(s);
    });
    let address: kiln_proto::tls::Address = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let options = ConnectOptions {
        keepalive_interval: std::time::Duration::from_secs(1),
        keepalive_timeout: std::time::Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let start = std::time::Instant::now();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client::connect(&address, &options, "test"),
    )
    .await
    .expect("the call must fail, not hang");
    let err = result.unwrap_err().to_string();
    assert!(err.contains(&address.to_string()), "{err}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    silent.abort();
}
