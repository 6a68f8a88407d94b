//! An OCI image archive read into what a user of the image sees: its config and the final
//! filesystem (every layer applied in order, whiteouts honoured), and the differences between
//! two such images, for the differential tests against BuildKit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What one path of the final filesystem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file (hard links are resolved to their target's content).
    File {
        sha256: String,
        size: u64,
    },
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

impl Kind {
    fn label(&self) -> String {
        match self {
            Kind::Dir => "directory".into(),
            Kind::File { size, sha256 } => format!("file ({size} bytes, sha256 {})", &sha256[..12]),
            Kind::Symlink(t) => format!("symlink -> {t}"),
            Kind::Char(a, b) => format!("char device {a}:{b}"),
            Kind::Block(a, b) => format!("block device {a}:{b}"),
            Kind::Fifo => "fifo".into(),
        }
    }
}

/// One path of the final filesystem.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// Permission and special bits (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Which layer last wrote it (whiteouts of an opaque directory spare the current layer).
    layer: usize,
}

/// An image as a user sees it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image config document (`config`, `history`, `rootfs`, ...).
    pub config: Value,
    /// Paths relative to `/` (no leading slash); the root itself is left out.
    pub fs: BTreeMap<String, Node>,
    pub layers: usize,
}

impl Image {
    /// Reads an OCI image layout archive (the first manifest of its index).
    pub fn from_oci_archive(path: &Path) -> Result<Image, String> {
        let blobs = read_archive_blobs(path)?;
        let index: Value = json_blob(&blobs, "index.json")?;
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .ok_or("index.json has no manifest")?;
        let manifest = json_blob(&blobs, &blob_name(manifest_digest))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or("manifest has no config")?;
        let config = json_blob(&blobs, &blob_name(config_digest))?;
        let mut fs = BTreeMap::new();
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        for (n, layer) in layers.iter().enumerate() {
            let digest = layer["digest"].as_str().ok_or("layer without digest")?;
            let bytes = blobs
                .get(&blob_name(digest))
                .ok_or_else(|| format!("layer {digest} missing from the archive"))?;
            apply_layer(&mut fs, bytes, n)?;
        }
        Ok(Image {
            config,
            fs,
            layers: layers.len(),
        })
    }

    /// The file's content, if `path` is a regular file (for assertions on one file).
    pub fn file(&self, path: &str) -> Option<&Node> {
        self.fs.get(path.trim_start_matches('/'))
    }
}

fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn read_archive_blobs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
        out.insert(name, data);
    }
    Ok(out)
}

fn json_blob(blobs: &BTreeMap<String, Vec<u8>>, name: &str) -> Result<Value, String> {
    let bytes = blobs
        .get(name)
        .ok_or_else(|| format!("{name} missing from the archive"))?;
    serde_json::from_slice(bytes).map_err(|e| format!("{name}: {e}"))
}

fn decompressed(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("gunzip a layer: {e}"))?;
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        out = zstd::stream::decode_all(bytes).map_err(|e| format!("unzstd a layer: {e}"))?;
    } else {
        out = bytes.to_vec();
    }
    Ok(out)
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

fn remove_tree(fs: &mut BTreeMap<String, Node>, path: &str, keep_layer: Option<usize>) {
    let prefix = format!("{path}/");
    let doomed: Vec<String> = fs
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, n)| Some(n.layer) != keep_layer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        fs.remove(&k);
    }
}

fn apply_layer(fs: &mut BTreeMap<String, Node>, blob: &[u8], layer: usize) -> Result<(), String> {
    let data = decompressed(blob)?;
    let mut archive = tar::Archive::new(data.as_slice());
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("layer {layer}: {e}"))?;
        let path = normalize(&entry.path().map_err(|e| e.to_string())?.to_string_lossy());
        if path.is_empty() || path == "." {
            continue;
        }
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b.to_string()),
            None => (String::new(), path.clone()),
        };
        if base == ".wh..wh..opq" {
            remove_tree(fs, &dir, Some(layer));
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let victim = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            fs.remove(&victim);
            remove_tree(fs, &victim, None);
            continue;
        }
        let header = entry.header().clone();
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions().map_err(|e| e.to_string())? {
            for ext in exts {
                let ext = ext.map_err(|e| e.to_string())?;
                if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        let node_meta = |kind: Kind| Node {
            kind,
            mode: header.mode().unwrap_or(0) & 0o7777,
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            mtime: header.mtime().unwrap_or(0),
            xattrs: xattrs.clone(),
            layer,
        };
        let dev = || {
            (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            )
        };
        let node = match header.entry_type() {
            tar::EntryType::Directory => node_meta(Kind::Dir),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                node_meta(Kind::Symlink(target))
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .map(|t| normalize(&t.to_string_lossy()))
                    .unwrap_or_default();
                let Some(linked) = fs.get(&target).cloned() else {
                    return Err(format!(
                        "layer {layer}: hard link {path} to missing {target}"
                    ));
                };
                Node { layer, ..linked }
            }
            tar::EntryType::Char => {
                let (a, b) = dev();
                node_meta(Kind::Char(a, b))
            }
            tar::EntryType::Block => {
                let (a, b) = dev();
                node_meta(Kind::Block(a, b))
            }
            tar::EntryType::Fifo => node_meta(Kind::Fifo),
            t if t.is_file() => {
                let mut content = Vec::new();
                entry
                    .read_to_end(&mut content)
                    .map_err(|e| format!("layer {layer}: read {path}: {e}"))?;
                node_meta(Kind::File {
                    sha256: hex::encode(Sha256::digest(&content)),
                    size: content.len() as u64,
                })
            }
            // PAX/GNU metadata records never reach here (the tar crate folds them in).
            _ => continue,
        };
        // A non-directory replaces a whole subtree; a directory over a directory keeps its
        // children.
        let replaces_dir = fs.get(&path).is_some_and(|old| old.kind == Kind::Dir);
        if replaces_dir && node.kind != Kind::Dir {
            remove_tree(fs, &path, None);
        }
        fs.insert(path, node);
    }
    Ok(())
}

