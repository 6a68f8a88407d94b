//! Raw syscalls for the sandbox; the one place with unsafe code (being written).
