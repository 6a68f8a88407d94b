//! The corrupt-archive table: every hostile or damaged input is rejected with a clear error, and
//! nothing at all reaches the store.

mod common;

use common::*;
use kiln_oci::compress::Compression;
use kiln_oci::digest::Digest;
use kiln_oci::{
    DockerArchiveOptions, ImageLayer, ImageOptions, LoadOptions, MemoryBlobs, assemble,
    compress_layer, load_archive, write_docker_archive, write_oci_archive,
};

type Entries = Vec<(String, tar::EntryType, Option<String>, Vec<u8>)>;

struct Fixture {
    oci: Entries,
    docker: Entries,
    config: Digest,
    layer: Digest,
}

fn fixture() -> Fixture {
    let store = MemoryBlobs::new();
    let image = build_image(
        &store,
        Compression::default(),
        "x",
        &ImageOptions::default(),
    );
    let images = [named("docker.io/library/app:1", &image.manifest_descriptor)];
    let oci = tar_entries(&write_oci_archive(Vec::new(), &store, &images).unwrap());
    let docker = tar_entries(
        &write_docker_archive(
            Vec::new(),
            &store,
            &images,
            &DockerArchiveOptions::default(),
        )
        .unwrap(),
    );
    let m: kiln_oci::Manifest = serde_json::from_slice(&image.manifest).unwrap();
    Fixture {
        oci,
        docker,
        config: m.config.digest,
        layer: m.layers[1].digest,
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn rejects(name: &str, bytes: &[u8], options: &LoadOptions, expect: &str) {
    let sink = MemoryBlobs::new();
    match load_archive(bytes, &sink, options) {
        Ok(_) => panic!("{name}: accepted"),
        Err(e) => {
            let msg = error_chain(&e);
            assert!(
                msg.contains(expect),
                "{name}: error {msg:?} does not mention {expect:?}"
            );
        }
    }
    assert!(sink.is_empty(), "{name}: {} blobs stored", sink.len());
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn edit(entries: &Entries, f: impl FnOnce(&mut Entries)) -> Vec<u8> {
    let mut e = entries.clone();
    f(&mut e);
    make_tar(&e)
}

fn entry<'a>(
    e: &'a mut Entries,
    path: &str,
) -> &'a mut (String, tar::EntryType, Option<String>, Vec<u8>) {
    e.iter_mut()
        .find(|x| x.0 == path)
        .unwrap_or_else(|| panic!("no entry {path}"))
}

#[test]
fn corrupt_oci_archives_are_rejected_and_nothing_is_stored() {
    let fx = fixture();
    let opts = LoadOptions::default();
    let layer = blob_name(&fx.layer);
    let config = blob_name(&fx.config);

    let flipped = edit(&fx.oci, |e| {
        let data = &mut entry(e, &layer).3;
        let n = data.len() / 2;
        data[n] ^= 0xff;
    });
    rejects(
        "wrong layer digest",
        &flipped,
        &opts,
        &format!("{layer} has digest"),
    );

    let short = edit(&fx.oci, |e| {
        entry(e, &layer).3.pop();
    });
    rejects("short blob", &short, &opts, "bytes, expected");

    let full = make_tar(&fx.oci);
    // The last mention of the layer's hex is its tar header; cut inside its data, then inside
    // the header itself.
    let pos = full
        .windows(64)
        .rposition(|w| w == fx.layer.hex().as_bytes())
        .unwrap();
    let header = pos - "blobs/sha256/".len();
    rejects(
        "truncated layer",
        &full[..header + 512 + 1000],
        &opts,
        "is truncated: 1000 of",
    );
    rejects(
        "truncated header",
        &full[..header + 100],
        &opts,
        "archive is truncated",
    );

    let dotdot = edit(&fx.oci, |e| {
        e.push((
            "../evil".into(),
            tar::EntryType::Regular,
            None,
            b"x".to_vec(),
        ))
    });
    rejects("../ entry", &dotdot, &opts, "unsafe path \"../evil\"");
    let nested = edit(&fx.oci, |e| {
        e.push((
            "blobs/../../evil".into(),
            tar::EntryType::Regular,
            None,
            b"x".to_vec(),
        ))
    });
    rejects("nested ../ entry", &nested, &opts, "unsafe path");
    let absolute = edit(&fx.oci, |e| {
        e.push((
            "/etc/evil".into(),
            tar::EntryType::Regular,
            None,
            b"x".to_vec(),
        ))
    });
    rejects(
        "absolute entry",
        &absolute,
        &opts,
        "unsafe path \"/etc/evil\"",
    );
    let escaping_link = edit(&fx.oci, |e| {
        e.push((
            "blobs/link".into(),
            tar::EntryType::Symlink,
            Some("../../etc/passwd".into()),
            vec![],
        ))
    });
    rejects("escaping symlink", &escaping_link, &opts, "unsafe path");
    let device = edit(&fx.oci, |e| {
        e.push(("dev".into(), tar::EntryType::Char, None, vec![]))
    });
    rejects(
        "device entry",
        &device,
        &opts,
        "which image archives do not contain",
    );
    let dup = edit(&fx.oci, |e| {
        let again = entry(e, &layer).clone();
        e.push(again);
    });
    rejects("duplicate entry", &dup, &opts, "two entries named");

    let no_config = edit(&fx.oci, |e| e.retain(|x| x.0 != config));
    rejects(
        "missing config",
        &no_config,
        &opts,
        &format!("references blob {}, which is missing", fx.config),
    );
    let no_layer = edit(&fx.oci, |e| e.retain(|x| x.0 != layer));
    rejects("missing layer", &no_layer, &opts, "which is missing");
    let no_index = edit(&fx.oci, |e| e.retain(|x| x.0 != "index.json"));
    rejects("missing index", &no_index, &opts, "not an image archive");

    let small = LoadOptions {
        max_json_size: 100,
        ..LoadOptions::default()
    };
    rejects(
        "oversized json",
        &full,
        &small,
        "more than the 100 bytes allowed",
    );
    let huge_index = edit(&fx.oci, |e| {
        entry(e, "index.json").3.extend(vec![b' '; 9 << 20])
    });
    rejects("oversized index.json", &huge_index, &opts, "index.json is");
    let few = LoadOptions {
        max_entries: 3,
        ..LoadOptions::default()
    };
    rejects("too many entries", &full, &few, "more than 3 entries");

    let garbage = edit(&fx.oci, |e| {
        entry(e, "index.json").3 = b"{not json".to_vec()
    });
    rejects("bad json", &garbage, &opts, "invalid json in index.json");
    rejects(
        "not a tar",
        &[b'x'; 2048],
        &opts,
        "failed to read the archive",
    );
    rejects("empty tar", &make_tar(&[]), &opts, "not an image archive");
}

#[test]
fn layer_that_does_not_match_its_diff_id_is_rejected() {
    // A well-formed image whose config lies about a layer's content.
    let store = MemoryBlobs::new();
    let tar = layer_tar(&[("f", b"real")]);
    let (l, blob) = compress_layer(&tar[..], Compression::default(), Vec::new()).unwrap();
    store.insert(blob);
    let mut layer = ImageLayer::from(&l);
    layer.diff_id = Digest::of(b"something else");
    let image = assemble(&config(), &[layer], &ImageOptions::default()).unwrap();
    image.store(&store).unwrap();
    let images = [named("app:1", &image.manifest_descriptor)];
    let archive = write_oci_archive(Vec::new(), &store, &images).unwrap();
    rejects(
        "oci diff id",
        &archive,
        &LoadOptions::default(),
        "decompresses to",
    );
    // Opting out of decompression accepts it (the digests themselves are right).
    let lax = LoadOptions {
        verify_diff_ids: false,
        ..LoadOptions::default()
    };
    assert!(load_archive(&archive[..], &MemoryBlobs::new(), &lax).is_ok());
    // The docker exporter refuses to write it in the first place.
    let err = write_docker_archive(
        Vec::new(),
        &store,
        &images,
        &DockerArchiveOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("decompresses to"), "{err}");
}

#[test]
fn corrupt_docker_archives_are_rejected_and_nothing_is_stored() {
    let fx = fixture();
    let opts = LoadOptions::default();
    // Read through manifest.json only (the pre-25 path).
    let legacy: Entries = fx
        .docker
        .iter()
        .filter(|e| e.0 != "index.json" && e.0 != "oci-layout")
        .cloned()
        .collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(&legacy.iter().find(|e| e.0 == "manifest.json").unwrap().3).unwrap();
    let layer_path = manifest[0]["Layers"][1].as_str().unwrap().to_owned();
    let config_path = manifest[0]["Config"].as_str().unwrap().to_owned();

    let flipped = edit(&legacy, |e| {
        let data = &mut entry(e, &layer_path).3;
        let n = data.len() / 2;
        data[n] ^= 0xff;
    });
    rejects("docker wrong layer digest", &flipped, &opts, "has digest");

    // Renamed to a legacy name, the layer has no digest in its path: the diff ID catches it.
    let renamed = edit(&legacy, |e| {
        let l = entry(e, &layer_path);
        l.0 = "abcd/layer.tar".into();
        let n = l.3.len() / 2;
        l.3[n] ^= 0xff;
        let m = entry(e, "manifest.json");
        m.3 = String::from_utf8(m.3.clone())
            .unwrap()
            .replace(&layer_path, "abcd/layer.tar")
            .into_bytes();
    });
    rejects(
        "docker legacy wrong diff id",
        &renamed,
        &opts,
        "decompresses to",
    );

    let no_config = edit(&legacy, |e| e.retain(|x| x.0 != config_path));
    rejects("docker missing config", &no_config, &opts, "has no config");
    let no_layer = edit(&legacy, |e| e.retain(|x| x.0 != layer_path));
    rejects("docker missing layer", &no_layer, &opts, "which is missing");
    let bad_config = edit(&legacy, |e| entry(e, &config_path).3.push(b' '));
    rejects("docker config digest", &bad_config, &opts, "has digest");
    let escape = edit(&legacy, |e| {
        let m = entry(e, "manifest.json");
        m.3 = String::from_utf8(m.3.clone())
            .unwrap()
            .replace(&config_path, "../../etc/passwd")
            .into_bytes();
    });
    rejects("docker manifest escaping", &escape, &opts, "unsafe path");
}

/// Random damage anywhere in an archive: loading never panics, and whenever it fails, nothing
/// was stored. (Damage in tar padding may go unnoticed; then the load succeeds with intact blobs.)
#[test]
fn random_byte_damage_never_panics_or_stores_partially() {
    let store = MemoryBlobs::new();
    let tars = [
        layer_tar(&[("a", b"one")]),
        layer_tar(&[("b", &[7u8; 3000][..])]),
    ];
    let mut layers = Vec::new();
    for t in &tars {
        let (l, blob) = compress_layer(&t[..], Compression::default(), Vec::new()).unwrap();
        store.insert(blob);
        layers.push(ImageLayer::from(&l));
    }
    let image = assemble(&config(), &layers, &ImageOptions::default()).unwrap();
    image.store(&store).unwrap();
    let images = [named("app:1", &image.manifest_descriptor)];
    let oci = write_oci_archive(Vec::new(), &store, &images).unwrap();
    let docker = write_docker_archive(
        Vec::new(),
        &store,
        &images,
        &DockerArchiveOptions::default(),
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut rejected) = (0, 0);
    for archive in [&oci, &docker] {
        for _ in 0..150 {
            let mut bad = archive.clone();
            let hits = 1 + next() % 3;
            for _ in 0..hits {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] ^= (next() % 255 + 1) as u8;
            }
            let sink = MemoryBlobs::new();
            match load_archive(&bad[..], &sink, &LoadOptions::default()) {
                Ok(images) => {
                    accepted += 1;
                    // Whatever was accepted is intact.
                    for d in sink.digests() {
                        assert_eq!(Digest::of(&sink.get(&d).unwrap()), d);
                    }
                    assert!(!images.is_empty());
                }
                Err(_) => {
                    rejected += 1;
                    assert!(sink.is_empty());
                }
            }
        }
    }
    assert!(
        rejected > 100,
        "only {rejected} of {} damaged archives rejected",
        accepted + rejected
    );
}

#[test]
fn layout_directory_with_a_symlink_out_of_it_is_rejected() {
    let store = MemoryBlobs::new();
    let image = build_image(
        &store,
        Compression::default(),
        "l",
        &ImageOptions::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    kiln_oci::write_oci_layout(
        &layout,
        &store,
        &[named("app:1", &image.manifest_descriptor)],
    )
    .unwrap();
    let outside = dir.path().join("outside.json");
    std::fs::rename(layout.join("index.json"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, layout.join("index.json")).unwrap();
    let sink = MemoryBlobs::new();
    let err = kiln_oci::load_dir(&layout, &sink, &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("unsafe path \"index.json\""),
        "{err}"
    );
    assert!(sink.is_empty());
}
