//! Garbage collection (`kiln builder prune`) and disk usage (`kiln system df`).
//!
//! What is alive, from the roots down:
//! - image refs keep their manifest or index blob, and through it configs, layers and child
//!   manifests (the JSON is parsed just enough to find descriptors);
//! - unexpired leases keep the blobs and snapshots listed in them;
//! - cache records keep their snapshot and layer blobs;
//! - a kept snapshot keeps its parent, recursively.
//!
//! Prune removes cache records (least recently used first), then everything no root keeps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::content::{BlobInfo, ContentStore};
use crate::digest::{CacheKey, Digest};
use crate::error::Result;
use crate::meta::{WriteTxn, lease_expired};
use crate::records::{CacheRecord, ImageRef, Lease, SnapshotRecord, Timestamp};

/// The error type snapshot operations report through [`SnapshotRemover`].
pub type SnapshotError = Box<dyn std::error::Error + Send + Sync>;

/// Access to the snapshots on disk, which belong to the executor's snapshotter.
///
/// This trait is a cycle breaker: `cache` may not depend on `executor`, so the engine
/// implements it with the executor's snapshotter and passes it to [`crate::Store::prune`] and
/// [`crate::Store::check`].
pub trait SnapshotRemover {
    /// Whether snapshot `id` exists on disk.
    fn exists(&self, id: &str) -> Result<bool, SnapshotError>;
    /// Removes snapshot `id` and its data. Removing a missing snapshot is not an error.
    fn remove(&self, id: &str) -> Result<(), SnapshotError>;
    /// Every snapshot id on disk, so that snapshots left unrecorded by a killed build are
    /// collected too.
    fn list(&self) -> Result<Vec<String>, SnapshotError>;
    /// The parent of snapshot `id` according to the snapshotter. Consulted for snapshots the
    /// store has no [`crate::SnapshotRecord`] of, so that a live snapshot's parent is kept even
    /// if it was never recorded. The default knows none.
    fn parent(&self, id: &str) -> Result<Option<String>, SnapshotError> {
        let _ = id;
        Ok(None)
    }
}

/// What `prune` may remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Also remove cache records whose layers an image still uses. Without it only dangling
    /// records (no layer in any image) are candidates.
    pub all: bool,
    /// Stop removing records once the build cache is at most this many bytes.
    /// `None` removes every candidate.
    pub keep_storage: Option<u64>,
    /// Only records unused for at least this long are candidates.
    pub until: Option<Duration>,
}

/// What `prune` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records_removed: Vec<(CacheKey, CacheRecord)>,
    pub snapshots_removed: Vec<String>,
    pub blobs_removed: Vec<BlobInfo>,
    pub leases_expired: Vec<String>,
    /// Bytes freed: removed blobs plus the recorded sizes of removed snapshots.
    pub reclaimed: u64,
    /// Snapshots that could not be removed (they stay as unrecorded orphans for the next prune).
    pub errors: Vec<String>,
}

/// One line of `kiln system df`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageLine {
    pub count: u64,
    pub bytes: u64,
    /// Bytes that prune could free (see each field of [`DiskUsage`] for which prune).
    pub reclaimable: u64,
}

/// Disk usage of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Image refs; bytes of the distinct blobs they reach. Not reclaimable by prune (`rmi` is).
    pub images: UsageLine,
    /// Cache records; bytes of the snapshots (with parents) and layer blobs they reach.
    /// Reclaimable: what `prune --all` would free (not also kept by an image or a lease).
    pub build_cache: UsageLine,
    /// Recorded snapshots; reclaimable: those no image-independent root (lease) keeps.
    pub snapshots: UsageLine,
    /// Every blob on disk; reclaimable: blobs nothing references, which any prune removes.
    pub blobs: UsageLine,
}

/// Everything GC needs, read in one transaction.
pub(crate) struct World {
    pub(crate) records: Vec<(CacheKey, CacheRecord)>,
    pub(crate) snapshots: BTreeMap<String, SnapshotRecord>,
    pub(crate) live_leases: Vec<Lease>,
    pub(crate) expired_leases: Vec<String>,
    pub(crate) image_refs: usize,
    pub(crate) image_blobs: BTreeSet<Digest>,
    pub(crate) blobs: BTreeMap<Digest, u64>,
    /// Parents of snapshots on disk without a snapshot record, from [`SnapshotRemover::parent`].
    pub(crate) disk_parents: HashMap<String, String>,
}

