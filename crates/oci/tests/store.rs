//! The cache crate's store behind the blob traits: images load into it verified (nothing stored
//! when rejected) and export from it.

mod common;

use common::*;
use kiln_oci::compress::Compression;
use kiln_oci::store::LeasedStore;
use kiln_oci::{
    BlobSource, ImageOptions, LoadOptions, MemoryBlobs, load_archive, write_oci_archive,
};

#[test]
fn load_into_the_content_store_and_export_from_it() {
    let src = MemoryBlobs::new();
    let image = build_image(
        &src,
        Compression::Zstd { level: 3 },
        "s",
        &ImageOptions::default(),
    );
    let images = [named("docker.io/library/app:1", &image.manifest_descriptor)];
    let archive = write_oci_archive(Vec::new(), &src, &images).unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = kiln_cache::Store::open(root.path()).unwrap();

    // A corrupt archive leaves the store empty.
    let mut bad = archive.clone();
    let n = bad.len() - 3000;
    bad[n] ^= 0x55;
    assert!(load_archive(&bad[..], store.content(), &LoadOptions::default()).is_err());
    assert!(store.content().list().unwrap().is_empty());

    let lease = store
        .create_lease(&kiln_cache::LeaseOptions::default())
        .unwrap();
    let sink = LeasedStore {
        store: &store,
        lease: &lease.id,
    };
    let loaded = load_archive(&archive[..], &sink, &LoadOptions::default()).unwrap();
    assert_eq!(
        loaded[0].descriptor.digest,
        image.manifest_descriptor.digest
    );
    assert_eq!(store.content().list().unwrap().len(), src.len());
    // Loading again is a no-op that still succeeds.
    load_archive(&archive[..], &sink, &LoadOptions::default()).unwrap();

    let again = write_oci_archive(Vec::new(), store.content(), &images).unwrap();
    assert_eq!(again, archive);
    let d = image.config_descriptor.digest;
    assert_eq!(
        store.content().read_verified(&d, 1 << 20).unwrap(),
        image.config
    );
}
