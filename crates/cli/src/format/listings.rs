//! Each listing command's default table format and column headers, as docker/cli defines
//! them (read from `cli/command/formatter/{image,container,volume,disk_usage}.go`,
//! `cli/command/network/formatter.go`, `cli/command/image/formatter_history.go` and
//! `cli/command/container/formatter_stats.go`).

/// What a listing command contributes to rendering its rows.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    /// The format used without `--format` or with `--format table`.
    pub default_table: &'static str,
    /// Row field → column header: docker/cli's `SubHeaderContext` for the command. A field
    /// not listed here shows as `<no value>` in a custom table's header, as in Docker.
    pub headers: &'static [(&'static str, &'static str)],
    /// The Go type docker/cli names when a template asks a row for a field it lacks
    /// (`can't evaluate field Foo in type *formatter.imageContext`).
    pub context_type: &'static str,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

const CONTAINER_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
    ("Platform", "PLATFORM"),
    ("HealthStatus", "HEALTH STATUS"),
];

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "VOLUME NAME"),
    ("Group", "GROUP"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Availability", "AVAILABILITY"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Status", "STATUS"),
];

/// `kiln images` (`docker images`). Rows: `ID Repository Tag Digest CreatedSince CreatedAt
/// Size Containers SharedSize UniqueSize`.
pub const IMAGES: Listing = Listing {
    default_table: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}",
    headers: IMAGE_HEADERS,
    context_type: "*formatter.imageContext",
};

/// `kiln images --digests`. (Docker also appends `\t{{.Digest}}` to a custom `table` format
/// that lacks it when `--digests` is given.)
pub const IMAGES_DIGESTS: Listing = Listing {
    default_table: "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}",
    ..IMAGES
};

/// `kiln ps` (`docker ps`). Rows:
/// `ID Names Image Command CreatedAt RunningFor Ports State Status Size Labels Mounts
/// LocalVolumes Networks Platform HealthStatus`, and `Label` as an object for
/// `{{.Label "key"}}`.
pub const CONTAINERS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
    headers: CONTAINER_HEADERS,
    context_type: "*formatter.ContainerContext",
};

/// `kiln volume ls`. Rows: `Name Driver Scope Mountpoint Labels Links Size Group
/// Availability Status`, and `Label`.
pub const VOLUMES: Listing = Listing {
    default_table: "table {{.Driver}}\t{{.Name}}",
    headers: VOLUME_HEADERS,
    context_type: "*formatter.volumeContext",
};

/// `kiln network ls`. Rows: `ID Name Driver Scope IPv4 IPv6 Internal Labels CreatedAt`,
/// and `Label`.
pub const NETWORKS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    headers: &[
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv4", "IPV4"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ],
    context_type: "*network.networkContext",
};

const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// `kiln history`. Rows: `ID CreatedSince CreatedAt CreatedBy Size Comment`.
pub const HISTORY: Listing = Listing {
    default_table: "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    headers: HISTORY_HEADERS,
    context_type: "*image.historyContext",
};

/// `kiln history --human=false`.
pub const HISTORY_NOT_HUMAN: Listing = Listing {
    default_table: "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    ..HISTORY
};

/// `kiln system df`: one row per type (`Images`, `Containers`, `Local Volumes`,
/// `Build Cache`). Rows: `Type TotalCount Active Size Reclaimable`.
pub const SYSTEM_DF: Listing = Listing {
    default_table: "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    headers: &[
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ],
    context_type: "*formatter.diskUsageImagesContext",
};

/// `kiln system df -v`, section "Images space usage:" (image rows).
pub const SYSTEM_DF_IMAGES: Listing = Listing {
    default_table: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
    ..IMAGES
};

/// `kiln system df -v`, section "Containers space usage:" (container rows).
pub const SYSTEM_DF_CONTAINERS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
    ..CONTAINERS
};

/// `kiln system df -v`, section "Local Volumes space usage:" (volume rows).
pub const SYSTEM_DF_VOLUMES: Listing = Listing {
    default_table: "table {{.Name}}\t{{.Links}}\t{{.Size}}",
    ..VOLUMES
};

/// `kiln stats`. Rows: `Container Name ID CPUPerc MemUsage MemPerc NetIO BlockIO PIDs`.
pub const STATS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    headers: &[
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("ID", "CONTAINER ID"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ],
    context_type: "*container.statsContext",
};

/// `kiln events --format`: rows are Docker's event messages (`Type`, `Action`, `Actor` with
/// `ID` and `Attributes`, `scope`, `time`, `timeNano`); there is no table.
pub const EVENTS: Listing = Listing {
    default_table: "{{json .}}",
    headers: &[
        ("status", "STATUS"),
        ("id", "ID"),
        ("from", "FROM"),
        ("Type", "TYPE"),
        ("Action", "ACTION"),
        ("Actor", "ACTOR"),
        ("scope", "SCOPE"),
        ("time", "TIME"),
        ("timeNano", "TIMENANO"),
    ],
    context_type: "*events.Message",
};
