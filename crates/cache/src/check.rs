//! `kiln system check`: verify every blob against its digest and every record's references,
//! report what is wrong, and with `repair` drop what is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::PathBuf;

use crate::content::ContentStore;
use crate::digest::{CacheKey, Digest};
use crate::error::{Error, Result};
use crate::gc::{SnapshotRemover, manifest_children};
use crate::meta::{RawEntry, RawTable, ReadTxn};
use crate::records::{CacheRecord, ImageRef, Lease, SnapshotRecord};

/// One thing `check` found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The blob's content does not hash to its name.
    CorruptBlob { digest: Digest, actual: Digest },
    /// The blob could not be read.
    UnreadableBlob { digest: Digest, error: String },
    /// A file in the blobs directory whose name is not a digest.
    StrayFile { path: PathBuf },
    /// A metadata entry that cannot be decoded.
    UndecodableEntry { table: &'static str, name: String },
    /// A cache record's snapshot does not exist.
    RecordMissingSnapshot { key: CacheKey, snapshot: String },
    /// A cache record's layer blob is missing or corrupt.
    RecordBrokenBlob { key: CacheKey, digest: Digest },
    /// A snapshot record whose snapshot does not exist.
    SnapshotMissing { id: String },
    /// A blob an image needs (manifest, config, layer) is missing or corrupt.
    ImageBrokenBlob { name: String, digest: Digest },
    /// Snapshot existence could not be determined.
    SnapshotUnknown { id: String, error: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(
                    f,
                    "blob {digest} is corrupt: its content hashes to {actual}"
                )
            }
            Problem::UnreadableBlob { digest, error } => {
                write!(f, "blob {digest} cannot be read: {error}")
            }
            Problem::StrayFile { path } => {
                write!(
                    f,
                    "{} in the blob directory is not named by a digest",
                    path.display()
                )
            }
            Problem::UndecodableEntry { table, name } => {
                write!(f, "{table} entry {name:?} cannot be decoded")
            }
            Problem::RecordMissingSnapshot { key, snapshot } => {
                write!(
                    f,
                    "cache record {key} references missing snapshot {snapshot:?}"
                )
            }
            Problem::RecordBrokenBlob { key, digest } => {
                write!(
                    f,
                    "cache record {key} references blob {digest}, which is missing or corrupt"
                )
            }
            Problem::SnapshotMissing { id } => {
                write!(f, "snapshot record {id:?} has no snapshot on disk")
            }
            Problem::ImageBrokenBlob { name, digest } => {
                write!(
                    f,
                    "image {name} needs blob {digest}, which is missing or corrupt"
                )
            }
            Problem::SnapshotUnknown { id, error } => {
                write!(f, "cannot tell whether snapshot {id:?} exists: {error}")
            }
        }
    }
}

/// What `check` found and, with repair, did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// Temp files of writers killed mid-write. Harmless, so not problems; removed on repair.
    pub leftover_ingest: Vec<PathBuf>,
    pub blobs_checked: usize,
    pub records_checked: usize,
    pub snapshots_checked: usize,
    pub images_checked: usize,
    /// Whether the problems above were repaired (dropped).
    pub repaired: bool,
}

