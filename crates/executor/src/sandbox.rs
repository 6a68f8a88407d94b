//! Sandboxed process execution: a [`SandboxSpec`] in, an [`ExitInfo`] out.
//!
//! Every RUN step (and later `kiln run`) goes through [`run`] or [`Sandbox::spawn`]: real
//! mount, pid, uts, ipc, cgroup and (unless host networking) net namespaces over a rootfs
//! mounted inside the sandbox's own mount namespace, with Docker's default capabilities,
//! seccomp profile, masked and read-only paths. The user's command is pid 1 of its pid
//! namespace, so when it exits the kernel kills whatever it left running. The API is blocking;
//! async callers use `spawn_blocking`. `runc` (the dev feature of the same name: the
//! `sandbox_start` bench's peer) hands the same spec to an external OCI runtime instead.
//!
//! Not implemented yet (each fails with "not supported yet: …" or is documented as missing in
//! docs/dev/sandbox.md): rootless mode (user namespaces), a pty with an external runtime.

mod cgroup;
mod etc;
mod io;
mod mounts;
mod plan;
mod process;
#[cfg(feature = "runc")]
pub mod runc;
mod seccomp;
mod spec;
mod status;
mod stdio;
mod teardown;
mod validate;
mod wait;
mod warm;

pub use io::{
    CancelToken, CollectOutput, ExitInfo, ExitStatus, OutputSink, PtyMaster, Stdin, Stream,
    WindowSize, open_pty,
};
pub use process::Sandbox;
pub use seccomp::Seccomp;
pub use spec::{
    CAPABILITY_NAMES, CgroupLimits, CpuQuota, DEFAULT_PATH, DOCKER_DEFAULT_CAPS,
    DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS, Device, DeviceKind, Mount, Namespace, Network,
    Rlimit, RlimitResource, RootFs, SandboxSpec, User,
};
pub use warm::MigrationWarmer;

/// Why a sandbox could not run (a command that ran and failed is an `Ok(ExitInfo)`).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A setup step failed; `what` names it ("failed to pivot_root into /x").
    #[error("{what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The command could not be executed (not found, not executable, bad format).
    #[error("failed to exec {program:?} in the sandbox: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Cgroup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled through its [`CancelToken`]; everything was cleaned up.
    #[error("sandbox was cancelled")]
    Cancelled,
}

/// Runs `spec` to completion with stdin from /dev/null, streaming output to `io`.
///
/// Returns the exit status (a failing command is `Ok`), or an error when the sandbox could not
/// be set up or was cancelled. Blocks the calling thread.
pub fn run(
    spec: &SandboxSpec,
    io: &mut dyn OutputSink,
    cancel: &CancelToken,
) -> Result<ExitInfo, SandboxError> {
    run_with_stdin(spec, Stdin::Null, io, cancel)
}

/// [`run`] with the given stdin.
pub fn run_with_stdin(
    spec: &SandboxSpec,
    stdin: Stdin,
    io: &mut dyn OutputSink,
    cancel: &CancelToken,
) -> Result<ExitInfo, SandboxError> {
    if cancel.is_cancelled() {
        return Err(SandboxError::Cancelled);
    }
    Sandbox::spawn(spec, stdin)?.wait(io, cancel)
}
