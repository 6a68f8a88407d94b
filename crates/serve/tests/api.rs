//! The worker's API over a real loopback connection, without builds: protocol negotiation,
//! FindMissing on context trees, uploads verified and collapsed, resumable downloads, health.

use std::time::Duration;

use kiln_llb::Digest;
use kiln_proto::tls::ConnectOptions;
use kiln_proto::tree::{Input, InputKind, Metadata, Tree};
use kiln_proto::upload;
use kiln_proto::v1::{
    BlobKind, BlobRef, DownloadRequest, FindMissingRequest, InfoRequest, kiln_client::KilnClient,
};
use kiln_serve::{Config, Server};

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(
        "tcp://127.0.0.1:0".parse().unwrap(),
        dir.path().join("root"),
    );
    (Server::start(config).await.expect("start"), dir)
}

fn tree_of(files: &[(&str, &[u8])]) -> Tree {
    Tree::build(files.iter().map(|(path, data)| Input {
        path: path.to_string(),
        meta: Metadata {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_secs: 1,
            mtime_nanos: 0,
        },
        kind: InputKind::File {
            size: data.len() as u64,
            digest: Digest::of(data),
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_loopback() {
    let (server, _dir) = start().await;
    let worker = kiln_proto::client::connect(server.address(), &ConnectOptions::default(), "test")
        .await
        .expect("connect");
    assert_eq!(worker.protocol, kiln_proto::negotiate::MAX_PROTOCOL);
    assert_eq!(worker.info.worker_id, server.worker_id());
    let mut client: KilnClient<_> = worker.client.clone();

    // A client from the future: the worker answers protocol 0 with its own range, which the
    // client names when it fails (kiln_proto::negotiate's tests check the wording).
    let answer = client
        .info(InfoRequest {
            min_protocol: 5,
            max_protocol: 6,
            client_version: "future".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.protocol, 0);
    assert_eq!(
        (answer.min_protocol, answer.max_protocol),
        (
            kiln_proto::negotiate::MIN_PROTOCOL,
            kiln_proto::negotiate::MAX_PROTOCOL
        )
    );

    // A tree: missing until its node and files are there; then present as a whole.
    let data: &[u8] = b"hello world";
    let tree = tree_of(&[("a/b.txt", data), ("c.txt", b"c")]);
    let root = BlobRef {
        digest: tree.root().to_string(),
        size: 0,
        kind: BlobKind::Tree as i32,
    };
    let missing = |client: &mut KilnClient<_>| {
        let mut client = client.clone();
        let root = root.clone();
        async move {
            client
                .find_missing(FindMissingRequest { blobs: vec![root] })
                .await
                .unwrap()
                .into_inner()
                .missing
        }
    };
    assert_eq!(missing(&mut client).await.len(), 1);
    for node in tree.nodes() {
        client
            .upload(tokio_stream::iter(upload::chunks(
                node.bytes(),
                BlobKind::Tree,
            )))
            .await
            .unwrap();
    }
    assert_eq!(
        missing(&mut client).await.len(),
        1,
        "files are still missing"
    );
    // The same file uploaded twice at once: one writes, the other finds it there.
    let (mut c1, mut c2) = (client.clone(), client.clone());
    let (one, two) = tokio::join!(
        c1.upload(tokio_stream::iter(upload::chunks(data, BlobKind::File))),
        c2.upload(tokio_stream::iter(upload::chunks(data, BlobKind::File))),
    );
    let (one, two) = (one.unwrap().into_inner(), two.unwrap().into_inner());
    assert_eq!(
        [one.already_present, two.already_present]
            .iter()
            .filter(|p| **p)
            .count(),
        1,
        "{one:?} {two:?}"
    );
    client
        .upload(tokio_stream::iter(upload::chunks(b"c", BlobKind::File)))
        .await
        .unwrap();
    assert!(missing(&mut client).await.is_empty());

    // A blob whose bytes do not match its digest is refused.
    let mut bad = upload::chunks(b"not c", BlobKind::File);
    bad[0].header.as_mut().unwrap().digest = Digest::of(b"something else").to_string();
    let refused = client.upload(tokio_stream::iter(bad)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // Download from an offset.
    let mut stream = client
        .download(DownloadRequest {
            digest: Digest::of(data).to_string(),
            offset: 6,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        got.extend_from_slice(&chunk.data);
    }
    assert_eq!(got, b"world");

    // gRPC health for readiness probes.
    let mut health =
        kiln_proto::health::pb::health_client::HealthClient::new(worker.connection.channel.clone());
    let status = health
        .check(kiln_proto::health::pb::HealthCheckRequest {
            service: kiln_proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");
    assert_eq!(server.shutdown(Duration::from_secs(1)).await, 0);
}
