//! Docker's `run`/`create` flags kiln does not implement yet: accepted by the parser (hidden
//! from `--help`) so that using one fails with `not supported yet: --FLAG` and exit code 125,
//! never silently ignored.

/// Generates the flags (each takes a value) and the check that names the first one used.
macro_rules! unsupported {
    ($($field:ident: $flag:literal),* $(,)?) => {
        /// Docker flags `run` and `create` refuse by name.
        #[derive(Debug, clap::Args)]
        pub struct RunUnsupported {
            $(
                #[arg(long = $flag, hide = true, value_name = "VALUE")]
                $field: Vec<String>,
            )*
            /// `--sig-proxy` (default true, which is what kiln does).
            #[arg(long = "sig-proxy", hide = true, num_args = 0..=1, default_missing_value = "true")]
            sig_proxy: Option<String>,
            /// `--disable-content-trust` (kiln verifies no signatures, as with the default).
            #[arg(long = "disable-content-trust", hide = true, num_args = 0..=1, default_missing_value = "true")]
            disable_content_trust: Option<String>,
        }

        impl RunUnsupported {
            /// `Err(flag)` for the first flag kiln cannot honour.
            pub fn check(&self) -> Result<(), String> {
                $(
                    if !self.$field.is_empty() {
                        return Err(format!("--{}", $flag));
                    }
                )*
                if self.sig_proxy.as_deref().is_some_and(|v| v != "true") {
                    return Err("--sig-proxy=false".into());
                }
                if self.disable_content_trust.as_deref().is_some_and(|v| v != "true") {
                    return Err("--disable-content-trust=false (image signatures)".into());
                }
                Ok(())
            }
        }
    };
}

unsupported! {
    blkio_weight: "blkio-weight",
    blkio_weight_device: "blkio-weight-device",
    cgroup_parent: "cgroup-parent",
    cgroupns: "cgroupns",
    cpu_count: "cpu-count",
    cpu_percent: "cpu-percent",
    cpu_period: "cpu-period",
    cpu_quota: "cpu-quota",
    cpu_rt_period: "cpu-rt-period",
    cpu_rt_runtime: "cpu-rt-runtime",
    cpuset_mems: "cpuset-mems",
    device_cgroup_rule: "device-cgroup-rule",
    device_read_bps: "device-read-bps",
    device_read_iops: "device-read-iops",
    device_write_bps: "device-write-bps",
    device_write_iops: "device-write-iops",
    domainname: "domainname",
    gpus: "gpus",
    health_start_interval: "health-start-interval",
    io_maxbandwidth: "io-maxbandwidth",
    io_maxiops: "io-maxiops",
    ip: "ip",
    ip6: "ip6",
    isolation: "isolation",
    kernel_memory: "kernel-memory",
    link: "link",
    link_local_ip: "link-local-ip",
    mac_address: "mac-address",
    memory_reservation: "memory-reservation",
    memory_swappiness: "memory-swappiness",
    network_alias: "network-alias",
    net_alias: "net-alias",
    oom_score_adj: "oom-score-adj",
    runtime: "runtime",
    storage_opt: "storage-opt",
    userns: "userns",
    volume_driver: "volume-driver",
    volumes_from: "volumes-from",
}
