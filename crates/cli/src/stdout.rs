//! A closed stdout ends kiln quietly, as it ends any Unix tool, without letting SIGPIPE kill
//! kiln on its other pipes.
//!
//! The Rust runtime ignores SIGPIPE, so `kiln images | head -1` makes the next `print!` panic
//! with "failed printing to stdout". Restoring SIGPIPE's default action would fix that and
//! break everything else: kiln writes to many pipes of its own (layer compression, a
//! container's stdin, log relays), and a reader that dies there must be an error kiln reports
//! (a full disk behind the compressor), not a silent death of the whole process. So, as Go
//! does for its fds 1 and 2, only stdout's broken pipe ends the process.

use std::panic;

/// 128 + SIGPIPE: what a shell reports for a tool that SIGPIPE ended.
const BROKEN_PIPE_EXIT: i32 = 141;

/// Installs a panic hook that turns std's "failed printing to stdout: Broken pipe" panic into
/// a quiet exit with status 141; every other panic goes to the previous hook.
pub fn exit_quietly_on_broken_pipe() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        previous(info);
    }));
}
