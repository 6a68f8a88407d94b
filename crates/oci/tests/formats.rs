//! Round trips and determinism: layouts, OCI archives and docker archives written by kiln read
//! back with the same digests, and equal inputs give equal bytes.

mod common;

use std::io::{Read, Write};

use common::*;
use kiln_oci::compress::{Compression, compress_layer, compress_layers};
use kiln_oci::digest::Digest;
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::media_type::{self, Flavor};
use kiln_oci::{
    BlobSource, DockerArchiveOptions, DockerLayers, Format, Import, LoadOptions, MemoryBlobs,
    load_archive, load_dir, write_docker_archive, write_oci_archive, write_oci_layout,
};
use kiln_oci::{ImageOptions, assemble};
use pretty_assertions::assert_eq;

fn sample_tar() -> Vec<u8> {
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    layer_tar(&[("a/file", &data), ("a/small", b"x")])
}

#[test]
fn compression_digests_match_an_independent_recomputation() {
    let tar = sample_tar();
    for c in [
        Compression::None,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let (l, blob) = compress_layer(&tar[..], c, Vec::new()).unwrap();
        assert_eq!(l.diff_id, Digest::of(&tar), "{c}");
        assert_eq!(l.uncompressed_size, tar.len() as u64);
        assert_eq!(l.digest, Digest::of(&blob), "{c}");
        assert_eq!(l.size, blob.len() as u64);
        // Decode with the libraries directly, not through kiln's reader.
        let mut plain = Vec::new();
        match c {
            Compression::None => plain = blob.clone(),
            Compression::Gzip { .. } => {
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                // Deterministic header: mtime zero, no file name.
                assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
                assert_eq!(blob[3] & 0x08, 0, "FNAME flag set");
            }
            Compression::Zstd { .. } => plain = zstd::decode_all(&blob[..]).unwrap(),
        }
        assert_eq!(plain, tar, "{c}");
        let (again, blob2) = compress_layer(&tar[..], c, Vec::new()).unwrap();
        assert_eq!((again, blob2), (l, blob), "{c} is not deterministic");
    }
}

#[test]
fn parallel_compression_returns_results_in_order() {
    let tars: Vec<Vec<u8>> = (0..5)
        .map(|i| layer_tar(&[("f", format!("layer {i}").as_bytes())]))
        .collect();
    let jobs = tars.iter().map(|t| (&t[..], Vec::new())).collect();
    let results = compress_layers(jobs, Compression::Zstd { level: 3 });
    for (t, r) in tars.iter().zip(results) {
        let (l, blob) = r.unwrap();
        assert_eq!(l.diff_id, Digest::of(t));
        assert_eq!(l.digest, Digest::of(&blob));
    }
}

#[test]
fn assembly_is_deterministic_and_sets_diff_ids_and_created() {
    let a = build_image(
        &MemoryBlobs::new(),
        Compression::default(),
        "s",
        &ImageOptions::default(),
    );
    let b = build_image(
        &MemoryBlobs::new(),
        Compression::default(),
        "s",
        &ImageOptions::default(),
    );
    assert_eq!(a, b);
    let m: manifest::Manifest = serde_json::from_slice(&a.manifest).unwrap();
    assert_eq!(m.media_type, media_type::OCI_MANIFEST);
    assert_eq!(
        m.annotations[manifest::ANNOTATION_CREATED],
        "2024-01-02T03:04:05Z"
    );
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == media_type::OCI_LAYER_GZIP)
    );
    let cfg: kiln_llb::image::ImageConfig = serde_json::from_slice(&a.config).unwrap();
    assert_eq!(cfg.rootfs.diff_ids.len(), 2);
    assert_eq!(
        a.manifest_descriptor
            .platform
            .as_ref()
            .unwrap()
            .architecture,
        "amd64"
    );

    let docker = ImageOptions {
        flavor: Flavor::Docker,
        ..ImageOptions::default()
    };
    let d = build_image(&MemoryBlobs::new(), Compression::default(), "s", &docker);
    let m: manifest::Manifest = serde_json::from_slice(&d.manifest).unwrap();
    assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
    assert_eq!(m.config.media_type, media_type::DOCKER_CONFIG);
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == media_type::DOCKER_LAYER_GZIP)
    );
    assert!(m.annotations.is_empty());
    // Same config bytes either way: only the descriptors' media types differ.
    assert_eq!(d.config, a.config);

    let (l, _) = compress_layer(&b"x"[..], Compression::Zstd { level: 3 }, Vec::new()).unwrap();
    let err = assemble(&config(), &[(&l).into()], &docker).unwrap_err();
    assert!(
        err.to_string().contains("cannot describe zstd layer"),
        "{err}"
    );
}

