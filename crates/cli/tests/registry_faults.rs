//! Pulls and pushes through a fault-injecting proxy in front of a real registry (Debian's
//! `docker-registry` on 127.0.0.1, `common::faultproxy`): connections reset in the middle of a
//! blob or an upload, 500 and 503 answers, a blob whose bytes do not match its digest, manifests
//! that lie about sizes, a stalled registry. What survives must survive without a full restart
//! where the protocol allows a resume (`Range` on blob GETs, the upload status on chunked
//! uploads); what cannot must fail naming the blob and the registry, store nothing unverified,
//! name no image, and leave `kiln system check` clean.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::faultproxy::{Fault, Proxy};
use common::registry::Registry;

/// The big layer: incompressible, so a byte offset in it means the same on the wire.
const LAYER_LEN: usize = 3 << 20;

/// A store root of its own for one `kiln` run or several.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("kiln-faults-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(self.path())
            .args(args)
            .env_remove("KILN_ROOT")
            .env("HOME", self.dir.path())
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("KILN_CONFIG", self.dir.path().join("none.toml"))
            // A stall counts after 2 s without a byte, so the stall tests take seconds.
            .env("KILN_REGISTRY_TIMEOUT", "2")
            .output()
            .unwrap()
    }

    /// `kiln system check` finds nothing wrong and no ingest file is left behind.
    fn assert_clean(&self) {
        let out = self.kiln(&["system", "check"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("is consistent"),
            "system check: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ingest = self.path().join("content/ingest");
        let left: Vec<_> = std::fs::read_dir(&ingest)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "half-written blobs left: {left:?}");
    }

    fn has_blob(&self, hex: &str) -> bool {
        self.path().join("content/blobs/sha256").join(hex).exists()
    }

    fn images(&self) -> String {
        String::from_utf8_lossy(&self.kiln(&["images"]).stdout).into_owned()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pseudo-random bytes (xorshift), the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An image held in memory: one big layer, its config, its manifest.
struct Image {
    blobs: kiln_oci::MemoryBlobs,
    manifest: kiln_oci::Descriptor,
    layer: kiln_oci::Digest,
    config: kiln_oci::Digest,
}

fn image(seed: u64) -> Image {
    let blobs = kiln_oci::MemoryBlobs::new();
    let layer = blobs.insert(noise(LAYER_LEN, seed));
    let host = kiln_llb::Platform::host();
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#,
        host.architecture, host.os
    );
    let config_digest = blobs.insert(config.clone().into_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{LAYER_LEN}}}]}}"#,
        config.len()
    );
    let size = manifest.len() as u64;
    let digest = blobs.insert(manifest.into_bytes());
    Image {
        blobs,
        manifest: kiln_oci::Descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            digest,
            size,
        ),
        layer,
        config: config_digest,
    }
}

fn client(storage: &Path) -> kiln_registry::Client {
    kiln_registry::Client::with_stall_timeout(
        kiln_registry::RegistryConfig::default(),
        kiln_registry::DockerConfig::at(&storage.join("no-docker-config.json")),
        Duration::from_secs(2),
    )
}

fn push_options<'a>(
    chunk_size: u64,
    progress: &'a (dyn Fn(kiln_registry::PushEvent) + Sync),
) -> kiln_registry::PushOptions<'a> {
    kiln_registry::PushOptions {
        concurrency: 2,
        chunk_size,
        mount_from: Vec::new(),
        progress,
    }
}

/// A registry with image `app:v1` pushed straight to it, and a proxy in front.
struct Setup {
    reg: Registry,
    proxy: Proxy,
    image: Image,
}

impl Setup {
    fn start() -> Option<Setup> {
        let reg = Registry::start(None)?;
        let image = image(7);
        let name =
            kiln_registry::Reference::parse(&format!("{}/faults/app:v1", reg.host())).unwrap();
        let progress = |_| {};
        kiln_registry::push(
            &client(&reg.storage),
            &image.blobs,
            &image.manifest,
            &name,
            &push_options(u64::MAX, &progress),
        )
        .unwrap();
        let proxy = Proxy::start(reg.port());
        Some(Setup { reg, proxy, image })
    }

    /// The image's name through the proxy.
    fn name(&self) -> String {
        format!("{}/faults/app:v1", self.proxy.host())
    }

    fn layer_path(&self) -> String {
        format!("/blobs/{}", self.image.layer)
    }

    /// Pulls into a fresh root through the proxy.
    fn pull(&self) -> (Root, Output, Duration) {
        let root = Root::new();
        let start = Instant::now();
        let out = root.kiln(&["pull", &self.name()]);
        (root, out, start.elapsed())
    }