impl World {
    pub(crate) fn load(
        tx: &WriteTxnOrRead<'_>,
        content: &ContentStore,
        now: Timestamp,
    ) -> Result<World> {
        let (records, snapshots, leases, refs) = match tx {
            WriteTxnOrRead::Write(tx) => (
                tx.records()?,
                tx.snapshots()?,
                tx.leases()?,
                tx.image_refs()?,
            ),
            WriteTxnOrRead::Read(tx) => (
                tx.records()?,
                tx.snapshots()?,
                tx.leases()?,
                tx.image_refs()?,
            ),
        };
        let (expired, live): (Vec<Lease>, Vec<Lease>) =
            leases.into_iter().partition(|l| lease_expired(l, now));
        let blobs = content
            .list()?
            .into_iter()
            .map(|b| (b.digest, b.size))
            .collect();
        Ok(World {
            records,
            snapshots: snapshots.into_iter().collect(),
            live_leases: live,
            expired_leases: expired.into_iter().map(|l| l.id).collect(),
            image_refs: refs.len(),
            disk_parents: HashMap::new(),
            image_blobs: image_closure(content, &refs),
            blobs,
        })
    }

    /// The parent of snapshot `id`: from its record, else from the snapshotter.
    fn parent_of(&self, id: &str) -> Option<String> {
        match self.snapshots.get(id) {
            Some(s) => s.parent.clone(),
            None => self.disk_parents.get(id).cloned(),
        }
    }

    /// How many ancestors snapshot `id` has (bounded, in case the data has a cycle).
    fn depth(&self, id: &str) -> usize {
        let limit = self.snapshots.len() + self.disk_parents.len();
        let mut d = 0;
        let mut cur = self.parent_of(id);
        while let Some(p) = cur {
            d += 1;
            if d > limit {
                break;
            }
            cur = self.parent_of(&p);
        }
        d
    }

    /// Blobs and snapshots kept regardless of cache records: by images and leases.
    fn permanent(&self) -> (HashSet<String>, HashSet<Digest>) {
        let mut snaps = HashSet::new();
        let mut blobs: HashSet<Digest> = self.image_blobs.iter().copied().collect();
        for lease in &self.live_leases {
            blobs.extend(lease.blobs.iter().copied());
            for s in &lease.snapshots {
                self.add_with_parents(s, &mut snaps);
            }
        }
        (snaps, blobs)
    }

    fn add_with_parents(&self, id: &str, into: &mut HashSet<String>) {
        let mut cur = Some(id.to_owned());
        // The parent chain is data from disk: the set check also stops a cycle.
        while let Some(id) = cur {
            if !into.insert(id.clone()) {
                break;
            }
            cur = self.parent_of(&id);
        }
    }
}

/// Either kind of transaction, for code that only reads.
pub(crate) enum WriteTxnOrRead<'a> {
    Write(&'a WriteTxn),
    Read(&'a crate::meta::ReadTxn),
}

/// Every blob reachable from image refs: targets, and for manifests their config and layers,
/// for indexes their child manifests, recursively. Missing or unparsable blobs end the walk
/// there (`check` reports them).
pub(crate) fn image_closure(
    content: &ContentStore,
    refs: &[(String, ImageRef)],
) -> BTreeSet<Digest> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<Digest> = refs.iter().map(|(_, r)| r.target).collect();
    while let Some(d) = queue.pop() {
        if !seen.insert(d) {
            continue;
        }
        let (leaves, children) = manifest_children(content, &d);
        seen.extend(leaves);
        queue.extend(children);
    }
    seen
}

/// Largest manifest or index kiln reads; bigger "manifests" are not parsed.
const MAX_MANIFEST: u64 = 4 << 20;

/// The config and layer digests (leaves) and child manifest digests of manifest/index `d`.
pub(crate) fn manifest_children(content: &ContentStore, d: &Digest) -> (Vec<Digest>, Vec<Digest>) {
    let (mut leaves, mut children) = (Vec::new(), Vec::new());
    if content
        .info(d)
        .map(|i| i.size > MAX_MANIFEST)
        .unwrap_or(true)
    {
        return (leaves, children);
    }
    let Ok(bytes) = content.read_to_vec(d) else {
        return (leaves, children);
    };
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return (leaves, children);
    };
    let digest_of = |v: &serde_json::Value| v.get("digest")?.as_str()?.parse::<Digest>().ok();
    if let Some(config) = doc.get("config").and_then(digest_of) {
        leaves.push(config);
    }
    for key in ["layers", "blobs"] {
        if let Some(serde_json::Value::Array(items)) = doc.get(key) {
            leaves.extend(items.iter().filter_map(digest_of));
        }
    }
    if let Some(serde_json::Value::Array(items)) = doc.get("manifests") {
        children.extend(items.iter().filter_map(digest_of));
    }
    (leaves, children)
}