fn two_images(store: &MemoryBlobs) -> Vec<kiln_oci::NamedImage> {
    let a = build_image(
        store,
        Compression::default(),
        "one",
        &ImageOptions::default(),
    );
    let b = build_image(
        store,
        Compression::Zstd { level: 3 },
        "two",
        &ImageOptions::default(),
    );
    vec![
        named("docker.io/library/app:1", &a.manifest_descriptor),
        named("localhost:5000/other:v2", &b.manifest_descriptor),
    ]
}

fn assert_same_blobs(from: &MemoryBlobs, to: &MemoryBlobs, images: &[kiln_oci::NamedImage]) {
    for d in kiln_oci::export::reachable_blobs(from, images).unwrap() {
        assert_eq!(
            to.get(&d.digest).as_deref(),
            from.get(&d.digest).as_deref(),
            "blob {}",
            d.digest
        );
    }
}

#[test]
fn oci_layout_round_trip_keeps_every_digest() {
    let store = MemoryBlobs::new();
    let images = two_images(&store);
    let dir = tempfile::tempdir().unwrap();
    let index = write_oci_layout(dir.path(), &store, &images).unwrap();
    assert_eq!(
        index.manifests[0].annotations[manifest::ANNOTATION_REF_NAME],
        "1"
    );
    assert_eq!(
        index.manifests[0].annotations[manifest::ANNOTATION_CONTAINERD_NAME],
        "docker.io/library/app:1"
    );
    assert_eq!(
        std::fs::read(dir.path().join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );

    let loaded_into = MemoryBlobs::new();
    let loaded = load_dir(dir.path(), &loaded_into, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].names, ["docker.io/library/app:1"]);
    assert_eq!(loaded[0].ref_name.as_deref(), Some("1"));
    assert_eq!(loaded[1].names, ["localhost:5000/other:v2"]);
    for (l, i) in loaded.iter().zip(&images) {
        assert_eq!(l.descriptor.digest, i.descriptor.digest);
    }
    assert_same_blobs(&store, &loaded_into, &images);
}

#[test]
fn oci_archive_is_deterministic_and_round_trips_plain_and_gzipped() {
    let store = MemoryBlobs::new();
    let images = two_images(&store);
    let a = write_oci_archive(Vec::new(), &store, &images).unwrap();
    let b = write_oci_archive(Vec::new(), &store, &images).unwrap();
    assert_eq!(a, b, "archives differ");
    let entries = tar_entries(&a);
    assert_eq!(entries[0].0, "oci-layout");
    assert_eq!(entries[1].0, "index.json");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&a).unwrap();
    let gz = gz.finish().unwrap();
    for bytes in [&a, &gz] {
        let into = MemoryBlobs::new();
        let loaded = load_archive(&bytes[..], &into, &LoadOptions::default()).unwrap();
        assert_eq!(
            loaded
                .iter()
                .map(|l| l.descriptor.digest)
                .collect::<Vec<_>>(),
            [images[0].descriptor.digest, images[1].descriptor.digest]
        );
        assert_same_blobs(&store, &into, &images);
    }

    // Rewriting what was loaded gives the same archive again.
    let import = Import::from_archive(&a[..], &LoadOptions::default()).unwrap();
    assert_eq!(import.format(), Format::OciLayout);
    let again = write_oci_archive(Vec::new(), &import, &images).unwrap();
    assert_eq!(again, a);
}

