//! Sandboxed process execution (being written).
