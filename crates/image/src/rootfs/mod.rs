//! What is read inside an image's root filesystem: symlink-safe paths (`path`) and the users
//! and groups of its `/etc/passwd` and `/etc/group` (`user`). The build's file operations and
//! `--chown`, and the run engine's `USER` and `kiln cp`, share them.

pub mod path;
pub mod user;

pub use path::{clean_abs, display_in_root, resolve_in_root};
pub use user::{ResolvedUser, UserError, resolve_exec_user_with, resolve_user, resolve_user_with};
