//! `kiln events`: what happened to containers, networks, volumes and images, as Docker's
//! events. Each is one JSON line appended (one `write` with `O_APPEND`, so concurrent kiln
//! processes never interleave) to `<root>/events.jsonl`, which is rotated to
//! `events.jsonl.1` past 4 MiB; readers filter and follow it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::store::Container;

const MAX_SIZE: u64 = 4 << 20;

/// One event, with Docker's field names (`docker events --format '{{json .}}'`; the
/// deprecated `status`, `id` and `from` of container events included, as Docker still sends
/// them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

fn path(root: &Path) -> PathBuf {
    root.join("events.jsonl")
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// An event about `kind` object `id` with `attributes`, stamped now.
pub(crate) fn new(
    kind: &str,
    action: &str,
    id: &str,
    attributes: BTreeMap<String, String>,
) -> Event {
    let nanos = now_nanos();
    let legacy = |v: &str| {
        if kind == "container" {
            v.to_string()
        } else {
            String::new()
        }
    };
    Event {
        status: legacy(action),
        id: legacy(id),
        from: legacy(attributes.get("image").map_or("", String::as_str)),
        kind: kind.to_string(),
        action: action.to_string(),
        actor: Actor {
            id: id.to_string(),
            attributes,
        },
        scope: "local".into(),
        time: nanos / 1_000_000_000,
        time_nano: nanos,
    }
}

/// A container event: its image, name and labels as attributes (as Docker gives them).
pub(crate) fn container(c: &Container, action: &str) -> Event {
    container_with(c, action, [])
}

/// [`container`] with more attributes (`exitCode`, `signal`, `oldName`).
pub(crate) fn container_with<const N: usize>(
    c: &Container,
    action: &str,
    extra: [(&str, String); N],
) -> Event {
    let mut attributes: BTreeMap<String, String> = c.config.labels.clone();
    attributes.insert("image".into(), c.config.image.clone());
    attributes.insert("name".into(), c.config.name.clone());
    for (k, v) in extra {
        attributes.insert(k.to_string(), v);
    }
    new("container", action, c.id(), attributes)
}

/// Appends `event` to the root's log. Failing to record never fails the operation itself.
pub(crate) fn record(root: &Path, event: Event) {
    if let Err(e) = append(root, &event) {
        tracing::warn!(error = %e, "failed to record an event");
    }
}

fn append(root: &Path, event: &Event) -> std::io::Result<()> {
    let p = path(root);
    if fs::metadata(&p).is_ok_and(|m| m.len() > MAX_SIZE) {
        let _ = fs::rename(&p, root.join("events.jsonl.1"));
    }
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    fs::create_dir_all(root)?;
    let mut f = fs::OpenOptions::new().create(true).append(true).open(&p)?;
    f.write_all(&line)
}

/// A time as `--since`/`--until`/`until=` take it: RFC 3339 (`2024-01-02T15:04:05Z`,
/// `2024-01-02`), Unix seconds (with a fraction), or a duration before now (`10m`, `1h30m`);
/// in nanoseconds since the epoch.
pub fn parse_time_nanos(s: &str) -> Result<i64, RuntimeError> {
    let bad = || {
        RuntimeError::Invalid(format!(
            "invalid time {s:?}: expected RFC 3339, a Unix time or a duration"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    if let Some(d) = crate::health::parse_duration(s) {
        return Ok(now_nanos() - d.as_nanos() as i64);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    rfc3339_nanos(&full).ok_or_else(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` in nanoseconds since the epoch.
fn rfc3339_nanos(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        rest = &frac[digits.len()..];
        let padded = format!("{digits:0<9}");
        nanos = padded.get(..9)?.parse().ok()?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) * 1_000_000_000 + nanos)
}

/// [`parse_time_nanos`] as an RFC 3339 UTC time (what records hold, comparable as text).
pub fn parse_time(s: &str) -> Result<String, RuntimeError> {
    let n = parse_time_nanos(s)?;
    Ok(kiln_llb::image::format_rfc3339(
        n.div_euclid(1_000_000_000),
        n.rem_euclid(1_000_000_000) as u32,
    ))
}

/// Which events a reader wants: `--since`, `--until` (nanoseconds) and `--filter`s
/// (`type`, `event`, `container`, `image`, `label`, `network`, `volume`; several values of
/// one key are alternatives, different keys must all match).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub filters: Vec<(String, String)>,
}

impl EventFilter {
    /// Checks the filter keys, as Docker does before it streams anything.
    pub fn check(&self) -> Result<(), RuntimeError> {
        for (k, _) in &self.filters {
            if !matches!(
                k.as_str(),
                "type" | "event" | "container" | "image" | "label" | "network" | "volume"
            ) {
                return Err(RuntimeError::Invalid(format!("invalid filter '{k}'")));
            }
        }
        Ok(())
    }

    fn matches(&self, e: &Event) -> bool {
        if self.since.is_some_and(|s| e.time_nano < s)
            || self.until.is_some_and(|u| e.time_nano > u)
        {
            return false;
        }
        let mut keys: Vec<&str> = self.filters.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            self.filters
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, v)| self.one(key, v, e))
        })
    }

    fn one(&self, key: &str, value: &str, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        let id_or_name = |kind: &str| {
            e.kind == kind && (e.actor.id.starts_with(value) || attr("name") == Some(value))
        };
        match key {
            "type" => e.kind == value,
            "event" => e.action == value || e.action.split(':').next() == Some(value),
            "container" => {
                id_or_name("container")
                    || (e.kind == "network"
                        && attr("container").is_some_and(|c| c.starts_with(value)))
            }
            "image" => {
                attr("image") == Some(value)
                    || (e.kind == "image" && (e.actor.id == value || attr("name") == Some(value)))
            }
            "network" => id_or_name("network"),
            "volume" => id_or_name("volume"),
            "label" => match value.split_once('=') {
                Some((k, v)) => attr(k) == Some(v),
                None => attr(value).is_some(),
            },
            _ => false,
        }
    }
}

/// Passes every recorded event `filter` wants to `out`, oldest first; with `follow`, keeps
/// passing new ones as they come until `until` (if any) has passed or `out` says stop.
pub fn read(
    root: &Path,
    filter: &EventFilter,
    follow: bool,
    out: &mut dyn FnMut(&Event) -> bool,
) -> Result<(), RuntimeError> {
    let p = path(root);
    let mut text = fs::read_to_string(root.join("events.jsonl.1")).unwrap_or_default();
    let mut file = match fs::File::open(&p) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(format!("open {}", p.display()))(e)),
    };
    let mut pos = 0u64;
    if let Some(f) = &mut file {
        let mut reader = BufReader::new(&*f);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest)
            .map_err(io_err(format!("read {}", p.display())))?;
        // An event being written right now is read on the next pass.
        let complete = rest.rfind('\n').map_or(0, |i| i + 1);
        text.push_str(&rest[..complete]);
        pos = complete as u64;
    }
    for e in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
    {
        if filter.matches(&e) && !out(&e) {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        if filter.until.is_some_and(|u| now_nanos() > u) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
        let now = match fs::File::open(&p) {
            Ok(f) => f,
            Err(_) => continue,
        };
        // Rotated: the new file starts from the beginning.
        let same = match (&file, now.metadata()) {
            (Some(old), Ok(m)) => old.metadata().is_ok_and(|o| {
                std::os::unix::fs::MetadataExt::ino(&o) == std::os::unix::fs::MetadataExt::ino(&m)
            }),
            _ => false,
        };
        if !same {
            file = Some(now);
            pos = 0;
        }
        let Some(f) = &mut file else { continue };
        f.seek(SeekFrom::Start(pos))
            .map_err(io_err(format!("read {}", p.display())))?;
        let mut reader = BufReader::new(&*f);
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(io_err(format!("read {}", p.display())))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            pos += n as u64;
            if let Ok(e) = serde_json::from_str::<Event>(&line)
                && filter.matches(&e)
                && !out(&e)
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_events_are_read_back_through_filters() {
        let dir = tempfile::tempdir().unwrap();
        let attrs = |name: &str| {
            BTreeMap::from([
                ("name".to_string(), name.to_string()),
                ("image".into(), "busybox".into()),
                ("app".into(), "web".into()),
            ])
        };
        record(
            dir.path(),
            new("container", "create", "abc123", attrs("one")),
        );
        record(dir.path(), new("container", "die", "abc123", attrs("one")));
        record(
            dir.path(),
            new(
                "network",
                "create",
                "fff",
                BTreeMap::from([("name".to_string(), "net".to_string())]),
            ),
        );
        let got = |filters: &[(&str, &str)]| {
            let f = EventFilter {
                filters: filters
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            let mut seen = Vec::new();
            read(dir.path(), &f, false, &mut |e| {
                seen.push(format!("{} {}", e.kind, e.action));
                true
            })
            .unwrap();
            seen
        };
        assert_eq!(got(&[]).len(), 3);
        assert_eq!(got(&[("type", "network")]), ["network create"]);
        assert_eq!(
            got(&[("container", "one"), ("event", "die")]),
            ["container die"]
        );
        assert_eq!(got(&[("event", "die"), ("event", "create")]).len(), 3);
        assert_eq!(got(&[("label", "app=web")]).len(), 2);
        assert!(
            EventFilter {
                filters: vec![("nope".into(), "x".into())],
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn times_parse_as_docker_takes_them() {
        assert_eq!(
            parse_time_nanos("1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            rfc3339_nanos("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_time("2024-01-02").unwrap(), "2024-01-02T00:00:00Z");
        assert!(parse_time_nanos("10m").unwrap() < now_nanos());
        assert!(parse_time_nanos("soon").is_err());
    }
}
