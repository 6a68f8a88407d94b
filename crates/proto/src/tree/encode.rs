//! The canonical bytes of a directory node, whose sha256 is the node's digest. Hand-written and
//! versioned like `kiln_llb`'s op encoding, so a digest never depends on a library's output;
//! golden tests pin it. Decoding checks everything a worker must not trust.

use kiln_llb::Digest;

use super::{Entry, EntryKind, Metadata, TreeError};

/// The first bytes of every node: the format and its version.
pub const MAGIC: &[u8; 12] = b"kiln.tree.1\n";

/// The longest entry name (Linux's NAME_MAX).
pub const MAX_NAME: usize = 255;
/// The longest symlink target (Linux's PATH_MAX).
pub const MAX_TARGET: usize = 4096;

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_SYMLINK: u8 = 3;

/// The canonical bytes of a node whose entries are sorted by name and unique.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + entries.len() * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        put_bytes(&mut out, e.name.as_bytes());
        let m = &e.meta;
        match &e.kind {
            EntryKind::File { .. } => out.push(KIND_FILE),
            EntryKind::Dir { .. } => out.push(KIND_DIR),
            EntryKind::Symlink { .. } => out.push(KIND_SYMLINK),
        }
        out.extend_from_slice(&m.mode.to_be_bytes());
        out.extend_from_slice(&m.uid.to_be_bytes());
        out.extend_from_slice(&m.gid.to_be_bytes());
        out.extend_from_slice(&m.mtime_secs.to_be_bytes());
        out.extend_from_slice(&m.mtime_nanos.to_be_bytes());
        match &e.kind {
            EntryKind::File { size, digest } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(digest.as_bytes());
            }
            EntryKind::Dir { digest } => out.extend_from_slice(digest.as_bytes()),
            EntryKind::Symlink { target } => put_bytes(&mut out, target.as_bytes()),
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a node's bytes back, refusing anything [`encode`] would not have written: bad names,
/// unsorted or repeated entries, unknown kinds, bits outside the mode, trailing bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, TreeError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(r.bad("not a kiln tree node (wrong magic or version)"));
    }
    let count = r.u32()? as usize;
    // Every entry takes at least 33 bytes, so a huge count in a small node is a lie.
    if count > bytes.len() / 33 {
        return Err(r.bad("entry count larger than the node"));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    for _ in 0..count {
        let name_bytes = r.sized(MAX_NAME, "name")?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| r.bad("entry name is not UTF-8"))?
            .to_string();
        super::check_name(&name).map_err(|why| r.bad(&why))?;
        if let Some(prev) = entries.last()
            && prev.name.as_bytes() >= name.as_bytes()
        {
            return Err(r.bad(&format!(
                "entries not sorted or repeated: {:?} then {name:?}",
                prev.name
            )));
        }
        let kind = r.take(1)?[0];
        let meta = Metadata {
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            mtime_secs: i64::from_be_bytes(r.array()?),
            mtime_nanos: r.u32()?,
        };
        if meta.mode & !0o7777 != 0 {
            return Err(r.bad(&format!("mode {:o} of {name:?} has type bits", meta.mode)));
        }
        if meta.uid == u32::MAX || meta.gid == u32::MAX {
            return Err(r.bad(&format!("owner of {name:?} is the invalid id 4294967295")));
        }
        if meta.mtime_nanos >= 1_000_000_000 {
            return Err(r.bad(&format!("mtime nanoseconds of {name:?} out of range")));
        }
        let kind = match kind {
            KIND_FILE => EntryKind::File {
                size: u64::from_be_bytes(r.array()?),
                digest: Digest::from_bytes(r.array()?),
            },
            KIND_DIR => EntryKind::Dir {
                digest: Digest::from_bytes(r.array()?),
            },
            KIND_SYMLINK => {
                let target = r.sized(MAX_TARGET, "symlink target")?;
                let target = std::str::from_utf8(target)
                    .map_err(|_| r.bad("symlink target is not UTF-8"))?;
                if target.is_empty() || target.contains('\0') {
                    return Err(r.bad(&format!("invalid symlink target of {name:?}")));
                }
                EntryKind::Symlink {
                    target: target.to_string(),
                }
            }
            other => return Err(r.bad(&format!("unknown entry kind {other}"))),
        };
        entries.push(Entry { name, meta, kind });
    }
    if r.pos != bytes.len() {
        return Err(r.bad("trailing bytes after the last entry"));
    }
    Ok(entries)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, why: &str) -> TreeError {
        TreeError::BadNode {
            offset: self.pos,
            reason: why.to_string(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.bad("node ends early"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TreeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, TreeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn sized(&mut self, max: usize, what: &str) -> Result<&'a [u8], TreeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.bad(&format!("{what} longer than {max} bytes")));
        }
        self.take(n)
    }
}