    /// The pull worked: the image is named, its blobs are there and verified.
    fn assert_pulled(&self, root: &Root, out: &Output) {
        assert!(out.status.success(), "{}", text(out));
        assert!(root.images().contains("faults/app"), "{}", root.images());
        assert!(root.has_blob(&self.image.layer.hex()));
        root.assert_clean();
    }

    /// The pull failed and left nothing behind: no name, no layer, a clean store.
    fn assert_failed_clean(&self, root: &Root, out: &Output) -> String {
        assert!(!out.status.success(), "{}", text(out));
        assert!(!root.images().contains("faults/app"), "{}", root.images());
        assert!(
            !root.has_blob(&self.image.layer.hex()),
            "an unverified layer was stored"
        );
        root.assert_clean();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Prints how many faults the proxy injected since the last tally and how the operation
    /// ended (the figures in docs/dev/security.md add these lines up), then clears the log.
    /// Called after a scenario's assertions, so `completed` and `refused` were both checked.
    fn tally(&self, scenario: &str, outcome: Outcome) {
        let log = self.proxy.log();
        let injected = log.iter().filter(|seen| seen.fault.is_some()).count();
        assert!(injected > 0, "{scenario}: no fault was injected: {log:?}");
        let outcome = match outcome {
            Outcome::Completed => "completed",
            Outcome::RefusedClean => "refused, nothing stored",
        };
        eprintln!("fault tally: {scenario}: {injected} injected, {outcome}");
        self.proxy.clear_log();
    }
}

/// How a scenario's pull or push ended (each already asserted by the scenario).
enum Outcome {
    /// It finished with the right content despite the faults.
    Completed,
    /// It gave up with a clear error and stored nothing unverified, as it must.
    RefusedClean,
}

#[test]
fn a_blob_cut_off_mid_transfer_is_resumed_with_a_range_request() {
    let Some(s) = Setup::start() else { return };
    // Every connection for the layer dies after 768 KiB: only resuming gets to the end (a
    // download that starts over each time never would).
    s.proxy.rule(
        "GET",
        &s.layer_path(),
        None,
        Fault::ResetResponseAfter(768 << 10),
    );
    let (root, out, took) = s.pull();
    s.assert_pulled(&root, &out);
    let gets = s.proxy.requests("GET", &s.layer_path());
    let ranged: Vec<_> = gets.iter().filter(|g| g.range.is_some()).collect();
    assert!(
        gets.len() >= 4 && ranged.len() == gets.len() - 1,
        "one full GET then ranged ones: {gets:?}"
    );
    let served: u64 = gets.iter().map(|g| g.served).sum();
    assert!(
        served < 2 * LAYER_LEN as u64,
        "resumes must not download the layer again ({served} bytes): {gets:?}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming at byte"), "{log}");
    eprintln!(
        "reset every 768 KiB: {} GETs, {served} bytes served for {LAYER_LEN}, {took:?}",
        gets.len()
    );
    s.tally("every layer GET reset after 768 KiB", Outcome::Completed);
}

