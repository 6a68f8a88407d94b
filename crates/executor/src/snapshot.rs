//! containerd-style overlay snapshots, layer diff and apply (being written).
