//! The binary's only unsafe code: process-wide signal setup before anything else runs.

/// Restores the default action for SIGPIPE, so that `kiln images | head -1` ends quietly when
/// the reader goes away (as every Unix tool does) instead of panicking on a failed write: the
/// Rust runtime ignores SIGPIPE at startup, which turns a closed pipe into an error on every
/// `print!`.
pub fn default_sigpipe() {
    // SAFETY: called once at the start of main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
