//! Image inputs of `kiln load`: an archive (OCI or docker, plain or compressed) staged and
//! verified, and a directory (an OCI layout or an unpacked docker archive) made from the input
//! tar beside a secret it must not read through a symlink. Whatever verifies must commit, and
//! every committed blob must match its digest (the sink checks).

use std::io::Read;
use std::path::Path;

use kiln_executor::snapshot::{ApplyOptions, WhiteoutMode, apply_layer};
use kiln_oci::{Digest, Import, LoadOptions, MemoryBlobs};

use super::scratch;

/// What the outside file holds: the test asserts it is never loaded unless the input has it.
const SECRET: &[u8] = b"kiln-fuzz-outside-secret-0123456";

fn options(staging: &Path) -> LoadOptions {
    LoadOptions {
        max_json_size: 1 << 20,
        max_entries: 4096,
        verify_diff_ids: true,
        staging_dir: Some(staging.to_path_buf()),
    }
}

fn commit(import: &Import) {
    let sink = MemoryBlobs::new();
    let images = import
        .commit(&sink)
        .unwrap_or_else(|e| panic!("a verified import failed to commit: {e}"));
    for image in &images {
        assert!(
            sink.get(&image.descriptor.digest).is_some(),
            "a loaded image's manifest was not committed"
        );
    }
    for (digest, size) in import.blobs() {
        let blob = sink.get(&digest).expect("every listed blob is committed");
        assert_eq!(blob.len() as u64, size);
    }
}

pub fn image_archive(data: &[u8]) {
    let dir = scratch();
    // The reader stops at 16 MiB whatever a compressed input expands to.
    if let Ok(import) = Import::from_archive(data.take(16 << 20), &options(dir.path())) {
        commit(&import);
    }
}

pub fn image_dir(data: &[u8]) {
    let dir = scratch();
    let outside = dir.path().join("outside");
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(outside.join("secret"), SECRET).unwrap();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        allow_devices: false,
        same_owner: false,
        parent_layers: Vec::new(),
    };
    // The input tar becomes the directory (kiln's own applier: symlinks stay symlinks).
    if apply_layer(data.take(16 << 20), &layout, &opts).is_err() {
        return;
    }
    let Ok(import) = Import::from_dir(&layout, &options(dir.path())) else {
        return;
    };
    let sink = MemoryBlobs::new();
    if import.commit(&sink).is_ok() && sink.get(&Digest::of(SECRET)).is_some() {
        assert!(
            data.windows(SECRET.len()).any(|w| w == SECRET),
            "a file outside the loaded directory was read through a link"
        );
    }
    commit(&import);
}
