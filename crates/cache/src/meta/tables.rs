//! The tables of `meta.redb` (keys → JSON values) and the typed transactions over them: cache
//! records, image refs, snapshot records and leases, read and written as the store's records;
//! the raw entries `check` reads and drops; and the schema created in a new database.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::digest::{CacheKey, Digest};
use crate::error::{Error, Result};
use crate::process;
use crate::records::{CacheRecord, ImageRef, Lease, LeaseOptions, SnapshotRecord, Timestamp};

/// The schema this code writes; a store with a higher one is refused rather than misread.
const SCHEMA_VERSION: u64 = 1;

const INFO: TableDefinition<'static, &str, u64> = TableDefinition::new("store_info");
const RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("cache_records");
const REFS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("image_refs");
const SNAPSHOTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("snapshots");
const LEASES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("leases");

pub(super) fn init_schema(db: &Database, path: &Path) -> Result<()> {
    let found = {
        let tx = db
            .begin_read()
            .map_err(|e| Error::db("begin read transaction", e))?;
        match tx.open_table(INFO) {
            Ok(t) => t
                .get("schema_version")
                .map_err(|e| Error::db("read schema version", e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(Error::db("open store_info table", e)),
        }
    };
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(Error::UnsupportedSchema {
            path: path.to_owned(),
            found: u32::try_from(v).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION as u32,
        }),
        Some(_) => Ok(()),
        None => {
            let tx = db
                .begin_write()
                .map_err(|e| Error::db("begin write transaction", e))?;
            {
                let mut info = tx
                    .open_table(INFO)
                    .map_err(|e| Error::db("create store_info table", e))?;
                info.insert("schema_version", SCHEMA_VERSION)
                    .map_err(|e| Error::db("write schema version", e))?;
                for def in [REFS, SNAPSHOTS, LEASES] {
                    tx.open_table(def)
                        .map_err(|e| Error::db("create table", e))?;
                }
                tx.open_table(RECORDS)
                    .map_err(|e| Error::db("create cache_records table", e))?;
            }
            tx.commit()
                .map_err(|e| Error::db("commit schema creation", e))
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail: no maps with non-string keys.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, name: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptEntry {
        table,
        name: name.to_owned(),
        source,
    })
}

fn decode_record(key: CacheKey, bytes: &[u8]) -> Result<CacheRecord> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptRecord { key, source })
}

fn key_from_bytes(bytes: &[u8]) -> Option<CacheKey> {
    <[u8; 32]>::try_from(bytes).ok().map(CacheKey)
}

/// A raw entry as stored, for `check`, which must see undecodable entries too.
pub(crate) struct RawEntry {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

fn raw_str_entries(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(|e| Error::db("iterate table", e))? {
        let (k, v) = item.map_err(|e| Error::db("iterate table", e))?;
        out.push(RawEntry {
            name: k.value().as_bytes().to_vec(),
            value: v.value().to_vec(),
        });
    }
    Ok(out)
}

fn raw_bytes_entries(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(|e| Error::db("iterate table", e))? {
        let (k, v) = item.map_err(|e| Error::db("iterate table", e))?;
        out.push(RawEntry {
            name: k.value().to_vec(),
            value: v.value().to_vec(),
        });
    }
    Ok(out)
}

fn decode_all<T: DeserializeOwned>(
    table: &'static str,
    raw: Vec<RawEntry>,
) -> Result<Vec<(String, T)>> {
    raw.into_iter()
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let v = decode(table, &name, &e.value)?;
            Ok((name, v))
        })
        .collect()
}

fn decode_records(raw: Vec<RawEntry>) -> Result<Vec<(CacheKey, CacheRecord)>> {
    raw.into_iter()
        .filter_map(|e| key_from_bytes(&e.name).map(|k| (k, e.value)))
        .map(|(k, v)| Ok((k, decode_record(k, &v)?)))
        .collect()
}