impl CheckReport {
    /// True when nothing is wrong (leftover ingest files do not count).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Entries to drop on repair: the table, the raw key and the raw value as read, so that an
/// entry rewritten since is left alone.
struct Doomed {
    table: RawTable,
    entry: RawEntry,
}

pub(crate) fn check(
    content: &ContentStore,
    read: impl FnOnce(&mut dyn FnMut(&ReadTxn) -> Result<()>) -> Result<()>,
    write_drops: impl FnOnce(Vec<(RawTable, RawEntry)>) -> Result<()>,
    snapshots: &dyn SnapshotRemover,
    repair: bool,
) -> Result<CheckReport> {
    let mut report = CheckReport {
        repaired: repair,
        ..CheckReport::default()
    };

    // 1. Blobs, outside any lock: hashing can take long and needs no metadata.
    let mut bad_blobs: BTreeSet<Digest> = BTreeSet::new();
    for info in content.list()? {
        report.blobs_checked += 1;
        match content.verify(&info.digest) {
            Ok(()) => {}
            // Removed by a concurrent prune since it was listed.
            Err(Error::BlobNotFound(_)) => {}
            Err(Error::CorruptBlob { digest, actual }) => {
                bad_blobs.insert(digest);
                report
                    .problems
                    .push(Problem::CorruptBlob { digest, actual });
                if repair {
                    content.delete(&digest)?;
                }
            }
            Err(e) => {
                bad_blobs.insert(info.digest);
                report.problems.push(Problem::UnreadableBlob {
                    digest: info.digest,
                    error: error_chain(&e),
                });
                if repair {
                    content.delete(&info.digest)?;
                }
            }
        }
    }
    for path in content.stray_files()? {
        report
            .problems
            .push(Problem::StrayFile { path: path.clone() });
        if repair {
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
        }
    }
    report.leftover_ingest = content.ingest_leftovers()?;
    if repair {
        for path in &report.leftover_ingest {
            let _ = fs::remove_file(path);
        }
    }
    let blob_ok = |d: &Digest| !bad_blobs.contains(d) && content.exists(d);

    // 2. Metadata, read in one transaction.
    let mut raw: BTreeMap<&'static str, Vec<RawEntry>> = BTreeMap::new();
    read(&mut |tx: &ReadTxn| {
        raw.insert("cache_records", tx.raw(RawTable::Records)?);
        raw.insert("snapshots", tx.raw(RawTable::Snapshots)?);
        raw.insert("image_refs", tx.raw(RawTable::Refs)?);
        raw.insert("leases", tx.raw(RawTable::Leases)?);
        Ok(())
    })?;
    let mut drops: Vec<Doomed> = Vec::new();
    let mut exists_cache: BTreeMap<String, bool> = BTreeMap::new();
    let mut snapshot_exists = |id: &str, problems: &mut Vec<Problem>| -> Option<bool> {
        if let Some(v) = exists_cache.get(id) {
            return Some(*v);
        }
        match snapshots.exists(id) {
            Ok(v) => {
                exists_cache.insert(id.to_owned(), v);
                Some(v)
            }
            Err(e) => {
                problems.push(Problem::SnapshotUnknown {
                    id: id.to_owned(),
                    error: error_chain(&*e),
                });
                None
            }
        }
    };

    for entry in raw.remove("cache_records").unwrap_or_default() {
        report.records_checked += 1;
        let key = <[u8; 32]>::try_from(entry.name.as_slice()).map(CacheKey);
        let rec = serde_json::from_slice::<CacheRecord>(&entry.value);
        let (Ok(key), Ok(rec)) = (key, rec) else {
            report.problems.push(Problem::UndecodableEntry {
                table: "cache_records",
                name: hex::encode(&entry.name),
            });
            drops.push(Doomed {
                table: RawTable::Records,
                entry,
            });
            continue;
        };
        let mut broken = false;
        if let Some(snap) = &rec.snapshot
            && snapshot_exists(snap, &mut report.problems) == Some(false)
        {
            report.problems.push(Problem::RecordMissingSnapshot {
                key,
                snapshot: snap.clone(),
            });
            broken = true;
        }
        for layer in &rec.layers {
            if !blob_ok(&layer.digest) {
                report.problems.push(Problem::RecordBrokenBlob {
                    key,
                    digest: layer.digest,
                });
                broken = true;
            }
        }
        if broken {
            drops.push(Doomed {
                table: RawTable::Records,
                entry,
            });
        }
    }

    for entry in raw.remove("snapshots").unwrap_or_default() {
        report.snapshots_checked += 1;
        let name = String::from_utf8_lossy(&entry.name).into_owned();
        if serde_json::from_slice::<SnapshotRecord>(&entry.value).is_err() {
            report.problems.push(Problem::UndecodableEntry {
                table: "snapshots",
                name,
            });
            drops.push(Doomed {
                table: RawTable::Snapshots,
                entry,
            });
            continue;
        }
        if snapshot_exists(&name, &mut report.problems) == Some(false) {
            report.problems.push(Problem::SnapshotMissing { id: name });
            drops.push(Doomed {
                table: RawTable::Snapshots,
                entry,
            });
        }
    }

    for entry in raw.remove("image_refs").unwrap_or_default() {
        report.images_checked += 1;
        let name = String::from_utf8_lossy(&entry.name).into_owned();
        let Ok(image) = serde_json::from_slice::<ImageRef>(&entry.value) else {
            report.problems.push(Problem::UndecodableEntry {
                table: "image_refs",
                name,
            });
            drops.push(Doomed {
                table: RawTable::Refs,
                entry,
            });
            continue;
        };
        let mut broken = false;
        let mut seen = BTreeSet::new();
        let mut queue = vec![image.target];
        while let Some(d) = queue.pop() {
            if !seen.insert(d) {
                continue;
            }
            if !blob_ok(&d) {
                report.problems.push(Problem::ImageBrokenBlob {
                    name: name.clone(),
                    digest: d,
                });
                broken = true;
                continue;
            }
            let (leaves, children) = manifest_children(content, &d);
            for leaf in leaves {
                if seen.insert(leaf) && !blob_ok(&leaf) {
                    report.problems.push(Problem::ImageBrokenBlob {
                        name: name.clone(),
                        digest: leaf,
                    });
                    broken = true;
                }
            }
            queue.extend(children);
        }
        if broken {
            drops.push(Doomed {
                table: RawTable::Refs,
                entry,
            });
        }
    }

    for entry in raw.remove("leases").unwrap_or_default() {
        if serde_json::from_slice::<Lease>(&entry.value).is_err() {
            report.problems.push(Problem::UndecodableEntry {
                table: "leases",
                name: String::from_utf8_lossy(&entry.name).into_owned(),
            });
            drops.push(Doomed {
                table: RawTable::Leases,
                entry,
            });
        }
    }

    if repair && !drops.is_empty() {
        write_drops(drops.into_iter().map(|d| (d.table, d.entry)).collect())?;
    }
    Ok(report)
}

/// An error and its causes on one line, for a report that keeps problems as text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