#[test]
fn docker_archive_round_trip_uncompressed_layers() {
    let store = MemoryBlobs::new();
    let images = two_images(&store);
    let opts = DockerArchiveOptions::default();
    let a = write_docker_archive(Vec::new(), &store, &images, &opts).unwrap();
    assert_eq!(
        a,
        write_docker_archive(Vec::new(), &store, &images, &opts).unwrap(),
        "not deterministic"
    );

    let entries = tar_entries(&a);
    let manifest_json = &entries.iter().find(|e| e.0 == "manifest.json").unwrap().3;
    let m: serde_json::Value = serde_json::from_slice(manifest_json).unwrap();
    assert_eq!(m[0]["RepoTags"][0], "app:1");
    assert_eq!(m[1]["RepoTags"][0], "localhost:5000/other:v2");
    let repositories = &entries.iter().find(|e| e.0 == "repositories").unwrap().3;
    let r: serde_json::Value = serde_json::from_slice(repositories).unwrap();
    assert!(r["app"]["1"].is_string());

    // Layers in the archive are plain tars whose digests are the diff IDs.
    for image in &images {
        let Parsed::Manifest(orig) = manifest::parse(
            &store
                .read_verified(&image.descriptor.digest, 1 << 20)
                .unwrap(),
            "",
            "m",
        )
        .unwrap() else {
            panic!()
        };
        let cfg: kiln_llb::image::ImageConfig =
            serde_json::from_slice(&store.get(&orig.config.digest).unwrap()).unwrap();
        for diff_id in &cfg.rootfs.diff_ids {
            let path = format!("blobs/sha256/{}", diff_id.hex());
            let e = entries
                .iter()
                .find(|e| e.0 == path)
                .unwrap_or_else(|| panic!("no {path}"));
            assert_eq!(Digest::of(&e.3), *diff_id);
        }
    }

    // Both ways in: through index.json (docker 25+ layout) and through manifest.json alone.
    let into = MemoryBlobs::new();
    let loaded = load_archive(&a[..], &into, &LoadOptions::default()).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/app:1"]);
    let legacy: Vec<_> = entries
        .into_iter()
        .filter(|e| e.0 != "index.json" && e.0 != "oci-layout")
        .collect();
    let legacy = make_tar(&legacy);
    let import = Import::from_archive(&legacy[..], &LoadOptions::default()).unwrap();
    assert_eq!(import.format(), Format::DockerArchive);
    assert_eq!(import.images()[0].names, ["app:1"]);
    // Same config either way, and the synthesized manifest is a valid OCI manifest.
    for (a, b) in import.images().iter().zip(&loaded) {
        let cfg_of = |src: &dyn BlobSource, d: &Digest| {
            let Parsed::Manifest(m) =
                manifest::parse(&src.read_verified(d, 1 << 20).unwrap(), "", "m").unwrap()
            else {
                panic!()
            };
            m.config.digest
        };
        assert_eq!(
            cfg_of(&import, &a.descriptor.digest),
            cfg_of(&into, &b.descriptor.digest)
        );
    }
}

#[test]
fn docker_archive_with_layers_as_stored_keeps_manifest_digests() {
    let store = MemoryBlobs::new();
    let images = two_images(&store);
    let opts = DockerArchiveOptions {
        layers: DockerLayers::AsStored,
        ..DockerArchiveOptions::default()
    };
    let a = write_docker_archive(Vec::new(), &store, &images, &opts).unwrap();
    let into = MemoryBlobs::new();
    let loaded = load_archive(&a[..], &into, &LoadOptions::default()).unwrap();
    assert_eq!(loaded[0].descriptor.digest, images[0].descriptor.digest);
    assert_same_blobs(&store, &into, &images);
}

