//! Address leases of a bridge network: `<root>/networks/<name>/leases/<ip>`, an empty file made
//! with `O_EXCL`, so two `kiln create`s racing in one root never get the same address.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{RuntimeError, io_err};

/// A lease no container record names after this long belongs to a `create` that failed
/// before writing its record (or crashed), and is taken back.
const UNCLAIMED_GRACE: Duration = Duration::from_secs(60);

fn path(dir: &Path, ip: Ipv4Addr) -> PathBuf {
    dir.join(ip.to_string())
}

/// Leases the lowest address of `candidates` that no container uses (`used`) and no other
/// process holds a fresh lease on.
pub(crate) fn take(
    dir: &Path,
    candidates: impl Iterator<Item = Ipv4Addr>,
    used: &[Ipv4Addr],
) -> Result<Option<Ipv4Addr>, RuntimeError> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    for ip in candidates {
        if used.contains(&ip) {
            continue;
        }
        let p = path(dir, ip);
        match fs::File::create_new(&p) {
            Ok(_) => return Ok(Some(ip)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > UNCLAIMED_GRACE) {
                    // Renew it for us: the record that claims it is written within seconds.
                    fs::write(&p, b"").map_err(io_err(format!("renew lease {}", p.display())))?;
                    return Ok(Some(ip));
                }
            }
            Err(e) => return Err(io_err(format!("lease {}", p.display()))(e)),
        }
    }
    Ok(None)
}

/// Gives the address back.
pub(crate) fn release(dir: &Path, ip: Ipv4Addr) {
    let _ = fs::remove_file(path(dir, ip));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips() -> impl Iterator<Item = Ipv4Addr> {
        (2..=4u8).map(|n| Ipv4Addr::new(10, 89, 1, n))
    }

    #[test]
    fn leases_are_exclusive_skip_used_addresses_and_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("leases");
        let used = [Ipv4Addr::new(10, 89, 1, 2)];
        let a = take(&d, ips(), &used).expect("take").expect("free");
        assert_eq!(a, Ipv4Addr::new(10, 89, 1, 3));
        let b = take(&d, ips(), &used).expect("take").expect("free");
        assert_eq!(b, Ipv4Addr::new(10, 89, 1, 4));
        assert_eq!(take(&d, ips(), &used).expect("take"), None);
        release(&d, a);
        assert_eq!(take(&d, ips(), &used).expect("take"), Some(a));
    }
}
