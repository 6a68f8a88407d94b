//! The image config vocabulary: the OCI image config with Docker's extensions, serialized
//! deterministically with the field names, order and omissions BuildKit's exporter writes.
//!
//! It lives here because the frontend produces it and the `oci` crate serializes it into
//! blobs, and neither of those crates may depend on the other.
//!
//! Top-level keys come out in alphabetical order (BuildKit re-marshals the config through a Go
//! map, which sorts keys); the `config` object keeps Go's struct field order. Maps are
//! `BTreeMap`s so the bytes, and hence the digest, never depend on insertion order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// An image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: RunConfig,
    /// RFC 3339 (see `format_rfc3339`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// A build cache document carried in the image itself (`--cache-to type=inline`), read
    /// back by `--cache-from` of the image's name. Kept as a string so this crate need not
    /// know its format.
    #[serde(
        rename = "kiln.cache.v1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub inline_cache: Option<String>,
    pub os: String,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The `config` object: how a container of this image runs.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(
        rename = "User",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        serialize_with = "set_as_object",
        deserialize_with = "object_as_set",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub exposed_ports: BTreeSet<String>,
    /// `KEY=value` entries in order.
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `None` and `Some(vec![])` differ for Cmd when a child image resets it; both serialize
    /// as absent, as Go's `omitempty` does.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "is_none_or_empty"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "is_none_or_empty")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        serialize_with = "set_as_object",
        deserialize_with = "object_as_set",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub volumes: BTreeSet<String>,
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(
        rename = "ArgsEscaped",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub args_escaped: bool,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        rename = "OnBuild",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(
        rename = "Shell",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
}

impl RunConfig {
    /// The value of environment variable `key`, if set.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if kv == key => Some(""),
            _ => None,
        })
    }

    /// Sets `key=value`, replacing an existing entry in place (keeping its position, as
    /// Docker does) or appending.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }
}

/// HEALTHCHECK settings; durations are nanoseconds, zero means "inherit the default".
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(
        rename = "Test",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        rename = "Interval",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub interval: i64,
    #[serde(
        rename = "Timeout",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: i64,
    #[serde(
        rename = "StartPeriod",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: i64,
    #[serde(
        rename = "StartInterval",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: i64,
    #[serde(
        rename = "Retries",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub retries: i64,
}

/// The layers of the image, bottom first, by uncompressed digest.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry; entries with `empty_layer` have no matching diff id.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub created_by: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub author: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub comment: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub empty_layer: bool,
}

/// Formats a Unix time as Go's `time.RFC3339Nano` does in UTC (`2024-01-02T03:04:05.5Z`,
/// fraction without trailing zeros), the form BuildKit writes for `created`.
pub fn format_rfc3339(unix_seconds: i64, nanos: u32) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    );
    let nanos = nanos.min(999_999_999);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_none_or_empty(v: &Option<Vec<String>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

/// Go writes `null` for nil slices and maps; read it as the empty value.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An empty JSON object, the value type of Go's `map[string]struct{}`.
#[derive(Serialize, Deserialize)]
struct Empty {}

fn set_as_object<S: Serializer>(set: &BTreeSet<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(set.iter().map(|k| (k, Empty {})))
}

fn object_as_set<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeSet<String>, D::Error> {
    // Values are ignored: Docker writes `{}` but older tools wrote other things.
    let map: Option<BTreeMap<String, serde::de::IgnoredAny>> = Option::deserialize(deserializer)?;
    Ok(map.map(|m| m.into_keys().collect()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_700_000_000, 500_000_000),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400, 123),
            "2000-02-29T00:00:00.000000123Z"
        );
        assert_eq!(format_rfc3339(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn env_helpers_replace_in_place() {
        let mut c = RunConfig {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            ..RunConfig::default()
        };
        c.set_env("PATH", "/usr/bin");
        c.set_env("B", "x=y");
        assert_eq!(c.env, ["PATH=/usr/bin", "A=1", "B=x=y"]);
        assert_eq!(c.env_value("B"), Some("x=y"));
        assert_eq!(c.env_value("C"), None);
    }
}
