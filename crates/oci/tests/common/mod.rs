//! Test fixtures: small real images (layer tars, configs, manifests) in an in-memory store.

#![allow(dead_code)]

use std::io::Read;

use kiln_llb::image::{History, ImageConfig};
use kiln_oci::{
    AssembledImage, Compression, Descriptor, ImageLayer, ImageOptions, MemoryBlobs, NamedImage,
    assemble, compress_layer,
};

/// An uncompressed layer tar holding `files` (path, content), deterministic headers.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn config() -> ImageConfig {
    let mut c = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    c.created = Some("2024-01-02T03:04:05Z".into());
    c.config.cmd = Some(vec!["/bin/hello".into()]);
    c.config.env = vec!["PATH=/usr/bin:/bin".into()];
    c.history = vec![
        History {
            created_by: "ADD hello /bin/".into(),
            ..History::default()
        },
        History {
            created_by: "RUN make".into(),
            ..History::default()
        },
    ];
    c
}

/// A two-layer image compressed with `compression`, stored in `store` (layers, config,
/// manifest). Returns the assembled image.
pub fn build_image(
    store: &MemoryBlobs,
    compression: Compression,
    seed: &str,
    options: &ImageOptions,
) -> AssembledImage {
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes())
        .collect();
    let tars = [
        layer_tar(&[("bin/hello", seed.as_bytes()), ("etc/motd", b"welcome\n")]),
        layer_tar(&[("data/big.bin", &big), ("data/seed", seed.as_bytes())]),
    ];
    let mut layers = Vec::new();
    for t in &tars {
        let (l, blob) = compress_layer(&t[..], compression, Vec::new()).unwrap();
        store.insert(blob);
        layers.push(ImageLayer::from(&l));
    }
    let image = assemble(&config(), &layers, options).unwrap();
    image.store(store).unwrap();
    image
}

pub fn named(name: &str, d: &Descriptor) -> NamedImage {
    NamedImage {
        name: Some(name.to_owned()),
        descriptor: d.clone(),
    }
}

/// The entries of a tar as (path, type, link target, data), in order.
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, Option<String>, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, kind, link, data)
        })
        .collect()
}

/// Writes entries back into a tar. Paths are written raw (no checks) so tests can build hostile
/// archives.
pub fn make_tar(entries: &[(String, tar::EntryType, Option<String>, Vec<u8>)]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (path, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        out.append(&h, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}