/// The read operations, identical on both transaction kinds; a macro because redb's read-only
/// and writable tables are different types behind a trait that is not object safe.
macro_rules! read_methods {
    () => {
        /// The record filed under `key`.
        pub fn record(&self, key: &CacheKey) -> Result<Option<CacheRecord>> {
            let t = self.table_bytes(RECORDS)?;
            let v = t
                .get(key.0.as_slice())
                .map_err(|e| Error::db("read cache record", e))?;
            v.map(|v| decode_record(*key, v.value())).transpose()
        }

        /// Every cache record; fails on an undecodable one (`check` finds and drops those).
        pub fn records(&self) -> Result<Vec<(CacheKey, CacheRecord)>> {
            decode_records(raw_bytes_entries(&self.table_bytes(RECORDS)?)?)
        }

        /// What image name `name` points at.
        pub fn image_ref(&self, name: &str) -> Result<Option<ImageRef>> {
            self.get_str(REFS, "image_refs", name)
        }

        /// Every image name and its target, sorted by name.
        pub fn image_refs(&self) -> Result<Vec<(String, ImageRef)>> {
            decode_all("image_refs", raw_str_entries(&self.table_str(REFS)?)?)
        }

        /// The record of snapshot `id`.
        pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
            self.get_str(SNAPSHOTS, "snapshots", id)
        }

        /// Every snapshot record, sorted by id.
        pub fn snapshots(&self) -> Result<Vec<(String, SnapshotRecord)>> {
            decode_all("snapshots", raw_str_entries(&self.table_str(SNAPSHOTS)?)?)
        }

        /// The lease `id`, expired or not.
        pub fn lease(&self, id: &str) -> Result<Option<Lease>> {
            self.get_str(LEASES, "leases", id)
        }

        /// Every lease, expired or not, sorted by id.
        pub fn leases(&self) -> Result<Vec<Lease>> {
            Ok(
                decode_all::<Lease>("leases", raw_str_entries(&self.table_str(LEASES)?)?)?
                    .into_iter()
                    .map(|(_, l)| l)
                    .collect(),
            )
        }

        pub(crate) fn raw(&self, table: RawTable) -> Result<Vec<RawEntry>> {
            match table {
                RawTable::Records => raw_bytes_entries(&self.table_bytes(RECORDS)?),
                RawTable::Refs => raw_str_entries(&self.table_str(REFS)?),
                RawTable::Snapshots => raw_str_entries(&self.table_str(SNAPSHOTS)?),
                RawTable::Leases => raw_str_entries(&self.table_str(LEASES)?),
            }
        }

        fn get_str<T: DeserializeOwned>(
            &self,
            def: TableDefinition<'static, &'static str, &'static [u8]>,
            table: &'static str,
            name: &str,
        ) -> Result<Option<T>> {
            let t = self.table_str(def)?;
            let v = t.get(name).map_err(|e| Error::db("read entry", e))?;
            v.map(|v| decode(table, name, v.value())).transpose()
        }
    };
}

/// The tables `check` reads raw.
#[derive(Clone, Copy)]
pub(crate) enum RawTable {
    Records,
    Refs,
    Snapshots,
    Leases,
}

/// A read transaction: a consistent view of the metadata.
pub struct ReadTxn {
    pub(super) tx: redb::ReadTransaction,
}

impl ReadTxn {
    read_methods!();