#[test]
fn legacy_docker_save_layout_with_symlinked_layers_loads() {
    // `docker save` before 25: <id>/layer.tar, <id>/json, <config-hex>.json, and a layer shared
    // by two ids stored once with a symlink.
    let l1 = layer_tar(&[("a", b"1")]);
    let l2 = layer_tar(&[("b", b"2")]);
    let mut cfg = config();
    cfg.rootfs.diff_ids = vec![Digest::of(&l1), Digest::of(&l2), Digest::of(&l1)];
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": ["busybox:latest"],
        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"],
    }]);
    let reg = tar::EntryType::Regular;
    let entries = vec![
        ("aaaa/".to_owned(), tar::EntryType::Directory, None, vec![]),
        ("aaaa/layer.tar".to_owned(), reg, None, l1.clone()),
        ("aaaa/VERSION".to_owned(), reg, None, b"1.0".to_vec()),
        ("bbbb/layer.tar".to_owned(), reg, None, l2),
        (
            "cccc/layer.tar".to_owned(),
            tar::EntryType::Symlink,
            Some("../aaaa/layer.tar".to_owned()),
            vec![],
        ),
        (cfg_name.clone(), reg, None, cfg.clone()),
        (
            "manifest.json".to_owned(),
            reg,
            None,
            serde_json::to_vec(&manifest).unwrap(),
        ),
        (
            "repositories".to_owned(),
            reg,
            None,
            br#"{"busybox":{"latest":"bbbb"}}"#.to_vec(),
        ),
    ];
    let into = MemoryBlobs::new();
    let loaded = load_archive(&make_tar(&entries)[..], &into, &LoadOptions::default()).unwrap();
    assert_eq!(loaded[0].names, ["busybox:latest"]);
    let Parsed::Manifest(m) = manifest::parse(
        &into
            .read_verified(&loaded[0].descriptor.digest, 1 << 20)
            .unwrap(),
        "",
        "m",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(m.config.digest, Digest::of(&cfg));
    assert_eq!(
        m.layers.iter().map(|l| l.digest).collect::<Vec<_>>(),
        [
            Digest::of(&l1),
            Digest::of(&layer_tar(&[("b", b"2")])),
            Digest::of(&l1)
        ]
    );
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == media_type::OCI_LAYER)
    );
    assert_eq!(into.get(&Digest::of(&l1)).as_deref(), Some(&l1[..]));
}

#[test]
fn layer_writer_gives_the_same_bytes_as_compress_layer_whatever_the_write_pattern() {
    let tar = sample_tar();
    for c in [
        Compression::None,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let (expected, expected_blob) = compress_layer(&tar[..], c, Vec::new()).unwrap();
        let mut w = kiln_oci::LayerWriter::new(c, Vec::new()).unwrap();
        // Odd chunk sizes and flushes in between, as a buffered tar producer would do.
        for chunk in tar.chunks(7919) {
            w.write_all(chunk).unwrap();
            w.flush().unwrap();
        }
        let (l, blob) = w.finish().unwrap();
        assert_eq!((l, blob), (expected, expected_blob), "{c}");
    }
}

#[test]
fn resolve_reads_back_config_and_layers_and_picks_platforms() {
    use kiln_oci::manifest::Platform;
    let store = MemoryBlobs::new();
    let image = build_image(
        &store,
        Compression::default(),
        "r",
        &ImageOptions::default(),
    );
    let resolved = kiln_oci::resolve(&store, &image.manifest_descriptor, None).unwrap();
    assert_eq!(
        resolved.config.config.cmd.as_deref(),
        Some(&["/bin/hello".to_owned()][..])
    );
    assert_eq!(resolved.layers.len(), 2);
    // Rebuilding from what was resolved gives the very same image.
    let again = assemble(&resolved.config, &resolved.layers, &ImageOptions::default()).unwrap();
    assert_eq!(
        again.manifest_descriptor.digest,
        image.manifest_descriptor.digest
    );

    let mut arm = config();
    arm.architecture = "arm64".into();
    arm.variant = Some("v8".into());
    let arm_image = assemble(&arm, &resolved.layers, &ImageOptions::default()).unwrap();
    arm_image.store(&store).unwrap();
    let (index, index_desc) = kiln_oci::assemble_index(
        &[
            image.manifest_descriptor.clone(),
            arm_image.manifest_descriptor.clone(),
        ],
        Flavor::Oci,
    );
    store.insert(index);
    let want = |arch: &str| Platform {
        architecture: arch.into(),
        os: "linux".into(),
        os_version: None,
        os_features: vec![],
        variant: None,
    };
    let r = kiln_oci::resolve(&store, &index_desc, Some(&want("arm64"))).unwrap();
    assert_eq!(
        r.manifest_descriptor.digest,
        arm_image.manifest_descriptor.digest
    );
    let err = kiln_oci::resolve(&store, &index_desc, Some(&want("s390x"))).unwrap_err();
    assert!(
        err.to_string()
            .contains("it has: linux/amd64, linux/arm64/v8"),
        "{err}"
    );
    assert!(kiln_oci::resolve(&store, &index_desc, None).is_err());
}