/// Reference counts over snapshots and blobs not kept by images or leases, with the bytes
/// they hold: the build cache's size as records come and go.
struct Usage<'w> {
    world: &'w World,
    perm_snaps: HashSet<String>,
    perm_blobs: HashSet<Digest>,
    /// Size of a snapshot with no snapshot record: the largest `size` a record gave for it.
    fallback: HashMap<String, u64>,
    snaps: HashMap<String, u32>,
    blobs: HashMap<Digest, u32>,
    bytes: u64,
}

impl<'w> Usage<'w> {
    fn new(world: &'w World) -> Usage<'w> {
        let (perm_snaps, perm_blobs) = world.permanent();
        let mut fallback: HashMap<String, u64> = HashMap::new();
        for (_, r) in &world.records {
            if let Some(s) = &r.snapshot {
                let e = fallback.entry(s.clone()).or_default();
                *e = (*e).max(r.size);
            }
        }
        Usage {
            world,
            perm_snaps,
            perm_blobs,
            fallback,
            snaps: HashMap::new(),
            blobs: HashMap::new(),
            bytes: 0,
        }
    }

    fn snap_size(&self, id: &str) -> u64 {
        match self.world.snapshots.get(id) {
            Some(s) => s.size,
            None => self.fallback.get(id).copied().unwrap_or(0),
        }
    }

    fn add_record(&mut self, r: &CacheRecord) {
        if let Some(s) = &r.snapshot {
            self.inc_snap(s);
        }
        for l in &r.layers {
            self.inc_blob(l.digest, l.size);
        }
    }

    fn remove_record(&mut self, r: &CacheRecord) {
        if let Some(s) = &r.snapshot {
            self.dec_snap(s);
        }
        for l in &r.layers {
            self.dec_blob(l.digest, l.size);
        }
    }

    fn inc_snap(&mut self, id: &str) {
        let mut cur = Some(id.to_owned());
        let mut guard = 0usize;
        while let Some(id) = cur.take() {
            guard += 1;
            if self.perm_snaps.contains(&id) || guard > self.world.snapshots.len() + 1 {
                return;
            }
            let c = self.snaps.entry(id.clone()).or_default();
            *c += 1;
            if *c == 1 {
                self.bytes += self.snap_size(&id);
                cur = self.world.parent_of(&id);
            }
        }
    }

    fn dec_snap(&mut self, id: &str) {
        let mut cur = Some(id.to_owned());
        let mut guard = 0usize;
        while let Some(id) = cur.take() {
            guard += 1;
            if self.perm_snaps.contains(&id) || guard > self.world.snapshots.len() + 1 {
                return;
            }
            let Some(c) = self.snaps.get_mut(&id) else {
                return;
            };
            *c -= 1;
            if *c == 0 {
                self.snaps.remove(&id);
                self.bytes = self.bytes.saturating_sub(self.snap_size(&id));
                cur = self.world.parent_of(&id);
            }
        }
    }

    fn blob_size(&self, d: Digest, fallback: u64) -> u64 {
        self.world.blobs.get(&d).copied().unwrap_or(fallback)
    }

    fn inc_blob(&mut self, d: Digest, size: u64) {
        if self.perm_blobs.contains(&d) {
            return;
        }
        let c = self.blobs.entry(d).or_default();
        *c += 1;
        if *c == 1 {
            self.bytes += self.blob_size(d, size);
        }
    }

    fn dec_blob(&mut self, d: Digest, size: u64) {
        if self.perm_blobs.contains(&d) {
            return;
        }
        let Some(c) = self.blobs.get_mut(&d) else {
            return;
        };
        *c -= 1;
        if *c == 0 {
            self.blobs.remove(&d);
            self.bytes = self.bytes.saturating_sub(self.blob_size(d, size));
        }
    }
}

/// The decisions of a prune, made inside one write transaction.
pub(crate) struct Plan {
    pub(crate) report: PruneReport,
    /// Snapshots to remove through the remover after commit, children first.
    pub(crate) snapshots: Vec<String>,
    /// Blobs to unlink after commit, while the database is still held.
    pub(crate) blobs: Vec<BlobInfo>,
}

/// Decides a prune and applies its metadata side in `tx`.
/// `on_disk` is the remover's list of snapshots, taken before the transaction.
pub(crate) fn plan_prune(
    tx: &mut WriteTxn,
    content: &ContentStore,
    opts: &PruneOptions,
    on_disk: &[String],
    disk_parents: &HashMap<String, String>,
    now: Timestamp,
) -> Result<Plan> {
    let mut world = World::load(&WriteTxnOrRead::Write(tx), content, now)?;
    world.disk_parents = disk_parents.clone();
    let mut report = PruneReport::default();
    for id in &world.expired_leases {
        tx.delete_lease(id)?;
    }
    report.leases_expired = world.expired_leases.clone();

    // 1. Cache records.
    let cutoff = opts.until.map(|u| now.saturating_sub(u));
    let mut usage = Usage::new(&world);
    for (_, r) in &world.records {
        usage.add_record(r);
    }
    let mut candidates: Vec<&(CacheKey, CacheRecord)> = world
        .records
        .iter()
        .filter(|(_, r)| {
            opts.all
                || !r
                    .layers
                    .iter()
                    .any(|l| world.image_blobs.contains(&l.digest))
        })
        .filter(|(_, r)| cutoff.is_none_or(|c| r.last_used <= c))
        .collect();
    candidates.sort_by(|(ka, a), (kb, b)| {
        (a.last_used, a.created, ka).cmp(&(b.last_used, b.created, kb))
    });
    let mut removed: HashSet<CacheKey> = HashSet::new();
    for (key, rec) in candidates {
        if opts.keep_storage.is_some_and(|keep| usage.bytes <= keep) {
            break;
        }
        usage.remove_record(rec);
        tx.delete_record(key)?;
        removed.insert(*key);
        report.records_removed.push((*key, rec.clone()));
    }
    let remaining = || world.records.iter().filter(|(k, _)| !removed.contains(k));

    // 2. Snapshots no remaining record or live lease keeps.
    let mut live: HashSet<String> = world.permanent().0;
    for (_, r) in remaining() {
        if let Some(s) = &r.snapshot {
            world.add_with_parents(s, &mut live);
        }
    }
    let mut dead: Vec<(usize, String)> = Vec::new();
    for (id, rec) in &world.snapshots {
        if !live.contains(id) {
            tx.delete_snapshot(id)?;
            report.reclaimed += rec.size;
            dead.push((world.depth(id), id.clone()));
        }
    }
    // Unrecorded snapshots on disk (left by killed builds, or never recorded) go too.
    let orphans: BTreeSet<&String> = on_disk
        .iter()
        .filter(|id| !live.contains(*id) && !world.snapshots.contains_key(*id))
        .collect();
    dead.extend(orphans.into_iter().map(|id| (world.depth(id), id.clone())));
    // Deepest first: a snapshotter may refuse to remove a parent before its children.
    dead.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let snapshots = dead.into_iter().map(|(_, id)| id).collect();

    // 3. Blobs nothing references. They are unlinked only after the transaction commits
    // (see `Store::prune`): unlinked before, a crash before the commit would leave records
    // naming blobs that are gone.
    let mut referenced: HashSet<Digest> = world.permanent().1;
    for (_, r) in remaining() {
        referenced.extend(r.layers.iter().map(|l| l.digest));
    }
    let blobs = world
        .blobs
        .iter()
        .filter(|(d, _)| !referenced.contains(*d))
        .map(|(d, s)| BlobInfo {
            digest: *d,
            size: *s,
        })
        .collect();
    Ok(Plan {
        report,
        snapshots,
        blobs,
    })
}

/// Computes `df` from a consistent view.
pub(crate) fn disk_usage(world: &World) -> DiskUsage {
    let mut du = DiskUsage::default();
    let size_of = |d: &Digest| world.blobs.get(d).copied().unwrap_or(0);

    du.images.count = world.image_refs as u64;
    du.images.bytes = world.image_blobs.iter().map(size_of).sum();

    let (perm_snaps, perm_blobs) = world.permanent();
    // Everything records reach, whether or not also kept by something else.
    let mut snaps: HashSet<String> = HashSet::new();
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    let mut usage = Usage::new(world);
    for (_, r) in &world.records {
        usage.add_record(r);
        if let Some(s) = &r.snapshot {
            world.add_with_parents(s, &mut snaps);
        }
        for l in &r.layers {
            blobs.insert(
                l.digest,
                world.blobs.get(&l.digest).copied().unwrap_or(l.size),
            );
        }
    }
    du.build_cache.count = world.records.len() as u64;
    du.build_cache.bytes =
        snaps.iter().map(|s| usage.snap_size(s)).sum::<u64>() + blobs.values().sum::<u64>();
    du.build_cache.reclaimable = usage.bytes;

    du.snapshots.count = world.snapshots.len() as u64;
    du.snapshots.bytes = world.snapshots.values().map(|s| s.size).sum();
    du.snapshots.reclaimable = world
        .snapshots
        .iter()
        .filter(|(id, _)| !perm_snaps.contains(*id))
        .map(|(_, s)| s.size)
        .sum();

    let mut referenced: HashSet<Digest> = perm_blobs;
    for (_, r) in &world.records {
        referenced.extend(r.layers.iter().map(|l| l.digest));
    }
    du.blobs.count = world.blobs.len() as u64;
    du.blobs.bytes = world.blobs.values().sum();
    du.blobs.reclaimable = world
        .blobs
        .iter()
        .filter(|(d, _)| !referenced.contains(*d))
        .map(|(_, s)| s)
        .sum();
    du
}