/// What to compare between two images.
#[derive(Debug, Clone, Copy)]
pub struct Compare {
    /// mtimes are compared only for entries whose reference mtime is before this instant
    /// (seconds since the epoch): later ones were set by the reference builder at build time
    /// (a RUN touching a directory, a file created by COPY from a heredoc) and differ on every
    /// build of either builder.
    pub build_started: u64,
}

/// Every difference between `ours` and `reference`, as readable lines (empty when identical).
pub fn differences(ours: &Image, reference: &Image, cmp: Compare) -> Vec<String> {
    let mut out = Vec::new();
    config_differences(&ours.config, &reference.config, &mut out);
    if ours.layers != reference.layers {
        out.push(format!(
            "layers: kiln has {}, buildkit has {}",
            ours.layers, reference.layers
        ));
    }
    let paths: BTreeSet<&String> = ours.fs.keys().chain(reference.fs.keys()).collect();
    for path in paths {
        match (ours.fs.get(path), reference.fs.get(path)) {
            (Some(a), None) => out.push(format!("/{path}: only in kiln ({})", a.kind.label())),
            (None, Some(b)) => out.push(format!("/{path}: only in buildkit ({})", b.kind.label())),
            (Some(a), Some(b)) => node_differences(path, a, b, cmp, &mut out),
            (None, None) => {}
        }
    }
    out
}

fn node_differences(path: &str, a: &Node, b: &Node, cmp: Compare, out: &mut Vec<String>) {
    if a.kind != b.kind {
        out.push(format!(
            "/{path}: kiln has {}, buildkit has {}",
            a.kind.label(),
            b.kind.label()
        ));
    }
    if a.mode != b.mode {
        out.push(format!(
            "/{path}: mode {:04o} (kiln) vs {:04o} (buildkit)",
            a.mode, b.mode
        ));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        out.push(format!(
            "/{path}: owner {}:{} (kiln) vs {}:{} (buildkit)",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if b.mtime < cmp.build_started && a.mtime != b.mtime {
        out.push(format!(
            "/{path}: mtime {} (kiln) vs {} (buildkit, kept from its source)",
            a.mtime, b.mtime
        ));
    }
    if a.xattrs != b.xattrs {
        out.push(format!(
            "/{path}: xattrs {:?} (kiln) vs {:?} (buildkit)",
            a.xattrs.keys().collect::<Vec<_>>(),
            b.xattrs.keys().collect::<Vec<_>>()
        ));
    }
}

/// The config fields a user sees. Empty values (`null`, `""`, `[]`, `{}`) count as absent,
/// as Docker treats them.
fn config_differences(a: &Value, b: &Value, out: &mut Vec<String>) {
    for key in ["architecture", "os", "variant", "author"] {
        if nonempty(&a[key]) != nonempty(&b[key]) {
            out.push(format!(
                "config {key}: {} (kiln) vs {} (buildkit)",
                a[key], b[key]
            ));
        }
    }
    let fields = |v: &Value| -> BTreeMap<String, Value> {
        v["config"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, v)| {
                        !matches!(k.as_str(), "Hostname" | "Image") && nonempty(v).is_some()
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (fa, fb) = (fields(a), fields(b));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    for key in keys {
        if fa.get(key) != fb.get(key) {
            out.push(format!(
                "config {key}: {} (kiln) vs {} (buildkit)",
                fa.get(key).unwrap_or(&Value::Null),
                fb.get(key).unwrap_or(&Value::Null)
            ));
        }
    }
    let history = |v: &Value| -> Vec<(String, bool, String)> {
        v["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|e| {
                        (
                            e["created_by"].as_str().unwrap_or("").to_string(),
                            e["empty_layer"].as_bool().unwrap_or(false),
                            e["comment"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ha, mut hb) = (history(a), history(b));
    // BuildKit 0.24 writes `EXPOSE` history as a Go struct with a pointer in it
    // (`EXPOSE &{[...] 0xc000...}`, fixed upstream after 0.24 to the port list): no builder can
    // match that, so such an entry stands for whatever `EXPOSE [...]` kiln wrote.
    for (i, entry) in hb.iter_mut().enumerate() {
        if entry.0.starts_with("EXPOSE &{")
            && let Some(ours) = ha.get(i).filter(|h| h.0.starts_with("EXPOSE ["))
        {
            entry.0 = ours.0.clone();
        }
    }
    if ha != hb {
        let n = ha.len().max(hb.len());
        for i in 0..n {
            if ha.get(i) != hb.get(i) {
                out.push(format!(
                    "history[{i}]: {:?} (kiln) vs {:?} (buildkit)",
                    ha.get(i),
                    hb.get(i)
                ));
            }
        }
    }
}

fn nonempty(v: &Value) -> Option<&Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        _ => Some(v),
    }
}