#[test]
fn server_errors_are_retried_with_backoff_and_then_given_up_on() {
    let Some(s) = Setup::start() else { return };
    // Two 503s on the manifest, a 500 and a 503 on the layer: all retried.
    s.proxy
        .rule("GET", "/manifests/v1", Some(2), Fault::Status(503));
    s.proxy
        .rule("GET", &s.layer_path(), Some(1), Fault::Status(500));
    s.proxy
        .rule("GET", &s.layer_path(), Some(1), Fault::Status(503));
    let (root, out, took) = s.pull();
    s.assert_pulled(&root, &out);
    assert_eq!(s.proxy.requests("GET", &s.layer_path()).len(), 3);
    // Backoff: the retries waited (0.4 s + 0.8 s for the manifest at least).
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    s.tally(
        "503, 503 on the manifest; 500, 503 on the layer",
        Outcome::Completed,
    );

    // A registry that keeps failing: a bounded number of tries, then a clear error.
    s.proxy.clear_rules();
    s.proxy.clear_log();
    s.proxy
        .rule("GET", &s.layer_path(), None, Fault::Status(503));
    let (root, out, took) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(
        err.contains(&format!("gave up on blob {}", s.image.layer))
            && err.contains(&format!("registry {}", s.proxy.host()))
            && err.contains("after 4 attempts")
            && err.contains("503"),
        "{err}"
    );
    assert_eq!(s.proxy.requests("GET", &s.layer_path()).len(), 4);
    assert!(took < Duration::from_secs(20), "{took:?}");
    s.tally("503 on every layer GET", Outcome::RefusedClean);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_never_stored() {
    let Some(s) = Setup::start() else { return };
    s.proxy
        .rule("GET", &s.layer_path(), None, Fault::FlipByte(1_000_000));
    let (root, out, _) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(
        err.contains("digest mismatch")
            && err.contains(&s.image.layer.to_string())
            && err.contains(&s.proxy.host()),
        "{err}"
    );
    // Corruption is not a network hiccup: not fetched again.
    assert_eq!(s.proxy.requests("GET", &s.layer_path()).len(), 1);
    s.tally("one flipped byte in the layer", Outcome::RefusedClean);
}

/// A manifest rewritten to say the layer is `delta` bytes longer (or shorter) than it is.
fn lie_about_layer_size(s: &Setup, delta: i64) -> Fault {
    let from = format!(r#""size":{LAYER_LEN}}}"#);
    let to = format!(r#""size":{}}}"#, LAYER_LEN as i64 + delta);
    let _ = s;
    Fault::RewriteBody(Arc::new(move |body: &[u8]| {
        String::from_utf8_lossy(body)
            .replace(&from, &to)
            .into_bytes()
    }))
}

#[test]
fn manifests_that_lie_about_sizes_are_refused() {
    let Some(s) = Setup::start() else { return };
    // The layer is said to be shorter than it is: more bytes than promised arrive.
    s.proxy
        .rule("GET", "/manifests/v1", None, lie_about_layer_size(&s, -10));
    let (root, out, _) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(
        err.contains("digest mismatch") && err.contains("more than the"),
        "{err}"
    );
    s.tally(
        "manifest says the layer is 10 bytes shorter",
        Outcome::RefusedClean,
    );

    // Said to be longer: the registry has nothing past the real end (a 416 on the resume).
    s.proxy.clear_rules();
    s.proxy
        .rule("GET", "/manifests/v1", None, lie_about_layer_size(&s, 4096));
    let (root, out, took) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(
        err.contains("digest mismatch") && err.contains(&format!("only {LAYER_LEN} bytes")),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    s.tally(
        "manifest says the layer is 4096 bytes longer",
        Outcome::RefusedClean,
    );

    // A manifest response that never ends: read up to the limit, not into memory without end.
    s.proxy.clear_rules();
    s.proxy.rule(
        "GET",
        "/manifests/v1",
        None,
        Fault::EndlessBody {
            claim: 1 << 40,
            content_type: "application/vnd.oci.image.manifest.v1+json",
        },
    );
    let (root, out, _) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(err.contains("is larger than 8388608 bytes"), "{err}");
    let served: u64 = s
        .proxy
        .requests("GET", "/manifests/v1")
        .iter()
        .map(|r| r.served)
        .sum();
    assert!(served < 64 << 20, "the client kept reading: {served} bytes");
    s.tally("endless manifest claiming 1 TiB", Outcome::RefusedClean);
}

#[test]
fn a_stalled_registry_is_timed_out_and_resumed_or_given_up_on() {
    let Some(s) = Setup::start() else { return };
    // Stalls once half way through the layer, for longer than the 2 s stall timeout.
    s.proxy.rule(
        "GET",
        &s.layer_path(),
        Some(1),
        Fault::StallResponseAfter(1 << 20, Duration::from_secs(6)),
    );
    let (root, out, took) = s.pull();
    s.assert_pulled(&root, &out);
    let gets = s.proxy.requests("GET", &s.layer_path());
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].range.is_some(), "{gets:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    s.tally("layer stalls once for 6 s after 1 MiB", Outcome::Completed);

    // Stalls every time: given up on after the attempts, with the byte count so far.
    s.proxy.clear_rules();
    s.proxy.clear_log();
    s.proxy.rule(
        "GET",
        &s.layer_path(),
        None,
        Fault::StallResponseAfter(0, Duration::from_secs(5)),
    );
    let (root, out, took) = s.pull();
    let err = s.assert_failed_clean(&root, &out);
    assert!(
        err.contains("gave up on blob")
            && err.contains(&format!("0 of {LAYER_LEN} bytes received")),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    s.tally("layer stalls on every GET", Outcome::RefusedClean);
}

/// Pushes `image` through the proxy as `faults/NAME:v1`; the events as text.
fn push_through(
    s: &Setup,
    image: &Image,
    name: &str,
    chunk: u64,
) -> (
    Result<kiln_registry::Pushed, kiln_registry::RegistryError>,
    Vec<String>,
) {
    let events = std::sync::Mutex::new(Vec::new());
    let progress = |e: kiln_registry::PushEvent| events.lock().unwrap().push(format!("{e:?}"));
    let reference =
        kiln_registry::Reference::parse(&format!("{}/faults/{name}:v1", s.proxy.host())).unwrap();
    let result = kiln_registry::push(
        &client(&s.reg.storage),
        &image.blobs,
        &image.manifest,
        &reference,
        &push_options(chunk, &progress),
    );
    (result, events.into_inner().unwrap())
}

/// The registry holds `image` under `faults/NAME:v1`, byte for byte (pulled back, verified).
fn assert_registry_has(s: &Setup, image: &Image, name: &str) {
    let sink = kiln_oci::MemoryBlobs::new();
    let reference =
        kiln_registry::Reference::parse(&format!("{}/faults/{name}:v1", s.reg.host())).unwrap();
    let pulled = kiln_registry::pull(
        &client(&s.reg.storage),
        &reference,
        &sink,
        &kiln_registry::PullOptions {
            platform: kiln_llb::Platform::host(),
            concurrency: 2,
            progress: &|_| {},
        },
    )
    .unwrap();
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert!(sink.get(&image.layer).is_some() && sink.get(&image.config).is_some());
}

#[test]
fn a_chunked_upload_resumes_from_the_upload_status_or_starts_over() {
    let Some(s) = Setup::start() else { return };
    let img = image(11);
    // 1 MiB chunks; the second PATCH is refused before any of it reaches the registry: the
    // client asks where the upload stands (GET on its location) and sends that chunk again.
    s.proxy
        .rule("PATCH", "/blobs/uploads/", Some(1), Fault::Status(503));
    let (result, events) = push_through(&s, &img, "chunked", 1 << 20);
    result.unwrap_or_else(|e| panic!("{e}: {events:?}"));
    assert_registry_has(&s, &img, "chunked");
    assert!(
        !s.proxy.requests("GET", "/blobs/uploads/").is_empty(),
        "{:?}",
        s.proxy.log()
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("resuming the upload at byte")),
        "{events:?}"
    );
    // One upload session each for the layer and the config: nothing started over.
    assert_eq!(s.proxy.requests("POST", "/blobs/uploads/").len(), 2);
    s.tally("503 on a chunk's PATCH", Outcome::Completed);

    // A chunk cut off after part of it reached the registry: distribution 2.x then refuses the
    // old upload (its state token names the old offset), so the client starts a new one.
    s.proxy.clear_rules();
    s.proxy.clear_log();
    let img = image(12);
    s.proxy.rule(
        "PATCH",
        "/blobs/uploads/",
        Some(1),
        Fault::ResetRequestAfter(300 << 10),
    );
    let (result, events) = push_through(&s, &img, "chunked2", 1 << 20);
    result.unwrap_or_else(|e| panic!("{e}: {events:?}"));
    assert_registry_has(&s, &img, "chunked2");
    assert!(events.iter().any(|e| e.contains("BlobRetry")), "{events:?}");
    s.tally("chunk's PATCH reset after 300 KiB", Outcome::Completed);
}

#[test]
fn a_monolithic_upload_cut_off_starts_a_new_upload_and_errors_are_clear() {
    let Some(s) = Setup::start() else { return };
    let img = image(13);
    s.proxy.rule(
        "PUT",
        "/blobs/uploads/",
        Some(1),
        Fault::ResetRequestAfter(1 << 20),
    );
    s.proxy
        .rule("PUT", "/blobs/uploads/", Some(1), Fault::Status(500));
    let (result, events) = push_through(&s, &img, "mono", u64::MAX);
    result.unwrap_or_else(|e| panic!("{e}: {events:?}"));
    assert_registry_has(&s, &img, "mono");
    s.tally(
        "monolithic PUT reset after 1 MiB, then a 500",
        Outcome::Completed,
    );

    // A registry that refuses every upload: a bounded number of tries, a clear error, and
    // the tag never appears (the manifest goes last).
    s.proxy.clear_rules();
    s.proxy.clear_log();
    s.proxy
        .rule("PUT", "/blobs/uploads/", None, Fault::Status(500));
    let img = image(17);
    let start = Instant::now();
    let (result, _) = push_through(&s, &img, "refused", u64::MAX);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("gave up on uploading blob") && err.contains("after 4 attempts"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(s.proxy.requests("PUT", "/manifests/").is_empty());
    s.tally("500 on every monolithic PUT", Outcome::RefusedClean);
}