    fn table_bytes(
        &self,
        def: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn table_str(
        &self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<redb::ReadOnlyTable<&'static str, &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }
}

/// A write transaction: all its changes are kept together or not at all.
pub struct WriteTxn {
    pub(super) tx: redb::WriteTransaction,
}

impl WriteTxn {
    read_methods!();

    fn table_bytes(
        &self,
        def: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<redb::Table<'_, &'static [u8], &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn table_str(
        &self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<redb::Table<'_, &'static str, &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn put_str<T: Serialize>(
        &mut self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &str,
        value: &T,
    ) -> Result<()> {
        let mut t = self.table_str(def)?;
        t.insert(name, encode(value).as_slice())
            .map_err(|e| Error::db("write entry", e))?;
        Ok(())
    }

    fn remove_str(
        &mut self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &str,
    ) -> Result<bool> {
        let mut t = self.table_str(def)?;
        let old = t.remove(name).map_err(|e| Error::db("remove entry", e))?;
        Ok(old.is_some())
    }

    /// Files `record` under `key`, replacing any record there.
    pub fn put_record(&mut self, key: &CacheKey, record: &CacheRecord) -> Result<()> {
        let mut t = self.table_bytes(RECORDS)?;
        t.insert(key.0.as_slice(), encode(record).as_slice())
            .map_err(|e| Error::db("write cache record", e))?;
        Ok(())
    }

    /// Removes the record under `key`; returns whether there was one.
    pub fn delete_record(&mut self, key: &CacheKey) -> Result<bool> {
        let mut t = self.table_bytes(RECORDS)?;
        let old = t
            .remove(key.0.as_slice())
            .map_err(|e| Error::db("remove cache record", e))?;
        Ok(old.is_some())
    }

    /// Deletes the raw entry `name` from `table` if its value is still `value`; returns
    /// whether it did.
    pub(crate) fn delete_raw_if(
        &mut self,
        table: RawTable,
        name: &[u8],
        value: &[u8],
    ) -> Result<bool> {
        let current = self
            .raw(table)?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.value);
        if current.as_deref() != Some(value) {
            return Ok(false);
        }
        self.delete_raw(table, name)?;
        Ok(true)
    }

    fn delete_raw(&mut self, table: RawTable, name: &[u8]) -> Result<()> {
        match table {
            RawTable::Records => {
                let mut t = self.table_bytes(RECORDS)?;
                t.remove(name)
                    .map_err(|e| Error::db("remove cache record", e))?;
            }
            RawTable::Refs | RawTable::Snapshots | RawTable::Leases => {
                let def = match table {
                    RawTable::Refs => REFS,
                    RawTable::Snapshots => SNAPSHOTS,
                    _ => LEASES,
                };
                let name = String::from_utf8_lossy(name);
                self.remove_str(def, &name)?;
            }
        }
        Ok(())
    }

    /// Sets `last_used` of the records under `keys` (and of their snapshots) to `when`;
    /// missing or undecodable records are skipped. Returns how many were updated.
    pub fn touch_records(&mut self, keys: &[CacheKey], when: Timestamp) -> Result<usize> {
        let mut n = 0;
        for key in keys {
            let Ok(Some(mut rec)) = self.record(key) else {
                continue;
            };
            rec.last_used = rec.last_used.max(when);
            if let Some(snap) = &rec.snapshot
                && let Ok(Some(mut s)) = self.snapshot(snap)
            {
                s.last_used = s.last_used.max(when);
                self.put_snapshot(snap, &s)?;
            }
            self.put_record(key, &rec)?;
            n += 1;
        }
        Ok(n)
    }

    /// Points image name `name` at `target`; returns what it pointed at before.
    pub fn set_image_ref(&mut self, name: &str, target: &ImageRef) -> Result<Option<ImageRef>> {
        validate_ref_name(name)?;
        let old = self.image_ref(name).ok().flatten();
        self.put_str(REFS, name, target)?;
        Ok(old)
    }

    /// Removes image name `name`; returns what it pointed at.
    pub fn delete_image_ref(&mut self, name: &str) -> Result<Option<ImageRef>> {
        let old = self.image_ref(name).ok().flatten();
        self.remove_str(REFS, name)?;
        Ok(old)
    }

    /// Records (or replaces) what the store knows of snapshot `id`.
    pub fn put_snapshot(&mut self, id: &str, record: &SnapshotRecord) -> Result<()> {
        self.put_str(SNAPSHOTS, id, record)
    }

    /// Forgets snapshot `id`; returns whether it was known.
    pub fn delete_snapshot(&mut self, id: &str) -> Result<bool> {
        self.remove_str(SNAPSHOTS, id)
    }

    /// Creates a lease.
    pub fn create_lease(&mut self, opts: &LeaseOptions) -> Result<Lease> {
        let created = Timestamp::now();
        let id = match &opts.id {
            Some(id) => {
                if self.lease(id)?.is_some() {
                    return Err(Error::LeaseExists(id.clone()));
                }
                id.clone()
            }
            None => unique_lease_id(created),
        };
        let lease = Lease {
            id: id.clone(),
            created,
            expires: opts.ttl.map(|ttl| created.saturating_add(ttl)),
            owner: if opts.bind_to_process {
                process::current()
            } else {
                None
            },
            blobs: Default::default(),
            snapshots: Default::default(),
        };
        self.put_str(LEASES, &id, &lease)?;
        Ok(lease)
    }

    fn update_lease(&mut self, id: &str, f: impl FnOnce(&mut Lease)) -> Result<()> {
        let mut lease = self
            .lease(id)?
            .ok_or_else(|| Error::LeaseNotFound(id.to_owned()))?;
        f(&mut lease);
        self.put_str(LEASES, id, &lease)
    }

    /// Adds `digest` to the blobs lease `id` protects.
    pub fn lease_blob(&mut self, id: &str, digest: Digest) -> Result<()> {
        self.update_lease(id, |l| {
            l.blobs.insert(digest);
        })
    }

    /// Adds snapshot `snapshot` to what lease `id` protects.
    pub fn lease_snapshot(&mut self, id: &str, snapshot: &str) -> Result<()> {
        self.update_lease(id, |l| {
            l.snapshots.insert(snapshot.to_owned());
        })
    }

    /// Writes `lease` as given, replacing the lease with its id (for tools that restore or
    /// adjust leases; builds use [`WriteTxn::create_lease`]).
    pub fn put_lease(&mut self, lease: &Lease) -> Result<()> {
        self.put_str(LEASES, &lease.id, lease)
    }

    /// Deletes lease `id`; returns whether it existed.
    pub fn delete_lease(&mut self, id: &str) -> Result<bool> {
        self.remove_str(LEASES, id)
    }
}

fn validate_ref_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Error::InvalidRefName(name.to_owned()));
    }
    Ok(())
}

fn unique_lease_id(now: Timestamp) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("build-{}-{}-{}", std::process::id(), now.0, n)
}

/// Whether `lease` no longer protects anything at time `now`.
pub(crate) fn lease_expired(lease: &Lease, now: Timestamp) -> bool {
    if lease.expires.is_some_and(|e| e <= now) {
        return true;
    }
    lease.owner.as_ref().is_some_and(|o| !process::is_alive(o))
}
