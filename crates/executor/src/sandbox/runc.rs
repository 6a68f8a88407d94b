//! Running a [`SandboxSpec`] with an external OCI runtime (`runc`, `crun`) instead of our own.
