//! The runtime's only raw system call: dropping capabilities from a thread's bounding set,
//! which neither `nix` nor `rustix` wraps.

#![allow(unsafe_code)]

/// Drops every capability not in `keep` (bit n = capability n) from the calling thread's
/// bounding set, up to `last` (the kernel's highest capability). A process this thread then
/// starts as root gets at most `keep`, as a container's own processes do.
pub(crate) fn drop_bounding_except(keep: u64, last: u32) -> std::io::Result<()> {
    for cap in 0..=last.min(63) {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes two integer arguments and touches no
        // memory of ours; it only changes this thread's credentials.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: the kernel does not know this capability number.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}
